"""Off-policy learning from transitions streamed by a servo (ROS-free).

An :class:`OnlineLearner` turns the servo's sample batches into decision transitions with the rules of
:mod:`mm_contract.transitions` (the ones the bag dataset uses too), with the sum of the objective's per-tick
rewards over the k ticks of a decision times ``reward_scale`` as reward. It stores them in the SB3 replay buffer of
a SAC, TD3 or DDPG model and runs gradient steps on it. The model never steps an env itself. The servo has no
terminal state, so every stored transition bootstraps (done = False).
"""

from __future__ import annotations

import math
from typing import Any, cast

import gymnasium as gym
import numpy as np
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
from numpy.typing import NDArray
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from mm_learning.goals import OFF_POLICY
from mm_learning.trainer import TrainingError, build_model, load_preset

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
        self.model.set_logger(configure_logger(None, []))
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
