"""Schedule policies (servo contract sections 4, 5 and 8): in POLICY mode with an image whose schedule_range rho > 0,
the core runs the image's PTOS base law (mm_sim.baselines.CascadedPid) every tick with its braking deceleration
scaled by exp(rho * a), a the policy's held action, and applies that law's current (clamped to +-current_limit_a,
nothing added); the observation's previous action and the transition samples carry a. Checked tick for tick against
the Python reference on a recorded run (targets and reference velocities change every 0.4 s: each change is a new
episode and restarts the base law's integrator).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import SCALES, image, public_key_bytes, recorded_run, require, sign_raw

DT_S = 0.001
MODEL = bytes(range(200))
LIMIT_A = SCALES[3]  # the image's current_limit_a (2 A)
TAU_S = SCALES[4]  # the image's velocity filter tau: the base law uses the observation's velocity
# C's expf and numpy's float32 exp (like sinf and np.sin for the feed-forward) may differ in the last bit: the
# scheduled deceleration then differs by an ulp and the current by orders of magnitude less than this (A).
TOLERANCE_A = 1e-5


class WobblyBackend:
    """A stub policy whose output follows the fine error and the measured current (so a changes), with an offset
    that reaches past +-1 on some runs (the core clips the policy's output first); records every output.
    """

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
        (0.3, (3.0, 30.0, 0.05, 0.5, 0.0, 20.0), 1),  # policy every tick
        (1.0, (3.0, 30.0, 0.05, 0.5, 0.0, 20.0), 5),  # a held for 5 ticks
        (2.0, (6.0, 30.0, 0.08, 1.0, 0.3, 40.0), 10),  # the largest range, with gravity feed-forward
    ],
    ids=["every-tick", "decimated", "max-range-ff"],
)
def test_schedule_policy_matches_the_python_reference(
    signing_key: ec.EllipticCurvePrivateKey,
    schedule_range: float,
    base: tuple[float, float, float, float, float, float],
    decimation: int,
) -> None:
    import mm_firmware_core as fw

    require("mm_sim")
    from mm_contract.observation import MultiTurnEncoder, ObservationBuilder, ObsScales, encoder_count
    from mm_sim.baselines import CascadedPid, PidGains

    backend = WobblyBackend()
    # The recorded shaft moves on its own, far outside any move's envelope: the guard (test_guard.py) is off here.
    core = fw.ServoCore(
        public_key=public_key_bytes(signing_key),
        backend=backend,
        heartbeat_timeout_s=0.0,
        guard_error_rad=0.0,
        guard_saturation_s=0.0,
    )
    img = image(signing_key, MODEL, policy_decimation=decimation, schedule_range=schedule_range, base_gains=base)
    assert core.load_policy(img) == 0
    active = core.active_policy()
    assert active is not None and active.schedule_range == np.float32(schedule_range)

    pid = CascadedPid(PidGains(*base), current_limit_a=LIMIT_A, dt_s=DT_S)
    rows = recorded_run(dt_s=DT_S)
    encoder = MultiTurnEncoder(encoder_count(rows[0]["angle_rad"]))
    sensing = ObservationBuilder(ObsScales(*SCALES), DT_S)
    sensing.reset(float(encoder.position_rad))
    rho = np.float32(schedule_range)
    previous_a = np.float32(0.0)
    episode: tuple[float, float] | None = None
    ticks_in_episode = 0
    worst = 0.0
    largest_effect = 0.0
    moved = saturated = inside = 0
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
        # The policy runs on the episode's ticks 0, k, 2k, ... and its a is held in between; the base runs every tick.
        runs = ticks_in_episode % decimation == 0
        assert len(backend.outputs) == invokes + runs
        a = np.clip(np.float32(backend.outputs[-1]), np.float32(-1.0), np.float32(1.0)) if runs else previous_a
        ticks_in_episode += 1

        position = encoder.update(count)
        sensing.update(float(position), 0.0, 0.0, 0.0, 0.0)
        inputs = {
            "position_rad": float(position),
            "velocity_rad_s": sensing.velocity_rad_s,
            "target_rad": target,
            "target_velocity_rad_s": target_velocity,
        }
        unscheduled = copy.deepcopy(pid).step(**inputs)  # the base law from the same integrator, braking at decel
        expected = pid.step(**inputs, schedule=rho * a)  # float32 rho * a, as the core computes it
        worst = max(worst, abs(out.current_cmd_a - expected))
        largest_effect = max(largest_effect, abs(expected - unscheduled))
        moved += abs(expected - unscheduled) > 100 * TOLERANCE_A
        saturated += abs(expected) == LIMIT_A
        inside += abs(expected) < LIMIT_A
        assert abs(out.current_cmd_a) <= LIMIT_A

        batch = core.pop_batch(1)
        assert batch.count == 1
        assert batch.actions[0] == a, "the sample's action is the policy's own a"
        assert batch.observations[6] == previous_a, "feature 6 is the previous a"
        assert batch.flags[0] & fw.constant("MM_SAMPLE_POLICY")
        previous_a = a
    print(
        f"max |C - Python| current = {worst} A; the schedule moved the current on {moved} ticks (at most "
        f"{largest_effect} A); {saturated} ticks at the limit, {inside} inside"
    )
    assert worst <= TOLERANCE_A, f"max |C - Python| current = {worst} A"
    # The schedule acts: on many ticks the current differs from the unscheduled law by far more than the tolerance,
    # so a core that ignored a, dropped the exp or braked at another deceleration could not pass.
    assert moved > len(rows) // 5 and largest_effect > 1000 * TOLERANCE_A
    assert saturated > 0 and inside > 0


def test_schedule_range_zero_is_exactly_the_plain_policy(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """An image with schedule_range 0 (PTOS base gains present but unused) drives, observes and records exactly as
    the same policy without them: the policy's output is the whole action.
    """
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


def test_mm_learning_schedule_header_reaches_the_base_law(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """The project's packer: a schedule image whose policy outputs 0 runs the PTOS base law alone (exp(0) = 1, bit for
    bit); one whose policy outputs 0.5 brakes at decel * exp(rho * 0.5), as CascadedPid with that schedule.
    """
    import mm_firmware_core as fw

    policy_image = require("mm_contract.policy_image")
    require("mm_sim")
    from mm_contract.observation import ObsScales
    from mm_sim.baselines import CascadedPid, PidGains

    class Constant(WobblyBackend):
        def __init__(self, a: float) -> None:
            super().__init__()
            self.a = a

        def invoke(self, slot: int, observation: list[float]) -> float:
            return self.a

    base = (8.0, 10.0, 0.1, 0.0, 0.0, 20.0)  # linear zone 20 / (2 * 8^2) = 0.16 rad (0.33 at a = 0.5): 1 rad brakes
    rho = 1.5
    head = policy_image.PolicyHeader(
        model_type=policy_image.ModelType.INT8,
        scales=ObsScales(*SCALES),
        arena_bytes=3000,
        schedule_range=rho,
        base_gains=base,
    )
    img = policy_image.pack_image(head, MODEL, lambda data: sign_raw(signing_key, data))
    currents = {}
    for a in (0.0, 0.5):
        core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=Constant(a), heartbeat_timeout_s=0.0)
        assert core.load_policy(img) == 0
        assert core.command(fw.MODE_POLICY, 1.0) == 0
        currents[a] = core.step(encoder_count=0, dt_s=DT_S).current_cmd_a
    pid = CascadedPid(PidGains(*base), current_limit_a=LIMIT_A, dt_s=DT_S)
    # At rest at 0 (velocity 0): kp_vel * (sqrt(2 * decel * 1 rad) - decel / (2 kp_pos)), under v_max.
    plain = pid.step(position_rad=0.0, velocity_rad_s=0.0, target_rad=1.0)
    assert currents[0.0] == plain == pytest.approx(0.1 * (40.0**0.5 - 1.25))
    pid.reset()
    scheduled = pid.step(
        position_rad=0.0, velocity_rad_s=0.0, target_rad=1.0, schedule=np.float32(rho) * np.float32(0.5)
    )
    decel = 20.0 * np.exp(0.75)
    assert scheduled == pytest.approx(0.1 * ((2.0 * decel) ** 0.5 - decel / 16.0), rel=1e-6)
    assert currents[0.5] == pytest.approx(scheduled, abs=TOLERANCE_A)  # expf vs numpy's exp: see TOLERANCE_A
    assert currents[0.5] > currents[0.0] + 0.1  # a harder brake allows a faster approach
