"""Objectives: what "driving the load well" means, as a reward computed from one transition sample.

`reward(weights, sample)` is pure and uses only what the servo reports in its transition samples (measured
position, velocity estimate, current, target, electrical power, actions, period), so the learner computes the
same reward from the real servo's transitions as the env does in simulation.

Terms (each is a cost per control tick, so an episode's sum is in physical units):
- `accuracy`: −|e|·dt, the integral of absolute error (rad·s).
- `speed`: −dt while |e| is outside the tolerance band, i.e. minus the time spent away from the target (s).
- `energy`: −max(P, 0)·dt, the electrical energy drawn (J); regenerated energy is not credited, since most
  drivers burn it in a resistor.
- `smooth`: −(a_k − a_{k−1})², command changes that excite the load and wear the gearbox.

Episode-level optimisers (the classical laws' tuner, the schedule's evolution strategy) judge the `energy` objective
by a move criterion instead of its per-tick return: the least electrical energy per move at matched settle
(`EnergyBudget`: mean settle at most 1.05× the energy-tuned PID's on the same moves, every move settled). The
per-tick return (error integral plus 0.05·J) rewards settling fast as much as saving energy, so laws tuned on it
spent energy to settle sooner than the PID; the criterion asks for what the objective names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mm_contract.errors import ObjectiveError

TERMS = ("accuracy", "speed", "energy", "smooth")

OBJECTIVES: dict[str, dict[str, float]] = {
    # Each named objective still contains some accuracy: energy or smoothness alone is won by doing nothing.
    "accuracy": {"accuracy": 1.0},
    "speed": {"speed": 1.0, "accuracy": 0.1},
    # Measured under the accuracy-tuned PID (10 moves per shipped profile and load): with these weights the
    # energy term is 0.2-4.8x the accuracy term (holding against a spring or gravity costs copper loss all the
    # time) and the smooth term 0.1-0.7x, so each changes what is best without making standing still pay.
    "energy": {"accuracy": 1.0, "energy": 0.05},
    "smooth": {"accuracy": 1.0, "smooth": 0.01},
}
"""Named objectives as weights of the terms; any other mix is a dict of weights too."""

DEFAULT_TOLERANCE_RAD = 0.01

SETTLE_BUDGET_FACTOR = 1.05
"""Energy at matched settle: the mean settle a controller may take, as a multiple of the reference PID's.

5 % inside the 1.1× the energy goal allows: a law tuned to the edge of its budget on one set of moves overran it
by up to 0.4 % on another (the tuning moves against the validation moves of mm_v3 + pendulum)."""


@dataclass(frozen=True)
class EnergyBudget:
    """The `energy` objective's move criterion: least energy per move within a settle budget.

    The score is dimensionless: −(mean energy / the reference's), with penalties (100 per unit of relative
    budget overrun, 1000 per fraction of unsettled moves) steep enough that a search stays within the budget and
    settles every move.

    Attributes:
        settle_s: the mean settling time allowed (s): `SETTLE_BUDGET_FACTOR` × the reference PID's.
        energy_j: the reference PID's mean energy per move (J), the unit of the score.
    """

    settle_s: float
    energy_j: float

    @classmethod
    def matching(cls, reference_settle_s: float, reference_energy_j: float) -> EnergyBudget:
        """The budget of a reference controller that settled its moves in `reference_settle_s` (s, mean).

        Raises:
            ObjectiveError: the reference did not settle (NaN) or a value is not positive.
        """
        if not (reference_settle_s > 0.0 and reference_energy_j > 0.0):
            msg = (
                f"an energy budget needs a reference that settles its moves using energy: settle "
                f"{reference_settle_s!r} s, energy {reference_energy_j!r} J"
            )
            raise ObjectiveError(msg)
        return cls(SETTLE_BUDGET_FACTOR * reference_settle_s, reference_energy_j)

    def score_moves(self, energy_j: NDArray[np.float64], settle_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scores (higher is better) of controllers from their moves, arrays (controllers × moves).

        Args:
            energy_j: each move's energy (J).
            settle_s: each move's settling time (s); NaN where the move did not settle.
        """
        settled = ~np.isnan(settle_s)
        fraction = settled.mean(axis=-1)
        mean_settle = np.where(settled, settle_s, 0.0).sum(axis=-1) / np.maximum(settled.sum(axis=-1), 1)
        overrun = np.where(fraction > 0.0, np.maximum(0.0, mean_settle / self.settle_s - 1.0), 1.0)
        return np.asarray(-energy_j.mean(axis=-1) / self.energy_j - 100.0 * overrun - 1000.0 * (1.0 - fraction))


