"""Issue 18, learner side, without ROS: a resumed run trains the new goal's budget, a cancel ends without a final
evaluation, the run folder is keyed by the settings that give observations their meaning, and the learner node
imports no training module at start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mm_contract.objectives import parse_objective
from mm_learning.goals import run_key
from mm_learning.trainer import TrainConfig, Trainer
from mm_learning.twin import TwinSpec

from mm_learning import trainer as trainer_module

TWIN = TwinSpec(profile="mm_v3", load="pendulum", objective=parse_objective("accuracy"), episode_s=0.3)


def _config(out_dir: Path, **overrides: object) -> TrainConfig:
    settings: dict[str, object] = {
        "out_dir": out_dir,
        "twin": TWIN,
        "algorithm": "ppo",
        "max_steps": 512,
        "eval_every_steps": 0,
        "eval_moves": 1,
        "checkpoint_every_steps": 10**6,
        "hyperparameters": {"n_steps": 256, "batch_size": 128},
        "clone_baseline_episodes": 0,
        "tensorboard": False,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


def test_a_resumed_goal_trains_its_own_step_budget(tmp_path: Path) -> None:
    first = Trainer(_config(tmp_path, budget_per_part=True)).run()
    second = Trainer(_config(tmp_path, budget_per_part=True)).run()
    assert first.steps >= 512
    assert second.steps >= first.steps + 512, "the resumed goal trained less than its budget"
    # Without budget_per_part (a killed `mm train` finishing its budget) the same resume trains nothing more.
    third = Trainer(_config(tmp_path, max_steps=second.steps)).run()
    assert third.steps == second.steps


def test_a_resumed_goal_trains_its_own_time_budget(tmp_path: Path) -> None:
    """The first part spends its whole time budget; the resumed part (same budget) must still take env steps."""
    first = Trainer(_config(tmp_path, max_steps=0, max_time_s=1.0, budget_per_part=True)).run()
    second = Trainer(_config(tmp_path, max_steps=0, max_time_s=1.0, budget_per_part=True)).run()
    assert first.stop_reason == second.stop_reason == "time"
    assert second.steps > first.steps


def test_cancel_stops_within_one_vectorised_step_without_a_final_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluations: list[int] = []
    evaluate = trainer_module.evaluate_moves

    def counted(*args: object) -> dict[str, float]:
        evaluations.append(1)
        return evaluate(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer_module, "evaluate_moves", counted)
    polls = [0]

    def cancel_after_300_polls() -> bool:
        polls[0] += 1
        return polls[0] > 300

    trainer = Trainer(_config(tmp_path, max_steps=10**6, n_envs=1), should_cancel=cancel_after_300_polls)
    result = trainer.run()
    assert result.stop_reason == "cancelled"
    # One poll before learning, then one per env step: the step at which the cancel came is the last.
    assert result.steps == 300
    assert len(evaluations) == 1, "only the PID baseline is evaluated: no evaluation after the cancel"
    assert json.loads((result.checkpoint_dir / "state.json").read_text())["steps"] == 300


def test_the_run_folder_changes_with_the_velocity_scale_and_the_episode_length() -> None:
    settings = {
        "objective": parse_objective("speed"),
        "algorithm": "ppo",
        "profile": "mm_v3",
        "load": "pendulum",
        "seed": 0,
        "velocity_scale": "profile",
        "episode_s": 1.0,
    }
    base = run_key(**settings)  # type: ignore[arg-type]
    assert base == run_key(**settings)  # type: ignore[arg-type]
    assert base.startswith("speed-ppo-")
    assert run_key(**(settings | {"velocity_scale": "matched"})) != base  # type: ignore[arg-type]
    assert run_key(**(settings | {"episode_s": 0.5})) != base  # type: ignore[arg-type]


def test_the_learner_node_imports_no_training_module_at_start_up() -> None:
    """torch, Stable-Baselines3 and TensorFlow take tens of seconds to import on a loaded machine."""
    code = "import sys, mm_learning.learner_node as n; print(sorted(m for m in n.HEAVY_MODULES if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
