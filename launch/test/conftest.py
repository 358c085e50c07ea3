"""Fixtures of the bringup tests: mm_bringup importable from the source tree, a fake install for ROS-free tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bringup_support import FakeInstall


@pytest.fixture
def fake_install(tmp_path: Path) -> FakeInstall:
    """The project's packages installed under tmp_path (no optional ROS packages)."""
    install = FakeInstall(tmp_path / "install")
    install.add("mm_sim", "virtual_servo")
    install.add("mm_driver", "driver")
    install.add("mm_learning", "learner")
    install.add("mm_bringup")
    return install


@pytest.fixture
def fake_urdf() -> Callable[[str, str, str], str]:
    """A robot description builder that names its inputs, so tests see which profile, load and joint were used."""
    return lambda profile, load, joint: f"<robot name='{profile}/{load}/{joint}'/>"
