"""A node process's ROS lifetime (mm_ros.process): a signal ends it with exit code 0 wherever it lands, and an
error of the process's own still propagates. rclpy's signal handler is simulated by shutting the context down
at the point where Ctrl-C was seen to land (fresh-clone e2e runs: the executor's wait set, the final
try_shutdown).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("rclpy")
import rclpy
from mm_ros.process import rclpy_process
from rclpy._rclpy_pybind11 import RCLError


def test_an_error_after_ctrl_c_shut_the_context_down_is_the_shutdown() -> None:
    with rclpy_process([]):
        rclpy.shutdown()  # what the SIGINT handler does, from its own thread
        raise RCLError("failed to initialize wait set: the given context is not valid")
    assert not rclpy.ok()


def test_an_error_while_the_context_is_up_propagates_and_rclpy_still_goes_down() -> None:
    with pytest.raises(RCLError, match="wait set"), rclpy_process([]):
        raise RCLError("failed to initialize wait set")
    assert not rclpy.ok()


def test_ctrl_c_between_the_check_and_the_call_of_try_shutdown_is_the_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = rclpy.try_shutdown

    def racing(**kwargs: Any) -> None:
        rclpy.shutdown()  # the signal handler got there first
        raise RCLError("failed to shutdown: rcl_shutdown already called on the given context")

    monkeypatch.setattr(rclpy, "try_shutdown", racing)
    with rclpy_process([]):
        pass
    monkeypatch.setattr(rclpy, "try_shutdown", real)
    assert not rclpy.ok()


def test_keyboard_interrupt_ends_the_process_quietly() -> None:
    with rclpy_process([]):
        raise KeyboardInterrupt
    assert not rclpy.ok()
