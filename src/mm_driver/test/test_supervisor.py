"""MoveTo goal validation, settle detection, how a move ends and the result metrics, without ROS."""

from __future__ import annotations

import math

import pytest
from mm_driver.errors import GoalRejected
from mm_driver.supervisor import MoveEnd, MoveLimits, MoveMonitor, MoveSupervisor, StallWatch, validate_goal
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


def _monitor(timeout_s: float = 2.0) -> MoveMonitor:
    request = validate_goal(**{**GOOD, "timeout_s": timeout_s}, limits=LIMITS)
    sup = MoveSupervisor(request, start=_sample(0.0, 0.0), limits=LIMITS)
    return MoveMonitor(sup, state_timeout_s=0.5, commanded_wall_s=100.0)


def _judge(monitor: MoveMonitor, sample: ServoSample | None, **seen: object) -> MoveEnd | None:
    """Judge after a wait that saw `sample` arrive (unless `seen` says otherwise), 0.1 s of wall time in."""
    if sample is not None:
        monitor.supervisor.update(sample)
    kwargs = {"fresh": True, "starved": False, "preempted": False, "cancel_requested": False, "now_wall_s": 100.1}
    return monitor.judge(sample, **(kwargs | seen))  # type: ignore[arg-type]


def test_a_move_goes_on_until_it_settles() -> None:
    monitor = _monitor()
    assert _judge(monitor, _sample(0.01, 0.5, velocity=3.0)) is None
    assert _judge(monitor, _sample(0.02, 1.0)) is None  # in the band: the settle window starts
    end = _judge(monitor, _sample(0.2, 1.0))
    assert end is not None and (end.outcome, end.result.success, end.hold) == ("succeed", True, False)
    assert end.result.message == "settled within 0.02 rad"


@pytest.mark.parametrize(
    ("seen", "outcome", "message", "hold"),
    [
        ({"preempted": True, "cancel_requested": True}, "abort", "preempted by a newer goal", False),
        ({"cancel_requested": True}, "canceled", "cancelled: holding position", True),
        ({"fresh": False}, "abort", "no state from the servo for 0.5 s: link lost, HOLD sent", True),
    ],
)
def test_preemption_cancel_and_a_lost_link_end_the_move(
    seen: dict[str, object], outcome: str, message: str, hold: bool
) -> None:
    end = _judge(_monitor(), _sample(0.01, 0.1), **seen)
    assert end is not None and (end.outcome, end.result.message, end.hold) == (outcome, message, hold)
    assert not end.result.success


def test_a_starved_driver_does_not_call_the_link_lost() -> None:
    """A wait that overran (the driver was not scheduled) with nothing new is no verdict: the queue is read first."""
    monitor = _monitor()
    assert _judge(monitor, _sample(0.01, 0.1), fresh=False, starved=True) is None
    end = _judge(monitor, None)
    assert end is not None and end.result.message.endswith("link lost, HOLD sent") and end.hold


def test_the_driver_sees_its_own_stall_in_its_heartbeats() -> None:
    """Heartbeats every 20 ms, then none for 0.6 s (the process stopped), then again: a wait that began before
    the gap saw a stall, one that began after it did not; while the gap lasts the stall is seen too (the move
    thread may resume before the heartbeat thread).
    """
    watch = StallWatch(0.1)
    assert not watch.stalled_since(0.0, 5.0)  # no heartbeat yet: nothing known
    for k in range(50):
        watch.beat(1.0 + 0.02 * k)  # ... 1.98 s
    assert not watch.stalled_since(1.5, 2.05)
    assert watch.stalled_since(1.5, 2.2)  # nothing for 0.22 s: the heartbeat thread has not run
    watch.beat(2.6)
    assert watch.stalled_since(1.5, 2.6)  # the wait from 1.5 s spans the gap
    assert watch.stalled_since(2.6, 2.61)  # the gap ended as this wait began
    watch.beat(2.62)
    assert not watch.stalled_since(2.61, 2.7)  # a wait wholly after the gap


def test_stopping_faults_end_the_move_but_an_end_stop_alone_does_not() -> None:
    monitor = _monitor()
    end_stop = ServoSample(0.01, 3, 0x20, 0.1, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0)
    assert _judge(monitor, end_stop) is None
    faulted = ServoSample(0.02, 3, 0x21, 0.1, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0)
    end = _judge(monitor, faulted)
    assert end is not None and end.outcome == "abort" and end.result.message.startswith("servo fault: ")
    assert "END_STOP" in end.result.message and not end.hold


def test_a_servo_that_leaves_the_mode_or_never_enters_it_aborts() -> None:
    left = _monitor()
    assert _judge(left, _sample(0.01, 0.1)) is None  # POSITION entered
    hold = ServoSample(0.02, 1, 0, 0.1, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0)
    end = _judge(left, hold)
    assert end is not None and (end.outcome, end.result.message) == ("abort", "servo left POSITION for HOLD")

    never = _monitor()
    # Not yet entered: judged late only when both the wall clock and the servo's time passed state_timeout_s.
    late_servo = ServoSample(0.6, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0)
    assert _judge(never, late_servo, now_wall_s=100.4) is None  # the wall clock: only 0.4 s
    end = _judge(never, ServoSample(0.7, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0), now_wall_s=100.6)
    assert end is not None and end.result.message == "servo did not enter POSITION within 0.5 s (it is in HOLD)"
    fast_twin = _monitor()
    early = ServoSample(0.3, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 24.0, 0.0, 25.0, 1.0, 0)
    assert _judge(fast_twin, early, now_wall_s=105.0) is None  # the servo's time: only 0.3 s


def test_a_move_that_does_not_settle_times_out() -> None:
    monitor = _monitor(timeout_s=0.5)
    assert _judge(monitor, _sample(0.3, 0.2)) is None
    end = _judge(monitor, _sample(0.5, 0.3))
    assert end is not None and end.outcome == "abort"
    assert end.result.message == "timeout after 0.5 s, error 0.7 rad"


def test_feedback_is_due_every_period_of_servo_time() -> None:
    monitor = _monitor()
    assert [monitor.feedback_due(t) for t in (0.01, 0.05, 0.06, 0.09, 0.11, 0.2)] == [
        False,
        True,
        False,
        False,
        True,
        True,
    ]


def test_the_position_range_is_clipped_to_the_end_stops_and_never_empty() -> None:
    from mm_driver.errors import DriverError
    from mm_driver.supervisor import position_range

    assert position_range(-12.566, 12.566, None) == (-12.566, 12.566)
    assert position_range(-12.566, 1.0, 3.0) == (-3.0, 1.0)
    with pytest.raises(DriverError, match=r"position limits \[1.0, -1.0\] rad are empty: position_min_rad must be"):
        position_range(1.0, -1.0, None)
    with pytest.raises(DriverError, match=r"leave no room inside the profile's end stops \(±3.0 rad\): fix"):
        position_range(4.0, 5.0, 3.0)
