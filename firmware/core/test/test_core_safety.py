"""Safety of the core's inputs and outputs: non-finite currents never drive, gains stay within physical bounds,
a refused command changes nothing, non-finite periods and timeouts are refused, register reads saturate, and the
default watchdog holds within 50 ms of the last heartbeat.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

DT_S = 0.001
FLOAT_MAX = 3.0e38


def _snapshot(core: Any) -> tuple[object, ...]:
    """Everything a command can change, read back through the binding."""
    t = core.tuning()
    s = core.state()
    g = t.gains
    return (
        g.kp_pos,
        g.v_max,
        g.kp_vel,
        g.ki_vel,
        g.gravity_ff_a,
        t.current_limit_a,
        s.mode,
        s.target_rad,
        s.fault_flags,
        core.pop_batch().count,
    )


def test_a_nan_in_the_pid_never_drives() -> None:
    """ki_vel = 3e38 (accepted before gains had bounds) overflowed the integrator to inf, then NaN: full negative
    current. Such gains are refused now; whatever the mode computes, a non-finite current latches POLICY and
    commands 0 A with the driver off.
    """
    import mm_firmware_core as fw

    with pytest.raises(fw.FirmwareCoreError):
        fw.ServoCore(heartbeat_timeout_s=0.0, gains=(20.0, 20.0, 0.2, FLOAT_MAX, 0.0))
    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    assert core.command(fw.MODE_POSITION, 3.0, kp_pos=20.0, kp_vel=0.2, ki_vel=FLOAT_MAX) == 1
    assert core.tuning().gains.ki_vel == pytest.approx(2.0)


def test_a_non_finite_current_latches_and_never_drives() -> None:
    """A denormal period makes the velocity estimate infinite; the PID's current is then -inf (NaN a tick later),
    which clamping turned into full negative current with the driver on.
    """
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    assert core.command(fw.MODE_POSITION, 0.0) == 0
    core.step(encoder_count=0, dt_s=DT_S)
    out = core.step(encoder_count=1, dt_s=1e-45)
    state = core.state()
    assert out.current_cmd_a == 0.0
    assert not out.driver_enable
    assert out.brake_on
    assert state.fault_flags & fw.constant("MM_FAULT_POLICY")
    assert state.mode == fw.MODE_BRAKE
    assert state.current_cmd_a == 0.0
    # Latched: active modes are refused until the fault is cleared.
    assert core.command(fw.MODE_POSITION, 0.0) == 2
    out = core.step(encoder_count=1, dt_s=DT_S)
    assert out.current_cmd_a == 0.0
    assert not out.driver_enable


@pytest.mark.parametrize("name", ["kp_pos", "v_max", "kp_vel", "ki_vel", "gravity_ff_a"])
def test_gains_are_bounded_by_the_configuration(name: str) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0, current_limit_a=2.0)
    limits = core.gain_limits()
    bound = getattr(limits, name)
    assert 0.0 < bound < 1e7
    field = "max_velocity_rad_s" if name == "v_max" else name
    base = {"kp_pos": 20.0, "kp_vel": 0.2, "ki_vel": 2.0, "gravity_ff_a": 0.0}
    for bad in (bound * 1.01, math.inf, math.nan, -1.0):
        assert core.command(fw.MODE_POSITION, 0.5, **(base | {field: bad})) == 1, (name, bad)
    assert core.command(fw.MODE_POSITION, 0.5, **(base | {field: bound})) == 0
    assert getattr(core.tuning().gains, name) == pytest.approx(bound)
    gains = [20.0, 20.0, 0.2, 2.0, 0.0]
    gains[["kp_pos", "v_max", "kp_vel", "ki_vel", "gravity_ff_a"].index(name)] = bound * 1.01
    with pytest.raises(fw.FirmwareCoreError):
        fw.ServoCore(heartbeat_timeout_s=0.0, current_limit_a=2.0, gains=gains)


@pytest.mark.parametrize("blocked", ["faulted", "no_policy"])
def test_a_refused_command_changes_nothing(blocked: str) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    assert core.command(fw.MODE_POSITION, 0.25) == 0
    core.step(encoder_count=0, dt_s=DT_S)
    if blocked == "faulted":
        core.step(encoder_count=0, dt_s=DT_S, encoder_ok=False)  # ENCODER latches, the core brakes
        assert core.state().fault_flags != 0
        mode = fw.MODE_POSITION
        expected = 2
    else:
        mode = fw.MODE_POLICY
        expected = 3
    before = _snapshot(core)
    status = core.command(
        mode,
        1.5,
        max_velocity_rad_s=5.0,
        current_limit_a=1.0,
        kp_pos=7.0,
        kp_vel=0.5,
        ki_vel=1.0,
        gravity_ff_a=0.1,
        stream_transitions=True,
    )
    assert status == expected
    core.step(encoder_count=0, dt_s=DT_S, encoder_ok=blocked != "faulted")
    after = _snapshot(core)
    assert after == before


@pytest.mark.parametrize("dt_s", [math.inf, -math.inf, math.nan, 0.0, -0.001])
def test_a_bad_period_is_refused_without_a_state_change(dt_s: float) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    assert core.command(fw.MODE_TORQUE, 1.0) == 0
    core.step(encoder_count=100, dt_s=DT_S)
    tick = core.state().tick
    with pytest.raises(fw.FirmwareCoreError):
        core.step(encoder_count=200, dt_s=dt_s)
    assert core.state().tick == tick
    assert core.state().fault_flags == 0
    out = core.step(encoder_count=100, dt_s=DT_S)
    assert out.driver_enable
    assert out.current_cmd_a == pytest.approx(1.0)


@pytest.mark.parametrize("timeout_s", [math.inf, math.nan, -0.1])
def test_a_non_finite_heartbeat_timeout_is_refused(timeout_s: float) -> None:
    import mm_firmware_core as fw

    with pytest.raises(fw.FirmwareCoreError):
        fw.ServoCore(heartbeat_timeout_s=timeout_s)


@pytest.mark.parametrize("scale", [1.0, 1.01])
def test_register_reads_saturate_at_and_beyond_the_gain_bounds(scale: float) -> None:
    """MM_REG_KI_VEL_MICRO is ki_vel x 1e6: at the bound it exceeds int32 (the float->int cast was undefined)."""
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    endpoint = core.can_endpoint(3)
    limits = core.gain_limits()
    status = core.command(
        fw.MODE_IDLE,
        kp_pos=limits.kp_pos * scale,
        kp_vel=limits.kp_vel * scale,
        ki_vel=limits.ki_vel * scale,
        gravity_ff_a=limits.gravity_ff_a * scale,
    )
    assert status == (0 if scale == 1.0 else 1)
    expected = {"KP_VEL_MICRO": limits.kp_vel * 1e6, "KI_VEL_MICRO": limits.ki_vel * 1e6}
    gains = core.tuning().gains
    for name, value in expected.items():
        read = endpoint.register_read(fw.constant(f"MM_REG_{name}"))
        if scale == 1.0:
            if value >= 2**31:
                assert read == 2**31 - 1, name
            else:  # float32 products: within a few units of the last place
                assert read == pytest.approx(value, rel=1e-6), name
        else:  # refused: the defaults are still in effect
            assert read == round(getattr(gains, name.split("_MICRO")[0].lower()) * 1e6), name


def test_register_writes_beyond_the_bounds_are_out_of_range() -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0, current_limit_a=1.0)
    endpoint = core.can_endpoint(3)
    limits = core.gain_limits()
    too_big = int(limits.kp_pos * 1.01 * 1e3)
    assert endpoint.register_write(fw.constant("MM_REG_KP_POS_MILLI"), too_big) == fw.constant("MM_REG_OUT_OF_RANGE")
    assert core.tuning().gains.kp_pos == pytest.approx(20.0)
    assert endpoint.register_read(fw.constant("MM_REG_KP_POS_MILLI")) == 20000


def test_default_watchdog_holds_within_50_ms_at_1_khz() -> None:
    """The firmware's default (the CAN build's) heartbeat timeout: HOLD with HEARTBEAT_LOST by tick k + 50."""
    import mm_firmware_core as fw

    core = fw.ServoCore()
    assert core.command(fw.MODE_TORQUE, 0.5) == 0
    for _ in range(200):
        core.heartbeat()
        core.step(encoder_count=0, dt_s=DT_S)
    k = core.state().tick  # the last heartbeat came before tick k
    lost_at = None
    for _ in range(200):
        core.step(encoder_count=0, dt_s=DT_S)
        state = core.state()
        if state.fault_flags & fw.constant("MM_FAULT_HEARTBEAT_LOST"):
            lost_at = state.tick
            assert state.mode == fw.MODE_HOLD
            break
    assert lost_at is not None
    assert lost_at - k <= 50
    assert lost_at - k >= 40  # not a hair trigger: the host's heartbeat period must fit below it
