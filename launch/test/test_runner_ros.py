"""A real start: `python -m mm_bringup.run sim` brings up one virtual servo, its driver and its learner.

Seen from another process over DDS: the three nodes appear in /servo1, the driver is active without a lifecycle
manager (bringup.yaml's autostart reached it: it publishes /servo1/joint_states), the argument-dependent
override reached it (its robot_description is built for `load:=inertia_disk`), and one SIGINT to the runner
stops every node cleanly (exit code 0, no process left).

Run inside the loopback-only namespace: tools/run_tests.sh launch/test/test_runner_ros.py
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
import rclpy
from mm_bringup.bringup import is_installed
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from mm_msgs.msg import ServoState

pytestmark = [pytest.mark.ros, pytest.mark.slow]

START_TIMEOUT_S = 120.0  # the learner imports TensorFlow and torch; two shared cores
STOP_TIMEOUT_S = 60.0
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Watcher:
    """A node in its own context that records what the bringup publishes in /servo1."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("bringup_watcher", context=self.context)
        self.cond = threading.Condition()
        self.joint_states = 0
        self.states = 0
        self.description = ""
        self.node.create_subscription(JointState, "/servo1/joint_states", self._on_joint_state, 10)
        self.node.create_subscription(ServoState, "/servo1/state", self._on_state, qos_profile_sensor_data)
        self.node.create_subscription(String, "/servo1/robot_description", self._on_description, LATCHED)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _on_joint_state(self, _: JointState) -> None:
        with self.cond:
            self.joint_states += 1
            self.cond.notify_all()

    def _on_state(self, _: ServoState) -> None:
        with self.cond:
            self.states += 1
            self.cond.notify_all()

    def _on_description(self, msg: String) -> None:
        with self.cond:
            self.description = msg.data
            self.cond.notify_all()

    def wait_for(self, what: str, predicate: Callable[[], bool], deadline: float) -> None:
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"timed out waiting for {what}"
                self.cond.wait(min(remaining, 0.5))

    def nodes(self) -> set[tuple[str, str]]:
        return set(self.node.get_node_names_and_namespaces())

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@contextmanager
def watcher() -> Iterator[Watcher]:
    """A Watcher that is closed at the end."""
    w = Watcher()
    try:
        yield w
    finally:
        w.close()


def test_runner_brings_up_sim_and_sigint_stops_every_node(tmp_path: Path, report: Callable[[str], None]) -> None:
    if not is_installed("mm_bringup"):
        pytest.fail("mm_bringup is not built: add `launch` to colcon's --base-paths and source install/setup.bash")
    command = [sys.executable, "-m", "mm_bringup.run", "sim", "servos:=1", "load:=inertia_disk", "rviz:=false"]
    lines: list[str] = []
    started_s = time.monotonic()
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert runner.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(runner.stdout or []), daemon=True)
    reader.start()
    try:
        with watcher() as w:
            deadline = started_s + START_TIMEOUT_S
            w.wait_for("/servo1/state", lambda: w.states >= 10, deadline)
            w.wait_for("/servo1/joint_states (driver active)", lambda: w.joint_states >= 10, deadline)
            first_joint_states_s = time.monotonic() - started_s
            w.wait_for("/servo1/robot_description", lambda: bool(w.description), deadline)
            expected = {("virtual_servo", "/servo1"), ("driver", "/servo1"), ("learner", "/servo1")}
            while not expected <= w.nodes():
                assert time.monotonic() < deadline, f"nodes seen: {sorted(w.nodes())}"
                with w.cond:
                    w.cond.wait(0.2)
            assert 'name="mm_servo_' in w.description and '_inertia_disk"' in w.description
        stop_started_s = time.monotonic()
        runner.send_signal(signal.SIGINT)
        code = runner.wait(STOP_TIMEOUT_S)
        reader.join(timeout=5.0)
        assert code == 0, "".join(lines)
        stop_s = time.monotonic() - stop_started_s
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        reader.join(timeout=5.0)
    output = "".join(lines)
    pids = [int(line.split(" pid ")[1].split(":")[0]) for line in lines if " started " in line]
    assert len(pids) == 3, output
    assert output.count("exited with code 0") == 3, output
    assert "still running" not in output, output
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    report(f"bringup sim (twin, driver, learner): joint_states after {first_joint_states_s:.1f} s, stop {stop_s:.1f} s")
