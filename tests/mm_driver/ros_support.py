"""Processes and an in-process ROS client for the driver's cross-process tests."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile


@contextmanager
def process(args: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m <args>` with its output in log_path; terminate it at the end."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def twin_args(namespace: str, **params: Any) -> list[str]:
    """Arguments of a virtual servo (mm_sim.twin_node) in `namespace`."""
    args = ["mm_sim.twin_node", "--ros-args", "-r", f"__ns:={namespace}"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return args


def driver_args(namespace: str, params_file: Path) -> list[str]:
    """Arguments of the driver node in `namespace` with a parameter file."""
    return ["mm_driver.driver_node", "--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(params_file)]


class Client:
    """A node in its own context, spun in a background thread; collects topic messages and runs actions."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.cond = threading.Condition()
        self.messages: dict[str, list[Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # spin_once in a loop that close() ends first: shutting an executor down under spin() races its
        # guard conditions (rclpy raises from the spinning thread).
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type: Any, topic: str, qos: QoSProfile | int = 10) -> list[Any]:
        """Start collecting messages on `topic`; returns the live list."""
        box: list[Any] = self.messages.setdefault(topic, [])

        def on_msg(msg: Any) -> None:
            with self.cond:
                box.append(msg)
                self.cond.notify_all()

        self.node.create_subscription(msg_type, topic, on_msg, qos)
        return box

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Block until predicate() holds (checked whenever a message arrives)."""
        with self.cond:
            assert self.cond.wait_for(predicate, timeout_s), f"timed out after {timeout_s} s waiting for {what}"

    def action(self, action_type: Any, name: str) -> ActionClient:
        """An action client, once its server is up."""
        client = ActionClient(self.node, action_type, name)
        assert client.wait_for_server(timeout_sec=30.0), f"action server {name} did not come up"
        return client

    def call(
        self,
        client: ActionClient,
        goal: Any,
        *,
        timeout_s: float = 60.0,
        feedback: list[Any] | None = None,
        on_accepted: Callable[[Any], None] | None = None,
    ) -> tuple[bool, Any, int]:
        """Send a goal; returns (accepted, result, status) — result None when rejected."""

        def on_feedback(msg: Any) -> None:
            if feedback is not None:
                feedback.append(msg.feedback)

        handle = wait(client.send_goal_async(goal, feedback_callback=on_feedback), timeout_s)
        if not handle.accepted:
            return False, None, 0
        if on_accepted is not None:
            on_accepted(handle)
        response = wait(handle.get_result_async(), timeout_s)
        return True, response.result, response.status

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def wait(future: Any, timeout_s: float) -> Any:
    """The result of an rclpy future completed by the client's executor thread."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout_s), f"no answer within {timeout_s} s"
    return future.result()


def stamp_s(stamp: Any) -> float:
    """builtin_interfaces/Time in seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def write_params(path: Path, node: str, params: dict[str, Any]) -> Path:
    """A ROS parameter file (JSON is YAML) for `node`."""
    import json

    path.write_text(json.dumps({node: {"ros__parameters": params}}))  # node "/**" matches any namespace
    return path
