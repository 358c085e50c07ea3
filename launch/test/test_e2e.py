"""End to end, cross-process, with a tiny budget: the demo's session (mm_bringup.session) on the sim bringup.

The composed runner starts the virtual servo, the driver, the learner and the recorder as separate processes
(launch-equivalent: the same description `sim.launch.py` uses); this process then trains through the learner's
Train action, deploys the published policy through the driver's DeployPolicy action, runs MoveTo goals with the
policy and the PID, stops the bringup and reads the bag back.

Run inside the loopback-only namespace: tools/run_tests.sh launch/test/test_e2e.py
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from mm_bringup.bringup import is_installed
from mm_bringup.session import BRINGUP_NODES, SessionConfig, run_session
from mm_contract.registry import Registry
from mm_learning.bags import read_messages
from mm_sim.evaluate import Move

pytestmark = [pytest.mark.ros, pytest.mark.slow]

# The learner test's tiny settings: 1024 PPO steps with seed 1 give a policy the export checks accept.
TINY_LEARNER = {
    "eval_every_steps": 512,
    "eval_moves": 2,
    "export_moves": 3,
    "checkpoint_every_steps": 512,
    "hyperparameters_json": json.dumps({"n_steps": 256, "batch_size": 128}),
}


def test_train_deploy_move_and_record_through_the_bringup(tmp_path: Path, report: Callable[[str], None]) -> None:
    if not is_installed("mm_bringup"):
        pytest.fail("mm_bringup is not built: add `launch` to colcon's --base-paths and source install/setup.bash")
    moves = [Move(0.0, 0.8, 3.0), Move(0.5, -0.4, 3.0)]
    config = SessionConfig(
        out=tmp_path / "session",
        objective="accuracy",
        max_steps=1024,
        seed=1,
        moves=moves,
        stream_moves=1,
        learner_parameters=TINY_LEARNER,
    )
    result = run_session(config)
    log = config.log.read_text(encoding="utf-8", errors="replace")

    assert result.nodes >= BRINGUP_NODES, sorted(result.nodes)
    assert result.train_success, result.train_message
    assert len(result.policy_id) == 64 and result.training_steps >= 1024
    assert result.curve and all(math.isfinite(p.policy_score) for p in result.curve)
    # The registry the learner wrote holds the policy; the driver deployed exactly it and the servo says so.
    assert Registry(config.out / "policies").show(result.policy_id).policy_crc32 == result.policy_crc32
    assert result.servo_policy_crc32 == result.policy_crc32 != 0
    assert [(m.index, m.controller) for m in result.moves] == [
        (0, "policy"),
        (0, "pid"),
        (1, "policy"),
        (1, "pid"),
        (0, "ptos"),
        (1, "ptos"),
    ]
    # PTOS ran on the servo as its classical-start image, registered after the policy and deployed by its id: a newer
    # version (the servo's anti-rollback accepts it), or the policy's own entry when training kept that start.
    entries = {entry.policy_crc32: entry for entry in Registry(config.out / "policies").list()}
    ptos, policy = entries[result.ptos_policy_crc32], entries[result.policy_crc32]
    assert ptos.policy_version > policy.policy_version or ptos == policy
    for move in result.moves:  # every move, the policy's too, comes back with the driver's metrics
        assert move.elapsed_s > 0 and move.energy_j > 0 and math.isfinite(move.overshoot_rad), move
        assert abs(move.start_rad - moves[move.index].start_rad) < 0.1, move  # the PID brought it to the start

    # Every node stopped cleanly on SIGINT (exit code 0), and the recorder closed the bag. Ctrl-C landing in the
    # learner's final try_shutdown (here, once) or its executor (after an online goal) gave exit code 1 before the
    # nodes ran inside mm_ros.process.rclpy_process (src/mm_ros/test/test_ros_process.py).
    codes = result.exit_codes
    nodes = ["/servo1/virtual_servo", "/servo1/driver", "/servo1/learner", "/recorder"]
    assert [codes[name] for name in nodes] == [0, 0, 0, 0], log[-3000:]
    assert result.bag_complete
    counts = result.bag_counts
    for topic in ("state", "joint_states", "command", "policy_ack", "transitions"):
        assert counts.get(f"/servo1/{topic}", 0) > 0, counts
    # The bag reads back on its own too, and the streamed policy run is a dataset for the learner.
    assert len(read_messages(config.bag).messages) == sum(counts.values())
    assert result.dataset_transitions > 1000 and result.dataset_episodes >= 1
    report(
        f"e2e: policy {result.policy_crc32:08x} deployed in {result.deploy_elapsed_s:.2f} s; bag {counts}; "
        f"dataset {result.dataset_transitions} transitions; exit codes {codes}"
    )
