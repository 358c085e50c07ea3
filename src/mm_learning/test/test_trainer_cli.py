"""`mm train` and `mm eval`: a tiny run from the command line, resumed, then evaluated against the PID."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mm_learning.cli import main


@pytest.mark.slow
def test_mm_train_resumes_and_mm_eval_compares_with_the_pid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["--objective", "speed", "--episode-s", "0.3", "--eval-moves", "2", "--no-progress", "--no-tensorboard"]
    assert main(["train", "--steps", "4096", "--out", str(out), *common]) == 0
    first = capsys.readouterr().out
    assert "stopped (steps) after 4096 steps" in first and "| settled_fraction |" in first
    # The same command with a larger budget continues the run instead of starting over.
    assert main(["train", "--steps", "8192", "--out", str(out), *common]) == 0
    assert "after 8192 steps" in capsys.readouterr().out
    state = json.loads((out / "checkpoints" / "step-000000008192" / "state.json").read_text())
    assert state["resumes"] == 1

    evaluation = ["eval", str(out / "best_model.zip"), "--algorithm", "ppo", "--moves", "3", "--json"]
    assert main([*evaluation, "--objective", "speed", "--episode-s", "0.3"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {"policy", "pid"} and results["pid"]["settled_fraction"] >= 0.0
    assert main(["train", "--objective", "fast", "--out", str(out)]) == 2
    assert "unknown objective 'fast'" in capsys.readouterr().err
