"""The twin's default reward, from quantities the servo itself reports.

It uses the measured error and the actions only, so the learner can compute the same reward from the real
servo's transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm_sim.errors import MmSimError


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (all >= 0).

    Attributes:
        position: weight of -|error| / pos_scale_rad.
        precision_bonus: reward per tick while |error| < precision_tolerance_rad.
        precision_tolerance_rad: error band for the bonus (rad).
        effort: weight of -action², the current's heating.
        smoothness: weight of -(action - previous action)², chatter that wears the gearbox.
    """

    position: float = 1.0
    precision_bonus: float = 0.5
    precision_tolerance_rad: float = 0.01
    effort: float = 0.02
    smoothness: float = 0.1

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value >= 0.0:
                msg = f"reward weight {name}={value!r} must be >= 0"
                raise MmSimError(msg)


def reward_terms(
    *, error_rad: float, action: float, previous_action: float, pos_scale_rad: float, weights: RewardWeights
) -> dict[str, float]:
    """The named reward terms of one tick; the reward is their sum.

    Args:
        error_rad: measured position error target - position (rad) after the tick.
        action: the action of this tick, in [-1, 1].
        previous_action: the action of the tick before, in [-1, 1].
        pos_scale_rad: the policy's coarse position scale (rad).
        weights: the weights.
    """
    return {
        "position": -weights.position * abs(error_rad) / pos_scale_rad,
        "precision": weights.precision_bonus if abs(error_rad) < weights.precision_tolerance_rad else 0.0,
        "effort": -weights.effort * action**2,
        "smoothness": -weights.smoothness * (action - previous_action) ** 2,
    }
