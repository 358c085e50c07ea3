"""Peer processes for the cross-process tests: a ServoState publisher and a Train action server.

Run as ``python _peer_nodes.py talker|action_server``; each exits by itself after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import time

import rclpy
from rclpy.action import ActionServer, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from mm_msgs.action import Train
from mm_msgs.msg import MetricValue, ServoCommand, ServoState

FEEDBACK_QOS = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Train feedback QoS on both sides: discovery is not symmetric, so the client may see the feedback publisher
before this side has matched its subscription; a transient-local writer hands a late reader what it missed."""


class Talker(Node):
    """Publishes ServoState at 100 Hz with increasing ``seq`` and ``position_rad = seq / 1000``."""

    def __init__(self) -> None:
        super().__init__("peer_talker")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._pub = self.create_publisher(ServoState, "state", qos)
        self._seq = 0
        self.create_timer(0.01, self._tick)

    def _tick(self) -> None:
        self._seq += 1
        self._pub.publish(ServoState(seq=self._seq, mode=ServoCommand.MODE_POSITION, position_rad=self._seq / 1000.0))


class TrainServer(Node):
    """Accepts Train goals for known objectives, sends three feedbacks, returns a result echoing the goal."""

    def __init__(self) -> None:
        super().__init__("peer_train_server")
        self._server = ActionServer(
            self,
            Train,
            "train",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            feedback_pub_qos_profile=FEEDBACK_QOS,
        )

    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        ok = goal.objective in ("accuracy", "speed", "energy", "smooth")
        return GoalResponse.ACCEPT if ok else GoalResponse.REJECT

    def _execute(self, handle: ServerGoalHandle) -> Train.Result:
        for step in (1, 2, 3):
            handle.publish_feedback(Train.Feedback(phase="training", steps=step * 100))
        handle.succeed()
        metric = MetricValue(name="steps_requested", value=float(handle.request.max_steps), unit="steps")
        return Train.Result(success=True, message=f"trained for {handle.request.objective}", metrics=[metric])


def main() -> None:
    """Run one peer node for ``--lifetime`` seconds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["talker", "action_server"])
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    rclpy.init()  # Jazzy's rclpy.init() is not a context manager (Kilted's is)
    try:
        node = Talker() if args.role == "talker" else TrainServer()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        deadline = time.monotonic() + args.lifetime
        while rclpy.ok() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
