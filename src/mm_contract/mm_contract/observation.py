"""The servo's observation exactly as the firmware computes it (servo contract, sections 2 and 3).

Encoder unwrapping, the filtered velocity estimate and the 8 observation features, in float32 and in the
contract's order of operations, as the C core does. `firmware/core/test/test_observation_parity.py` steps
`ObservationBuilder` and the C core side by side on recorded states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mm_contract.constants import ENCODER_COUNTS as COUNTS_PER_REV
from mm_contract.profiles import ServoProfile

Counts = int | NDArray[np.int64]
"""Encoder counts: one servo's, or an array of a batch's (`mm_sim.batch`)."""
_F32 = np.float32
_ONE = _F32(1.0)
_TWO_PI_F32 = _F32(2.0 * math.pi)
# 2π / 16384 in float32 is exact given 2π in float32 (division by a power of two), as in the C core.
_RAD_PER_COUNT_F32 = _F32(_TWO_PI_F32 / _F32(COUNTS_PER_REV))


@dataclass(frozen=True)
class ObsScales:
    """The five numbers the policy image carries (servo contract, section 5, offsets 16–35).

    Attributes:
        pos_scale_rad: position error giving a coarse error feature of 1 (rad).
        vel_scale_rad_s: velocity giving a velocity feature of 1 (rad/s).
        fine_gain_per_rad: gain of the fine error feature (1/rad).
        current_limit_a: current for action 1 and for a current feature of 1 (A).
        velocity_filter_tau_s: time constant of the velocity estimate's low-pass filter (s).
    """

    pos_scale_rad: float
    vel_scale_rad_s: float
    fine_gain_per_rad: float
    current_limit_a: float
    velocity_filter_tau_s: float

    @classmethod
    def from_profile(cls, profile: ServoProfile) -> ObsScales:
        """The scales the env uses for `profile`."""
        obs = profile.observation
        return cls(
            pos_scale_rad=obs.pos_scale_rad,
            vel_scale_rad_s=obs.vel_scale_rad_s,
            fine_gain_per_rad=obs.fine_gain_per_rad,
            current_limit_a=profile.driver.current_limit_a,
            velocity_filter_tau_s=obs.velocity_filter_tau_s,
        )


def encoder_count(angle_rad: float) -> int:
    """The AS5047's 14-bit reading, in [0, 16383], for a shaft at `angle_rad` (any number of turns)."""
    return math.floor(angle_rad * (COUNTS_PER_REV / (2.0 * math.pi))) % COUNTS_PER_REV


