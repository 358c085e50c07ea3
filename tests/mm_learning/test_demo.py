"""The demo (`make demo`) runs end to end on a tiny budget and writes what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_writes_table_plots_animation_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "mm_learning.demo", "--time-s", "5", "--moves", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| PID tuned for objective |" in proc.stdout and "| time-optimal bound |" in proc.stdout
    for name in ("training_curve.png", "step_responses.png", "energy_per_move.png", "comparison.md"):
        assert (out / name).stat().st_size > 0, name
    animations = list(out.glob("move_*.gif"))
    assert len(animations) == 1 and animations[0].stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    comparison = summary["comparison"]
    assert {"RL float", "PID tuned for objective", "time-optimal bound"} <= set(comparison)
    # The bound is the fastest any controller can be on the same moves.
    assert (
        comparison["time-optimal bound"]["mean_settling_time_s"]
        <= comparison["PID tuned for objective"]["mean_settling_time_s"]
    )
    assert summary["export"].startswith(("accepted", "REFUSED"))
