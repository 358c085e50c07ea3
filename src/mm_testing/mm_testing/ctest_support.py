"""Running a CMake build's ctest from the Python suite (the firmware core's cmocka tests, mm_hardware's C++ tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def run_ctest(build_dir: Path, how_to_build: str) -> str:
    """Run the compiled tests of `build_dir`'s ctest and return its output; fail with `how_to_build` without a build.

    The ctest named `pytest` (how `colcon test` runs the package's Python tests) is left out: `make test` runs
    those itself. Fails the calling test when a test fails (with ctest's output).
    """
    if not (build_dir / "CTestTestfile.cmake").is_file():
        pytest.fail(f"no ctest build in {build_dir}: {how_to_build}", pytrace=False)
    ctest = shutil.which("ctest")
    assert ctest is not None, "ctest (cmake) is not installed"
    result = subprocess.run(
        [ctest, "--output-on-failure", "--timeout", "60", "--exclude-regex", "^pytest$"],
        cwd=build_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
