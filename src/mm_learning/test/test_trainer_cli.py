"""`mm train`, `mm eval` and `mm export`: a tiny run from the command line, resumed, evaluated against the PID,
exported and registered under the objective it was trained for."""

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


@pytest.mark.slow
def test_mm_export_registers_a_run_under_the_objective_it_was_trained_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mm export <run>` reads the run's config.json: a mix trained by `mm train` is what the registry finds.

    Before: `mm export` asked for the objective again (default "accuracy") and refused any mix ("unknown objective").
    """
    run, registry = tmp_path / "run", tmp_path / "policies"
    assert main(["keygen", "--dir", str(tmp_path)]) == 0
    key = str(tmp_path / "policy_signing_key.pem")
    train = ["train", "--objective", "speed:0.7,energy:0.3", "--steps", "4096", "--seed", "3", "--out", str(run)]
    assert main([*train, "--episode-s", "0.3", "--eval-moves", "2", "--no-progress", "--no-tensorboard"]) == 0
    assert json.loads((run / "config.json").read_text())["twin"]["objective"] == "speed:0.7,energy:0.3"
    capsys.readouterr()
    assert main(["export", str(run), "--key", key, "--registry", str(registry), "--moves", "3"]) == 0
    assert "for 'speed:0.7,energy:0.3'" in capsys.readouterr().out
    # Any spelling of the same mix finds the policy; its metadata names the canonical objective.
    for query in ("speed:0.7,energy:0.3", "energy:3,speed:7"):
        assert main(["registry", "--root", str(registry), "best", query]) == 0
        best = json.loads(capsys.readouterr().out)
        assert best["objective"] == "speed:0.7,energy:0.3" and best["algorithm"] == "PPO"
        assert "quantized_metrics" in best
    assert main(["registry", "--root", str(registry), "best", "accuracy"]) == 2
