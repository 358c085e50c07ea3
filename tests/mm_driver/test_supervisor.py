"""MoveTo goal validation, settle detection and result metrics, without ROS; the parameter file and the node's
declared defaults agree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from mm_driver.errors import GoalRejected
from mm_driver.supervisor import MoveLimits, MoveSupervisor, validate_goal
from mm_driver.transport import Mode, ServoSample

LIMITS = MoveLimits(
    position_min_rad=-3.0,
    position_max_rad=3.0,
    max_velocity_rad_s=100.0,
    max_timeout_s=10.0,
    default_tolerance_rad=0.02,
    default_timeout_s=2.0,
    default_controller="pid",
    settle_window_s=0.1,
    settle_velocity_rad_s=0.5,
)
GOOD = {"target_rad": 1.0, "tolerance_rad": 0.0, "timeout_s": 0.0, "max_velocity_rad_s": 0.0, "controller": ""}


def test_defaults_are_filled_in() -> None:
    request = validate_goal(**GOOD, limits=LIMITS)
    assert (request.tolerance_rad, request.timeout_s, request.controller) == (0.02, 2.0, "pid")
    assert request.mode == Mode.POSITION
    assert validate_goal(**{**GOOD, "controller": "policy"}, limits=LIMITS).mode == Mode.POLICY


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("target_rad", math.nan, "target_rad is nan"),
        ("target_rad", math.inf, "target_rad is inf"),
        ("target_rad", 3.5, r"outside the limits \[-3, 3\]"),
        ("tolerance_rad", -0.01, "tolerance_rad"),
        ("tolerance_rad", math.nan, "tolerance_rad is nan"),
        ("tolerance_rad", 5.0, "tolerance_rad"),
        ("timeout_s", -1.0, r"timeout_s -1 must be in \[0, 10\]"),
        ("timeout_s", 11.0, "timeout_s"),
        ("max_velocity_rad_s", 101.0, "max_velocity_rad_s"),
        ("controller", "bangbang", "controller 'bangbang' is unknown"),
    ],
)
def test_bad_goals_are_rejected_with_a_reason(field: str, value: object, reason: str) -> None:
    with pytest.raises(GoalRejected, match=reason):
        validate_goal(**{**GOOD, field: value}, limits=LIMITS)  # type: ignore[arg-type]


def _power_w(current: float, velocity: float) -> float:
    """What the servo would measure for a motor with R = 1 Ω and k_e = 0.1 V·s/rad: (R·i + k_e·ω)·i (W)."""
    return (1.0 * current + 0.1 * velocity) * current


def _sample(
    t: float, position: float, velocity: float = 0.0, current: float = 0.0, power: float | None = None
) -> ServoSample:
    power_w = _power_w(current, velocity) if power is None else power
    return ServoSample(t, 3, 0, position, velocity, current, current, 0.0, 24.0, power_w, 25.0, 1.0, 0)


def test_settles_only_after_the_window_in_band_and_at_rest() -> None:
    request = validate_goal(**GOOD, limits=LIMITS)
    sup = MoveSupervisor(request, start=_sample(10.0, 0.0), limits=LIMITS)
    # An exponential approach sampled every 5 ms: overshoot-free, in band after ~0.2 s.
    for k in range(1, 200):
        t = 10.0 + 0.005 * k
        sup.update(
            _sample(t, 1.0 - math.exp(-(t - 10.0) / 0.05), velocity=20.0 * math.exp(-(t - 10.0) / 0.05), current=1.0)
        )
        if sup.settled:
            break
    assert sup.settled
    in_band_s = -0.05 * math.log(0.02)  # |error| < 0.02 from here on
    assert in_band_s + LIMITS.settle_window_s <= sup.elapsed_s <= in_band_s + LIMITS.settle_window_s + 0.02
    assert sup.first_motion_s == pytest.approx(0.005)
    result = sup.result(success=True, message="ok")
    assert abs(result.final_error_rad) < 0.02
    assert result.settle_time_s == pytest.approx(in_band_s, abs=0.02)
    assert result.overshoot_rad == 0.0
    assert result.peak_current_a == pytest.approx(1.0)
    # The reported P = (R i + k_e w) i with i = 1 A: R·t plus k_e times the distance travelled (~1 rad).
    assert result.energy_j == pytest.approx(1.0 * sup.elapsed_s + 0.1 * 1.0, rel=0.05)


def test_move_energy_is_the_integral_of_the_reported_power() -> None:
    """energy_j integrates the power_w the servo measured (positive part, J), not a model of the motor: samples
    whose current and velocity say nothing about their power (a regenerating stretch included) give exactly
    Σ max(P, 0) · dt over the evenly stamped samples."""
    request = validate_goal(**GOOD, limits=LIMITS)
    dt_s = 0.005
    powers = [0.0] + [12.0 * math.sin(0.07 * k) + 3.0 for k in range(1, 160)]
    assert min(powers) < 0.0  # the motor regenerates on part of the move: that part draws nothing
    sup = MoveSupervisor(request, start=_sample(2.0, 0.0, power=powers[0]), limits=LIMITS)
    for k in range(1, len(powers)):
        sup.update(_sample(2.0 + dt_s * k, 0.5, velocity=3.0, current=0.7, power=powers[k]))
    result = sup.result(success=False, message="judged early")
    assert result.energy_j == pytest.approx(sum(max(p, 0.0) for p in powers) * dt_s, rel=1e-9)
    assert result.energy_j != pytest.approx(sum(max(_power_w(0.7, 3.0), 0.0) for _ in powers) * dt_s, rel=1e-3)


def test_a_move_that_never_arrives_times_out_and_old_samples_are_ignored() -> None:
    request = validate_goal(**{**GOOD, "timeout_s": 0.5}, limits=LIMITS)
    sup = MoveSupervisor(request, start=_sample(0.0, 0.0), limits=LIMITS)
    sup.update(_sample(0.3, 0.1))
    sup.update(_sample(0.2, 0.9))  # reordered best-effort sample: older than the last one
    assert sup.error_rad == pytest.approx(0.9) and not sup.timed_out
    sup.update(_sample(0.6, 0.2))
    assert sup.timed_out and not sup.settled


def test_parameter_file_equals_the_declared_defaults() -> None:
    pytest.importorskip("rclpy")
    from mm_driver.driver_node import PARAMETERS

    path = Path(__file__).resolve().parents[2] / "src" / "mm_driver" / "config" / "driver.yaml"
    declared = {name: param.default for name, param in PARAMETERS.items()}
    assert yaml.safe_load(path.read_text())["/**/driver"]["ros__parameters"] == declared


def test_direct_commands_are_checked() -> None:
    from mm_driver.errors import DriverError
    from mm_driver.supervisor import validate_command

    torque = validate_command(2, {"target": 0.4, "current_limit_a": 1.0}, LIMITS, policy_crc32=0)
    assert (torque.mode, torque.target, torque.current_limit_a) == (Mode.TORQUE, 0.4, 1.0)
    assert validate_command(2, {"target": 100.0}, LIMITS, policy_crc32=0).target == 100.0  # A: the servo clamps
    with pytest.raises(DriverError, match="mode 9 is unknown"):
        validate_command(9, {}, LIMITS, policy_crc32=0)
    with pytest.raises(DriverError, match="kp_pos is nan"):
        validate_command(3, {"target": 0.0, "kp_pos": math.nan}, LIMITS, policy_crc32=0)
    with pytest.raises(DriverError, match="outside the limits"):
        validate_command(3, {"target": 4.0}, LIMITS, policy_crc32=0)


def test_policy_commands_with_exploration_need_a_policy_and_fields_in_range() -> None:
    from mm_driver.errors import DriverError
    from mm_driver.supervisor import validate_command

    fields: dict[str, float | bool] = {
        "target": 1.5,
        "stream_transitions": True,
        "exploration_std": 0.2,
        "exploration_tau_s": 0.03,
    }
    command = validate_command(4, fields, LIMITS, policy_crc32=0x1234ABCD)
    assert (command.mode, command.target, command.exploration_std, command.exploration_tau_s) == (
        Mode.POLICY,
        1.5,
        0.2,
        0.03,
    )
    assert command.stream_transitions
    assert validate_command(4, {**fields, "exploration_std": 1.0}, LIMITS, policy_crc32=1).exploration_std == 1.0
    with pytest.raises(DriverError, match="no policy: deploy one first"):
        validate_command(4, fields, LIMITS, policy_crc32=0)
    with pytest.raises(DriverError, match="outside the limits"):
        validate_command(4, {**fields, "target": -3.5}, LIMITS, policy_crc32=1)
    for std in (-0.01, 1.01):
        with pytest.raises(DriverError, match=r"exploration_std .* must be in \[0, 1\]"):
            validate_command(4, {**fields, "exploration_std": std}, LIMITS, policy_crc32=1)
    with pytest.raises(DriverError, match="exploration_std is nan"):
        validate_command(4, {**fields, "exploration_std": math.nan}, LIMITS, policy_crc32=1)
    with pytest.raises(DriverError, match=r"exploration_tau_s -0\.01 s must be >= 0"):
        validate_command(4, {**fields, "exploration_tau_s": -0.01}, LIMITS, policy_crc32=1)
    with pytest.raises(DriverError, match="exploration_tau_s is inf"):
        validate_command(4, {**fields, "exploration_tau_s": math.inf}, LIMITS, policy_crc32=1)
    # Checked in every mode, as the servo checks them (they act in POLICY mode only).
    with pytest.raises(DriverError, match="exploration_std"):
        validate_command(1, {"exploration_std": 2.0}, LIMITS, policy_crc32=0)
