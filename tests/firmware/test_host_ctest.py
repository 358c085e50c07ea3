"""Runs the core's cmocka unit tests (ctest) from the build directory and requires every one to pass."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from fw_support import BUILD_DIR


def test_cmocka_unit_tests_pass() -> None:
    """Every mode and limit, watchdog, fault latch/clear, policy refusals, reassembly, ISO-TP, samples, CAN."""
    if not (BUILD_DIR / "CTestTestfile.cmake").is_file():
        pytest.fail(
            f"no ctest build in {BUILD_DIR}: build firmware/core with -DBUILD_TESTING=ON (make build) or set "
            "MM_FIRMWARE_BUILD_DIR",
            pytrace=False,
        )
    ctest = shutil.which("ctest")
    assert ctest is not None, "ctest (cmake) is not installed"
    result = subprocess.run(
        [ctest, "--output-on-failure", "--timeout", "60"],
        cwd=BUILD_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout
    assert "tests passed, 0 tests failed out of 6" in result.stdout
