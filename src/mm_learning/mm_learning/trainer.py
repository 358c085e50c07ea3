"""Train a servo policy for the user's objective in the MuJoCo twin (ROS-free).

- :class:`Trainer`: SB3 PPO (default), SAC, TD3, DDPG or A2C on vectorised twins, evaluated during training on
  fixed seeded moves against the PID baseline for the same objective; stops when the objective's target is
  beaten, at the step or time budget, or when cancelled. Checkpoints are atomic, and a run killed at any moment
  resumes from its last checkpoint with its step count.
- :class:`TrainConfig`: one run; :class:`TrainResult`: how the run ended (progress reports are
  :class:`mm_learning.goals.Progress`).

The jobs around it live in their own modules: the twin, its baseline and the judgement
(:mod:`mm_learning.twin`), presets, models and behaviour cloning (:mod:`mm_learning.algorithms`), checkpoints
(:mod:`mm_learning.checkpoints`) and the callbacks inside ``model.learn`` (:mod:`mm_learning.callbacks`); the
export of a finished run is :mod:`mm_learning.pipeline`'s.

Run directory layout (``TrainConfig.out_dir``)::

    config.json                    the run's configuration (a resumed run must ask for the same objective/algo)
    model.zip                      the model at the end of the last finished part of the run
    best_model.zip                 the evaluated model with the highest mean return (what to export)
    checkpoints/latest             name of the newest complete checkpoint (replaced atomically)
    checkpoints/step-<n>/          model.zip, replay_buffer.pkl (off-policy), rng.pkl, state.json
    tb/                            TensorBoard logs
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from mm_contract.objectives import parse_objective
from mm_sim.baselines import PidController
from mm_sim.env import ServoEnv
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from mm_learning.algorithms import (
    ALGORITHMS,
    CLONE_SEED,
    build_model,
    clone_controller,
    load_preset,
    policy_controller,
    quiet_logger,
)
from mm_learning.callbacks import (
    PeriodicCheckpoint,
    ProgressReport,
    RunClock,
    RunLog,
    SeededEvaluation,
    StopOnRequest,
    StopOnTarget,
)
from mm_learning.checkpoints import latest_checkpoint, load_checkpoint, read_state, reward_normalizer, save_checkpoint
from mm_learning.errors import TrainingError
from mm_learning.goals import DEFAULT_ALGORITHM, DEFAULT_DEVICE, Progress
from mm_learning.twin import TwinSpec, beats_target, evaluate_moves

BEST_MODEL = "best_model.zip"


# --------------------------------------------------------------------------------------------------------------
# Configuration, progress and result


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        out_dir: run directory (checkpoints, TensorBoard logs); a run that has a checkpoint there resumes.
        twin: the twin and objective.
        algorithm: one of :data:`ALGORITHMS`.
        max_steps: env step budget (0: none, then max_time_s must be > 0).
        max_time_s: wall-time budget (s) (0: none).
        budget_per_part: whether max_steps and max_time_s count from the start of this part of the run (a
            learner goal trains its own budget, also when it resumes a run) or over all its resumed parts (False:
            a killed `mm train` run finishes the budget it was given).
        seed: seed of the model, the envs and the RNGs.
        n_envs: vectorised envs (0: the preset's).
        eval_every_steps: evaluate every this many env steps (0: only at the end).
        eval_moves: seeded moves per evaluation.
        checkpoint_every_steps: checkpoint every this many env steps (a checkpoint is also written at the end).
        stop_on_target: stop as soon as an evaluation beats the objective's target.
        hyperparameters: overrides of the preset's hyperparameters.
        clone_baseline_episodes: episodes of the PID baseline to clone into a new model before RL (None: the
            preset's ``clone_baseline_episodes``; 0: start from a random policy).
        tensorboard: write TensorBoard logs under ``out_dir/tb``.
        progress_bar: show SB3's progress bar (tqdm/rich) on the terminal.
        device: torch device of the networks: "cpu" (default), "cuda", "cuda:N" or "auto" (CUDA when there is a
            GPU). The firmware's model budget keeps the policy near 2 × 48 units, too small for a GPU to pay off:
            every step is a few tiny matrix products dominated by kernel launches and copies (docs/learning.md).
    """

    out_dir: Path
    twin: TwinSpec = field(default_factory=TwinSpec)
    algorithm: str = DEFAULT_ALGORITHM
    max_steps: int = 100_000
    max_time_s: float = 0.0
    budget_per_part: bool = False
    seed: int = 0
    n_envs: int = 0
    eval_every_steps: int = 20_000
    eval_moves: int = 10
    checkpoint_every_steps: int = 20_000
    stop_on_target: bool = True
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    clone_baseline_episodes: int | None = None
    tensorboard: bool = True
    progress_bar: bool = False
    device: str = DEFAULT_DEVICE

    def validate(self) -> None:
        """Refuse a configuration that cannot run, naming the field."""
        load_preset(self.algorithm)
        try:
            device = torch.device("cpu" if self.device == "auto" else self.device)
        except RuntimeError as exc:
            raise TrainingError(f"device {self.device!r}: {exc}; use cpu, cuda, cuda:N or auto") from exc
        if device.type not in ("cpu", "cuda"):
            raise TrainingError(f"device {self.device!r}: use cpu, cuda, cuda:N or auto")
        if device.type == "cuda" and not torch.cuda.is_available():
            msg = f"device {self.device!r}: this torch ({torch.__version__}) sees no CUDA GPU; use cpu or auto"
            raise TrainingError(msg)
        if self.max_steps < 0 or not (math.isfinite(self.max_time_s) and self.max_time_s >= 0.0):
            msg = f"max_steps={self.max_steps} and max_time_s={self.max_time_s} must be >= 0"
            raise TrainingError(msg)
        if self.max_steps == 0 and self.max_time_s == 0.0:
            msg = "the budget is zero: give max_steps > 0 or max_time_s > 0"
            raise TrainingError(msg)
        if self.eval_moves < 1 or self.eval_every_steps < 0 or self.checkpoint_every_steps < 1 or self.n_envs < 0:
            msg = (
                f"eval_moves={self.eval_moves} must be >= 1, checkpoint_every_steps={self.checkpoint_every_steps}"
                f" >= 1, eval_every_steps={self.eval_every_steps} and n_envs={self.n_envs} >= 0"
            )
            raise TrainingError(msg)

    def to_json(self) -> dict[str, Any]:
        """JSON form (written to ``config.json``)."""
        data = dataclasses.asdict(self)
        data["out_dir"] = str(self.out_dir)
        data["twin"]["objective"] = self.twin.objective.text
        data["hyperparameters"] = dict(self.hyperparameters)
        return data

    @classmethod
    def read(cls, run_dir: Path) -> TrainConfig:
        """The configuration a run was trained with, from its ``config.json`` (``out_dir`` is ``run_dir``).

        Raises:
            TrainingError: ``run_dir`` holds no readable ``config.json`` of this version's fields.
            ObjectiveError: its objective is not one this version knows.
        """
        path = run_dir / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            twin_data = data.pop("twin")
            twin = TwinSpec(**(twin_data | {"objective": parse_objective(twin_data["objective"])}))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            msg = f"{path}: not a training run's configuration ({exc}); give the --out directory of `mm train`"
            raise TrainingError(msg) from exc
        data.pop("out_dir", None)
        try:
            return cls(out_dir=run_dir, twin=twin, **data)
        except TypeError as exc:
            msg = f"{path}: {exc}; the run was written by another version of mm_learning, train it again"
            raise TrainingError(msg) from exc


