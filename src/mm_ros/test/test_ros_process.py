"""A node process's ROS lifetime (mm_ros.process): a signal ends it with exit code 0 wherever it lands, and an
error of the process's own still propagates. rclpy's signal handler is simulated by shutting the context down
at the point where Ctrl-C was seen to land (fresh-clone e2e runs: the executor's wait set, the final
try_shutdown).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

pytest.importorskip("rclpy")
import rclpy
from mm_ros.process import rclpy_process, spin_until
from rclpy._rclpy_pybind11 import RCLError
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Empty


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


def _spin_a_publisher_that_shuts_down(*, shut_down: bool) -> None:
    """spin_until over a timer whose callback (as the driver's receive thread does) publishes; with `shut_down`
    Ctrl-C has shut the context down just before the publish.
    """
    context = Context()
    rclpy.init(args=[], context=context)
    node = Node("publishes_in_a_callback", context=context, start_parameter_services=False)
    publisher = node.create_publisher(Empty, "spin_until_test", 1)

    def tick() -> None:
        if shut_down:
            context.shutdown()
        publisher.publish(Empty())
        raise RCLError("the context is up and publishing failed anyway")

    node.create_timer(0.01, tick)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        spin_until(executor, threading.Event())
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def test_a_publish_that_ctrl_c_made_fail_ends_spin_until_quietly() -> None:
    _spin_a_publisher_that_shuts_down(shut_down=True)


def test_an_error_of_a_callback_while_the_context_is_up_propagates_from_spin_until() -> None:
    with pytest.raises(RCLError, match="the context is up"):
        _spin_a_publisher_that_shuts_down(shut_down=False)
