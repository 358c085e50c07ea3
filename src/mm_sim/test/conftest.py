"""Fixtures for mm_sim's tests."""

import os
from pathlib import Path

import pytest

import mm_sim


@pytest.fixture
def egl_subprocess_env() -> dict[str, str]:
    """Environment for a child Python that renders: MuJoCo reads MUJOCO_GL at import, so rendering tests run
    in a fresh interpreter with EGL (software rendering works without a display) and mm_sim importable.
    """
    package_root = str(Path(mm_sim.__file__).resolve().parents[1])
    return os.environ | {
        "MUJOCO_GL": "egl",
        "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    }
