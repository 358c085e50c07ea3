"""PID parity (servo contract section 8): the core's POSITION mode and mm_sim.baselines.CascadedPid give the
same current command on a recorded run (positions and velocities as the firmware senses them), with the linear
position loop and with PTOS (decel_rad_s2 > 0); the C step alone is bit-identical on a grid of inputs.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from mm_testing.fw_support import recorded_run, require

DT_S = 0.001
LIMIT_A = 3.0
TAU_S = 0.005


@pytest.mark.parametrize(
    ("gravity_ff_a", "decel_rad_s2"),
    [(0.0, 0.0), (0.4, 0.0), (0.0, 40.0), (0.4, 150.0)],
    ids=["pid", "pid-ff", "ptos", "ptos-ff"],
)
def test_core_pid_matches_mm_sim_baseline(gravity_ff_a: float, decel_rad_s2: float) -> None:
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_contract.observation import MultiTurnEncoder, ObservationBuilder, ObsScales, encoder_count
    from mm_sim.baselines import CascadedPid, PidGains

    gains = PidGains(
        kp_pos=18.0, v_max=15.0, kp_vel=0.25, ki_vel=3.0, gravity_ff_a=gravity_ff_a, decel_rad_s2=decel_rad_s2
    )
    core = fw.ServoCore(
        heartbeat_timeout_s=0.0,
        current_limit_a=LIMIT_A,
        overcurrent_a=10.0,
        velocity_filter_tau_s=TAU_S,
        gains=dataclasses.astuple(gains),
    )
    pid = CascadedPid(gains, current_limit_a=LIMIT_A, dt_s=DT_S)
    rows = recorded_run(dt_s=DT_S)
    encoder = MultiTurnEncoder(encoder_count(rows[0]["angle_rad"]))
    # Only its velocity estimate is used here: the same filter the firmware runs for the PID.
    sensing = ObservationBuilder(ObsScales(1.0, 1.0, 1.0, LIMIT_A, TAU_S), DT_S)
    sensing.reset(float(encoder.position_rad))
    worst = 0.0
    saturated = 0
    for row in rows:
        assert (
            core.command(fw.MODE_POSITION, row["target_rad"], target_velocity_rad_s=row["target_velocity_rad_s"]) == 0
        )
        count = encoder_count(row["angle_rad"])
        c_current = core.step(encoder_count=count, dt_s=DT_S).current_cmd_a
        position = encoder.update(count)
        sensing.update(float(position), 0.0, 0.0, 0.0, 0.0)
        py_current = pid.step(
            position_rad=float(position),
            velocity_rad_s=sensing.velocity_rad_s,
            target_rad=row["target_rad"],
            target_velocity_rad_s=row["target_velocity_rad_s"],
        )
        worst = max(worst, abs(c_current - py_current))
        saturated += abs(py_current) == LIMIT_A
    print(f"max |C - Python| current = {worst} A")
    # sinf and numpy's float32 sin may differ in the last bit; without the feed-forward the two are identical.
    assert worst <= (1e-5 if gravity_ff_a else 0.0), f"max |C - Python| current = {worst} A"
    assert 0 < saturated < len(rows)  # both the saturated (anti-windup) and the linear regime were exercised


@pytest.mark.parametrize("decel_rad_s2", [0.0, 0.5, 40.0, 900.0])
def test_c_pid_step_is_bit_identical_to_the_baseline(decel_rad_s2: float) -> None:
    """Both signs of e, the PTOS linear zone, its edge and beyond, v_ref, the v_max clamp and output saturation:
    the C step and CascadedPid.step agree to the bit, integrator included.
    """
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_sim.baselines import CascadedPid, PidGains, position_loop

    kp_pos = 12.0
    gains = PidGains(kp_pos=kp_pos, v_max=9.0, kp_vel=0.3, ki_vel=4.0, gravity_ff_a=0.0, decel_rad_s2=decel_rad_s2)
    e_lin = decel_rad_s2 / (2.0 * kp_pos * kp_pos)
    magnitudes = [
        0.0,
        1e-4,
        0.5 * e_lin,
        e_lin,
        float(np.nextafter(np.float32(e_lin), np.float32(1.0))),
        2 * e_lin,
        0.05,
        0.3,
        1.0,
        4.0,
        40.0,
    ]
    errors = sorted({sign * m for m in magnitudes for sign in (1.0, -1.0)})
    in_zone = beyond = clamped = saturated = 0
    for limit_a, v_ref, velocity in itertools.product((0.5, 3.0), (0.0, 2.5, -8.0), (0.0, 1.5, -6.0)):
        c_state = fw.PidState()
        pid = CascadedPid(gains, current_limit_a=limit_a, dt_s=DT_S)
        for error in errors:
            position = 0.25
            target = float(np.float32(position) + np.float32(error))
            c_out = fw.pid_step(
                c_state,
                dataclasses.astuple(gains),
                current_limit_a=limit_a,
                dt_s=DT_S,
                position_rad=position,
                velocity_rad_s=velocity,
                target_rad=target,
                target_velocity_rad_s=v_ref,
            )
            py_out = pid.step(
                position_rad=position, velocity_rad_s=velocity, target_rad=target, target_velocity_rad_s=v_ref
            )
            assert c_out == py_out, (error, v_ref, velocity, limit_a)
            assert c_state.integrator_a == pid.integrator_a, (error, v_ref, velocity, limit_a)
            e32 = np.float32(target) - np.float32(position)
            demand = position_loop(e32, np.float32(kp_pos), np.float32(decel_rad_s2))
            if decel_rad_s2 > 0.0:
                in_zone += bool(abs(e32) <= np.float32(e_lin))
                beyond += bool(abs(e32) > np.float32(e_lin))
            clamped += bool(abs(demand + np.float32(v_ref)) > np.float32(gains.v_max))
            saturated += abs(py_out) == limit_a
    assert clamped > 0 and saturated > 0
    if decel_rad_s2 > 0.0:
        assert in_zone > 0 and beyond > 0
