"""Messages and actions of mm_msgs travel between separate processes over DDS (inside the test namespace)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
import rclpy
from mm_testing.ros_support import ros_context, spin_until, stop_process
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

PEER = Path(__file__).with_name("_peer_nodes.py")
DISCOVERY_TIMEOUT_S = 30.0


@pytest.fixture
def context() -> Iterator[Context]:
    """An isolated rclpy context for one test."""
    with ros_context() as ctx:
        yield ctx


def _start_peer(role: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(PEER), role, "--lifetime", "90"])


@pytest.mark.ros
def test_servo_state_crosses_processes(context: Context) -> None:
    from mm_msgs.msg import ServoCommand, ServoState

    peer = _start_peer("talker")
    try:
        node = rclpy.create_node("state_listener", context=context)
        received: list[ServoState] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        node.create_subscription(ServoState, "state", received.append, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin_until(executor, lambda: len(received) >= 20, "20 ServoState messages", DISCOVERY_TIMEOUT_S)
        seqs = [m.seq for m in received]
        assert seqs == sorted(seqs), "messages from one publisher arrived out of order"
        assert all(m.mode == ServoCommand.MODE_POSITION for m in received)
        assert all(m.position_rad == pytest.approx(m.seq / 1000.0, abs=1e-6) for m in received)
    finally:
        stop_process(peer, timeout_s=10.0)


def _send_goal(
    executor: SingleThreadedExecutor,
    client: ActionClient,
    goal: Any,
    feedback_callback: Callable[[Any], None] | None = None,
    *,
    attempts: int = 3,
    response_timeout_s: float = 10.0,
) -> ClientGoalHandle:
    """Send `goal` and spin until the server answers; resend it (under a new goal id) when no answer comes.

    A goal request is a DDS service call. Fast DDS drops the response when the server has not yet matched the
    client's response reader (the server logs "failed to send response (timeout)"), and on a loaded machine that
    match can come after the client already sees the server (`server_is_ready`). The server may have accepted the
    lost goal; this test's server runs one goal at a time, so a resent goal only waits for it.
    """
    for _ in range(attempts):
        future = client.send_goal_async(goal, feedback_callback=feedback_callback)
        executor.spin_until_future_complete(future, timeout_sec=response_timeout_s)
        if future.done():
            handle = future.result()
            assert handle is not None
            return handle
    raise AssertionError(f"no goal response in {attempts} tries of {response_timeout_s} s")


@pytest.mark.ros
def test_train_action_crosses_processes(context: Context) -> None:
    from mm_msgs.action import Train

    peer = _start_peer("action_server")
    try:
        node = rclpy.create_node("train_client", context=context)
        # The peer's feedback writer is transient-local (_peer_nodes.FEEDBACK_QOS): a reader matched after the
        # goal ran still gets every feedback, because this reader asks for it the same way.
        feedback_qos = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        client = ActionClient(node, Train, "train", feedback_sub_qos_profile=feedback_qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spin_until(executor, client.server_is_ready, "the Train action server", DISCOVERY_TIMEOUT_S)

        feedback: list[Train.Feedback] = []
        handle = _send_goal(
            executor, client, Train.Goal(objective="energy", max_steps=500), lambda f: feedback.append(f.feedback)
        )
        assert handle.accepted
        # Every feedback before the result is asked for: rclpy's ActionClient drops a goal's feedback callback
        # when its result arrives, and feedback travels on its own topic, so a feedback still in flight (or
        # queued behind the result in one executor pass) would never reach the callback.
        spin_until(executor, lambda: any(f.steps == 300 for f in feedback), "the last feedback message", 30.0)
        result_future = handle.get_result_async()
        executor.spin_until_future_complete(result_future, timeout_sec=20)
        result = result_future.result()
        assert result is not None
        assert result.result.success and result.result.message == "trained for energy"
        assert result.result.metrics[0].value == 500.0
        steps = [f.steps for f in feedback]
        assert steps == sorted(set(steps)) and set(steps) <= {100, 200, 300}, f"feedback steps {steps}"

        assert not _send_goal(executor, client, Train.Goal(objective="teleport")).accepted
    finally:
        stop_process(peer, timeout_s=10.0)
