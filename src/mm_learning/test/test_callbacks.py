"""The training run's callbacks, each on its own and composed, inside a real (tiny) PPO ``learn`` on the toy servo."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mm_learning.algorithms import quiet_logger
from mm_learning.callbacks import (
    PeriodicCheckpoint,
    ProgressReport,
    RunClock,
    RunLog,
    SeededEvaluation,
    StopOnRequest,
    StopOnTarget,
)
from mm_testing.toy_servo import ToyServoEnv
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList

N_STEPS = 32  # PPO rollout length: learn() checks the callbacks on every one of these env steps


def _model() -> PPO:
    model = PPO("MlpPolicy", ToyServoEnv(), n_steps=N_STEPS, batch_size=N_STEPS, n_epochs=1, seed=0)
    model.set_logger(quiet_logger())  # SB3's own would leave a folder in the temp directory
    return model


def _run() -> RunLog:
    return RunLog(record={"steps": 0}, baseline_metrics={"mean_return": -1.0})


def _clock(max_time_s: float = 0.0, elapsed_before_s: float = 0.0, *, per_part: bool = False) -> RunClock:
    return RunClock(time.monotonic(), elapsed_before_s, max_time_s, per_part)


def _learn(model: BaseAlgorithm, callbacks: list[BaseCallback], steps: int) -> None:
    model.learn(total_timesteps=steps, callback=CallbackList(callbacks))


def test_a_cancel_stops_within_one_step_and_says_why() -> None:
    model, run = _model(), _run()
    _learn(model, [StopOnRequest(run, _clock(), lambda: model.num_timesteps >= 40)], 10 * N_STEPS)
    assert run.stop_reason == "cancelled"
    assert model.num_timesteps == 40


def test_the_time_budget_counts_earlier_parts_unless_per_part() -> None:
    spent = _clock(max_time_s=5.0, elapsed_before_s=6.0)
    assert spent.out_of_time() and spent.elapsed_s() >= 6.0
    assert not _clock(max_time_s=5.0, elapsed_before_s=6.0, per_part=True).out_of_time()
    assert not _clock(max_time_s=0.0, elapsed_before_s=1e9).out_of_time()  # 0: no budget
    model, run = _model(), _run()
    _learn(model, [StopOnRequest(run, spent, lambda: False)], 10 * N_STEPS)
    assert (run.stop_reason, model.num_timesteps) == ("time", 1)


def test_checkpoints_come_every_n_steps_and_not_after_a_stop(tmp_path: Path) -> None:
    model, run = _model(), _run()
    saved: list[int] = []

    def save(m: BaseAlgorithm) -> Path:
        saved.append(m.num_timesteps)
        return tmp_path

    stop = StopOnRequest(run, _clock(), lambda: model.num_timesteps >= 100)
    _learn(model, [stop, PeriodicCheckpoint(run, 25, save)], 10 * N_STEPS)
    assert saved == [25, 50, 75]  # step 100 stopped the run: its checkpoint is the caller's final one


def test_evaluation_keeps_the_best_model_and_stops_on_target(tmp_path: Path) -> None:
    model, run = _model(), _run()
    returns = iter([-3.0, -2.0, -2.5, -0.5, -0.1])
    reports: list[tuple[str, int]] = []
    progress = ProgressReport(run, lambda phase, steps, _rate, _reward: reports.append((phase, steps)), period_s=1e9)

    def evaluate(_m: BaseAlgorithm) -> dict[str, float]:
        return {"mean_return": next(returns)}

    best = tmp_path / "best_model.zip"
    evaluation = SeededEvaluation(
        run,
        evaluate,
        every_steps=N_STEPS,
        best_path=best,
        progress=progress,
        callback_after_eval=StopOnTarget(run, lambda: run.eval_metrics["mean_return"] > -1.0),
    )
    _learn(model, [progress, evaluation], 10 * N_STEPS)
    # Evaluations at 32, 64, 96, 128: the fourth (-0.5) beats the target; -2.5 at 96 was not kept as best.
    assert run.stop_reason == "target" and model.num_timesteps == 4 * N_STEPS
    assert run.evaluated_at == 4 * N_STEPS and run.eval_metrics == {"mean_return": -0.5}
    assert run.record["best"] == {"steps": 4 * N_STEPS, "metrics": {"mean_return": -0.5}}
    assert best.is_file() and not list(tmp_path.glob(".*.tmp"))
    assert reports == [("evaluating", k * N_STEPS) for k in (1, 2, 3, 4)]


def test_a_cloned_start_is_evaluated_before_the_first_step(tmp_path: Path) -> None:
    model, run = _model(), _run()
    progress = ProgressReport(run, lambda *_args: None, period_s=1e9)
    evaluated: list[int] = []

    def evaluate(m: BaseAlgorithm) -> dict[str, float]:
        evaluated.append(m.num_timesteps)
        return {"mean_return": 0.0}

    evaluation = SeededEvaluation(
        run, evaluate, every_steps=0, best_path=tmp_path / "b.zip", progress=progress, evaluate_at_start=True
    )
    _learn(model, [progress, evaluation], 2 * N_STEPS)
    assert evaluated == [0]  # every_steps=0: none during training; the caller evaluates at the end
    assert run.record["best"]["steps"] == 0


def test_progress_reports_the_rate_and_the_unnormalised_mean_reward() -> None:
    model, run = _model(), _run()
    reports: list[tuple[str, int, float, float]] = []
    progress = ProgressReport(run, lambda *report: reports.append(report), period_s=0.0)
    _learn(model, [progress], N_STEPS)
    assert [r[1] for r in reports] == list(range(1, N_STEPS + 1))
    assert all(phase == "training" and rate > 0.0 and reward <= 0.0 for phase, _, rate, reward in reports)


@pytest.mark.parametrize("stop_reason", ["cancelled", "time"])
def test_after_a_stop_the_later_callbacks_do_nothing(tmp_path: Path, stop_reason: str) -> None:
    model, run = _model(), _run()
    run.stop_reason = stop_reason
    calls: list[str] = []
    progress = ProgressReport(run, lambda phase, *_: calls.append(phase), period_s=0.0)
    evaluation = SeededEvaluation(
        run, lambda _m: calls.append("eval") or {}, every_steps=1, best_path=tmp_path / "b.zip", progress=progress
    )
    checkpoint = PeriodicCheckpoint(run, 1, lambda _m: calls.append("checkpoint") or tmp_path)
    _learn(model, [progress, checkpoint, evaluation], N_STEPS)
    assert calls == []
