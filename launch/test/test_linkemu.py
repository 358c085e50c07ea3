"""mm_bringup.linkemu's delay line: frames come out after the delay, in order, and are lost at the set rate."""

from __future__ import annotations

import random

import pytest
from mm_bringup.linkemu import DelayLine


def test_frames_come_out_after_the_delay_in_order_per_output() -> None:
    line = DelayLine(delay_s=0.025, loss=0.0, rng=random.Random(0))
    line.push(b"a", 1, now=10.0)
    line.push(b"b", 2, now=10.001)
    line.push(b"c", 1, now=10.001)
    assert line.due(10.024) == []
    assert line.wait_s(10.024) == pytest.approx(0.001)
    assert line.due(10.025) == [(1, b"a")]
    assert line.due(10.030) == [(2, b"b"), (1, b"c")]
    assert line.forwarded == 3 and line.dropped == 0
    assert line.wait_s(10.030) == 0.1, "nothing queued: wait at most the poll interval"


def test_losses_follow_the_rate() -> None:
    line = DelayLine(delay_s=0.0, loss=0.01, rng=random.Random(1))
    for _ in range(100_000):
        line.push(b"x", 1, now=0.0)
    assert 800 <= line.dropped <= 1200
    assert len(line.due(0.0)) == 100_000 - line.dropped
