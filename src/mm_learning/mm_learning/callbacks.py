"""The training run's Stable-Baselines3 callbacks, one job each, composed with SB3's ``CallbackList``.

- :class:`StopOnRequest`: stop on a cancel or when the wall-time budget is spent;
- :class:`ProgressReport`: steps/s and mean reward, reported about once a second (and after evaluations);
- :class:`PeriodicCheckpoint`: a checkpoint every N env steps;
- :class:`SeededEvaluation`: evaluate on the fixed seeded moves every N env steps, keep the best model, then run
  its ``callback_after_eval`` (as SB3's ``EvalCallback`` does);
- :class:`StopOnTarget`: the ``callback_after_eval`` that stops once the objective's target is beaten.

They share one :class:`RunLog` (why the run stopped, the latest evaluation, the record a checkpoint persists) and
one :class:`RunClock`. After a stop, the callbacks later in the list do nothing for that step.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback


@dataclass
class RunLog:
    """What the callbacks of one run share.

    Attributes:
        record: the run's record, written into every checkpoint's ``state.json`` (steps, elapsed_s, resumes,
            best: {steps, metrics}, clone_mse, ...).
        baseline_metrics: the classical baseline on the evaluation moves.
        eval_metrics: the policy's latest evaluation (empty before the first).
        evaluated_at: the step count of that evaluation (-1: none yet).
        stop_reason: "" while training, else "cancelled", "time" or "target".
    """

    record: dict[str, Any]
    baseline_metrics: dict[str, float]
    eval_metrics: dict[str, float] = field(default_factory=dict)
    evaluated_at: int = -1
    stop_reason: str = ""


@dataclass(frozen=True)
class RunClock:
    """Wall time of a run that may span several parts (resumes).

    Attributes:
        start: ``time.monotonic()`` when this part started (s).
        elapsed_before_s: wall time of the earlier parts (s).
        max_time_s: the wall-time budget (s); 0: none.
        budget_per_part: the budget counts from this part's start instead of the run's.
    """

    start: float
    elapsed_before_s: float
    max_time_s: float
    budget_per_part: bool

    def elapsed_s(self) -> float:
        """Wall time of the whole run so far (s)."""
        return self.elapsed_before_s + time.monotonic() - self.start

    def out_of_time(self) -> bool:
        """Whether the wall-time budget is spent (over the run, or this part with ``budget_per_part``)."""
        spent_s = (0.0 if self.budget_per_part else self.elapsed_before_s) + time.monotonic() - self.start
        return self.max_time_s > 0.0 and spent_s >= self.max_time_s


class StopOnRequest(BaseCallback):
    """Stops training within one env step of a cancel (``should_cancel()``) or of the end of the time budget."""

    def __init__(self, run: RunLog, clock: RunClock, should_cancel: Callable[[], bool]) -> None:
        super().__init__()
        self.run, self.clock, self.should_cancel = run, clock, should_cancel

    def _on_step(self) -> bool:
        if self.should_cancel():
            self.run.stop_reason = "cancelled"
        elif self.clock.out_of_time():
            self.run.stop_reason = "time"
        return not self.run.stop_reason


class ProgressReport(BaseCallback):
    """Env steps per second and mean (unnormalised) reward, sent to ``report(phase, steps, rate, reward)``.

    Reports "training" about every ``period_s`` of wall time; :meth:`report` sends any other phase.
    """

    def __init__(self, run: RunLog, report: Callable[[str, int, float, float], None], *, period_s: float = 1.0) -> None:
        super().__init__()
        self.run, self._report, self.period_s = run, report, period_s
        self._last = (time.monotonic(), 0)
        self._reward_sum, self._reward_count = 0.0, 0

    def _on_training_start(self) -> None:
        self._last = (time.monotonic(), self.model.num_timesteps)

    def _on_step(self) -> bool:
        normalizer = self.model.get_vec_normalize_env()
        rewards = self.locals["rewards"] if normalizer is None else normalizer.get_original_reward()
        self._reward_sum += float(np.sum(rewards))
        self._reward_count += len(rewards)
        if not self.run.stop_reason and time.monotonic() - self._last[0] >= self.period_s:
            self.report("training")
        return True

    def report(self, phase: str) -> None:
        """Send a report for ``phase`` with the rate and mean reward since the last one."""
        now, steps = time.monotonic(), self.model.num_timesteps
        rate = (steps - self._last[1]) / max(now - self._last[0], 1e-9)
        mean_reward = self._reward_sum / self._reward_count if self._reward_count else math.nan
        self._last = (now, steps)
        self._reward_sum, self._reward_count = 0.0, 0
        self._report(phase, steps, rate, mean_reward)


class PeriodicCheckpoint(BaseCallback):
    """Calls ``save(model)`` every ``every_steps`` env steps (counted from the start of this part)."""

    def __init__(self, run: RunLog, every_steps: int, save: Callable[[BaseAlgorithm], Path]) -> None:
        super().__init__()
        self.run, self.every_steps, self.save = run, every_steps, save
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = self.model.num_timesteps + self.every_steps

    def _on_step(self) -> bool:
        if not self.run.stop_reason and self.model.num_timesteps >= self._next:
            self._next = self.model.num_timesteps + self.every_steps
            self.save(self.model)
        return True


class SeededEvaluation(BaseCallback):
    """Evaluates the deterministic actor every ``every_steps`` env steps (0: only when asked) and keeps the best.

    The model with the highest ``mean_return`` so far is saved atomically to ``best_path`` (RL can make a policy
    worse; the last model is not always the best). Every evaluation is logged (``eval/*`` beside the baseline's
    ``pid/*``) and reported as phase "evaluating"; a periodic one then runs ``callback_after_eval``.

    Args:
        run: the run's shared log (``eval_metrics``, ``evaluated_at`` and ``record["best"]`` are written).
        evaluate: the model's metrics on the seeded moves.
        every_steps: evaluation period (env steps); 0: none during training.
        best_path: where the best model goes.
        progress: reports each evaluation.
        evaluate_at_start: evaluate before the first step of a new run (a cloned baseline competes for best).
        callback_after_eval: run after each periodic evaluation; training stops when it returns False.
    """

    def __init__(
        self,
        run: RunLog,
        evaluate: Callable[[BaseAlgorithm], dict[str, float]],
        *,
        every_steps: int,
        best_path: Path,
        progress: ProgressReport,
        evaluate_at_start: bool = False,
        callback_after_eval: BaseCallback | None = None,
    ) -> None:
        super().__init__()
        self.run, self._evaluate, self.every_steps, self.best_path = run, evaluate, every_steps, best_path
        self.progress = progress
        self.evaluate_at_start = evaluate_at_start
        self.callback_after_eval = callback_after_eval
        if callback_after_eval is not None:
            callback_after_eval.parent = self
        self._next = 0

    def _init_callback(self) -> None:
        if self.callback_after_eval is not None:
            self.callback_after_eval.init_callback(self.model)

    def _on_training_start(self) -> None:
        steps = self.model.num_timesteps
        if steps == 0 and self.evaluate_at_start:
            self.evaluate(self.model)
        self._next = steps + self.every_steps if self.every_steps else 2**62

    def _on_step(self) -> bool:
        if self.run.stop_reason or self.model.num_timesteps < self._next:
            return True
        self._next = self.model.num_timesteps + self.every_steps
        self.evaluate(self.model)
        return self.callback_after_eval is None or self.callback_after_eval.on_step()

    def evaluate(self, model: BaseAlgorithm) -> None:
        """Evaluate ``model`` now, keep it when it is the best so far, log and report it."""
        metrics = self._evaluate(model)
        self.run.eval_metrics = metrics
        self.run.evaluated_at = model.num_timesteps
        best = self.run.record.get("best")
        if best is None or metrics["mean_return"] > best["metrics"]["mean_return"]:
            tmp = self.best_path.with_name(f".{self.best_path.name}.tmp")
            model.save(tmp)
            os.replace(tmp, self.best_path)
            self.run.record["best"] = {"steps": model.num_timesteps, "metrics": metrics}
        for name, value in metrics.items():
            model.logger.record(f"eval/{name}", value)
            model.logger.record(f"pid/{name}", self.run.baseline_metrics.get(name, math.nan))
        model.logger.dump(model.num_timesteps)
        self.progress.report("evaluating")


class StopOnTarget(BaseCallback):
    """``callback_after_eval`` of :class:`SeededEvaluation`: stops once ``beaten()`` holds (reason "target")."""

    def __init__(self, run: RunLog, beaten: Callable[[], bool]) -> None:
        super().__init__()
        self.run, self.beaten = run, beaten

    def _on_step(self) -> bool:
        if self.beaten():
            self.run.stop_reason = "target"
        return not self.run.stop_reason
