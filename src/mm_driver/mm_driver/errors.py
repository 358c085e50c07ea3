"""The driver's exception types: every message says what was wrong and what to do."""

from __future__ import annotations


class DriverError(Exception):
    """Anything the driver cannot do (bad parameter, unreachable bus, unknown policy)."""


class GoalRejected(DriverError):  # noqa: N818 -- the name reads as the outcome callers catch
    """A MoveTo goal the driver refuses; the message is the reason given to the user."""
