"""The batched twin (mm_sim.batch) against the single-servo env it vectorises, and the servo's schedule mode."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from mm_contract.profiles import ServoProfile, load_profile
from mm_sim.baselines import PidController, PidGains, tuned_gains
from mm_sim.batch import BatchTwin, Schedule, evaluate_batch, rollout
from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import evaluate, seeded_moves


def _quiet(profile_name: str) -> ServoProfile:
    """The profile with its sensing noise off, so batch and env see the same readings."""
    profile = load_profile(profile_name)
    return dataclasses.replace(
        profile, sensing=dataclasses.replace(profile.sensing, encoder_noise_counts=0.0, current_noise_a=0.0)
    )


@pytest.mark.parametrize(
    ("profile_name", "load", "objective"),
    [("mm_v3", "pendulum", "speed"), ("mm_minimal", "spring", "smooth"), ("gimbal_bldc", "inertia_disk", "energy")],
)
def test_batch_reproduces_the_env_tick_for_tick_without_noise(profile_name: str, load: str, objective: str) -> None:
    profile = _quiet(profile_name)
    gains = tuned_gains(load_profile(profile_name), load, objective)
    moves = seeded_moves(3, seed=5, duration_s=0.3)
    expected = evaluate(ServoEnv(profile, load=load, objective=objective), PidController(gains), moves)
    got = evaluate_batch(BatchTwin(profile, load, len(moves), objective=objective), Schedule(gains, 0.0, 1), moves)
    assert got.returns == pytest.approx(expected.returns, rel=1e-12, abs=1e-15)
    assert got.metrics == expected.metrics


def _ptos() -> PidGains:
    return tuned_gains(load_profile("mm_v3"), "pendulum", "speed", law="ptos")


def test_a_zero_schedule_is_the_classical_law_and_a_positive_one_brakes_harder() -> None:
    moves = seeded_moves(6, seed=2)

    def run(policy: object = None) -> list[float]:
        twin = BatchTwin("mm_v3", "pendulum", len(moves), objective="speed")
        return evaluate_batch(twin, Schedule(_ptos(), 0.7, 2), moves, policy).returns  # type: ignore[arg-type]

    assert run(lambda obs: np.zeros(len(obs))) == run()
    harder = evaluate_batch(
        BatchTwin("mm_v3", "pendulum", len(moves), objective="speed"),
        Schedule(_ptos(), 0.7, 2),
        moves,
        lambda obs: np.ones(len(obs)),
    )
    base = evaluate_batch(
        BatchTwin("mm_v3", "pendulum", len(moves), objective="speed"), Schedule(_ptos(), 0.7, 2), moves
    )
    # Braking at 2x the planned deceleration arrives faster and overshoots more on every long move.
    long_moves = [i for i, m in enumerate(moves) if abs(m.target_rad - m.start_rad) > 1.0]
    assert long_moves
    for i in long_moves:
        assert harder.metrics[i].overshoot_rad > base.metrics[i].overshoot_rad


def test_schedules_are_validated() -> None:
    with pytest.raises(MmSimError, match="schedule range"):
        Schedule(_ptos(), 2.5, 2)
    with pytest.raises(MmSimError, match="decimation"):
        Schedule(_ptos(), 0.5, 0)
    with pytest.raises(MmSimError, match="decel_rad_s2 > 0"):
        Schedule(tuned_gains(load_profile("mm_v3"), "pendulum", "speed"), 0.5, 2)


def test_rollouts_are_seeded_and_record_every_decision() -> None:
    twin = BatchTwin("mm_v3", "pendulum", 4, objective="accuracy")
    start, target = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, -1.0, 2.0, 0.0])
    observations: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        return 0.1 * obs[:, 1]

    first = rollout(twin, Schedule(_ptos(), 0.5, 5), start, target, 100, policy=policy, seed=3, record=observations)
    again = rollout(twin, Schedule(_ptos(), 0.5, 5), start, target, 100, policy=policy, seed=3)
    other = rollout(twin, Schedule(_ptos(), 0.5, 5), start, target, 100, policy=policy, seed=4)
    assert np.array_equal(first.position_rad, again.position_rad)
    assert not np.array_equal(first.position_rad, other.position_rad)  # the sensing noise follows the seed
    assert len(observations) == 20 and observations[0].shape == (4, 8)
    assert first.command.shape == (100, 4) and np.all(np.abs(first.command) <= 1.0)


def test_evaluate_batch_needs_one_servo_per_move() -> None:
    with pytest.raises(MmSimError, match="one servo per move"):
        evaluate_batch(
            BatchTwin("mm_v3", "pendulum", 2, objective="speed"), Schedule(_ptos(), 0.0, 1), seeded_moves(3, seed=1)
        )


def test_rollout_outcomes_measure_energy_and_settle_as_the_step_metrics_do() -> None:
    moves = seeded_moves(6, seed=8, duration_s=0.21)  # some settle within 0.21 s, some do not
    twin = BatchTwin("mm_v3", "pendulum", len(moves), objective="energy")
    start, target = np.array([m.start_rad for m in moves]), np.array([m.target_rad for m in moves])
    run = rollout(twin, Schedule(_ptos(), 0.0, 1), start, target, 210, seed=2)
    energy_j, settle_s = run.outcomes(target, twin.dt_s, twin.tolerance_rad)
    metrics = evaluate_batch(twin, Schedule(_ptos(), 0.0, 1), moves, seed=2).metrics
    np.testing.assert_allclose(energy_j, [m.energy_j for m in metrics], rtol=1e-12)
    expected = [np.nan if m.settling_time_s is None else m.settling_time_s for m in metrics]
    np.testing.assert_allclose(settle_s, expected, rtol=1e-12)
    assert np.isnan(settle_s).any() and not np.isnan(settle_s).all()