@dataclass(frozen=True)
class TransitionSample:
    """One control tick as the servo reports it.

    Attributes:
        position_rad: measured, unwrapped position after the tick (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        current_a: measured motor current (A).
        target_rad: position target (rad).
        power_w: electrical power drawn (W).
        action: the action of this tick, in [-1, 1].
        previous_action: the action of the tick before.
        dt_s: control period (s).
    """

    position_rad: float
    velocity_rad_s: float
    current_a: float
    target_rad: float
    power_w: float
    action: float
    previous_action: float
    dt_s: float


def objective_weights(objective: str | Mapping[str, float]) -> dict[str, float]:
    """Resolve a named objective or a dict of weights to validated weights.

    Raises:
        ObjectiveError: unknown objective or term, or a negative or non-finite weight.
    """
    if isinstance(objective, str):
        if objective not in OBJECTIVES:
            msg = f"unknown objective {objective!r}; use one of {sorted(OBJECTIVES)} or a dict of term weights"
            raise ObjectiveError(msg)
        return dict(OBJECTIVES[objective])
    weights = dict(objective)
    unknown = sorted(set(weights) - set(TERMS))
    if unknown or not weights:
        msg = f"objective weights {weights!r}: unknown terms {unknown}; the terms are {list(TERMS)}"
        raise ObjectiveError(msg)
    for term, weight in weights.items():
        if not weight >= 0.0 or weight == float("inf"):
            msg = f"objective weight {term}={weight!r} must be a finite number >= 0"
            raise ObjectiveError(msg)
    return weights


def reward(
    weights: Mapping[str, float], sample: TransitionSample, *, tolerance_rad: float = DEFAULT_TOLERANCE_RAD
) -> tuple[float, dict[str, float]]:
    """The reward of one tick and its weighted terms (which sum to it).

    Args:
        weights: term weights, from `objective_weights`.
        sample: the tick as the servo reports it.
        tolerance_rad: the band that counts as "at the target" for `speed` (rad).
    """
    terms = reward_terms(
        weights,
        error_rad=abs(sample.target_rad - sample.position_rad),
        power_w=sample.power_w,
        action=sample.action,
        previous_action=sample.previous_action,
        dt_s=sample.dt_s,
        tolerance_rad=tolerance_rad,
    )
    return sum(terms.values()), terms


def reward_terms(
    weights: Mapping[str, float],
    *,
    error_rad: Any,
    power_w: Any,
    action: Any,
    previous_action: Any,
    dt_s: float,
    tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
) -> dict[str, Any]:
    """The weighted terms of `reward` for |error| `error_rad` (rad), floats or arrays (one element per servo).

    Args:
        weights: term weights, from `objective_weights`.
        error_rad: absolute position error after the tick (rad).
        power_w: electrical power drawn (W).
        action: the action of this tick, in [-1, 1].
        previous_action: the action of the tick before.
        dt_s: control period (s).
        tolerance_rad: the band that counts as "at the target" for `speed` (rad).
    """
    raw = {
        "accuracy": lambda: -error_rad * dt_s,
        "speed": lambda: np.where(error_rad > tolerance_rad, -dt_s, 0.0),
        "energy": lambda: -np.maximum(power_w, 0.0) * dt_s,
        "smooth": lambda: -((action - previous_action) ** 2),
    }
    scalar = np.ndim(error_rad) == 0
    return {term: float(weight * raw[term]()) if scalar else weight * raw[term]() for term, weight in weights.items()}
