"""Online learning: transitions packed as the servo streams them become the same rewards the twin computes,
the replay buffer fills only with valid transitions, and SAC/TD3/DDPG take gradient steps on it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mm_contract.errors import TransitionError
from mm_contract.transitions import FLAG_EPISODE_START, FLAG_FAULT, FLAG_GUARD, FLAG_POLICY, TransitionColumns
from mm_learning.errors import TrainingError
from mm_learning.online import OnlineLearner

MAX_SAMPLES = 24  # TransitionBatch.MAX_SAMPLES


def _servo_stream(
    objective: str, ticks: int, seed: int = 0, decimation: int = 1
) -> tuple[list[TransitionColumns], list[float]]:
    """Roll a noisy PD law out in the twin and pack the ticks into batches as the servo would.

    The law decides every `decimation` ticks from each episode start and its action holds in between.

    Returns the batches and the env's reward of every step (the reward of the transition into tick k+1).
    """
    from mm_sim.env import ServoEnv

    env = ServoEnv("mm_v3", load="pendulum", objective=objective, episode_s=0.25, hold_s=0.25)
    rng = np.random.default_rng(seed)
    rows: dict[str, list[float]] = {
        k: [] for k in ("position_rad", "velocity_rad_s", "current_a", "target_rad", "power_w")
    }
    observations, actions, flags, env_rewards = [], [], [], []
    obs, info = env.reset(seed=seed)
    start, since_start, action = True, 0, 0.0
    for _ in range(ticks):
        since_start = 0 if start else since_start + 1
        if since_start % decimation == 0:
            action = float(np.clip(2.0 * obs[0] - 0.5 * obs[2] + rng.normal(0.0, 0.2), -1.0, 1.0))
        observations.append(obs)
        actions.append(action)
        flags.append(FLAG_POLICY | (FLAG_EPISODE_START if start else 0))
        for name, column in rows.items():
            column.append(info[name])
        obs, reward, _, truncated, info = env.step(np.array([action], dtype=np.float32))
        env_rewards.append(reward)
        start = truncated
        if truncated:
            obs, info = env.reset()
    batches = []
    for first in range(0, ticks, MAX_SAMPLES):
        part = slice(first, first + MAX_SAMPLES)
        batches.append(
            TransitionColumns.from_arrays(
                first_tick=1000 + first,
                dt_s=env.dt_s,
                observations=np.asarray(observations[part]).reshape(-1),  # flat, as in the message
                actions=actions[part],
                flags=flags[part],
                **{name: values[part] for name, values in rows.items()},
            )
        )
    return batches, env_rewards


def test_flags_match_the_message_definition() -> None:
    msg = pytest.importorskip("mm_msgs.msg")
    assert (FLAG_EPISODE_START, FLAG_FAULT, FLAG_POLICY, FLAG_GUARD) == (
        msg.TransitionBatch.FLAG_EPISODE_START,
        msg.TransitionBatch.FLAG_FAULT,
        msg.TransitionBatch.FLAG_POLICY,
        msg.TransitionBatch.FLAG_GUARD,
    )


@pytest.mark.parametrize("objective", ["accuracy", "speed", "energy", "smooth", "speed:0.7,energy:0.3"])
def test_rewards_from_streamed_columns_equal_the_twins_rewards(objective: str) -> None:
    batches, env_rewards = _servo_stream(objective, ticks=600)
    learner = OnlineLearner(objective=objective, hyperparameters={"buffer_size": 1000})
    for batch in batches:
        learner.add_batch(batch)
    # Transitions across batch boundaries are bridged; those into an episode start are not transitions.
    episode_starts = sum(int(np.sum(b.flags & FLAG_EPISODE_START > 0)) for b in batches) - 1
    assert learner.transitions == 600 - 1 - episode_starts
    stored = learner.model.replay_buffer.rewards[: learner.transitions, 0]
    expected = [
        r
        for k, r in enumerate(env_rewards[:-1])
        if not batches[(k + 1) // MAX_SAMPLES].flags[(k + 1) % MAX_SAMPLES] & FLAG_EPISODE_START
    ]
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-9)


def test_faults_episode_starts_and_gaps_drop_transitions() -> None:
    batches, _ = _servo_stream("accuracy", ticks=48)
    first, second = batches
    faulty = dataclasses.replace(first, flags=np.where(np.arange(24) == 10, FLAG_FAULT, 0).astype(np.uint8))
    learner = OnlineLearner(objective="accuracy", hyperparameters={"buffer_size": 100})
    # 23 transitions in 24 samples; the faulty sample 10 ends one and starts another.
    assert learner.add_batch(faulty) == 21
    # A batch that does not continue the previous one (a tick was lost) is not bridged.
    gap = dataclasses.replace(second, first_tick=second.first_tick + 1)
    assert learner.add_batch(gap) == 23


def test_ticks_the_guard_drove_are_no_decisions() -> None:
    """From sample 15 on the guard drove (servo contract section 4): only the 14 transitions before it are stored,
    and the one that ends on the first guarded sample (its action was the policy's) is one of them.
    """
    (first, _), _ = _servo_stream("accuracy", ticks=48)
    guarded = dataclasses.replace(first, flags=np.where(np.arange(24) >= 15, FLAG_GUARD, 0).astype(np.uint8))
    learner = OnlineLearner(objective="accuracy", hyperparameters={"buffer_size": 100})
    assert learner.add_batch(guarded) == 15


def test_decisions_of_k_ticks_sum_the_twins_rewards_from_each_episode_start() -> None:
    k, scale = 10, 10.0
    batches, env_rewards = _servo_stream("accuracy", ticks=600, decimation=k)  # 0.25 s episodes: 250 ticks
    learner = OnlineLearner(
        objective="accuracy", hyperparameters={"buffer_size": 1000}, policy_decimation=k, reward_scale=scale
    )
    for batch in batches:
        learner.add_batch(batch)
    obs = np.concatenate([b.observations for b in batches])
    # Episodes start at ticks 0, 250 and 500; a decision needs k + 1 samples of its episode: 24 + 24 + 9.
    firsts = [e + j for e in (0, 250, 500) for j in range(0, 250, k) if e + j + k < min(e + 250, 600)]
    assert learner.transitions == len(firsts) == 57
    buffer = learner.model.replay_buffer
    np.testing.assert_array_equal(buffer.observations[:57, 0], obs[firsts])
    np.testing.assert_array_equal(buffer.next_observations[:57, 0], obs[[f + k for f in firsts]])
    expected = [scale * sum(env_rewards[f : f + k]) for f in firsts]
    np.testing.assert_allclose(buffer.rewards[:57, 0], expected, rtol=1e-5, atol=1e-9)


def test_windows_whose_action_changes_are_no_decisions() -> None:
    ramp = np.linspace(-0.5, 0.5, MAX_SAMPLES, dtype=np.float32)  # a new action every tick
    batches = [dataclasses.replace(b, actions=ramp) for b in _servo_stream("accuracy", ticks=48)[0]]
    pid = [dataclasses.replace(b, flags=b.flags & ~np.uint8(FLAG_POLICY)) for b in batches]
    learner = OnlineLearner(objective="accuracy", hyperparameters={"buffer_size": 100}, policy_decimation=4)
    assert learner.add_batch(pid[0]) == 0 and learner.add_batch(pid[1]) == 0, "PID ticks: nothing held"
    learner = OnlineLearner(objective="accuracy", hyperparameters={"buffer_size": 100}, policy_decimation=4)
    with pytest.raises(TransitionError, match="changed its action within a decision of 4 ticks"):
        learner.add_batch(batches[0])


def test_malformed_batches_are_refused_with_the_reason() -> None:
    columns = {k: np.zeros(3) for k in ("position_rad", "velocity_rad_s", "current_a", "target_rad", "power_w")}
    good = {
        "first_tick": 0,
        "dt_s": 1e-3,
        "observations": np.zeros(24),
        "actions": np.zeros(3),
        "flags": np.zeros(3),
    } | columns
    TransitionColumns.from_arrays(**good)
    with pytest.raises(TransitionError, match="observations hold 16 values for 3 samples"):
        TransitionColumns.from_arrays(**good | {"observations": np.zeros(16)})
    with pytest.raises(TransitionError, match="differ in length"):
        TransitionColumns.from_arrays(**good | {"power_w": np.zeros(2)})
    with pytest.raises(TransitionError, match="NaN or infinite"):
        TransitionColumns.from_arrays(**good | {"current_a": np.array([0.0, np.nan, 0.0])})
    with pytest.raises(TransitionError, match=r"in \[-1, 1\]"):
        TransitionColumns.from_arrays(**good | {"actions": np.array([0.0, 1.5, 0.0])})
    with pytest.raises(TrainingError, match="off-policy algorithm"):
        OnlineLearner(objective="accuracy", algorithm="ppo")
    with pytest.raises(TrainingError, match="policy_decimation=0 must be >= 1"):
        OnlineLearner(objective="accuracy", policy_decimation=0)


@pytest.mark.parametrize("algorithm", ["sac", "td3", "ddpg"])
def test_gradient_steps_on_streamed_transitions_change_the_actor(
    algorithm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    batches, _ = _servo_stream("accuracy", ticks=480)
    learner = OnlineLearner(objective="accuracy", algorithm=algorithm, hyperparameters={"buffer_size": 1000})
    with pytest.raises(TrainingError, match="transitions stored"):
        learner.train(gradient_steps=1)
    for batch in batches:
        learner.add_batch(batch)
    actor = learner.model.policy.actor
    before = [p.detach().clone() for p in actor.parameters()]
    losses = learner.train(gradient_steps=20, batch_size=64)
    assert learner.gradient_steps == 20
    assert all(np.isfinite(v) for v in losses.values()) and "train/critic_loss" in losses
    assert any(not torch.equal(b, a) for b, a in zip(before, actor.parameters(), strict=True))
    assert not list(temp.glob("SB3-*")), "the learner's logger left a folder in the temp directory"
