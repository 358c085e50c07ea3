"""Schedule policies (servo contract sections 4, 5 and 8): in POLICY mode with an image whose schedule_range > 0,
the core applies clip(base / current_limit_a + schedule_range * r) * current_limit_a, base being the image's
cascaded PID/PTOS law (mm_sim.baselines.CascadedPid) and r the policy's held action; the observation's previous
action and the transition samples carry r. Checked tick for tick against a Python reference on a recorded run
(targets and reference velocities change every 0.4 s: each change is a new episode and restarts the base)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fw_support import SCALES, image, public_key_bytes, recorded_run, require, sign_raw

DT_S = 0.001
MODEL = bytes(range(200))
LIMIT_A = SCALES[3]  # the image's current_limit_a (2 A)
TAU_S = SCALES[4]  # the image's velocity filter tau: the base law uses the observation's velocity


class WobblyBackend:
    """A stub policy whose output follows the fine error and the measured current (so r changes), with an offset
    that reaches past +-1 on some runs (the core clips the policy's output first); records every output."""

    def __init__(self) -> None:
        self.outputs: list[float] = []

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Accept any model."""
        return True

    def invoke(self, slot: int, observation: list[float]) -> float:
        """0.8 x fine error + 0.7 x current feature - 0.1 (within about [-1.6, 1.4])."""
        out = 0.8 * observation[1] + 0.7 * observation[7] - 0.1
        self.outputs.append(out)
        return out


@pytest.mark.parametrize(
    ("schedule_range", "base", "decimation"),
    [
        (0.3, (3.0, 4.0, 0.05, 0.5, 0.0, 0.0), 1),  # linear position loop, policy every tick
        (0.5, (3.0, 4.0, 0.05, 0.5, 0.0, 20.0), 5),  # PTOS base, r held for 5 ticks
        (1.0, (6.0, 8.0, 0.08, 1.0, 0.3, 40.0), 10),  # with gravity feed-forward, full residual
    ],
    ids=["pid", "ptos-decimated", "ptos-ff"],
)
def test_schedule_policy_matches_the_python_reference(
    signing_key: ec.EllipticCurvePrivateKey,
    schedule_range: float,
    base: tuple[float, float, float, float, float, float],
    decimation: int,
) -> None:
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_sim.baselines import CascadedPid, PidGains
    from mm_sim.observation import MultiTurnEncoder, ObservationBuilder, ObsScales, encoder_count

    backend = WobblyBackend()
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=backend, heartbeat_timeout_s=0.0)
    img = image(signing_key, MODEL, policy_decimation=decimation, schedule_range=schedule_range, base_gains=base)
    assert core.load_policy(img) == 0
    active = core.active_policy()
    assert active is not None and active.schedule_range == np.float32(schedule_range)

    gains = PidGains(*base)
    pid = CascadedPid(gains, current_limit_a=LIMIT_A, dt_s=DT_S)
    rows = recorded_run(dt_s=DT_S)
    encoder = MultiTurnEncoder(encoder_count(rows[0]["angle_rad"]))
    sensing = ObservationBuilder(ObsScales(*SCALES), DT_S)
    sensing.reset(float(encoder.position_rad))
    limit, rl = np.float32(LIMIT_A), np.float32(schedule_range)
    previous_r = np.float32(0.0)
    episode: tuple[float, float] | None = None
    ticks_in_episode = 0
    worst = 0.0
    clipped = inside = 0
    for row in rows:
        target, target_velocity = row["target_rad"], row["target_velocity_rad_s"]
        assert core.command(fw.MODE_POLICY, target, target_velocity_rad_s=target_velocity, stream_transitions=True) == 0
        if (target, target_velocity) != episode:  # entering POLICY, then every new target: a new episode
            episode = (target, target_velocity)
            pid.reset()
            ticks_in_episode = 0
        count = encoder_count(row["angle_rad"])
        invokes = len(backend.outputs)
        out = core.step(encoder_count=count, dt_s=DT_S, current_a=row["current_a"])
        # The policy runs on the episode's ticks 0, k, 2k, ... and its r is held in between.
        runs = ticks_in_episode % decimation == 0
        assert len(backend.outputs) == invokes + runs
        r = np.clip(np.float32(backend.outputs[-1]), -1.0, 1.0) if runs else previous_r
        ticks_in_episode += 1

        position = encoder.update(count)
        sensing.update(float(position), 0.0, 0.0, 0.0, 0.0)
        base_a = np.float32(
            pid.step(
                position_rad=float(position),
                velocity_rad_s=sensing.velocity_rad_s,
                target_rad=target,
                target_velocity_rad_s=target_velocity,
            )
        )
        total = np.clip(base_a / limit + rl * np.float32(r), np.float32(-1.0), np.float32(1.0))
        expected = float(total * limit)
        worst = max(worst, abs(out.current_cmd_a - expected))
        clipped += abs(total) == 1.0
        inside += abs(total) < 1.0

        batch = core.pop_batch(1)
        assert batch.count == 1
        assert batch.actions[0] == r, "the sample's action is the policy's own r"
        assert batch.observations[6] == previous_r, "feature 6 is the previous r"
        assert batch.flags[0] & fw.constant("MM_SAMPLE_POLICY")
        previous_r = np.float32(r)
    print(f"max |C - Python| current = {worst} A; {clipped} ticks clipped, {inside} inside")
    # sinf and numpy's float32 sin may differ in the last bit; without the feed-forward the two are identical.
    assert worst <= (1e-5 if base[4] else 0.0), f"max |C - Python| current = {worst} A"
    assert clipped > 0 and inside > 0


def test_schedule_range_zero_is_exactly_the_plain_policy(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """An image with schedule_range 0 (base gains present but unused) drives, observes and records exactly as
    the same policy without them."""
    import mm_firmware_core as fw

    def run(**fields: Any) -> list[tuple[float, list[float], float]]:
        core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=WobblyBackend(), heartbeat_timeout_s=0.0)
        assert core.load_policy(image(signing_key, MODEL, **fields)) == 0
        trace = []
        for row in recorded_run(ticks=1200, dt_s=DT_S):
            core.command(fw.MODE_POLICY, row["target_rad"], stream_transitions=True)
            out = core.step(encoder_count=fw.encoder_count(row["angle_rad"]), dt_s=DT_S, current_a=row["current_a"])
            batch = core.pop_batch(1)
            trace.append((out.current_cmd_a, list(batch.observations[:8]), batch.actions[0]))
        return trace

    assert run() == run(schedule_range=0.0, base_gains=(3.0, 4.0, 0.05, 0.5, 0.2, 20.0))


def test_mm_learning_residual_header_reaches_the_base_law(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """The project's packer: a residual image whose policy outputs 0 runs the base law alone (r = 0)."""
    import mm_firmware_core as fw

    policy_image = require("mm_learning.policy_image")
    require("mm_sim")
    from mm_sim.baselines import CascadedPid, PidGains
    from mm_sim.observation import ObsScales

    class Zero(WobblyBackend):
        def invoke(self, slot: int, observation: list[float]) -> float:
            return 0.0

    base = (4.0, 6.0, 0.1, 0.0, 0.0, 0.0)
    head = policy_image.PolicyHeader(
        model_type=policy_image.ModelType.INT8,
        scales=ObsScales(*SCALES),
        arena_bytes=3000,
        schedule_range=0.5,
        base_gains=base,
    )
    img = policy_image.pack_image(head, MODEL, lambda data: sign_raw(signing_key, data))
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=Zero(), heartbeat_timeout_s=0.0)
    assert core.load_policy(img) == 0
    assert core.command(fw.MODE_POLICY, 1.0) == 0
    pid = CascadedPid(PidGains(*base), current_limit_a=LIMIT_A, dt_s=DT_S)
    # At rest at 0 (velocity 0): the base law alone, kp_vel * min(kp_pos * 1 rad, v_max).
    out = core.step(encoder_count=0, dt_s=DT_S)
    assert out.current_cmd_a == pid.step(position_rad=0.0, velocity_rad_s=0.0, target_rad=1.0) == pytest.approx(0.4)
