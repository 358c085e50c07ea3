"""PID parity (servo contract section 8): the core's POSITION mode and mm_sim.baselines.CascadedPid give the
same current command on a recorded run (positions and velocities as the firmware senses them)."""

from __future__ import annotations

import pytest
from fw_support import recorded_run, require

DT_S = 0.001
LIMIT_A = 3.0
TAU_S = 0.005


@pytest.mark.parametrize("gravity_ff_a", [0.0, 0.4])
def test_core_pid_matches_mm_sim_baseline(gravity_ff_a: float) -> None:
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_sim.baselines import CascadedPid, PidGains
    from mm_sim.observation import MultiTurnEncoder, ObservationBuilder, ObsScales, encoder_count

    gains = PidGains(kp_pos=18.0, v_max=15.0, kp_vel=0.25, ki_vel=3.0, gravity_ff_a=gravity_ff_a)
    core = fw.ServoCore(
        heartbeat_timeout_s=0.0,
        current_limit_a=LIMIT_A,
        overcurrent_a=10.0,
        velocity_filter_tau_s=TAU_S,
        gains=(gains.kp_pos, gains.v_max, gains.kp_vel, gains.ki_vel, gains.gravity_ff_a),
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
    assert worst <= 1e-5, f"max |C - Python| current = {worst} A"
    assert 0 < saturated < len(rows)  # both the saturated (anti-windup) and the linear regime were exercised