class MultiTurnEncoder:
    """Unwraps successive 14-bit counts to a multi-turn position, as the firmware core does.

    `position_rad = turns * 2π + count * 2π / 16384` (float32); a jump of more than half a turn between two
    readings is taken as a wrap, so the shaft must turn less than half a turn per reading (at 1 kHz: below
    500 rev/s).
    """

    def __init__(self, count: Counts, turns: Counts = 0) -> None:
        """Start at `count` on turn `turns` (the firmware boots with turns = 0)."""
        self._count = count
        self._turns = turns

    @property
    def position_rad(self) -> np.float32:
        """The unwrapped position (rad, float32)."""
        return _F32(self._turns) * _TWO_PI_F32 + _F32(self._count) * _RAD_PER_COUNT_F32

    def update(self, count: Counts) -> np.float32:
        """Take a new reading and return the unwrapped position (rad, float32)."""
        step = count - self._count
        # Arithmetic rather than branches, so one encoder object also unwraps an array of counts (mm_sim.batch).
        self._turns = self._turns + (step < -(COUNTS_PER_REV // 2)) - (step > COUNTS_PER_REV // 2)
        self._count = count
        return self.position_rad


class _Features:
    """The observation formula with the scales already in float32 (built once per builder: it runs per tick)."""

    def __init__(self, scales: ObsScales) -> None:
        self._pos_scale = _F32(scales.pos_scale_rad)
        self._fine_gain = _F32(scales.fine_gain_per_rad)
        self._vel_scale = _F32(scales.vel_scale_rad_s)
        self._current_limit = _F32(scales.current_limit_a)

    def __call__(
        self,
        position: np.float32,
        velocity: np.float32,
        *,
        target_rad: float,
        target_velocity_rad_s: float,
        prev_action: float,
        current_a: float,
    ) -> NDArray[np.float32]:
        error = _F32(target_rad) - position
        features = np.array(
            (
                error / self._pos_scale,
                error * self._fine_gain,
                velocity / self._vel_scale,
                np.sin(position),
                np.cos(position),
                _F32(target_velocity_rad_s) / self._vel_scale,
                prev_action,
                _F32(current_a) / self._current_limit,
            ),
            dtype=np.float32,
        )
        # The ufuncs directly: np.clip's Python wrapper costs more than the rest of the tick's arithmetic.
        np.maximum(features, -_ONE, out=features)
        return np.minimum(features, _ONE, out=features)


def build_observation(
    *,
    position_rad: float,
    velocity_rad_s: float,
    target_rad: float,
    target_velocity_rad_s: float,
    prev_action: float,
    current_a: float,
    scales: ObsScales,
) -> NDArray[np.float32]:
    """The 8 observation features (servo contract, section 3), float32, each in [-1, 1].

    Args:
        position_rad: measured, unwrapped position (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        target_rad: position target (rad).
        target_velocity_rad_s: reference velocity (rad/s), 0 for step moves.
        prev_action: the action of the previous tick (0 after reset).
        current_a: measured motor current (A).
        scales: the policy's scales.

    Returns:
        [coarse error, fine error, velocity, sin(position), cos(position), reference velocity,
        previous action, current].
    """
    return _Features(scales)(
        _F32(position_rad),
        _F32(velocity_rad_s),
        target_rad=target_rad,
        target_velocity_rad_s=target_velocity_rad_s,
        prev_action=prev_action,
        current_a=current_a,
    )


class ObservationBuilder:
    """The firmware's per-tick sensing pipeline: velocity filter, then the observation.

    Velocity (float32, contract order): `v_raw = (θ_k − θ_{k−1}) / dt`, `v_k = v_{k−1} + α (v_raw − v_{k−1})`,
    `α = dt / (τ + dt)`, with `v_0 = 0` and `θ_{−1} = θ_0` after `reset`.
    """

    def __init__(self, scales: ObsScales, dt_s: float) -> None:
        """Build the pipeline for `scales` and control period `dt_s` (s); call `reset` before `update`."""
        self.scales = scales
        self._features = _Features(scales)
        self._dt_s = _F32(dt_s)
        self._alpha = _F32(self._dt_s / (_F32(scales.velocity_filter_tau_s) + self._dt_s))
        self._previous_rad = _F32(0.0)
        self._velocity_rad_s = _F32(0.0)

    @property
    def velocity_rad_s(self) -> Any:
        """The filtered velocity estimate of the last update (rad/s): a float, or an array for a batch."""
        velocity = self._velocity_rad_s
        return float(velocity) if np.ndim(velocity) == 0 else velocity

    def reset(self, position_rad: Any) -> None:
        """Start at rest at `position_rad` (rad; an array for a batch of servos)."""
        self._previous_rad = _F32(position_rad)
        self._velocity_rad_s = _F32(np.zeros_like(self._previous_rad))

    def advance(self, position_rad: Any) -> None:
        """Feed one tick's measured position (rad; an array for a batch) to the velocity filter."""
        position = _F32(position_rad)
        raw = (position - self._previous_rad) / self._dt_s
        self._velocity_rad_s = _F32(self._velocity_rad_s + self._alpha * (raw - self._velocity_rad_s))
        self._previous_rad = position

    def features(
        self, position_rad: Any, *, target_rad: Any, target_velocity_rad_s: Any, prev_action: Any, current_a: Any
    ) -> NDArray[np.float32]:
        """The observation at the present velocity estimate: shape (8,), or (8, n) for arrays of n servos."""
        return self._features(
            _F32(position_rad),
            self._velocity_rad_s,
            target_rad=target_rad,
            target_velocity_rad_s=target_velocity_rad_s,
            prev_action=prev_action,
            current_a=current_a,
        )

    def update(
        self,
        position_rad: float,
        current_a: float,
        target_rad: float,
        target_velocity_rad_s: float,
        prev_action: float,
    ) -> NDArray[np.float32]:
        """Feed one tick's measurements and return its observation (float32, shape (8,)).

        Args:
            position_rad: measured, unwrapped position (rad).
            current_a: measured motor current (A).
            target_rad: position target (rad).
            target_velocity_rad_s: reference velocity (rad/s).
            prev_action: the previous tick's action.
        """
        self.advance(position_rad)
        return self.features(
            position_rad,
            target_rad=target_rad,
            target_velocity_rad_s=target_velocity_rad_s,
            prev_action=prev_action,
            current_a=current_a,
        )
