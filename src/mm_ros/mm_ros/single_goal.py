"""One running goal per action server, tracked by its goal handle (ROS-free logic, unit-tested without ROS).

As ros2/examples' single-goal action server (``minimal_action_server_single_goal``) does, the server keeps the
handle of the goal that runs, under a lock, and asks the handle whether it is still active; unlike that example,
a new goal does not preempt a running one (a training run is minutes of work): it is refused as busy, unless the
running goal is being cancelled, in which case the new goal waits for it to stop and then runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class GoalHandle(Protocol):
    """What the rule reads of a goal handle (rclpy's ``ServerGoalHandle`` has both)."""

    @property
    def is_active(self) -> bool:
        """Accepted, executing or canceling: the goal has no final state yet."""
        ...

    @property
    def is_cancel_requested(self) -> bool:
        """A client asked to cancel the goal."""
        ...


H = TypeVar("H", bound=GoalHandle)


class SingleGoal(Generic[H]):
    """The slot of the one goal that runs.

    Args:
        stopping_wait_s: how long a new goal waits for a cancelled goal to finish stopping (s, wall time).
        describe: how a busy reason names the running goal (e.g. its goal id).
    """

    def __init__(self, stopping_wait_s: float, describe: Callable[[H], str]) -> None:
        self.stopping_wait_s = stopping_wait_s
        self._describe = describe
        self._changed = threading.Condition()
        self._handle: H | None = None

    @property
    def running(self) -> H | None:
        """The handle of the goal that holds the slot (from a successful acquire to its release), or None."""
        with self._changed:
            return self._handle

    @staticmethod
    def _runs(handle: H | None) -> bool:
        return handle is not None and bool(handle.is_active)

    def acquire(self, handle: H) -> str:
        """Make ``handle`` the running goal: "" when it is, else why not ("busy: ..."); blocks while it waits.

        It waits (at most ``stopping_wait_s``) only when the running goal is being cancelled. A goal whose final
        state is set no longer counts, even before its release.
        """
        with self._changed:
            current = self._handle
            if self._runs(current) and current is not None and current.is_cancel_requested:
                self._changed.wait_for(lambda: not self._runs(self._handle), self.stopping_wait_s)
            current = self._handle
            if self._runs(current) and current is not None:
                return f"busy: {self._describe(current)} is running; cancel it or wait for its result"
            self._handle = handle
            return ""

    def release(self, handle: H) -> None:
        """``handle``'s goal has ended (call it whether or not its state was set yet): a waiting goal may run."""
        with self._changed:
            if self._handle is handle:
                self._handle = None
            self._changed.notify_all()
