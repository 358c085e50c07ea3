"""Profiles: the shipped ones load and make physical sense; bad files are refused with a useful message."""

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from mm_sim.servo_profile import profile_from_dict

from mm_sim import MmSimError, list_profiles, load_profile


def _arm_dict() -> dict:
    return yaml.safe_load((resources.files("mm_sim") / "profiles" / "arm.yaml").read_text(encoding="utf-8"))


def test_shipped_profiles_are_listed_and_load() -> None:
    names = list_profiles()
    assert {"arm", "flywheel"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert profile.dt_s == pytest.approx(1.0 / profile.control_rate_hz)


def test_arm_pid_gravity_feedforward_matches_its_gravity_load() -> None:
    profile = load_profile("arm")
    # The feedforward current should carry the arm's weight at the horizontal within a few percent.
    assert profile.pid.gravity_ff_a * profile.output_torque_per_a == pytest.approx(profile.gravity_torque_nm, rel=0.03)


def test_profile_loads_from_a_path(tmp_path: Path) -> None:
    data = _arm_dict() | {"name": "heavy_arm"}
    data["load"]["mass_kg"] = 0.5
    path = tmp_path / "heavy_arm.yaml"
    path.write_text(yaml.safe_dump(data))
    profile = load_profile(path)
    assert profile.name == "heavy_arm"
    assert profile.load.mass_kg == 0.5


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["motor"].update(color="red"), r"unknown keys \['color'\]"),
        (lambda d: d["gear"].pop("ratio"), r"profile.gear: missing keys \['ratio'\]"),
        (lambda d: d["load"].update(mass_kg=-0.1), r"profile.load.mass_kg=-0.1 must be > 0"),
        (lambda d: d["friction"].update(coulomb_nm=-1), r"coulomb_nm=-1 must be >= 0"),
        (lambda d: d["gear"].update(efficiency=1.2), r"efficiency=1.2 must be at most 1"),
        (lambda d: d["motor"].update(resistance_ohm="low"), r"resistance_ohm: expected a finite number"),
        (lambda d: d.update(control_rate_hz=0.5), r"control_rate_hz: expected a positive integer"),
        (lambda d: d.update(sensing=[1, 2]), r"profile.sensing: expected a mapping"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(change: Callable[[dict], object], match: str) -> None:
    data = _arm_dict()
    change(data)
    with pytest.raises(MmSimError, match=match):
        profile_from_dict(data)


def test_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(MmSimError, match=r"no profile named 'elbow'; the shipped profiles are \[.*'arm'"):
        load_profile("elbow")


def test_missing_profile_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MmSimError, match="not found"):
        load_profile(tmp_path / "nothing.yaml")


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("motor: [unclosed\n")
    with pytest.raises(MmSimError, match="is not valid YAML"):
        load_profile(path)


def test_perturbed_profile_stays_within_the_fraction_and_keeps_the_policy_scales() -> None:
    nominal = load_profile("arm")
    rng = np.random.default_rng(3)
    masses = []
    for _ in range(50):
        varied = nominal.perturbed(rng, 0.2)
        assert varied.policy_scales == nominal.policy_scales
        assert varied.pid == nominal.pid
        assert 0.8 <= varied.motor.resistance_ohm / nominal.motor.resistance_ohm <= 1.2
        masses.append(varied.load.mass_kg / nominal.load.mass_kg)
    assert min(masses) >= 0.8 and max(masses) <= 1.2
    assert max(masses) - min(masses) > 0.2  # it really varies


def test_perturbation_fraction_out_of_range_is_refused() -> None:
    with pytest.raises(MmSimError, match=r"must be in \[0, 1\)"):
        load_profile("arm").perturbed(np.random.default_rng(0), 1.5)
