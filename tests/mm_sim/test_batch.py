"""The batched twin (mm_sim.batch) against the single-servo env it vectorises, and its SB3 VecEnv."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mm_sim.baselines import PidController, PidGains, tuned_gains
from mm_sim.batch import BatchTwin, Schedule, ScheduleVecEnv, evaluate_batch
from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import evaluate, seeded_moves
from mm_sim.profiles import load_profile


def _quiet(profile_name: str) -> object:
    """The profile with its sensing noise off, so batch and env see the same readings."""
    profile = load_profile(profile_name)
    return dataclasses.replace(
        profile, sensing=dataclasses.replace(profile.sensing, encoder_noise_counts=0.0, current_noise_a=0.0)
    )


@pytest.mark.parametrize(("profile_name", "load"), [("mm_v3", "pendulum"), ("mm_minimal", "spring")])
def test_batch_reproduces_the_env_tick_for_tick_without_noise(profile_name: str, load: str) -> None:
    profile = _quiet(profile_name)
    gains = tuned_gains(load_profile(profile_name), load, "speed")
    moves = seeded_moves(3, seed=5, duration_s=0.3)
    env = ServoEnv(profile, load=load, objective="speed")
    expected = evaluate(env, PidController(gains), moves)
    twin = BatchTwin(profile, load, len(moves), objective="speed")
    got = evaluate_batch(twin, Schedule(gains, limit=0.0, decimation=1), moves)
    assert got.returns == pytest.approx(expected.returns, rel=1e-12, abs=1e-12)
    for mine, theirs in zip(got.metrics, expected.metrics, strict=True):
        assert mine == theirs


def test_ptos_base_and_schedule_ranges_shape_the_command() -> None:
    gains = tuned_gains(load_profile("mm_v3"), "pendulum", "speed")
    ptos = dataclasses.replace(gains, decel_rad_s2=150.0)
    moves = seeded_moves(4, seed=2)
    base = evaluate_batch(BatchTwin("mm_v3", "pendulum", 4, objective="speed"), Schedule(ptos, 0.5, 2), moves)
    zero = evaluate_batch(
        BatchTwin("mm_v3", "pendulum", 4, objective="speed"),
        Schedule(ptos, 0.5, 2),
        moves,
        policy=lambda obs: np.zeros(len(obs)),
    )
    assert zero.returns == base.returns  # r = 0 is the base law exactly
    pushed = evaluate_batch(
        BatchTwin("mm_v3", "pendulum", 4, objective="speed"),
        Schedule(ptos, 0.5, 2),
        moves,
        policy=lambda obs: np.ones(len(obs)),
    )
    assert pushed.returns != base.returns
    with pytest.raises(MmSimError, match="residual limit"):
        Schedule(ptos, 1.5, 2)


def test_schedule_vec_env_steps_decisions_and_truncates_episodes() -> None:
    gains = PidGains(kp_pos=30.0, v_max=14.0, kp_vel=4.0, ki_vel=50.0, gravity_ff_a=1.2)
    env = ScheduleVecEnv(BatchTwin("mm_v3", "pendulum", 5, objective="speed"), Schedule(gains, 0.3, 10), episode_s=0.05)
    observation = env.reset()
    assert observation.shape == (5, 8) and observation.dtype == np.float32
    for step in range(5):
        observation, reward, done, infos = env.step(np.full((5, 1), 0.5, dtype=np.float32))
        assert reward.shape == (5,) and np.all(reward <= 0.0)
        assert done.all() == (step == 4)
    assert infos[0]["TimeLimit.truncated"] and infos[0]["terminal_observation"][6] == pytest.approx(0.5)
    assert observation[0, 6] == 0.0  # a new episode starts with no previous residual
