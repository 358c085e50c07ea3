"""Online training from the transitions a servo streams (ROS-free): the learner and the Muscle Memory loop.

An :class:`OnlineLearner` turns the servo's sample batches into decision transitions with the rules of
:mod:`mm_contract.transitions` (the ones the bag dataset uses too), with the sum of the objective's per-tick
rewards over the k ticks of a decision times ``reward_scale`` as reward. It stores them in the SB3 replay buffer of
a SAC, TD3 or DDPG model and runs gradient steps on it. The model never steps an env itself. The servo has no
terminal state, so every stored transition bootstraps (done = False).

:func:`start_model` gives the start policy (fresh, the PID cloned in the twin, or a trained model).

:class:`OnlineSession`: the servo runs the deployed integer policy at its control rate and streams its
transitions; the session

1. exports the start policy (a fresh actor, or one trained or cloned in the twin), deploys it and evaluates it
   on fixed seeded moves: the baseline;
2. **explores**: step moves to seeded random targets within the limits, the servo adding its exploration noise
   (``exploration_std`` decays linearly to ``exploration_std_final`` over the budget), every transition into the
   replay buffer of an :class:`OnlineLearner` with the objective's reward;
3. **trains**: ``updates_per_transition`` gradient steps per new transition (the update-to-data ratio), at most
   ``max_gradient_steps_per_cycle`` per cycle, once ``learning_starts`` transitions are stored;
4. **deploys** every ``redeploy_every_s`` of servo time: the actor exported to a signed integer TFLite policy by
   :func:`mm_learning.export.export_policy` (integer-only ops, model/arena budget and quantisation fidelity on
   the servo's own observations; no closed-loop twin check: step 5 measures the quantised policy on the servo);
5. **evaluates** every ``eval_every_deploys`` deployments with exploration off, on the same seeded moves (each
   move starts with the servo's PID holding the move's start), measuring the objective's return and the shared
   step metrics (``mm_contract.metrics``) from the servo's transitions (a move that arrives incomplete is run again);

until ``max_steps`` transitions were consumed, ``max_time_s`` of wall time passed, the target was reached (the
objective's target against the start policy, ``twin.beats_target``, with a higher return too) or the caller
cancels. The best evaluated policy is kept and reported. The servos are reached through
:class:`mm_learning.online_session.ServoFleet` (ROS: the learner node's links; tests: the virtual servo
in-process): a fleet of several servos of one load class trains one policy from all of them: each explores at
once, their transitions go into one replay buffer, every policy is deployed to all, and the evaluation moves are
spread over them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from mm_contract.constants import ACTION_DIM, OBS_DIM
from mm_contract.objectives import Objective, parse_objective
from mm_contract.transitions import (
    TransitionColumns,
    concatenate,
    decision_rewards,
    decisions,
    first_decision,
    follows,
    reward_terms,
)
from mm_sim.evaluate import seeded_moves
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from mm_learning.actor import actor_from_sb3
from mm_learning.algorithms import (
    ALGORITHMS,
    CLONE_SEED,
    build_model,
    clone_controller,
    load_preset,
    quiet_logger,
)
from mm_learning.errors import OnlineError, PolicyRejected, TrainingError
from mm_learning.export import export_policy
from mm_learning.goals import OFF_POLICY
from mm_learning.online_session import (
    Episode,
    PolicyRecord,
    RewardReport,
    ServoFleet,
    SessionConfig,
    SessionProgress,
    SessionResult,
    evaluation_episodes,
    move_attempts,
    servo_evaluation,
    whole_move,
)
from mm_learning.twin import EVAL_SEED, TwinSpec, beats_target, summarize

# Preset entries that only make sense when the model steps an env itself.
_ENV_DRIVEN = ("learning_starts", "train_freq", "gradient_steps")


class _NoEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """Carries the contract's spaces for SB3; the online learner never steps an env."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Refused: transitions come from the servo."""
        msg = "the online learner learns from add_batch(); it has no env to reset or step"
        raise TrainingError(msg)

    def step(self, action: NDArray[np.float32]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Refused: transitions come from the servo."""
        return self.reset()  # type: ignore[return-value]


class OnlineLearner:
    """Off-policy learning from streamed transition batches.

    Args:
        objective: an objective (``mm_contract.objectives.parse_objective``): the reward of every transition.
        algorithm: "sac", "td3" or "ddpg" (the preset's hyperparameters, with its ``online_hyperparameters`` on
            top, and its network apply, minus the env-driven ones: learning_starts, train_freq, gradient_steps).
        model: continue an existing off-policy model (e.g. pre-trained in the twin) instead of a new one.
        seed: seed of a new model.
        hyperparameters: overrides of the preset's (and its online) hyperparameters for a new model.
        policy_decimation: control ticks per decision k (the deployed policies' ``policy_decimation``).
        reward_scale: factor on the stored rewards (not on :meth:`rewards`): the per-tick rewards are integrals
            over one tick (e.g. rad·s), small next to SAC's entropy bonus unless scaled.
    """

    def __init__(
        self,
        *,
        objective: str | Objective,
        algorithm: str = "sac",
        model: OffPolicyAlgorithm | None = None,
        seed: int = 0,
        hyperparameters: dict[str, Any] | None = None,
        policy_decimation: int = 1,
        reward_scale: float = 1.0,
    ) -> None:
        if policy_decimation < 1 or not (math.isfinite(reward_scale) and reward_scale > 0.0):
            msg = f"policy_decimation={policy_decimation} must be >= 1 and reward_scale={reward_scale} > 0"
            raise TrainingError(msg)
        if algorithm not in OFF_POLICY:
            msg = f"online learning needs an off-policy algorithm ({', '.join(sorted(OFF_POLICY))}), not {algorithm!r}"
            raise TrainingError(msg)
        self.objective = objective
        self.terms = parse_objective(objective).weights
        if model is None:
            overrides = {**load_preset(algorithm).get("online_hyperparameters", {}), **(hyperparameters or {})}
            new_model = build_model(algorithm, _NoEnv(), seed=seed, overrides=overrides, leave_out=_ENV_DRIVEN)
            model = cast(OffPolicyAlgorithm, new_model)
        self.model: OffPolicyAlgorithm = model
        # train() logs through the model's logger, which SB3 only creates inside learn().
        self.model.set_logger(quiet_logger())
        self.policy_decimation = policy_decimation
        self.reward_scale = reward_scale
        self._pending: TransitionColumns | None = None  # samples from the last decision start on
        self.transitions = 0
        self.gradient_steps = 0

    def rewards(self, batch: TransitionColumns) -> NDArray[np.float64]:
        """The objective's reward of each transition i -> i+1 of the batch (``count - 1`` values).

        The twin's env computes the same: the measured state of sample i+1 (after action i took effect), action
        i, and the action before it (feature 6 of observation i, the previous action as the contract defines it).
        """
        return self.reward_terms(batch)[0]

    def reward_terms(self, batch: TransitionColumns) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """:meth:`rewards` and each weighted term of them (``count - 1`` values each; the terms sum to it)."""
        return reward_terms(self.terms, batch)

    def add_batch(self, batch: TransitionColumns) -> int:
        """Store the batch's decision transitions in the replay buffer; returns how many were stored.

        Raises:
            TrainingError: no replay buffer.
            TransitionError: a policy window whose action changed within a decision.
        """
        buffer = self.model.replay_buffer
        if buffer is None:
            msg = "the model has no replay buffer; load it (model.load_replay_buffer) before adding batches"
            raise TrainingError(msg)
        k = self.policy_decimation
        pending = self._pending
        if pending is not None and follows(pending, batch):
            batch, start = concatenate(pending, batch), 0  # the pending samples start at a decision
        else:
            start = first_decision(batch, k)  # a new stream
        kept, next_start = decisions(batch, k, start)
        rewards = self.reward_scale * decision_rewards(self.rewards(batch), kept, k)
        for i, value in zip(kept, rewards, strict=True):
            buffer.add(
                batch.observations[i][None, :],
                batch.observations[i + k][None, :],
                batch.actions[i][None, None],
                np.array([value], dtype=np.float32),
                np.array([False]),
                [{}],
            )
        stored = len(kept)
        self._pending = batch.samples_from(next_start) if next_start < batch.count else None
        self.transitions += stored
        return stored

    def train(self, gradient_steps: int, batch_size: int | None = None) -> dict[str, float]:
        """Run gradient steps on the replay buffer; returns the last logged losses (e.g. ``train/critic_loss``).

        Raises:
            TrainingError: fewer stored transitions than one batch.
        """
        batch_size = batch_size or int(self.model.batch_size)
        if self.transitions < batch_size:
            msg = f"only {self.transitions} transitions stored; add batches until there are >= {batch_size}"
            raise TrainingError(msg)
        self.model.train(gradient_steps=gradient_steps, batch_size=batch_size)
        self.gradient_steps += gradient_steps
        values = self.model.logger.name_to_value
        return {name: float(value) for name, value in values.items() if name.startswith("train/")}


_CALIBRATION_OBS = 1000  # observations for the export's calibration, and as many held out for check (b)
PID_CLONE_EPISODES = 20
"""Noisy PID episodes cloned into the ``pid_clone`` start policy (as the PPO preset's clone)."""


def start_model(start: str, *, algorithm: str, twin: TwinSpec, seed: int) -> BaseAlgorithm | None:
    """The online start policy named by ``start`` (the learner's ``online_start_policy``).

    "untrained": None (the learner builds a fresh actor); "pid_clone": a new ``algorithm`` model whose actor is
    the objective's PID in ``twin``, cloned; otherwise the path of an SB3 .zip of the same algorithm.

    Raises:
        OnlineError: ``start`` is none of these.
    """
    if start == "untrained":
        return None
    if start == "pid_clone":
        model = OnlineLearner(objective=twin.objective, algorithm=algorithm, seed=seed).model
        env = twin.make_env(randomize=False)
        try:
            baseline = twin.make_baseline(env, twin.moves(10))
            clone_controller(model, env, baseline, episodes=PID_CLONE_EPISODES, seed=CLONE_SEED)
        finally:
            env.close()
        return model
    path = Path(start).expanduser()
    if not path.is_file():
        msg = f"online_start_policy {start!r} is not 'untrained', 'pid_clone' or an existing SB3 .zip"
        raise OnlineError(msg)
    return ALGORITHMS[algorithm].load(path, device="cpu")


class OnlineSession:
    """Runs one session; see the module docstring.

    Args:
        config: the session.
        fleet: the servos (one or more of one load class: one replay buffer, one policy deployed to all).
        scales: observation scales written into every policy image (the servo computes its observation with
            the active policy's scales, so all images of a session carry the same).
        private_key: ECDSA P-256 key that signs the images.
        out_dir: export artifacts (``deploy-<n>/``).
        model: start from this off-policy model (trained or cloned in the twin); None: a fresh one.
        on_progress: progress hook (phase changes, after each cycle and evaluation).
        on_reward: called with each move's rewards.
        should_cancel: polled between moves and gradient-step chunks; True stops the session.
    """

    def __init__(
        self,
        config: SessionConfig,
        fleet: ServoFleet,
        *,
        scales: Any,
        private_key: Any,
        out_dir: Path,
        model: Any = None,
        on_progress: Callable[[SessionProgress], None] | None = None,
        on_reward: Callable[[RewardReport], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.fleet = fleet
        self.learner = OnlineLearner(
            objective=config.objective,
            algorithm=config.algorithm,
            model=model,
            seed=config.seed,
            hyperparameters=dict(config.hyperparameters),
            policy_decimation=config.policy_decimation,
            reward_scale=config.reward_scale,
        )
        self.objective = parse_objective(config.objective)
        self._scales = scales
        self._key = private_key
        self._out_dir = out_dir
        self._on_progress = on_progress or (lambda _progress: None)
        self._on_reward = on_reward or (lambda _report: None)
        self._should_cancel = should_cancel or (lambda: False)
        self._rng = np.random.default_rng(config.seed)
        self.eval_moves = seeded_moves(
            config.eval_moves,
            seed=EVAL_SEED,
            range_rad=config.target_limit_rad,
            min_distance_rad=config.min_move_rad,
            duration_s=config.episode_s,
        )
        self.steps = 0
        self.deploys = 0
        self._servo_time_s = 0.0
        self._train_time_s = 0.0
        self._start_wall = 0.0
        self._positions_rad: list[float | None] = [None] * len(fleet)  # where each servo's last move left its load
        self._observations: list[NDArray[np.float32]] = []
        self._eval_metrics: dict[str, float] = {}
        self._baseline: dict[str, float] = {}
        self._cycle_rewards: list[float] = []
        self._stop_reason = ""
        self.refusals: list[str] = []
        """Why exports were refused (the previous policy kept running)."""
        self.incomplete_moves = 0
        """Evaluation moves run again because their transitions came back incomplete."""

    # -- budget and progress ---------------------------------------------------------------------------------

    def _budget_used(self) -> float:
        """Fraction of the budget spent (the larger of steps and wall time)."""
        used = 0.0
        if self.config.max_steps:
            used = self.steps / self.config.max_steps
        if self.config.max_time_s:
            used = max(used, (time.monotonic() - self._start_wall) / self.config.max_time_s)
        return min(used, 1.0)

    def _should_stop(self) -> bool:
        if not self._stop_reason:
            if self._should_cancel():
                self._stop_reason = "cancelled"
            elif self.config.max_steps and self.steps >= self.config.max_steps:
                self._stop_reason = "steps"
            elif self.config.max_time_s and time.monotonic() - self._start_wall >= self.config.max_time_s:
                self._stop_reason = "time"
        return bool(self._stop_reason)

    def _report(self, phase: str) -> None:
        wall = time.monotonic() - self._start_wall
        rewards = self._cycle_rewards
        self._on_progress(
            SessionProgress(
                phase=phase,
                steps=self.steps,
                steps_per_s=self.steps / wall if wall > 0.0 else 0.0,
                gradient_steps=self.learner.gradient_steps,
                deploys=self.deploys,
                mean_reward=float(np.mean(rewards)) if rewards else math.nan,
                eval_metrics=dict(self._eval_metrics),
                baseline_metrics=dict(self._baseline),
            )
        )

    # -- the servo -------------------------------------------------------------------------------------------

    def _consume(self, columns: TransitionColumns, servo: int) -> None:
        """Store a move's transitions (run by `servo`, an index into the fleet), count them, report its rewards."""
        if columns.count < 2:
            msg = f"the servo returned {columns.count} samples for a move; is it streaming transitions?"
            raise OnlineError(msg)
        self.learner.add_batch(columns)
        self.steps += columns.count
        self._servo_time_s += columns.count * columns.dt_s
        self._positions_rad[servo] = float(columns.position_rad[-1])
        self._observations.append(columns.observations)
        rewards, terms = self.learner.reward_terms(columns)
        self._cycle_rewards.extend(rewards.tolist())
        self._on_reward(
            RewardReport(
                first_tick=columns.first_tick,
                samples=len(rewards),
                reward=float(np.mean(rewards)),
                terms={name: float(np.mean(values)) for name, values in terms.items()},
            )
        )

    def _training_episode(self, servo: int) -> Episode:
        """A seeded random target at least ``min_move_rad`` from `servo`'s load; a PID start when it wandered off."""
        limit, config = self.config.target_limit_rad, self.config
        start = None
        here = self._positions_rad[servo]
        if here is None or abs(here) > limit:
            here = start = float(self._rng.uniform(-limit, limit))
        target = here
        while abs(target - here) < config.min_move_rad:
            target = float(self._rng.uniform(-limit, limit))
        used = self._budget_used()
        std = config.exploration_std + (config.exploration_std_final - config.exploration_std) * used
        return Episode(target, config.episode_s, start, std, config.exploration_tau_s, config.settle_s)

    def _export_and_deploy(self) -> PolicyRecord | None:
        """Export the actor and deploy it; None (the previous policy keeps running) when the export refuses it."""
        self._report("deploying")
        calibration, held_out = self._observation_sample()
        try:
            export = export_policy(
                actor_from_sb3(self.learner.model),
                scales=self._scales,
                representative_obs=calibration,
                held_out_obs=held_out,
                closed_loop_setup=None,
                private_key=self._key,
                out_dir=self._out_dir / f"deploy-{self.deploys:04d}",
                objective=self.objective.text,
                training_steps=self.steps,
                policy_decimation=self.config.policy_decimation,
            )
        except PolicyRejected as exc:
            self.refusals.append(str(exc))
            return None
        crc = self.fleet.deploy(export.image, export.metadata)
        self.deploys += 1
        metadata = export.metadata | {"paths": {kind: str(path) for kind, path in export.paths.items()}}
        return PolicyRecord(export.image, metadata, crc, self.steps)

    def _observation_sample(self) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Disjoint calibration and held-out observations from the servo's own transitions.

        Before the servo has sent enough (the start policy), the rest are drawn uniformly from the contract's
        box, with sin/cos of one angle, so the input scale still spans [-1, 1].
        """
        seen = np.concatenate(self._observations) if self._observations else np.empty((0, 8), np.float32)
        need = 2 * _CALIBRATION_OBS
        picked = seen[self._rng.permutation(len(seen))[:need]]
        if len(picked) < need:
            extra = self._rng.uniform(-1.0, 1.0, (need - len(picked), 8)).astype(np.float32)
            angle = self._rng.uniform(-math.pi, math.pi, len(extra))
            extra[:, 3], extra[:, 4] = np.sin(angle), np.cos(angle)
            picked = np.concatenate([picked, extra])
        return picked[:_CALIBRATION_OBS], picked[_CALIBRATION_OBS:]

    def _evaluate(self) -> dict[str, float]:
        """The deployed policy on the seeded moves, exploration off; the transitions are stored too."""
        self._report("evaluating")
        episodes = evaluation_episodes(self.eval_moves, self.config.settle_s)
        moves = []
        runs = self.fleet.map(move_attempts, episodes)
        for index, (episode, attempts) in enumerate(zip(episodes, runs, strict=True)):
            for columns in attempts:
                self._consume(columns, index % len(self.fleet))
            self.incomplete_moves += len(attempts) - 1
            moves.append(whole_move(attempts, episode))
        return summarize(servo_evaluation(self.learner.terms, moves, [m.start_rad for m in self.eval_moves]))

    def _train(self, new_transitions: int) -> None:
        """Gradient steps for the transitions stored since the last cycle, in chunks that can be cancelled."""
        learner = self.learner
        if learner.transitions < max(self.config.learning_starts, int(learner.model.batch_size)):
            return
        wanted = min(
            round(self.config.updates_per_transition * new_transitions), self.config.max_gradient_steps_per_cycle
        )
        self._report("training")
        started = time.monotonic()
        while wanted > 0 and not self._should_stop():
            chunk = min(wanted, 100)
            learner.train(chunk)
            wanted -= chunk
        self._train_time_s += time.monotonic() - started

    # -- the session -----------------------------------------------------------------------------------------

    def run(self) -> SessionResult:
        """Run until the budget, the target or a cancel; the servo is left in HOLD."""
        torch.set_num_threads(1)  # see trainer.Trainer.run: one intra-op thread on this class of machine
        self._start_wall = time.monotonic()
        history: list[tuple[int, float]] = []
        try:
            start = self._export_and_deploy()
            if start is None:
                msg = f"the start policy was refused by the export checks: {self.refusals[-1]}"
                raise OnlineError(msg)
            self._baseline = self._evaluate()
            start = PolicyRecord(start.image, start.metadata, start.policy_crc32, start.steps, dict(self._baseline))
            history.append((self.steps, self._baseline["mean_return"]))
            best = start
            while not self._should_stop():
                self._cycle_rewards = []
                cycle_start = self.learner.transitions
                self._report("exploring")
                explored_s = 0.0
                while explored_s < self.config.redeploy_every_s and not self._should_stop():
                    episodes = [self._training_episode(servo) for servo in range(len(self.fleet))]
                    for servo, columns in enumerate(self.fleet.run_moves(episodes)):
                        self._consume(columns, servo)
                        explored_s += columns.count * columns.dt_s / len(self.fleet)
                self._train(self.learner.transitions - cycle_start)
                if self._stop_reason == "cancelled":
                    break
                record = self._export_and_deploy()
                if record is None or self.deploys % self.config.eval_every_deploys:
                    continue
                self._eval_metrics = self._evaluate()
                history.append((self.steps, self._eval_metrics["mean_return"]))
                if self._eval_metrics["mean_return"] > best.metrics["mean_return"]:
                    best = PolicyRecord(
                        record.image, record.metadata, record.policy_crc32, record.steps, self._eval_metrics
                    )
                self._report("evaluating")
                if self.config.stop_on_target and self._reached_target(self._eval_metrics):
                    self._stop_reason = "target"
        finally:
            self.fleet.hold()
        return SessionResult(
            stop_reason=self._stop_reason,
            steps=self.steps,
            gradient_steps=self.learner.gradient_steps,
            deploys=self.deploys,
            start=start,
            best=best,
            history=history,
            elapsed_s=time.monotonic() - self._start_wall,
            servo_time_s=self._servo_time_s,
            train_time_s=self._train_time_s,
        )

    def _reached_target(self, metrics: Mapping[str, float]) -> bool:
        """The objective's target (``twin.beats_target``) against the start policy, with a higher return."""
        return metrics["mean_return"] > self._baseline["mean_return"] and beats_target(
            self.objective, metrics, self._baseline
        )
