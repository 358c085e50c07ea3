"""Servo profiles: the physical parameters of one servo and its load, and the scales its policy uses.

A profile is a YAML file. The shipped ones live in `mm_sim/profiles/` (see `list_profiles()`); a user's own
profile is loaded from a path. Every physical quantity carries its unit in its name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from mm_sim.baselines import PidGains
from mm_sim.errors import MmSimError

STANDARD_GRAVITY_M_S2 = 9.81


@dataclass(frozen=True)
class MotorParams:
    """DC motor and its current-controlled bridge driver, seen from the motor shaft.

    Attributes:
        torque_constant_nm_per_a: k_t (N·m/A); in SI units also the back-EMF constant (V·s/rad).
        resistance_ohm: winding resistance (Ω); with the supply voltage and back-EMF it bounds the current.
        rotor_inertia_kg_m2: rotor inertia at the motor shaft (kg·m²).
        current_tau_s: time constant of the driver's current regulation (s).
        supply_voltage_v: bridge supply voltage (V).
    """

    torque_constant_nm_per_a: float
    resistance_ohm: float
    rotor_inertia_kg_m2: float
    current_tau_s: float
    supply_voltage_v: float


@dataclass(frozen=True)
class GearParams:
    """Gearbox between motor and output shaft.

    Attributes:
        ratio: motor turns per output turn (> 0).
        efficiency: fraction of motor torque that reaches the output, in (0, 1].
    """

    ratio: float
    efficiency: float


@dataclass(frozen=True)
class LoadParams:
    """The load on the output shaft, which turns about a horizontal axis.

    Attributes:
        mass_kg: load mass (kg).
        com_distance_m: distance of its centre of mass from the axis (m); at position 0 it hangs straight down,
            so gravity pulls with mass * g * com_distance * sin(position). 0 for a balanced load.
        inertia_kg_m2: the load's own inertia about its centre of mass (kg·m², > 0).
    """

    mass_kg: float
    com_distance_m: float
    inertia_kg_m2: float


@dataclass(frozen=True)
class FrictionParams:
    """Friction at the output shaft (gearbox and bearings together).

    Attributes:
        viscous_nm_s_per_rad: viscous friction (N·m·s/rad).
        coulomb_nm: dry friction torque (N·m).
    """

    viscous_nm_s_per_rad: float
    coulomb_nm: float


@dataclass(frozen=True)
class SensingParams:
    """Sensor imperfections beyond the encoder's quantisation.

    Attributes:
        current_noise_a: standard deviation of the current measurement's noise (A).
    """

    current_noise_a: float


@dataclass(frozen=True)
class PolicyScales:
    """The five numbers the policy image carries (servo contract, section 5, offsets 16–35).

    They scale the observation into [-1, 1] and the action to a current, so the firmware needs no profile.

    Attributes:
        pos_scale_rad: position error giving a coarse error feature of 1 (rad).
        vel_scale_rad_s: velocity giving a velocity feature of 1 (rad/s).
        fine_gain_per_rad: gain of the fine error feature (1/rad); it saturates at 1 / fine_gain_per_rad rad.
        current_limit_a: current for action 1 and for a current feature of 1 (A).
        velocity_filter_tau_s: time constant of the velocity estimate's low-pass filter (s).
    """

    pos_scale_rad: float
    vel_scale_rad_s: float
    fine_gain_per_rad: float
    current_limit_a: float
    velocity_filter_tau_s: float


@dataclass(frozen=True)
class ServoProfile:
    """Everything the twin needs to know about one servo and its load.

    Attributes:
        name: short identifier.
        description: one line for people.
        control_rate_hz: control loop rate (Hz); the control period is 1 / control_rate_hz.
        physics_substeps: MuJoCo steps per control period.
        motor, gear, load, friction, sensing: the physical model.
        policy_scales: the observation/action scales of the policy (carried in the policy image).
        pid: baseline gains tuned for this servo on the twin.
    """

    name: str
    description: str
    control_rate_hz: int
    physics_substeps: int
    motor: MotorParams
    gear: GearParams
    load: LoadParams
    friction: FrictionParams
    sensing: SensingParams
    policy_scales: PolicyScales
    pid: PidGains

    @property
    def dt_s(self) -> float:
        """Control period (s)."""
        return 1.0 / self.control_rate_hz

    @property
    def output_torque_per_a(self) -> float:
        """Output shaft torque per ampere of motor current (N·m/A)."""
        return self.motor.torque_constant_nm_per_a * self.gear.ratio * self.gear.efficiency

    @property
    def reflected_rotor_inertia_kg_m2(self) -> float:
        """Rotor inertia seen at the output shaft (kg·m²)."""
        return self.motor.rotor_inertia_kg_m2 * self.gear.ratio**2

    @property
    def gravity_torque_nm(self) -> float:
        """Peak gravity torque of the load, at position ±π/2 (N·m)."""
        return self.load.mass_kg * STANDARD_GRAVITY_M_S2 * self.load.com_distance_m

    def perturbed(self, rng: np.random.Generator, fraction: float) -> ServoProfile:
        """Return a copy whose uncertain physical parameters are each scaled by U(1 - fraction, 1 + fraction).

        Used for domain randomisation, so a policy does not overfit one set of numbers. Scales, limits, gains
        and the supply voltage stay as they are.

        Args:
            rng: random source (the env's `np_random`).
            fraction: relative spread, in [0, 1).
        """
        if not 0.0 <= fraction < 1.0:
            msg = f"randomisation fraction {fraction!r} must be in [0, 1), e.g. 0.2 for ±20 %"
            raise MmSimError(msg)

        def scaled(params: _P, *names: str) -> _P:
            changes = {n: getattr(params, n) * float(rng.uniform(1.0 - fraction, 1.0 + fraction)) for n in names}
            return dataclasses.replace(params, **changes)

        return dataclasses.replace(
            self,
            motor=scaled(self.motor, "torque_constant_nm_per_a", "resistance_ohm", "rotor_inertia_kg_m2"),
            load=scaled(self.load, "mass_kg", "com_distance_m", "inertia_kg_m2"),
            friction=scaled(self.friction, "viscous_nm_s_per_rad", "coulomb_nm"),
        )


_P = TypeVar("_P", MotorParams, LoadParams, FrictionParams)
_T = TypeVar("_T")

# Parameters that may be zero; every other number must be strictly positive.
_MAY_BE_ZERO = {"com_distance_m", "viscous_nm_s_per_rad", "coulomb_nm", "current_noise_a", "ki_vel", "gravity_ff_a"}
_SECTIONS: dict[str, type[Any]] = {
    "motor": MotorParams,
    "gear": GearParams,
    "load": LoadParams,
    "friction": FrictionParams,
    "sensing": SensingParams,
    "policy_scales": PolicyScales,
    "pid": PidGains,
}


def _check_keys(where: str, mapping: Any, expected: list[str]) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        msg = f"{where}: expected a mapping with keys {expected}, got {type(mapping).__name__}"
        raise MmSimError(msg)
    missing = [k for k in expected if k not in mapping]
    unknown = [k for k in mapping if k not in expected]
    if missing or unknown:
        msg = f"{where}: missing keys {missing}, unknown keys {unknown}; the keys are {expected}"
        raise MmSimError(msg)
    return mapping


def _section(cls: type[_T], where: str, mapping: Any) -> _T:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values: dict[str, float] = {}
    for name, raw in _check_keys(where, mapping, names).items():
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            msg = f"{where}.{name}: expected a finite number, got {raw!r}"
            raise MmSimError(msg)
        if raw < 0 or (raw == 0 and name not in _MAY_BE_ZERO):
            bound = ">= 0" if name in _MAY_BE_ZERO else "> 0"
            msg = f"{where}.{name}={raw!r} must be {bound}"
            raise MmSimError(msg)
        values[name] = float(raw)
    return cls(**values)


def profile_from_dict(data: Any, *, where: str = "profile") -> ServoProfile:
    """Build and validate a profile from its YAML mapping.

    Args:
        data: the parsed YAML document.
        where: names the source in error messages (a file name, for example).

    Raises:
        MmSimError: a key is missing or unknown, or a value is out of range.
    """
    top = ["name", "description", "control_rate_hz", "physics_substeps", *_SECTIONS]
    mapping = _check_keys(where, data, top)
    for key in ("control_rate_hz", "physics_substeps"):
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            msg = f"{where}.{key}: expected a positive integer, got {value!r}"
            raise MmSimError(msg)
    sections = {key: _section(cls, f"{where}.{key}", mapping[key]) for key, cls in _SECTIONS.items()}
    if sections["gear"].efficiency > 1.0:
        msg = f"{where}.gear.efficiency={sections['gear'].efficiency} must be at most 1"
        raise MmSimError(msg)
    return ServoProfile(
        name=str(mapping["name"]),
        description=str(mapping["description"]),
        control_rate_hz=mapping["control_rate_hz"],
        physics_substeps=mapping["physics_substeps"],
        **sections,
    )


def list_profiles() -> list[str]:
    """Names of the profiles shipped with mm_sim, sorted."""
    folder = resources.files("mm_sim") / "profiles"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> ServoProfile:
    """Load a shipped profile by name (see `list_profiles()`) or a profile file by path.

    Raises:
        MmSimError: the profile does not exist or is invalid.
    """
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or as_path.parent != Path("."):
        if not as_path.is_file():
            msg = f"profile file {str(as_path)!r} not found; give a path to a YAML file or one of {list_profiles()}"
            raise MmSimError(msg)
        text, where = as_path.read_text(encoding="utf-8"), str(as_path)
    else:
        resource = resources.files("mm_sim") / "profiles" / f"{name_or_path}.yaml"
        if not resource.is_file():
            msg = f"no profile named {str(name_or_path)!r}; the shipped profiles are {list_profiles()}"
            raise MmSimError(msg)
        text, where = resource.read_text(encoding="utf-8"), f"profile {name_or_path!r}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        msg = f"{where} is not valid YAML: {error}"
        raise MmSimError(msg) from error
    return profile_from_dict(data, where=where)
