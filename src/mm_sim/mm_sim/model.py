"""The physical twin: the plant (MuJoCo, from the servo's MJCF in mm_contract.description) and its sensors.

MuJoCo integrates the mechanics: load inertia plus the rotor's inertia reflected through the gearbox
(armature), gravity, a torsion spring, viscous and dry friction, end stops. The motor is current-regulated:
its current follows the command with the current loop's time constant, but only as far as the bus voltage
allows against the back-EMF, which is why the reachable torque falls with speed. The electrical power
`V·i` with `V = R·i + k_e·ω_motor` is integrated to the energy drawn.
"""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np
from mm_contract.description import LOAD_BODY, build_mjcf
from mm_contract.observation import COUNTS_PER_REV, MultiTurnEncoder
from mm_contract.profiles import LoadParams, ServoProfile
from numpy.typing import NDArray

_NOISE_BLOCK = 4096


class Plant:
    """MuJoCo mechanics plus the motor's electrical model, advanced one control period at a time."""

    def __init__(self, profile: ServoProfile, load: LoadParams) -> None:
        """Compile the MuJoCo model of `profile` with `load`."""
        self.profile = profile
        self.load = load
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(profile, load))
        self.data = mujoco.MjData(self.model)
        self._load_body = self.model.body(LOAD_BODY).id
        self._substeps = profile.control.physics_substeps
        self._substep_s = profile.dt_s / self._substeps
        self._motor = _Motor(profile)
        self._torque_per_a = profile.output_torque_per_a
        self._current_a = 0.0
        self._power_w = 0.0
        self._energy_j = 0.0

    @property
    def angle_rad(self) -> float:
        """True output angle (rad), multi-turn, 0 with the load hanging down."""
        return float(self.data.qpos[0])

    @property
    def velocity_rad_s(self) -> float:
        """True output velocity (rad/s)."""
        return float(self.data.qvel[0])

    @property
    def current_a(self) -> float:
        """True motor current (A)."""
        return self._current_a

    @property
    def power_w(self) -> float:
        """Electrical power drawn by the motor in the last substep (W), negative when it regenerates."""
        return self._power_w

    @property
    def energy_j(self) -> float:
        """Electrical energy drawn since the last reset, ∫V·i dt (J)."""
        return self._energy_j

    def reset(self, angle_rad: float, velocity_rad_s: float = 0.0) -> None:
        """Put the shaft at `angle_rad` (rad) moving at `velocity_rad_s` (rad/s), with no current or payload."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[0] = angle_rad
        self.data.qvel[0] = velocity_rad_s
        self.model.body_mass[self._load_body] = self.load.mass_kg
        self._current_a = self._power_w = self._energy_j = 0.0
        mujoco.mj_forward(self.model, self.data)

    def hold(self, angle_rad: float) -> None:
        """Pin the shaft at `angle_rad` (rad) at rest, as a holding brake does (call it every period it holds)."""
        self.data.qpos[0] = angle_rad
        self.data.qvel[0] = 0.0

    def set_payload(self, payload_kg: float) -> None:
        """Add `payload_kg` (kg) at the load's centre of mass (on top of its own mass)."""
        self.model.body_mass[self._load_body] = self.load.mass_kg + payload_kg

    def set_disturbance(self, torque_nm: float) -> None:
        """Apply an external torque (N·m) on the output until changed."""
        self.data.qfrc_applied[0] = torque_nm

    def current_bounds_a(self, velocity_rad_s: float) -> tuple[float, float]:
        """The currents (A) the bus can drive against the back-EMF at `velocity_rad_s`: (lowest, highest)."""
        low_a, high_a = self._motor.bounds_a(velocity_rad_s)
        return float(low_a), float(high_a)

    def advance(self, current_cmd_a: float) -> None:
        """Apply the current command `current_cmd_a` (A, already within the current limit) for one period."""
        model, data = self.model, self.data
        for _ in range(self._substeps):
            current, power = self._motor.substep(self._current_a, current_cmd_a, float(data.qvel[0]))
            self._current_a, self._power_w = float(current), float(power)
            self._energy_j += self._power_w * self._substep_s
            data.ctrl[0] = self._torque_per_a * self._current_a
            mujoco.mj_step(model, data)


