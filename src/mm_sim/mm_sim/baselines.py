"""The cascaded PID baseline: the same law as the firmware's POSITION mode (servo contract, section 8).

Arithmetic is float32, as in the C core, so a PID tuned on the twin runs unchanged on the servo and the parity
test (`tests/firmware/test_pid_parity.py`) can compare the two on recorded inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mm_sim.errors import MmSimError

_F32 = np.float32


@dataclass(frozen=True)
class PidGains:
    """Gains of the cascaded position/velocity PID (the names travel in `ServoCommand`).

    Attributes:
        kp_pos: outer position gain (1/s): rad of error to rad/s of velocity command.
        v_max: velocity command limit (rad/s).
        kp_vel: inner velocity proportional gain (A·s/rad).
        ki_vel: inner velocity integral gain (A/rad).
        gravity_ff_a: gravity feedforward (A), multiplied by sin(position_rad).
    """

    kp_pos: float
    v_max: float
    kp_vel: float
    ki_vel: float
    gravity_ff_a: float

    def __post_init__(self) -> None:
        for name in ("kp_pos", "v_max", "kp_vel", "ki_vel", "gravity_ff_a"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                msg = f"PID gain {name}={value!r} must be a finite number >= 0; fix it in the profile or command"
                raise MmSimError(msg)


class CascadedPid:
    """Cascaded PID: position loop to a velocity command, velocity PI loop to a current command.

    Per tick (all float32):
        v_cmd = clip(kp_pos * e + v_ref, -v_max, v_max)
        u = kp_vel * (v_cmd - v) + I + gravity_ff_a * sin(position_rad)
        i = clip(u, -current_limit_a, current_limit_a)
        I += ki_vel * (v_cmd - v) * dt, unless u is saturated and v_cmd - v has the sign of the saturation.
    The output of tick k uses the integrator as it was before tick k (it is computed before deciding whether
    to integrate, which is what the anti-windup condition needs).
    """

    def __init__(self, gains: PidGains, *, current_limit_a: float, dt_s: float) -> None:
        """Build the controller.

        Args:
            gains: the PID gains.
            current_limit_a: output clamp (A), > 0.
            dt_s: control period (s), > 0.
        """
        if not (current_limit_a > 0.0 and dt_s > 0.0):
            msg = f"current_limit_a={current_limit_a!r} and dt_s={dt_s!r} must both be > 0"
            raise MmSimError(msg)
        self.gains = gains
        self._kp_pos = _F32(gains.kp_pos)
        self._v_max = _F32(gains.v_max)
        self._kp_vel = _F32(gains.kp_vel)
        self._ki_vel = _F32(gains.ki_vel)
        self._gravity_ff_a = _F32(gains.gravity_ff_a)
        self._limit_a = _F32(current_limit_a)
        self._dt_s = _F32(dt_s)
        self._integrator_a = _F32(0.0)

    @property
    def integrator_a(self) -> float:
        """The integrator state I (A)."""
        return float(self._integrator_a)

    def reset(self) -> None:
        """Clear the integrator (as the firmware does on entering POSITION mode)."""
        self._integrator_a = _F32(0.0)

    def step(
        self,
        *,
        position_rad: float,
        velocity_rad_s: float,
        target_rad: float,
        target_velocity_rad_s: float = 0.0,
    ) -> float:
        """Run one control tick and return the current command (A), within ±current_limit_a.

        Args:
            position_rad: measured, unwrapped position (rad).
            velocity_rad_s: filtered velocity estimate (rad/s).
            target_rad: position target (rad).
            target_velocity_rad_s: reference velocity (rad/s), 0 for step moves.
        """
        position = _F32(position_rad)
        error = _F32(target_rad) - position
        v_cmd = np.clip(self._kp_pos * error + _F32(target_velocity_rad_s), -self._v_max, self._v_max)
        v_error = v_cmd - _F32(velocity_rad_s)
        unclamped = self._kp_vel * v_error + self._integrator_a + self._gravity_ff_a * np.sin(position)
        output = np.clip(unclamped, -self._limit_a, self._limit_a)
        # Conditional integration: winding up further into a saturated output only delays recovery.
        pushing_into_limit = abs(unclamped) > self._limit_a and (v_error > 0) == (unclamped > 0)
        if not pushing_into_limit:
            self._integrator_a = _F32(self._integrator_a + self._ki_vel * v_error * self._dt_s)
        return float(output)


class PidController:
    """Drives a `mm_sim.env.ServoEnv` with `CascadedPid`, reading the sensed state from the env's `info`.

    Call it as `action = controller(observation, info)`; it returns the action in [-1, 1] the env expects.
    """

    def __init__(self, gains: PidGains, *, current_limit_a: float, dt_s: float) -> None:
        """Build the controller; arguments as for `CascadedPid`."""
        self.pid = CascadedPid(gains, current_limit_a=current_limit_a, dt_s=dt_s)
        self._current_limit_a = current_limit_a

    def reset(self) -> None:
        """Clear the PID state at the start of an episode."""
        self.pid.reset()

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """Return the action (normalised current command) for the sensed state in `info`."""
        current_a = self.pid.step(
            position_rad=info["position_rad"],
            velocity_rad_s=info["velocity_rad_s"],
            target_rad=info["target_rad"],
            target_velocity_rad_s=info["target_velocity_rad_s"],
        )
        return np.array([current_a / self._current_limit_a], dtype=np.float32)
