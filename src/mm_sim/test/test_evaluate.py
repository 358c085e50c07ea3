"""Evaluation: reproducible moves, and any policy function judged like the baselines."""

import numpy as np
import pytest
from mm_sim.evaluate import Move, PolicyController, evaluate, run_move, seeded_moves

from mm_sim import ServoEnv


def test_seeded_moves_reproduce_and_keep_their_minimum_distance() -> None:
    moves = seeded_moves(50, seed=3, range_rad=2.0, min_distance_rad=0.5)
    assert moves == seeded_moves(50, seed=3, range_rad=2.0, min_distance_rad=0.5)
    assert moves != seeded_moves(50, seed=4, range_rad=2.0, min_distance_rad=0.5)
    assert all(
        abs(m.target_rad - m.start_rad) >= 0.5 and max(abs(m.start_rad), abs(m.target_rad)) <= 2.0 for m in moves
    )


def test_a_policy_of_the_observation_is_evaluated_like_any_controller() -> None:
    """A proportional-derivative policy on the observation features settles a balanced disc."""
    env = ServoEnv("gimbal_bldc", load="inertia_disk")

    def policy(observation: np.ndarray) -> np.ndarray:
        return np.clip(20.0 * observation[0] + 2.0 * observation[1] - 120.0 * observation[2], -1, 1)

    result = evaluate(env, PolicyController(policy), [Move(0.0, 1.0, 1.0), Move(0.5, -0.5, 1.0)])
    summary = result.summary()
    assert summary["settled_fraction"] == 1.0
    assert len(result.returns) == 2 and all(r < 0 for r in result.returns)


def test_run_move_records_every_tick_of_the_move() -> None:
    env = ServoEnv("mm_v3", load="pendulum")
    response, total = run_move(env, PolicyController(lambda o: np.zeros(1)), Move(0.2, 0.2, 0.3), seed=0)
    assert len(response.time_s) == 300
    assert response.time_s[-1] == pytest.approx(0.3)
    assert np.all(response.target_rad == 0.2)
    assert total < 0.0  # it swings away under gravity