class _Motor:
    """The electrical model of one substep, for one servo (floats) or a batch (arrays) alike.

    The current follows the command with the current loop's time constant, but only as far as the bus voltage
    allows against the back-EMF; the electrical power is `(R·i + k_e·ω_motor)·i`.
    """

    def __init__(self, profile: ServoProfile) -> None:
        substep_s = profile.dt_s / profile.control.physics_substeps
        tau_s = profile.driver.current_tau_s
        self.decay = math.exp(-substep_s / tau_s) if tau_s > 0.0 else 0.0
        self.emf_per_rad_s = profile.motor.back_emf_v_s_per_rad * profile.gear.ratio
        self.resistance_ohm = profile.motor.resistance_ohm
        self.bus_v = profile.driver.bus_voltage_v

    def bounds_a(self, velocity_rad_s: Any) -> tuple[Any, Any]:
        """The lowest and highest current (A) the bus can drive at output velocity `velocity_rad_s` (rad/s)."""
        back_emf_v = self.emf_per_rad_s * velocity_rad_s
        return (-self.bus_v - back_emf_v) / self.resistance_ohm, (self.bus_v - back_emf_v) / self.resistance_ohm

    def substep(self, current_a: Any, command_a: Any, velocity_rad_s: Any) -> tuple[Any, Any]:
        """The current (A) after one substep from `current_a` under `command_a`, and the power drawn (W)."""
        low_a, high_a = self.bounds_a(velocity_rad_s)
        reachable_a = np.minimum(np.maximum(command_a, low_a), high_a)
        # Exact solution of the first-order current loop over one substep, then the voltage bound.
        current = reachable_a + (current_a - reachable_a) * self.decay
        current = np.minimum(np.maximum(current, low_a), high_a)
        power = (self.resistance_ohm * current + self.emf_per_rad_s * velocity_rad_s) * current
        return current, power


class PlantBatch:
    """`copies` independent servos with the same profile and load, advanced together by one MuJoCo model.

    The same mechanics (`build_mjcf(copies=...)`) and electrical model (`_Motor`) as `Plant`, one element per
    servo; used to collect experience fast (`mm_sim.batch`). No payload or disturbance schedules.
    """

    def __init__(self, profile: ServoProfile, load: LoadParams, copies: int) -> None:
        """Compile the model of `copies` (>= 1) servos of `profile` with `load`."""
        self.profile = profile
        self.load = load
        self.copies = copies
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(profile, load, copies=copies))
        self.data = mujoco.MjData(self.model)
        self._motor = _Motor(profile)
        self._substeps = profile.control.physics_substeps
        self._substep_s = profile.dt_s / self._substeps
        self._torque_per_a = profile.output_torque_per_a
        self.current_a = np.zeros(copies)
        self.power_w = np.zeros(copies)
        self.energy_j = np.zeros(copies)

    @property
    def angle_rad(self) -> NDArray[np.float64]:
        """True output angles (rad), multi-turn."""
        return self.data.qpos.copy()

    @property
    def velocity_rad_s(self) -> NDArray[np.float64]:
        """True output velocities (rad/s)."""
        return self.data.qvel.copy()

    def reset(self, angle_rad: NDArray[np.float64]) -> None:
        """Put every shaft at rest at its `angle_rad` (rad), with no current."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[:] = angle_rad
        self.current_a[:] = 0.0
        self.power_w[:] = 0.0
        self.energy_j[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def advance(self, current_cmd_a: NDArray[np.float64]) -> None:
        """Apply each servo's current command (A, within the current limit) for one period."""
        for _ in range(self._substeps):
            self.current_a, self.power_w = self._motor.substep(self.current_a, current_cmd_a, self.data.qvel)
            self.energy_j = self.energy_j + self.power_w * self._substep_s
            self.data.ctrl[:] = self._torque_per_a * self.current_a
            mujoco.mj_step(self.model, self.data)


class SensorModel:
    """What the firmware reads: a quantised, noisy, unwrapped encoder position and a noisy current."""

    def __init__(self, profile: ServoProfile, rng: np.random.Generator) -> None:
        """Build the sensors of `profile`, drawing noise from `rng` (the env's `np_random`)."""
        self._counts_per_rad = COUNTS_PER_REV / (2.0 * math.pi)
        self._encoder_noise = profile.sensing.encoder_noise_counts
        self._current_noise = profile.sensing.current_noise_a
        self._rng = rng
        self._noise = np.zeros((0, 2))
        self._next = 0
        self._encoder = MultiTurnEncoder(0)

    def _count(self, angle_rad: float, noise_counts: float) -> int:
        return math.floor(angle_rad * self._counts_per_rad + noise_counts) % COUNTS_PER_REV

    def reset(self, angle_rad: float) -> None:
        """Start at the true angle `angle_rad`.

        The turn counter starts so that the measured position follows the true angle (as if the servo had
        booted with its shaft in [0, 2π)), so targets and gravity share one frame in the twin.
        """
        self._noise = np.zeros((0, 2))
        self._next = 0
        self._encoder = MultiTurnEncoder(self._count(angle_rad, 0.0), math.floor(angle_rad / (2.0 * math.pi)))

    def read(self, angle_rad: float, current_a: float) -> tuple[float, float]:
        """Sample position (rad) and current (A) for the true angle and current of this tick."""
        if self._next == len(self._noise):
            # Drawn in blocks: one call per 4096 ticks instead of two per tick keeps the env fast.
            self._noise = self._rng.standard_normal((_NOISE_BLOCK, 2)) * (self._encoder_noise, self._current_noise)
            self._next = 0
        encoder_noise, current_noise = self._noise[self._next]
        self._next += 1
        position = self._encoder.update(self._count(angle_rad, float(encoder_noise)))
        return float(position), current_a + float(current_noise)
