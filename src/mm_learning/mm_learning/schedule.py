"""Learning a residual on the classical controller, on the batched twin (docs/learning.md, "Schedule learning").

The policy decides every `decimation` ticks a residual r ∈ [-1, 1]; the servo adds `schedule_range · r` to its
classical law (the better of the tuned PID and PTOS for the objective, `mm_sim.tuning.classical`), computed
every tick. Its last layer starts at zero, so the untrained policy *is* the classical controller, and a policy is
kept only when its evaluation on the validation moves beats every earlier one, the classical start included.
PPO (Stable-Baselines3) collects experience from `envs` servos at once (`mm_sim.batch.ScheduleVecEnv`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric import ec
from mm_sim.batch import BatchTwin, Schedule, ScheduleVecEnv, evaluate_batch
from mm_sim.evaluate import Evaluation, seeded_moves
from mm_sim.profiles import load_profile
from mm_sim.tuning import Classical, classical
from numpy.typing import NDArray
from stable_baselines3 import PPO

from mm_learning.actor import actor_from_sb3
from mm_learning.errors import TrainingError
from mm_learning.export import ExportResult, ScheduleClosedLoop, export_policy

VALIDATION_SEED = 2_000_000
"""Seed of the validation moves that choose the best policy (the benchmark evaluates on other moves)."""
CALIBRATION_SEED, HELD_OUT_SEED, CHECK_SEED = 3_000_000, 3_100_000, 3_200_000
"""Seeds of the export's calibration, held-out (check b) and closed-loop (check c) moves: disjoint from training."""
EXPORT_MOVES = 20


@dataclass(frozen=True)
class ScheduleConfig:
    """One residual training run.

    Attributes:
        profile: shipped profile name.
        load: one of its loads.
        objective: a named objective (the classical laws are tuned per named objective).
        ticks: experience budget in control ticks (decisions × decimation), the unit that does not depend on
            how busy the machine is.
        seed: seed of PPO, the moves and the sensing noise.
        schedule_range: the residual's bound, as a fraction of the current limit.
        decimation: control ticks per decision.
        envs: servos simulated at once.
        validation_moves: moves that choose the best policy.
        eval_every_ticks: experience between two validations.
        episode_s: length of a training move (s); validation moves last 1 s.
        hyperparameters: PPO keyword arguments over the defaults below.
    """

    profile: str = "mm_v3"
    load: str = "pendulum"
    objective: str = "speed"
    ticks: int = 2_000_000
    seed: int = 0
    schedule_range: float = 0.5
    decimation: int = 5
    envs: int = 64
    validation_moves: int = 30
    eval_every_ticks: int = 200_000
    episode_s: float = 1.0
    hyperparameters: dict[str, object] = field(default_factory=dict)


PPO_DEFAULTS: dict[str, object] = {
    "n_steps": 64,
    "batch_size": 1024,
    "n_epochs": 5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "learning_rate": 3e-4,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "policy_kwargs": {"net_arch": [48, 48], "activation_fn": torch.nn.Tanh, "log_std_init": -1.0},
}
"""[48, 48] tanh: the int16x8 export of that actor fits the firmware's 12 KB model budget (docs/learning.md)."""


@dataclass(frozen=True)
class ScheduleResult:
    """What a run produced.

    Attributes:
        config: the run's configuration.
        model: the PPO model with the best validated policy's weights.
        residual: base law, bound and decimation the policy was trained with.
        classical: the classical controllers on the validation moves.
        best: the best policy's validation, or None when no policy beat the classical start.
        curve: (ticks, validation mean return) after each validation, starting with the classical start at 0.
        ticks: experience used. wall_s: wall time of the run (s). ticks_per_s: experience per wall second.
        beat_after_s: wall time (s, setup included) at the first validation that beat the classical start; None
            if none did.
    """

    config: ScheduleConfig
    model: PPO
    residual: Schedule
    classical: Classical
    best: Evaluation | None
    curve: list[tuple[int, float]]
    ticks: int
    wall_s: float
    beat_after_s: float | None

    @property
    def ticks_per_s(self) -> float:
        """Control ticks of experience per second of wall time."""
        return self.ticks / self.wall_s


def policy_function(model: PPO) -> Callable[[NDArray[np.float32]], NDArray[np.float64]]:
    """The deterministic residual of `model` for a batch of observations."""

    def residual(observation: NDArray[np.float32]) -> NDArray[np.float64]:
        action, _ = model.predict(observation, deterministic=True)
        return np.asarray(action, dtype=np.float64).reshape(len(observation))

    return residual


