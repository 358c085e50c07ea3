"""Profiles: the shipped ones load and make physical sense; bad files are refused naming the field."""

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mm_contract.errors import ProfileError
from mm_contract.profiles import list_profiles, load_profile, parse_factors, profile_from_dict


def _document(name: str = "mm_v3") -> dict[str, Any]:
    return yaml.safe_load((resources.files("mm_contract.profiles") / f"{name}.yaml").read_text(encoding="utf-8"))


def test_the_three_profiles_ship_with_the_three_loads() -> None:
    assert list_profiles() == ["gimbal_bldc", "mm_minimal", "mm_v3"]
    for name in list_profiles():
        profile = load_profile(name)
        assert profile.name == name
        assert sorted(profile.loads) == ["inertia_disk", "pendulum", "spring"]


@pytest.mark.parametrize("name", list_profiles())
def test_every_load_can_be_held_everywhere_in_the_target_range(name: str) -> None:
    """Gravity and the spring at ±π must leave the servo torque to move with (else targets are unreachable)."""
    profile = load_profile(name)
    for load in profile.loads.values():
        worst_nm = load.gravity_torque_nm + load.stiffness_nm_per_rad * np.pi
        assert worst_nm < 0.75 * profile.peak_torque_nm, load.description


def test_mm_v3_is_the_48_v_4_a_stepper_of_the_issue() -> None:
    profile = load_profile("mm_v3")
    assert profile.driver.bus_voltage_v == 48.0
    assert profile.driver.current_limit_a == 4.0
    assert profile.gear.ratio == 1.0


def test_profile_loads_from_a_path(tmp_path: Path) -> None:
    data = _document() | {"name": "heavier"}
    data["loads"]["pendulum"]["mass_kg"] = 0.4
    path = tmp_path / "heavier.yaml"
    path.write_text(yaml.safe_dump(data))
    profile = load_profile(path)
    assert profile.name == "heavier"
    assert profile.load("pendulum").mass_kg == 0.4


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["motor"].update(color="red"), r"profile.motor: .*unknown keys \['color'\]"),
        (lambda d: d["gear"].pop("ratio"), r"profile.gear: missing keys \['ratio'\]"),
        (lambda d: d["loads"]["pendulum"].update(mass_kg=-0.1), r"profile.loads.pendulum.mass_kg=-0.1 must be > 0"),
        (lambda d: d["friction"].update(coulomb_nm=-1), r"profile.friction.coulomb_nm=-1 must be >= 0"),
        (lambda d: d["gear"].update(efficiency=1.2), r"profile.gear.efficiency=1.2 must be at most 1"),
        (lambda d: d["motor"].update(resistance_ohm="low"), r"profile.motor.resistance_ohm: expected a finite number"),
        (lambda d: d["control"].update(rate_hz=0.5), r"profile.control.rate_hz: expected a positive integer"),
        (lambda d: d.update(sensing=[1, 2]), r"profile.sensing: expected a mapping"),
        (lambda d: d["loads"]["spring"].update(kind="rope"), r"profile.loads.spring.kind='rope' is not one of"),
        (
            lambda d: d["loads"]["spring"].update(stiffness_nm_per_rad=0),
            r"loads.spring.stiffness_nm_per_rad must be > 0",
        ),
        (lambda d: d["randomization"].update({"motor.colour": 0.1}), r"'motor.colour' names no numeric profile field"),
        (
            lambda d: d["randomization"].update({"motor.resistance_ohm": 2}),
            r"motor.resistance_ohm=2 must be a relative",
        ),
    ],
)
def test_bad_profiles_are_refused_naming_the_field(change: Callable[[dict], object], match: str) -> None:
    data = _document()
    change(data)
    with pytest.raises(ProfileError, match=match):
        profile_from_dict(data)


def test_unknown_names_list_what_exists() -> None:
    with pytest.raises(ProfileError, match=r"no profile named 'elbow'; the shipped profiles are \[.*'mm_v3'"):
        load_profile("elbow")
    with pytest.raises(ProfileError, match=r"has no load 'anvil'; its loads are \['inertia_disk'"):
        load_profile("mm_v3").load("anvil")


def test_missing_or_broken_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "nothing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("motor: [unclosed\n")
    with pytest.raises(ProfileError, match="is not valid YAML"):
        load_profile(broken)


def test_randomisation_draws_every_listed_parameter_within_its_spread_and_reproduces() -> None:
    nominal = load_profile("mm_v3")
    draws = [nominal.perturbed(np.random.default_rng(seed), "pendulum") for seed in range(40)]
    resistance = np.array([p.motor.resistance_ohm for p, _ in draws]) / nominal.motor.resistance_ohm
    mass = np.array([load.mass_kg for _, load in draws]) / nominal.load("pendulum").mass_kg
    spread_r, spread_m = nominal.randomization["motor.resistance_ohm"], nominal.randomization["load.mass_kg"]
    assert np.all(np.abs(resistance - 1) <= spread_r) and np.ptp(resistance) > spread_r
    assert np.all(np.abs(mass - 1) <= spread_m) and np.ptp(mass) > spread_m
    assert all(p.driver.current_limit_a == nominal.driver.current_limit_a for p, _ in draws)  # not uncertain
    assert nominal.perturbed(np.random.default_rng(7), "pendulum") == nominal.perturbed(
        np.random.default_rng(7), "pendulum"
    )


def test_scaled_multiplies_the_named_parameters_and_refuses_what_it_cannot_scale() -> None:
    nominal = load_profile("mm_v3")
    profile, load = nominal.scaled("pendulum", parse_factors("load.mass_kg=1.5, friction.coulomb_nm=2"))
    assert load.mass_kg == pytest.approx(1.5 * nominal.load("pendulum").mass_kg)
    assert profile.loads["pendulum"] == load, "looked up by name, the scaled load is the one returned"
    assert profile.friction.coulomb_nm == pytest.approx(2.0 * nominal.friction.coulomb_nm)
    assert profile.motor == nominal.motor and profile.loads["spring"] == nominal.loads["spring"]
    assert nominal.scaled("pendulum", {}) == (nominal, nominal.load("pendulum"))
    with pytest.raises(ProfileError, match="names no numeric profile field"):
        nominal.scaled("pendulum", {"load.colour": 2.0})
    with pytest.raises(ProfileError, match="must be a finite number > 0"):
        nominal.scaled("pendulum", {"load.mass_kg": 0.0})
    with pytest.raises(ProfileError, match=r"is not 'section\.field=factor'"):
        parse_factors("load.mass_kg:1.5")
