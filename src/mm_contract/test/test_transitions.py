"""The decision rules (mm_contract.transitions) that the online learner and the bag dataset share."""

from __future__ import annotations

import numpy as np
import pytest
from mm_contract.errors import TransitionError
from mm_contract.transitions import (
    FLAG_EPISODE_START,
    FLAG_FAULT,
    FLAG_GUARD,
    FLAG_POLICY,
    TransitionColumns,
    concatenate,
    decision_rewards,
    decisions,
    first_decision,
    reward_terms,
)


def columns(flags: list[int], actions: list[float] | None = None, first_tick: int = 100) -> TransitionColumns:
    n = len(flags)
    return TransitionColumns.from_arrays(
        first_tick=first_tick,
        dt_s=0.001,
        observations=np.zeros((n, 8)),
        actions=actions if actions is not None else np.zeros(n),
        position_rad=np.linspace(0.0, 1.0, n),
        velocity_rad_s=np.ones(n),
        current_a=np.full(n, 0.5),
        target_rad=np.ones(n),
        power_w=np.full(n, 2.0),
        flags=flags,
    )


def test_every_tick_decides_at_decimation_one() -> None:
    kept, next_start = decisions(columns([0] * 6), 1, 0)
    assert kept.tolist() == [0, 1, 2, 3, 4] and next_start == 5


def test_faults_guards_and_episode_starts_break_transitions() -> None:
    flags = [0, 0, FLAG_FAULT, 0, FLAG_GUARD, 0, FLAG_EPISODE_START, 0]
    kept, _ = decisions(columns(flags), 1, 0)
    # 1->2 and 2->3 touch the fault; 4->5 starts on a guard-driven tick; 5->6 ends in a new episode
    assert kept.tolist() == [0, 3, 6]


def test_decisions_start_at_an_episode_start_and_follow_every_k_ticks() -> None:
    flags = [0, 0, FLAG_EPISODE_START | FLAG_POLICY] + [FLAG_POLICY] * 9
    actions = [0.0, 0.0] + [0.1] * 3 + [0.2] * 3 + [0.3] * 3 + [0.4]
    batch = columns(flags, actions)
    start = first_decision(batch, 3)
    kept, next_start = decisions(batch, 3, start)
    assert start == 2 and kept.tolist() == [2, 5, 8] and next_start == 11  # 11 needs ticks 12..14 first


def test_a_policy_that_changes_its_action_within_a_decision_is_refused() -> None:
    flags = [FLAG_EPISODE_START | FLAG_POLICY] + [FLAG_POLICY] * 5
    with pytest.raises(TransitionError, match="changed its action within a decision of 3 ticks"):
        decisions(columns(flags, [0.1, 0.2, 0.1, 0.1, 0.1, 0.1]), 3, 0)
    with pytest.raises(TransitionError, match="decimation 0"):
        decisions(columns(flags), 0, 0)


def test_a_pid_window_whose_action_changes_is_skipped_not_refused() -> None:
    flags = [FLAG_EPISODE_START] + [0] * 5
    kept, next_start = decisions(columns(flags, [0.1, 0.2, 0.3, 0.4, 0.4, 0.4]), 3, 0)
    assert kept.tolist() == [] and next_start == 3  # 0..2 changes (the PID drove it); 3..5 needs tick 6 first


def test_batches_join_only_when_consecutive() -> None:
    first, second = columns([0] * 4), columns([0] * 3, first_tick=104)
    joined = concatenate(first, second)
    assert joined.count == 7 and joined.first_tick == 100
    with pytest.raises(TransitionError, match="not consecutive"):
        concatenate(first, columns([0] * 3, first_tick=105))
    assert joined.samples_from(5).first_tick == 105


def test_decision_rewards_sum_the_ticks_of_each_decision() -> None:
    batch = columns([0] * 7)
    rewards, terms = reward_terms({"accuracy": 1.0}, batch)
    assert len(rewards) == 6 and np.allclose(rewards, terms["accuracy"])
    kept = np.array([0, 3])
    assert np.allclose(decision_rewards(rewards, kept, 3), [rewards[0:3].sum(), rewards[3:6].sum()])
    assert np.allclose(decision_rewards(rewards, kept, 1), rewards[kept])
