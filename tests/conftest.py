"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# tests/ros_support.py (helpers of the cross-process ROS tests) is importable from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))

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