def train_schedule(
    config: ScheduleConfig, *, on_validation: Callable[[int, Evaluation], None] | None = None
) -> ScheduleResult:
    """Train a residual policy on the batched twin and keep the best validated one."""
    if config.ticks <= 0 or config.envs < 1:
        msg = f"ticks ({config.ticks}) and envs ({config.envs}) must be positive"
        raise TrainingError(msg)
    started = time.perf_counter()
    profile = load_profile(config.profile)
    moves = seeded_moves(config.validation_moves, seed=VALIDATION_SEED)
    base = classical(profile, config.load, config.objective, moves)
    residual = Schedule(base.gains, config.schedule_range, config.decimation)
    twin = BatchTwin(profile, config.load, config.envs, objective=config.objective, seed=config.seed)
    env = ScheduleVecEnv(twin, residual, episode_s=config.episode_s, seed=config.seed)
    torch.manual_seed(config.seed)
    # One intra-op thread: on 2 shared cores a second one makes small-MLP steps ~1000x slower (docs/learning.md).
    torch.set_num_threads(1)
    hyperparameters = {**PPO_DEFAULTS, **config.hyperparameters}
    model = PPO("MlpPolicy", env, seed=config.seed, device="cpu", verbose=0, **hyperparameters)  # type: ignore[arg-type]
    action_net = cast(torch.nn.Linear, model.policy.action_net)
    with torch.no_grad():  # the untrained policy adds nothing: it is the classical controller
        action_net.weight.zero_()
        action_net.bias.zero_()
    validation = BatchTwin(profile, config.load, len(moves), objective=config.objective, seed=VALIDATION_SEED)
    start_return = base.ptos.mean_return if base.law == "ptos" else base.pid.mean_return
    curve = [(0, start_return)]
    best: Evaluation | None = None
    beat_after_s: float | None = None
    best_return = start_return
    best_weights = copy.deepcopy(model.policy.state_dict())
    decision_ticks = config.decimation
    chunk = max(1, config.eval_every_ticks // decision_ticks)
    while model.num_timesteps * decision_ticks < config.ticks:
        model.learn(total_timesteps=chunk, reset_num_timesteps=False)
        evaluation = evaluate_batch(validation, residual, moves, policy_function(model))
        ticks = model.num_timesteps * decision_ticks
        curve.append((ticks, evaluation.mean_return))
        if on_validation is not None:
            on_validation(ticks, evaluation)
        if math.isfinite(evaluation.mean_return) and evaluation.mean_return > best_return:
            if best is None:
                beat_after_s = time.perf_counter() - started
            best, best_return = evaluation, evaluation.mean_return
            best_weights = copy.deepcopy(model.policy.state_dict())
    model.policy.load_state_dict(best_weights)
    return ScheduleResult(
        config,
        model,
        residual,
        base,
        best,
        curve,
        model.num_timesteps * decision_ticks,
        time.perf_counter() - started,
        beat_after_s,
    )


def export_schedule(
    result: ScheduleResult,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    out_dir: Path,
    name: str = "policy",
    metrics: Mapping[str, float] | None = None,
) -> ExportResult:
    """Export the best residual policy of `result` as a residual image (`export.export_policy`, every check).

    Calibration and held-out observations are what the float policy decided on in the batched twin on disjoint
    seeded moves; check (c) runs float and quantised residuals on the servo's base law on a third set.
    """
    config = result.config
    actor = actor_from_sb3(result.model)
    profile = load_profile(config.profile)

    def twin(copies: int, seed: int) -> BatchTwin:
        return BatchTwin(profile, config.load, copies, objective=config.objective, seed=seed)

    def decided_on(seed: int) -> NDArray[np.float32]:
        observations: list[NDArray[np.float32]] = []
        moves = seeded_moves(EXPORT_MOVES, seed=seed)
        evaluate_batch(twin(len(moves), seed), result.residual, moves, actor, record=observations)
        return np.concatenate(observations)

    check_moves = seeded_moves(EXPORT_MOVES, seed=CHECK_SEED)
    return export_policy(
        actor,
        scales=twin(1, 0).scales,
        representative_obs=decided_on(CALIBRATION_SEED),
        held_out_obs=decided_on(HELD_OUT_SEED),
        closed_loop_setup=ScheduleClosedLoop(lambda: twin(len(check_moves), CHECK_SEED), check_moves),
        private_key=private_key,
        out_dir=out_dir,
        name=name,
        objective=config.objective,
        training_steps=result.ticks,
        metrics=metrics,
        residual=result.residual,
    )
