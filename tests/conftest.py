"""Fixtures shared by the whole suite."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

# A test session started from a background job of a non-interactive shell inherits SIGINT as ignored, and so
# would every node process the tests start (an ignored signal stays ignored across exec): they could then not be
# stopped or frozen the way a terminal's Ctrl-C does. A handler is reset to the default on exec, so installing
# Python's own here gives every child the default SIGINT disposition again.
signal.signal(signal.SIGINT, signal.default_int_handler)

_MEASUREMENTS: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a measurement line that is printed in the terminal summary (sizes, rates, errors)."""
    return _MEASUREMENTS.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every measurement the tests recorded, so a CI log shows the numbers behind the assertions."""
    if _MEASUREMENTS:
        terminalreporter.section("measurements")
        for line in _MEASUREMENTS:
            terminalreporter.write_line(line)
