"""Servo profiles: one servo's motor, driver, gearbox, friction, sensing and loads, from YAML.

The shipped profiles are the YAML files beside this module (`list_profiles()`); a user's own profile is loaded
from a path. Every physical quantity carries its unit in its name, and each value's source is a comment in the
YAML file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from mm_contract.errors import ProfileError

STANDARD_GRAVITY_M_S2 = 9.81
LOAD_KINDS = ("inertia_disk", "pendulum", "spring")


@dataclass(frozen=True)
class ControlParams:
    """Control loop timing.

    Attributes:
        rate_hz: control rate (Hz); the control period is 1 / rate_hz.
        physics_substeps: MuJoCo steps per control period.
    """

    rate_hz: int
    physics_substeps: int


@dataclass(frozen=True)
class MotorParams:
    """The motor as an equivalent DC machine (torque proportional to the torque-producing current).

    Attributes:
        torque_constant_nm_per_a: motor torque per ampere (N·m/A).
        back_emf_v_s_per_rad: back-EMF per motor shaft speed (V·s/rad).
        resistance_ohm: winding resistance (Ω), the copper loss and, with the bus, the current bound.
        rotor_inertia_kg_m2: rotor inertia at the motor shaft (kg·m²).
    """

    torque_constant_nm_per_a: float
    back_emf_v_s_per_rad: float
    resistance_ohm: float
    rotor_inertia_kg_m2: float


@dataclass(frozen=True)
class DriverParams:
    """The current-regulating driver.

    Attributes:
        bus_voltage_v: supply bus (V); with the back-EMF it bounds the current the driver can push.
        current_limit_a: the firmware's current limit (A); action 1 commands this current.
        current_tau_s: time constant of the current loop (s); 0 for an ideal current source.
    """

    bus_voltage_v: float
    current_limit_a: float
    current_tau_s: float


@dataclass(frozen=True)
class GearParams:
    """Gearbox between motor and output shaft (ratio 1 for direct drive).

    Attributes:
        ratio: motor turns per output turn.
        efficiency: fraction of motor torque that reaches the output, in (0, 1].
    """

    ratio: float
    efficiency: float


@dataclass(frozen=True)
class FrictionParams:
    """Friction at the output shaft (motor, gearbox and bearings together).

    Attributes:
        viscous_nm_s_per_rad: viscous friction (N·m·s/rad).
        coulomb_nm: dry friction torque (N·m).
    """

    viscous_nm_s_per_rad: float
    coulomb_nm: float


@dataclass(frozen=True)
class SensingParams:
    """Sensor imperfections beyond the 16384 counts/rev quantisation of the encoder.

    Attributes:
        encoder_noise_counts: standard deviation of the encoder reading's noise (counts).
        current_noise_a: standard deviation of the current measurement's noise (A).
    """

    encoder_noise_counts: float
    current_noise_a: float


@dataclass(frozen=True)
class ObservationParams:
    """The observation scales of the policy besides the current limit (servo contract, sections 2, 3 and 5).

    Attributes:
        pos_scale_rad: position error giving a coarse error feature of 1 (rad).
        vel_scale_rad_s: velocity giving a velocity feature of 1 (rad/s).
        fine_gain_per_rad: gain of the fine error feature (1/rad).
        velocity_filter_tau_s: time constant of the velocity estimate's low-pass filter (s).
    """

    pos_scale_rad: float
    vel_scale_rad_s: float
    fine_gain_per_rad: float
    velocity_filter_tau_s: float


@dataclass(frozen=True)
class LoadParams:
    """A load on the output shaft, which turns about a horizontal axis (position 0: the load hangs down).

    Attributes:
        kind: "inertia_disk", "pendulum" or "spring".
        description: one line for people.
        mass_kg: load mass (kg).
        com_distance_m: distance of its centre of mass from the axis (m); 0 for a balanced load.
        inertia_kg_m2: its own inertia about its centre of mass (kg·m², > 0).
        stiffness_nm_per_rad: torsional spring towards position 0 (N·m/rad); 0 for none.
        payload_range_kg: payload changes in tasks that change the payload: an extra mass at the centre of
            mass drawn from [0, payload_range_kg] (kg).
    """

    kind: str
    description: str
    mass_kg: float
    com_distance_m: float
    inertia_kg_m2: float
    stiffness_nm_per_rad: float
    payload_range_kg: float

    @property
    def gravity_torque_nm(self) -> float:
        """Peak gravity torque of the load, at position ±π/2 (N·m)."""
        return self.mass_kg * STANDARD_GRAVITY_M_S2 * self.com_distance_m


@dataclass(frozen=True)
class ServoProfile:
    """Everything the twin needs to know about one servo and the loads it is tried with.

    Attributes:
        name: short identifier.
        description: one line for people.
        control, motor, driver, gear, friction, sensing, observation: the servo.
        end_stop_rad: hard end stops at ±end_stop_rad (rad), or None for continuous rotation.
        loads: the named loads this servo is tried with.
        randomization: relative spread of each uncertain parameter, keyed "section.field" (e.g.
            "motor.resistance_ohm": 0.1 for ±10 %); load parameters are keyed "load.field".
    """

    name: str
    description: str
    control: ControlParams
    motor: MotorParams
    driver: DriverParams
    gear: GearParams
    friction: FrictionParams
    sensing: SensingParams
    observation: ObservationParams
    end_stop_rad: float | None
    loads: dict[str, LoadParams]
    randomization: dict[str, float]

    @property
    def dt_s(self) -> float:
        """Control period (s)."""
        return 1.0 / self.control.rate_hz

    @property
    def output_torque_per_a(self) -> float:
        """Output shaft torque per ampere (N·m/A)."""
        return self.motor.torque_constant_nm_per_a * self.gear.ratio * self.gear.efficiency

    @property
    def reflected_rotor_inertia_kg_m2(self) -> float:
        """Rotor inertia seen at the output shaft (kg·m²)."""
        return self.motor.rotor_inertia_kg_m2 * self.gear.ratio**2

    @property
    def peak_torque_nm(self) -> float:
        """Output torque at the current limit (N·m)."""
        return self.output_torque_per_a * self.driver.current_limit_a

    @property
    def no_load_speed_rad_s(self) -> float:
        """Output speed at which the back-EMF equals the bus voltage (rad/s)."""
        return self.driver.bus_voltage_v / (self.motor.back_emf_v_s_per_rad * self.gear.ratio)

    def load(self, name: str) -> LoadParams:
        """The named load.

        Raises:
            ProfileError: the profile has no such load.
        """
        if name not in self.loads:
            msg = f"profile {self.name!r} has no load {name!r}; its loads are {sorted(self.loads)}"
            raise ProfileError(msg)
        return self.loads[name]

    def output_inertia_kg_m2(self, load: LoadParams) -> float:
        """Total inertia about the output axis with `load` (kg·m²)."""
        return self.reflected_rotor_inertia_kg_m2 + load.inertia_kg_m2 + load.mass_kg * load.com_distance_m**2

    def perturbed(self, rng: np.random.Generator, load_name: str) -> tuple[ServoProfile, LoadParams]:
        """Draw a servo and load from the randomisation ranges: each listed parameter scaled by U(1 − s, 1 + s).

        Args:
            rng: random source (the env's `np_random`, so episodes reproduce from the seed).
            load_name: the load to perturb along with the servo.
        """
        factors = {
            key: float(rng.uniform(1.0 - spread, 1.0 + spread)) for key, spread in sorted(self.randomization.items())
        }
        return self.scaled(load_name, factors)

    def scaled(self, load_name: str, factors: Mapping[str, float]) -> tuple[ServoProfile, LoadParams]:
        """The servo and one of its loads with parameters multiplied by `factors`.

        Args:
            load_name: the load to scale along with the servo; the returned profile's `loads[load_name]` is the
                scaled load too, so code that looks the load up by name sees it.
            factors: relative factors keyed "section.field" as in `randomization` ("load.mass_kg": 1.5 is a
                load 50 % heavier); each must be finite and > 0.

        Raises:
            ProfileError: a key names no numeric field, or a factor is not a finite positive number.
        """
        sections: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        sections["load"] = self.load(load_name)
        for key, factor in factors.items():
            section, _, field = key.partition(".")
            if field not in _numeric_fields(sections.get(section)):
                msg = f"{key!r} names no numeric profile field; use 'section.field', e.g. 'load.mass_kg'"
                raise ProfileError(msg)
            if not (math.isfinite(factor) and factor > 0.0):
                msg = f"the factor of {key!r} must be a finite number > 0, got {factor!r}"
                raise ProfileError(msg)
            value = getattr(sections[section], field) * float(factor)
            sections[section] = dataclasses.replace(sections[section], **{field: value})
        load = sections.pop("load")
        sections["loads"] = dict(self.loads) | {load_name: load}
        return ServoProfile(**sections), load


_T = TypeVar("_T")

# Values that may be zero; every other number must be strictly positive.
_MAY_BE_ZERO = {
    "com_distance_m",
    "stiffness_nm_per_rad",
    "payload_range_kg",
    "viscous_nm_s_per_rad",
    "coulomb_nm",
    "encoder_noise_counts",
    "current_noise_a",
    "current_tau_s",
}
_SECTIONS: dict[str, type[Any]] = {
    "control": ControlParams,
    "motor": MotorParams,
    "driver": DriverParams,
    "gear": GearParams,
    "friction": FrictionParams,
    "sensing": SensingParams,
    "observation": ObservationParams,
}
_TOP_KEYS = ["name", "description", *_SECTIONS, "end_stop_rad", "loads", "randomization"]


def _mapping(where: str, value: Any, expected: list[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        msg = f"{where}: expected a mapping with keys {expected}, got {type(value).__name__}"
        raise ProfileError(msg)
    missing = [k for k in expected if k not in value]
    unknown = [k for k in value if k not in expected]
    if missing or unknown:
        msg = f"{where}: missing keys {missing}, unknown keys {unknown}; the keys are {expected}"
        raise ProfileError(msg)
    return value


def _number(where: str, name: str, raw: Any, kind: type) -> float | int:
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            msg = f"{where}.{name}: expected a positive integer, got {raw!r}"
            raise ProfileError(msg)
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        msg = f"{where}.{name}: expected a finite number, got {raw!r}"
        raise ProfileError(msg)
    if raw < 0 or (raw == 0 and name not in _MAY_BE_ZERO):
        msg = f"{where}.{name}={raw!r} must be {'>= 0' if name in _MAY_BE_ZERO else '> 0'}"
        raise ProfileError(msg)
    return float(raw)


def _section(cls: type[_T], where: str, value: Any) -> _T:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    mapping = _mapping(where, value, [f.name for f in fields])
    values: dict[str, Any] = {}
    for f in fields:
        raw = mapping[f.name]
        if f.type == "str":
            values[f.name] = str(raw)
        else:
            values[f.name] = _number(where, f.name, raw, int if f.type == "int" else float)
    return cls(**values)


def _load(where: str, value: Any) -> LoadParams:
    load = _section(LoadParams, where, value)
    if load.kind not in LOAD_KINDS:
        msg = f"{where}.kind={load.kind!r} is not one of {LOAD_KINDS}"
        raise ProfileError(msg)
    if load.kind == "pendulum" and load.com_distance_m == 0:
        msg = f"{where}.com_distance_m must be > 0 for a pendulum"
        raise ProfileError(msg)
    if load.kind == "spring" and load.stiffness_nm_per_rad == 0:
        msg = f"{where}.stiffness_nm_per_rad must be > 0 for a spring"
        raise ProfileError(msg)
    return load


def profile_from_dict(data: Any, *, where: str = "profile") -> ServoProfile:
    """Build and validate a profile from its parsed YAML document.

    Args:
        data: the parsed YAML document.
        where: names the source in error messages (a file name, for example).

    Raises:
        ProfileError: a key is missing or unknown, or a value is out of range; the message names the field.
    """
    mapping = _mapping(where, data, _TOP_KEYS)
    sections = {key: _section(cls, f"{where}.{key}", mapping[key]) for key, cls in _SECTIONS.items()}
    if sections["gear"].efficiency > 1.0:
        msg = f"{where}.gear.efficiency={sections['gear'].efficiency} must be at most 1"
        raise ProfileError(msg)
    end_stop = mapping["end_stop_rad"]
    if end_stop is not None:
        end_stop = _number(where, "end_stop_rad", end_stop, float)
    loads_value = mapping["loads"]
    if not isinstance(loads_value, dict) or not loads_value:
        msg = f"{where}.loads: expected a mapping of load names to loads, got {loads_value!r}"
        raise ProfileError(msg)
    loads = {str(name): _load(f"{where}.loads.{name}", value) for name, value in loads_value.items()}
    randomization = _randomization(f"{where}.randomization", mapping["randomization"], sections)
    return ServoProfile(
        name=str(mapping["name"]),
        description=str(mapping["description"]),
        end_stop_rad=end_stop,
        loads=loads,
        randomization=randomization,
        **sections,
    )


def _numeric_fields(section: Any) -> set[str]:
    """The float fields of a profile section or load (empty for anything else)."""
    if not dataclasses.is_dataclass(section):
        return set()
    return {f.name for f in dataclasses.fields(section) if f.type == "float"}


def parse_factors(text: str) -> dict[str, float]:
    """Parse "section.field=factor,..." (e.g. "load.mass_kg=1.5,friction.coulomb_nm=2"); "" is no factor.

    The keys are checked against a profile by `ServoProfile.scaled`.

    Raises:
        ProfileError: an entry is not "key=number".
    """
    factors: dict[str, float] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = entry.partition("=")
        try:
            factors[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            msg = f"{entry!r} is not 'section.field=factor' (e.g. 'load.mass_kg=1.5')"
            raise ProfileError(msg) from None
    return factors


def _randomization(where: str, value: Any, sections: dict[str, Any]) -> dict[str, float]:
    if not isinstance(value, dict):
        msg = f"{where}: expected a mapping like {{'motor.resistance_ohm': 0.1}}, got {value!r}"
        raise ProfileError(msg)
    load_fields = {f.name for f in dataclasses.fields(LoadParams) if f.type == "float"}
    result: dict[str, float] = {}
    for key, spread in value.items():
        section, _, field = str(key).partition(".")
        known = load_fields if section == "load" else _numeric_fields(sections.get(section))
        if field not in known:
            msg = f"{where}: {key!r} names no numeric profile field; use 'section.field', e.g. 'motor.resistance_ohm'"
            raise ProfileError(msg)
        if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not 0.0 <= spread < 1.0:
            msg = f"{where}.{key}={spread!r} must be a relative spread in [0, 1), e.g. 0.1 for ±10 %"
            raise ProfileError(msg)
        result[str(key)] = float(spread)
    return result


def list_profiles() -> list[str]:
    """Names of the profiles shipped with mm_contract, sorted."""
    folder = resources.files(__name__)
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> ServoProfile:
    """Load a shipped profile by name (see `list_profiles()`) or a profile file by path.

    Raises:
        ProfileError: the profile does not exist or is invalid.
    """
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or as_path.parent != Path("."):
        if not as_path.is_file():
            msg = f"profile file {str(as_path)!r} not found; give a YAML file or one of {list_profiles()}"
            raise ProfileError(msg)
        text, where = as_path.read_text(encoding="utf-8"), str(as_path)
    else:
        resource = resources.files(__name__) / f"{name_or_path}.yaml"
        if not resource.is_file():
            msg = f"no profile named {str(name_or_path)!r}; the shipped profiles are {list_profiles()}"
            raise ProfileError(msg)
        text, where = resource.read_text(encoding="utf-8"), f"profile {name_or_path!r}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        msg = f"{where} is not valid YAML: {error}"
        raise ProfileError(msg) from error
    return profile_from_dict(data, where=where)
