"""Runs the core's cmocka unit tests (ctest) from the build directory and requires every one to pass."""

from __future__ import annotations

from mm_testing.ctest_support import run_ctest
from mm_testing.fw_support import BUILD_DIR


def test_cmocka_unit_tests_pass() -> None:
    """Every mode and limit, watchdog, fault latch/clear, policy refusals, reassembly, ISO-TP, samples, CAN."""
    output = run_ctest(
        BUILD_DIR, "build firmware/core with -DBUILD_TESTING=ON (make build) or set MM_FIRMWARE_BUILD_DIR"
    )
    assert "100% tests passed" in output
    assert "tests passed, 0 tests failed out of 6" in output
