"""The one-goal rule of the learner's Train server, on plain handles and threads (no ROS)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from mm_ros.single_goal import SingleGoal


@dataclass
class Handle:
    name: str
    is_active: bool = True
    is_cancel_requested: bool = False


def _slot(wait_s: float = 5.0) -> SingleGoal[Handle]:
    return SingleGoal(wait_s, lambda handle: f"goal {handle.name}")


def test_one_goal_runs_and_a_second_is_busy_until_the_first_is_released() -> None:
    slot, first, second = _slot(), Handle("a"), Handle("b")
    assert slot.acquire(first) == "" and slot.running is first
    assert slot.acquire(second) == "busy: goal a is running; cancel it or wait for its result"
    assert slot.running is first  # a refused goal leaves the running one alone
    slot.release(second)  # not the holder: nothing changes
    assert slot.running is first
    slot.release(first)
    assert slot.running is None and slot.acquire(second) == ""


def test_a_goal_whose_state_is_set_no_longer_blocks() -> None:
    slot, first, second = _slot(), Handle("a"), Handle("b")
    slot.acquire(first)
    first.is_active = False  # succeeded/aborted, its execute callback not yet returned
    assert slot.acquire(second) == "" and slot.running is second


def test_a_goal_sent_while_one_is_cancelled_waits_for_it_and_runs() -> None:
    slot, first, second = _slot(), Handle("a"), Handle("b")
    slot.acquire(first)
    first.is_cancel_requested = True
    outcome: list[str] = []
    waiter = threading.Thread(target=lambda: outcome.append(slot.acquire(second)))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive() and slot.running is first  # still waiting for the cancelled goal to stop
    first.is_active = False
    slot.release(first)
    waiter.join(timeout=5.0)
    assert outcome == [""] and slot.running is second


def test_the_wait_for_a_cancelled_goal_is_bounded() -> None:
    slot, first = _slot(wait_s=0.2), Handle("a", is_cancel_requested=True)
    slot.acquire(first)
    started = time.monotonic()
    assert slot.acquire(Handle("b")).startswith("busy: goal a")
    assert 0.2 <= time.monotonic() - started < 2.0
