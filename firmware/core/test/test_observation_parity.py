"""Observation parity (servo contract sections 2-3): the C core, stepped with encoder counts as on the servo,
produces the same 8 features as mm_contract.observation (MultiTurnEncoder -> ObservationBuilder) on a recorded run,
within 1e-5 per feature.
"""

from __future__ import annotations

import numpy as np
from mm_testing.fw_support import recorded_run, require

TOLERANCE = 1e-5
DT_S = 0.001


def test_core_observations_match_mm_sim() -> None:
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_contract.observation import MultiTurnEncoder, ObservationBuilder, ObsScales, encoder_count

    scales = ObsScales(
        pos_scale_rad=3.0,
        vel_scale_rad_s=40.0,
        fine_gain_per_rad=25.0,
        current_limit_a=2.0,
        velocity_filter_tau_s=0.004,
    )
    core = fw.ServoCore(obs_scales=scales, heartbeat_timeout_s=0.0, current_limit_a=2.0, overcurrent_a=10.0)
    rows = recorded_run(dt_s=DT_S)
    c_obs: list[list[float]] = []
    c_actions: list[float] = []
    for row in rows:
        status = core.command(
            fw.MODE_POSITION,
            row["target_rad"],
            target_velocity_rad_s=row["target_velocity_rad_s"],
            stream_transitions=True,
        )
        assert status == 0
        core.step(encoder_count=encoder_count(row["angle_rad"]), dt_s=DT_S, current_a=row["current_a"])
        batch = core.pop_batch(1)
        assert batch.count == 1
        c_obs.append(list(batch.observations[:8]))
        c_actions.append(batch.actions[0])

    encoder = MultiTurnEncoder(encoder_count(rows[0]["angle_rad"]))
    builder = ObservationBuilder(scales, DT_S)
    builder.reset(float(encoder.position_rad))
    py_obs = []
    previous_action = 0.0
    for row, action in zip(rows, c_actions, strict=True):
        position = encoder.update(encoder_count(row["angle_rad"]))
        py_obs.append(
            builder.update(
                float(position), row["current_a"], row["target_rad"], row["target_velocity_rad_s"], previous_action
            )
        )
        previous_action = action

    c = np.asarray(c_obs, dtype=np.float32)
    py = np.asarray(py_obs, dtype=np.float32)
    worst = np.abs(c - py).max(axis=0)
    print("max |C - Python| per feature:", worst.tolist())
    assert (worst <= TOLERANCE).all(), f"max |C - Python| per feature: {worst}"
    # The run exercises what matters: wraps, clipped and unclipped features, both signs.
    assert (np.abs(c[:, 0]) == 1.0).any() and (np.abs(c[:, 0]) < 1.0).any()
    assert (np.abs(c[:, 2]) > 0.2).any()
    assert np.ptp(c[:, 3]) > 1.9
