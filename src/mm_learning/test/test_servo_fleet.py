"""`online_session.ServoFleet`: several servos driven as one (deploy to all, moves spread, errors name the servo)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from mm_learning.errors import OnlineError
from mm_learning.online_session import Episode, ServoFleet


class FakeLink:
    """A servo link that records what it was asked, in which thread; `refuse` makes deploy/moves fail."""

    def __init__(self, crc: int = 7, refuse: str = "") -> None:
        self.crc, self.refuse = crc, refuse
        self.moves: list[float] = []
        self.threads: set[str] = set()
        self.held = False

    def deploy(self, image: bytes, metadata: Any) -> int:
        self.threads.add(threading.current_thread().name)
        if self.refuse:
            raise OnlineError(self.refuse)
        return self.crc

    def run_episode(self, episode: Episode) -> Any:
        self.threads.add(threading.current_thread().name)
        if self.refuse:
            raise OnlineError(self.refuse)
        self.moves.append(episode.target_rad)
        return episode.target_rad

    def hold(self) -> None:
        self.held = True
        if self.refuse:
            raise OnlineError(self.refuse)


def test_moves_are_spread_round_robin_and_come_back_in_order() -> None:
    links = [FakeLink(), FakeLink(), FakeLink()]
    fleet = ServoFleet(links)
    episodes = [Episode(target_rad=float(i), duration_s=0.5) for i in range(7)]
    assert fleet.run_moves(episodes) == [float(i) for i in range(7)]
    assert [link.moves for link in links] == [[0.0, 3.0, 6.0], [1.0, 4.0], [2.0, 5.0]]
    assert all(len(link.threads) == 1 and next(iter(link.threads)).startswith("servo") for link in links)
    assert len(fleet) == 3 and fleet.deploy(b"image", {}) == 7


def test_one_servo_runs_in_the_calling_thread() -> None:
    link = FakeLink()
    ServoFleet([link]).run_moves([Episode(target_rad=1.0, duration_s=0.5)])
    assert link.threads == {threading.current_thread().name}


def test_a_refusal_names_the_servo_and_the_servos_must_agree() -> None:
    fleet = ServoFleet([FakeLink(), FakeLink(refuse="bad signature")], names=["/servo1", "/servo2"])
    with pytest.raises(OnlineError, match=r"^/servo2: bad signature$"):
        fleet.deploy(b"image", {})
    with pytest.raises(OnlineError, match=r"different policies.*/servo1 0x00000007, /servo2 0x00000008"):
        ServoFleet([FakeLink(7), FakeLink(8)], names=["/servo1", "/servo2"]).deploy(b"image", {})


def test_hold_reaches_every_servo_even_when_one_fails() -> None:
    links = [FakeLink(refuse="gone"), FakeLink()]
    with pytest.raises(OnlineError, match=r"^servo0: gone$"):
        ServoFleet(links).hold()
    assert all(link.held for link in links)


def test_a_fleet_needs_servos_and_one_name_each() -> None:
    with pytest.raises(OnlineError, match="at least one servo"):
        ServoFleet([])
    with pytest.raises(OnlineError, match="1 names for 2 servos"):
        ServoFleet([FakeLink(), FakeLink()], names=["a"])