@dataclass(frozen=True)
class TrainResult:
    """How a run ended.

    Attributes:
        model: the trained model.
        steps: env steps over the whole run.
        stop_reason: "target" (beat the objective's target), "steps", "time" or "cancelled".
        target_beaten: the final evaluation beat the target.
        eval_metrics: the final evaluation of the policy.
        baseline_metrics: the PID baseline on the same moves.
        checkpoint_dir: the checkpoint written at the end.
        elapsed_s: wall time over all parts of the run (s).
        best_model_path: ``out_dir/best_model.zip``, the evaluated model with the highest mean return so far
            (what to export: RL can make a policy worse, and the last model is not always the best).
        best_steps: the step count of that model (-1, and no best model, when a cancel came before the first
            evaluation).
        best_metrics: its evaluation (empty when there is none).
    """

    model: BaseAlgorithm
    steps: int
    stop_reason: str
    target_beaten: bool
    eval_metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]
    checkpoint_dir: Path
    elapsed_s: float
    best_model_path: Path
    best_steps: int
    best_metrics: Mapping[str, float]


# --------------------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Trains one run; see the module docstring.

    Args:
        config: the run.
        on_progress: called with a :class:`Progress` about once a second and after each evaluation.
        should_cancel: polled every env step (and between the set-up phases); when it returns True the run stops
            with a checkpoint of the step reached, without a final evaluation (a cancel ends within one
            vectorised env step, or one PPO/A2C update when it falls into one).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.objective = config.twin.objective
        self.preset = load_preset(config.algorithm)
        self._on_progress = on_progress or (lambda _progress: None)
        self._should_cancel = should_cancel or (lambda: False)
        self.eval_moves = config.twin.moves(config.eval_moves)

    # -- building --------------------------------------------------------------------------------------------

    def _vec_env(self, seed: int, checkpoint: Path | None) -> VecEnv:
        n_envs = self.config.n_envs or int(self.preset.get("n_envs", 1))
        # DummyVecEnv: measured faster than SubprocVecEnv for this cheap env on 2 cores (ml-stack-notes).
        env = make_vec_env(self.config.twin.make_env, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)
        if not self.preset.get("normalize_reward", False):
            return env
        gamma = float({**self.preset["hyperparameters"], **self.config.hyperparameters}.get("gamma", 0.99))
        return reward_normalizer(checkpoint, env, gamma=gamma)

    def _tensorboard_log(self) -> str | None:
        return str(self.config.out_dir / "tb") if self.config.tensorboard else None

    def _resume(self, checkpoint: Path, env: VecEnv) -> tuple[BaseAlgorithm, dict[str, Any]]:
        state = read_state(checkpoint)
        for key in ("algorithm", "objective"):
            wanted = self.config.algorithm if key == "algorithm" else self.config.twin.objective.text
            if state[key] != wanted:
                msg = (
                    f"{self.config.out_dir} holds a {key}={state[key]!r} run, not {wanted!r}; "
                    "use another out_dir or the same settings to resume"
                )
                raise TrainingError(msg)
        algorithm = ALGORITHMS[self.config.algorithm]
        model = load_checkpoint(
            checkpoint, algorithm, env, tensorboard_log=self._tensorboard_log(), device=self.config.device
        )
        return model, state

    def _start(
        self,
        env: VecEnv,
        eval_env: ServoEnv,
        baseline: PidController,
        baseline_metrics: dict[str, float],
        checkpoint: Path | None,
    ) -> tuple[BaseAlgorithm, dict[str, Any]]:
        """The model and run record to train on: resumed from ``checkpoint``, or new (the baseline cloned in)."""
        config = self.config
        if checkpoint is not None:
            model, state = self._resume(checkpoint, env)
            state["resumes"] = int(state.get("resumes", 0)) + 1
            return model, state
        set_random_seed(config.seed)
        model = build_model(
            config.algorithm,
            env,
            seed=config.seed,
            overrides=config.hyperparameters,
            tensorboard_log=self._tensorboard_log(),
            device=config.device,
        )
        record: dict[str, Any] = {"steps": 0, "elapsed_s": 0.0, "resumes": 0}
        episodes = config.clone_baseline_episodes
        if episodes is None:
            episodes = int(self.preset.get("clone_baseline_episodes", 0))
        if episodes:
            self._on_progress(Progress("cloning", 0, 0.0, math.nan, {}, dict(baseline_metrics)))
            record["clone_mse"] = clone_controller(model, eval_env, baseline, episodes=episodes, seed=CLONE_SEED)
        return model, record

    def _callbacks(self, run: RunLog, clock: RunClock, eval_env: ServoEnv) -> tuple[CallbackList, SeededEvaluation]:
        """The run's callbacks (in the order they act on a step) and the evaluation among them."""
        config = self.config

        def report(phase: str, steps: int, rate: float, mean_reward: float) -> None:
            metrics = (dict(run.eval_metrics), dict(run.baseline_metrics))
            self._on_progress(Progress(phase, steps, rate, mean_reward, *metrics))

        def evaluate(model: BaseAlgorithm) -> dict[str, float]:
            return evaluate_moves(eval_env, policy_controller(model), self.eval_moves)

        def target_beaten() -> bool:
            return config.stop_on_target and beats_target(self.objective, run.eval_metrics, run.baseline_metrics)

        progress = ProgressReport(run, report)
        evaluation = SeededEvaluation(
            run,
            evaluate,
            every_steps=config.eval_every_steps,
            best_path=config.out_dir / BEST_MODEL,
            progress=progress,
            evaluate_at_start="clone_mse" in run.record,  # the cloned baseline competes for the best model too
            callback_after_eval=StopOnTarget(run, target_beaten),
        )
        checkpoints = PeriodicCheckpoint(
            run, config.checkpoint_every_steps, lambda model: self._checkpoint(model, run, clock)
        )
        return CallbackList([StopOnRequest(run, clock, self._should_cancel), progress, checkpoints, evaluation]), (
            evaluation
        )

    def _checkpoint(self, model: BaseAlgorithm, run: RunLog, clock: RunClock) -> Path:
        """Write a checkpoint of the run as it is now."""
        run.record.update(
            steps=model.num_timesteps,
            elapsed_s=clock.elapsed_s(),
            algorithm=self.config.algorithm,
            objective=self.config.twin.objective.text,
            seed=self.config.seed,
            eval_metrics=run.eval_metrics,
            baseline_metrics=run.baseline_metrics,
        )
        return save_checkpoint(self.config.out_dir, model, run.record)

    # -- running ---------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train (or resume) until the target is beaten, the budget is spent or the run is cancelled."""
        start = time.monotonic()  # the time budget counts setup and the baseline, not just learning
        config = self.config
        config.out_dir.mkdir(parents=True, exist_ok=True)
        (config.out_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1), encoding="utf-8")
        # One intra-op thread: on this 2-core VM, 2 threads made every small policy forward ~1000x slower
        # (1.5 ms vs 1.4 us for a 2x64 tanh, measured with the other core busy); the batches are too small to split.
        torch.set_num_threads(1)
        checkpoint = latest_checkpoint(config.out_dir)
        resumed_steps = 0 if checkpoint is None else int(read_state(checkpoint)["steps"])
        # Resumed parts reseed their envs from the step count so they do not replay the first part's episodes.
        env = self._vec_env(config.seed + resumed_steps, checkpoint)
        eval_env = config.twin.make_env(randomize=False)
        try:
            self._on_progress(Progress("evaluating", resumed_steps, 0.0, math.nan, {}, {}))
            baseline = config.twin.make_baseline(eval_env, self.eval_moves)
            baseline_metrics = evaluate_moves(eval_env, baseline, self.eval_moves)
            model, record = self._start(env, eval_env, baseline, baseline_metrics, checkpoint)
            run = RunLog(record, baseline_metrics)
            clock = RunClock(start, float(record["elapsed_s"]), config.max_time_s, config.budget_per_part)
            callbacks, evaluation = self._callbacks(run, clock, eval_env)
            callbacks.init_callback(model)
            remaining = _steps_to_train(config, model.num_timesteps)
            if self._should_cancel():
                run.stop_reason = "cancelled"
            # Nothing left to learn (resumed at the end of the budget, or cancelled): evaluate and checkpoint only.
            nothing_to_learn = remaining <= 0 or clock.out_of_time() or bool(run.stop_reason)
            if nothing_to_learn or self._tensorboard_log() is None:
                # learn() would otherwise make SB3's default logger, which leaves a folder in the temp directory.
                model.set_logger(quiet_logger())
            if not nothing_to_learn:
                model.learn(
                    total_timesteps=remaining,
                    callback=callbacks,
                    reset_num_timesteps=False,
                    progress_bar=config.progress_bar,
                    tb_log_name="run",
                )
            stop_reason = run.stop_reason or ("time" if clock.out_of_time() else "steps")
            if stop_reason != "cancelled" and run.evaluated_at != model.num_timesteps:
                evaluation.evaluate(model)
            # A run cancelled before its first evaluation has no metrics to judge.
            target_beaten = bool(run.eval_metrics) and beats_target(
                self.objective, run.eval_metrics, run.baseline_metrics
            )
            final = self._checkpoint(model, run, clock)
            # The model of the last checkpoint, where `mm export` and `mm eval` look for it.
            shutil.copyfile(final / "model.zip", config.out_dir / ".model.zip.tmp")
            os.replace(config.out_dir / ".model.zip.tmp", config.out_dir / "model.zip")
        finally:
            eval_env.close()
            env.close()
        best = run.record.get("best")
        return TrainResult(
            model=model,
            steps=model.num_timesteps,
            stop_reason=stop_reason,
            target_beaten=target_beaten,
            eval_metrics=dict(run.eval_metrics),
            baseline_metrics=dict(run.baseline_metrics),
            checkpoint_dir=final,
            elapsed_s=float(run.record["elapsed_s"]),
            best_model_path=config.out_dir / BEST_MODEL,
            best_steps=int(best["steps"]) if best else -1,
            best_metrics=dict(best["metrics"]) if best else {},
        )


def _steps_to_train(config: TrainConfig, steps: int) -> int:
    """Env steps this part of a run may take, from the run's ``steps`` so far (the step budget's remainder)."""
    if not config.max_steps:
        return 2**62
    return config.max_steps if config.budget_per_part else config.max_steps - steps
