"""Off-policy learning from transitions streamed by a servo (ROS-free).

The servo sends consecutive control-tick samples in batches (the columns of ``mm_msgs/TransitionBatch``). An
:class:`OnlineLearner` turns them into decision transitions ``(obs_i, action_i, reward, obs_{i+k})``, where k is
the policy's decimation (the policy runs every k control ticks and the servo holds its action, exploration noise
included, in between; servo contract sections 4 and 5) and the reward is the sum of the objective's per-tick
rewards over the k ticks, each computed by ``mm_contract.objectives.reward`` from the physical columns of the tick after
(so the objective changes without touching the firmware), times ``reward_scale``. It stores them in the SB3 replay
buffer of a SAC, TD3 or DDPG model and runs gradient steps on it. The model never steps an env itself.

Which samples make a transition (the flags are ``TransitionBatch.FLAG_*``):
- samples i..i+k must be consecutive ticks: within a batch always; across batches when ``first_tick`` follows
  the previous batch's last tick;
- decisions start at an episode start (the servo restarts its policy counter there) and follow every k ticks;
  none of samples i+1..i+k may start an episode (a new target, a reset, a mode change or a new policy breaks the
  causal link);
- none of samples i..i+k may carry a fault (the firmware's limits, not the action, drove the motor), and none of
  samples i..i+k-1 the guard flag (the move left the policy's envelope and the classical controller drove it,
  servo contract section 4);
- the action must be the same on ticks i..i+k-1 (a window where the PID, not a held policy action, drove the
  motor is no decision; a policy window whose action changes means the servo does not run the policy at k).
With k = 1 every pair of consecutive samples is a transition. The servo has no terminal state, so every stored
transition bootstraps (done = False).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
from mm_contract.constants import ACTION_DIM, OBS_DIM, SampleFlag
from numpy.typing import ArrayLike, NDArray
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from mm_learning.goals import OFF_POLICY
from mm_learning.trainer import TrainingError, build_model, load_preset, objective_terms

FLAG_EPISODE_START, FLAG_FAULT, FLAG_POLICY, FLAG_GUARD = (
    SampleFlag.EPISODE_START,
    SampleFlag.FAULT,
    SampleFlag.POLICY,
    SampleFlag.GUARD,
)
"""The ``mm_msgs/TransitionBatch`` flag bits, as ``mm_contract.constants.SampleFlag`` defines them."""

# Preset entries that only make sense when the model steps an env itself.
_ENV_DRIVEN = ("learning_starts", "train_freq", "gradient_steps")


@dataclass(frozen=True)
class TransitionColumns:
    """One batch of consecutive samples, as in ``mm_msgs/TransitionBatch`` (all columns of length ``count``).

    Attributes:
        first_tick: control tick of the first sample.
        dt_s: control period (s).
        observations: (count, 8) contract observations.
        actions: normalised current command applied at each tick, in [-1, 1].
        position_rad: measured, unwrapped position (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        current_a: measured current (A).
        target_rad: position target (rad).
        power_w: electrical power drawn from the bus (W).
        flags: FLAG_* bits per sample.
    """

    first_tick: int
    dt_s: float
    observations: NDArray[np.float32]
    actions: NDArray[np.float32]
    position_rad: NDArray[np.float64]
    velocity_rad_s: NDArray[np.float64]
    current_a: NDArray[np.float64]
    target_rad: NDArray[np.float64]
    power_w: NDArray[np.float64]
    flags: NDArray[np.uint8]

    @classmethod
    def from_arrays(
        cls,
        *,
        first_tick: int,
        dt_s: float,
        observations: ArrayLike,
        actions: ArrayLike,
        position_rad: ArrayLike,
        velocity_rad_s: ArrayLike,
        current_a: ArrayLike,
        target_rad: ArrayLike,
        power_w: ArrayLike,
        flags: ArrayLike,
    ) -> TransitionColumns:
        """Check and convert the columns; ``observations`` may be flat (row-major, as in the message).

        Raises:
            TrainingError: columns of different lengths, wrong observation width, non-finite values, a period
                that is not > 0, or actions outside [-1, 1].
        """
        actions_array = np.asarray(actions, dtype=np.float32).reshape(-1)
        count = len(actions_array)
        obs = np.asarray(observations, dtype=np.float32)
        if obs.size != count * OBS_DIM:
            msg = f"observations hold {obs.size} values for {count} samples; need count x {OBS_DIM} (row-major)"
            raise TrainingError(msg)
        physical = {
            name: np.asarray(values, dtype=np.float64).reshape(-1)
            for name, values in (
                ("position_rad", position_rad),
                ("velocity_rad_s", velocity_rad_s),
                ("current_a", current_a),
                ("target_rad", target_rad),
                ("power_w", power_w),
            )
        }
        flag_array = np.asarray(flags, dtype=np.uint8).reshape(-1)
        lengths = {name: len(values) for name, values in physical.items()} | {"flags": len(flag_array)}
        if any(length != count for length in lengths.values()):
            msg = f"transition columns differ in length: actions {count}, {lengths}; every column needs `count` rows"
            raise TrainingError(msg)
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            msg = f"dt_s={dt_s!r} must be a control period > 0 (s)"
            raise TrainingError(msg)
        columns: list[NDArray[Any]] = [obs, actions_array, *physical.values()]
        if not all(np.all(np.isfinite(column)) for column in columns):
            msg = "a transition batch holds NaN or infinite values; the servo must not send unmeasured samples"
            raise TrainingError(msg)
        if np.any(np.abs(actions_array) > 1.0):
            msg = "actions must be normalised current commands in [-1, 1] (contract section 4)"
            raise TrainingError(msg)
        return cls(first_tick, float(dt_s), obs.reshape(count, OBS_DIM), actions_array, flags=flag_array, **physical)

    @property
    def count(self) -> int:
        """Number of samples."""
        return len(self.actions)


def reward_terms(
    terms: Mapping[str, float], batch: TransitionColumns
) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """The reward of each transition i -> i+1 for term weights `terms`, and its weighted terms (``count - 1`` each).

    The terms sum to the reward. The twin's env computes the same: the measured state of sample i+1 (after
    action i took effect), action i, and the action before it (feature 6 of observation i, the previous action as
    the contract defines it).
    """
    from mm_contract.objectives import TransitionSample, reward

    values = np.empty(batch.count - 1)
    columns = {name: np.empty(batch.count - 1) for name in terms}
    for i in range(batch.count - 1):
        sample = TransitionSample(
            position_rad=float(batch.position_rad[i + 1]),
            velocity_rad_s=float(batch.velocity_rad_s[i + 1]),
            current_a=float(batch.current_a[i + 1]),
            target_rad=float(batch.target_rad[i + 1]),
            power_w=float(batch.power_w[i + 1]),
            action=float(batch.actions[i]),
            previous_action=float(batch.observations[i, 6]),
            dt_s=batch.dt_s,
        )
        values[i], sample_terms = reward(terms, sample)
        for name, value in sample_terms.items():
            columns[name][i] = value
    return values, columns


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
        objective: objective text (``"speed"``, ``"speed:0.7,energy:0.3"``): the reward of every transition.
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
        objective: str,
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
        self.terms = objective_terms(objective)
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
            TrainingError: no replay buffer, or a policy window whose action changed within a decision.
        """
        buffer = self.model.replay_buffer
        if buffer is None:
            msg = "the model has no replay buffer; load it (model.load_replay_buffer) before adding batches"
            raise TrainingError(msg)
        k = self.policy_decimation
        pending = self._pending
        if pending is not None and pending.first_tick + pending.count == batch.first_tick:
            batch, i = _concatenate(pending, batch), 0  # the pending samples start at a decision
        else:
            # A new stream: decisions start at its first episode start (any sample when every tick decides).
            starts = np.flatnonzero(batch.flags & FLAG_EPISODE_START)
            i = 0 if k == 1 else int(starts[0]) if len(starts) else batch.count
        obs, actions, flags = batch.observations, batch.actions, batch.flags
        rewards = self.rewards(batch)
        stored = 0
        while i + k < batch.count:
            later_start = np.flatnonzero(flags[i + 1 : i + k + 1] & FLAG_EPISODE_START)
            if len(later_start):
                i += 1 + int(later_start[0])  # the next decision starts with the new episode
                continue
            held = bool(np.all(actions[i : i + k] == actions[i]))
            if not held and np.all(flags[i : i + k] & FLAG_POLICY):
                msg = (
                    f"the servo changed its action within a decision of {k} ticks (from tick {batch.first_tick + i}):"
                    " it does not run the policy at the image's policy_decimation (firmware without contract"
                    " section 5's decimation byte?)"
                )
                raise TrainingError(msg)
            guarded = np.any(flags[i : i + k] & FLAG_GUARD)
            if held and not guarded and not np.any(flags[i : i + k + 1] & FLAG_FAULT):
                buffer.add(
                    obs[i][None, :],
                    obs[i + k][None, :],
                    actions[i][None, None],
                    np.array([self.reward_scale * np.sum(rewards[i : i + k])], dtype=np.float32),
                    np.array([False]),
                    [{}],
                )
                stored += 1
            i += k
        self._pending = _samples_from(batch, i) if i < batch.count else None
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


def _samples_from(batch: TransitionColumns, start: int) -> TransitionColumns:
    """The samples of a batch from index ``start`` on."""
    return TransitionColumns(
        first_tick=batch.first_tick + start,
        dt_s=batch.dt_s,
        **{name: getattr(batch, name)[start:] for name in _COLUMNS},
    )


def _concatenate(first: TransitionColumns, second: TransitionColumns) -> TransitionColumns:
    """Two consecutive batches as one."""
    return TransitionColumns(
        first_tick=first.first_tick,
        dt_s=second.dt_s,
        **{name: np.concatenate([getattr(first, name), getattr(second, name)]) for name in _COLUMNS},
    )


_COLUMNS = ("observations", "actions", "position_rad", "velocity_rad_s", "current_a", "target_rad", "power_w", "flags")
