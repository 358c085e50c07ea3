"""The demo (`make demo`) runs end to end through ROS on a tiny budget and writes what it promises.

It starts the sim bringup (separate processes): run inside the loopback-only namespace,
tools/run_tests.sh src/mm_learning/test/test_demo.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TINY = [
    "--steps", "1024", "--time-s", "0", "--seed", "1", "--moves", "2", "--stream-moves", "1",
    "--learner-param", "eval_moves=2",
]  # fmt: skip
"""One ES generation (the step budget rounds up to whole generations) and 2 comparison moves."""


def test_demo_writes_table_plots_animation_bag_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "mm_bringup.demo", *TINY, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "controller" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| RL quantised (servo)",
        "| PID tuned for objective (servo)",
        "| PTOS tuned for objective (servo)",
        "| time-optimal bound (twin)",
    ]
    for name in ("training_curve.png", "step_responses.png", "energy_per_move.png", "comparison.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "move_policy.gif").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    comparison = summary["comparison"]
    # The bound is the fastest any controller can be on the same moves.
    bound_s = comparison["time-optimal bound (twin)"]["mean_settle_time_s"]
    assert bound_s <= comparison["PID tuned for objective (servo)"]["mean_settle_time_s"]
    assert bound_s <= comparison["PTOS tuned for objective (servo)"]["mean_settle_time_s"]
    # PTOS runs on the servo too (the classical-start image, deployed after the policy's moves).
    assert [m["controller"] for m in summary["moves"]] == ["policy", "pid", "policy", "pid", "ptos", "ptos"]
    assert summary["ptos_policy_crc32"] != "00000000"
    # Each move's step response is its own recorded run, not the streamed policy move to the same target that ran
    # between the policy's and PTOS's moves: every controller's run of a move begins where the others' did.
    from mm_bringup.demo import START_TOLERANCE_RAD, recorded_traces
    from mm_bringup.session import MoveOutcome

    moves = [MoveOutcome(**m) for m in summary["moves"]]
    traces = recorded_traces(Path(summary["bag"]), moves)
    for index in {m.index for m in moves}:
        begins = [t.position_rad[0] for t, m in zip(traces, moves, strict=True) if m.index == index]
        assert len(begins) == 3 and max(begins) - min(begins) < 2 * START_TOLERANCE_RAD, (index, begins)
    assert summary["bag_counts"]["/servo1/state"] > 0 and summary["dataset_transitions"] > 0
    # Whether anything was learned travels from the trainer (Train.Result.beat_baseline) to the table's note.
    beat = summary["policy_beat_baseline"]
    assert isinstance(beat, bool)
    assert ("no policy beat the classical start" in summary["train"]) is (not beat)
    assert ("Nothing was learned" in (out / "comparison.md").read_text()) is (not beat)
    # Every path it prints exists.
    written = proc.stdout.split("\nwritten:\n")[1].splitlines()
    paths = [Path(line.strip()) for line in written if line.startswith("  ")]
    assert len(paths) >= 8 and all(path.exists() for path in paths), paths
