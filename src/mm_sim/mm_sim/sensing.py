"""The servo's sensing as the firmware sees it (servo contract, sections 2 and 3).

Encoder quantisation and unwrapping, the filtered velocity estimate and the observation vector, all in float32
as the C core computes them. `tests/firmware/test_observation_parity.py` compares `build_observation` with the
C core on recorded states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mm_sim.servo_profile import PolicyScales

COUNTS_PER_REV = 16384
"""AS5047 counts per revolution of the output shaft (14 bit)."""

OBSERVATION_SIZE = 8
_F32 = np.float32
_TWO_PI_F32 = _F32(2.0 * math.pi)
# 2π / 16384 in float32 is exact given 2π in float32 (division by a power of two), as in the C core.
_RAD_PER_COUNT_F32 = _F32(_TWO_PI_F32 / _F32(COUNTS_PER_REV))


def encoder_count(angle_rad: float) -> int:
    """The AS5047's 14-bit reading, in [0, 16383], for a shaft at `angle_rad` (any number of turns)."""
    return math.floor(angle_rad * COUNTS_PER_REV / (2.0 * math.pi)) % COUNTS_PER_REV


class MultiTurnEncoder:
    """Unwraps successive 14-bit counts to a multi-turn position, as the firmware core does.

    `position_rad = turns * 2π + count * 2π / 16384` (float32); a jump of more than half a turn between two
    readings is taken as a wrap. Readings must come often enough that the shaft turns less than half a turn
    between them (at 1 kHz: below 500 rev/s).
    """

    def __init__(self, count: int, turns: int = 0) -> None:
        """Start at `count` on turn `turns` (the firmware boots with turns = 0)."""
        self._count = count
        self._turns = turns

    @property
    def position_rad(self) -> np.float32:
        """The unwrapped position (rad, float32)."""
        return _F32(self._turns) * _TWO_PI_F32 + _F32(self._count) * _RAD_PER_COUNT_F32

    def update(self, count: int) -> np.float32:
        """Take a new reading and return the unwrapped position (rad, float32)."""
        step = count - self._count
        if step > COUNTS_PER_REV // 2:
            self._turns -= 1
        elif step < -(COUNTS_PER_REV // 2):
            self._turns += 1
        self._count = count
        return self.position_rad


class VelocityFilter:
    """First-order low-pass velocity estimate from successive positions (float32, as in the C core).

    `v_raw = (θ_k − θ_{k−1}) / dt`, `v_k = v_{k−1} + α (v_raw − v_{k−1})`, `α = dt / (τ + dt)`.
    """

    def __init__(self, *, dt_s: float, tau_s: float, position_rad: float) -> None:
        """Start at rest at `position_rad` (v_0 = 0, θ_{−1} = θ_0).

        Args:
            dt_s: sampling period (s).
            tau_s: filter time constant (s).
            position_rad: the first position (rad).
        """
        self._dt_s = _F32(dt_s)
        self._alpha = _F32(self._dt_s / (_F32(tau_s) + self._dt_s))
        self._previous_rad = _F32(position_rad)
        self._velocity_rad_s = _F32(0.0)

    def update(self, position_rad: float | np.float32) -> np.float32:
        """Take the position of this tick and return the filtered velocity (rad/s, float32)."""
        position = _F32(position_rad)
        raw = (position - self._previous_rad) / self._dt_s
        self._velocity_rad_s = _F32(self._velocity_rad_s + self._alpha * (raw - self._velocity_rad_s))
        self._previous_rad = position
        return self._velocity_rad_s


@dataclass(frozen=True)
class SensorReading:
    """What the firmware knows at one tick.

    Attributes:
        position_rad: unwrapped encoder position (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        current_a: measured motor current (A).
    """

    position_rad: float
    velocity_rad_s: float
    current_a: float


class Sensors:
    """Encoder, velocity filter and current sense of the twin, turning true plant state into readings."""

    def __init__(self, *, dt_s: float, velocity_filter_tau_s: float, current_noise_a: float) -> None:
        """Build the sensors; `reset` must be called before the first `read`.

        Args:
            dt_s: control period (s).
            velocity_filter_tau_s: velocity filter time constant (s).
            current_noise_a: standard deviation of the current measurement noise (A).
        """
        self._dt_s = dt_s
        self._tau_s = velocity_filter_tau_s
        self._current_noise_a = current_noise_a
        self._encoder = MultiTurnEncoder(0)
        self._filter = VelocityFilter(dt_s=dt_s, tau_s=velocity_filter_tau_s, position_rad=0.0)

    def reset(self, angle_rad: float) -> None:
        """Start at the true shaft angle `angle_rad`, at rest.

        The turn counter starts so that the measured position follows the true angle (as if the servo had
        booted with its shaft in [0, 2π)), so targets and gravity share one frame in the twin.
        """
        self._encoder = MultiTurnEncoder(encoder_count(angle_rad), math.floor(angle_rad / (2.0 * math.pi)))
        self._filter = VelocityFilter(
            dt_s=self._dt_s, tau_s=self._tau_s, position_rad=float(self._encoder.position_rad)
        )

    def read(self, *, angle_rad: float, current_a: float, rng: np.random.Generator) -> SensorReading:
        """Sample the sensors for the true shaft angle (rad) and motor current (A) of this tick."""
        position = self._encoder.update(encoder_count(angle_rad))
        velocity = self._filter.update(position)
        noise_a = rng.normal(0.0, self._current_noise_a) if self._current_noise_a > 0.0 else 0.0
        return SensorReading(float(position), float(velocity), float(_F32(current_a + noise_a)))


def build_observation(
    *,
    position_rad: float,
    velocity_rad_s: float,
    target_rad: float,
    target_velocity_rad_s: float,
    previous_action: float,
    current_a: float,
    scales: PolicyScales,
) -> NDArray[np.float32]:
    """The policy's observation (servo contract, section 3): 8 float32 features, each in [-1, 1].

    Args:
        position_rad: measured, unwrapped position (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        target_rad: position target (rad).
        target_velocity_rad_s: reference velocity (rad/s), 0 for step moves.
        previous_action: the action of the previous tick (0 after reset).
        current_a: measured motor current (A).
        scales: the policy's scales.

    Returns:
        [coarse error, fine error, velocity, sin(position), cos(position), reference velocity,
        previous action, current], float32.
    """
    position = _F32(position_rad)
    error = _F32(target_rad) - position
    vel_scale = _F32(scales.vel_scale_rad_s)
    features = np.array(
        [
            error / _F32(scales.pos_scale_rad),
            error * _F32(scales.fine_gain_per_rad),
            _F32(velocity_rad_s) / vel_scale,
            np.sin(position),
            np.cos(position),
            _F32(target_velocity_rad_s) / vel_scale,
            _F32(previous_action),
            _F32(current_a) / _F32(scales.current_limit_a),
        ],
        dtype=np.float32,
    )
    return np.clip(features, _F32(-1.0), _F32(1.0))
