"""The pytest plugin of the workspace's tests (registered as entry point `pytest11`, so `make test` and
`colcon test` load it alike): the `report` fixture and the measurements it collects.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

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
