"""The trajectory node: `follow_joint_trajectory` (control_msgs/action/FollowJointTrajectory) for a group of servos.

What joint_trajectory_controller offers MoveIt and rqt_joint_trajectory_controller, over the drivers this project
already runs, one per servo: the node samples the goal's trajectory (mm_driver.trajectory) at `rate_hz` and sends
each servo its reference position and velocity as a POSITION command on `<servo>/servo_command` (the driver checks
and forwards it); it reads `<servo>/joint_states` and judges path and goal tolerances. A new goal preempts the
running one; cancel, a violated tolerance or a lost joint state put every servo of the group in HOLD.

    ros2 run mm_driver trajectory --ros-args -p servos:="[/servo1, /servo2]"
    ros2 action send_goal /follow_joint_trajectory control_msgs/action/FollowJointTrajectory "{trajectory: {
      joint_names: [servo1_joint, servo2_joint], points: [{positions: [1.0, -1.0], time_from_start: {sec: 1}}]}}"

control_msgs has no pip wheel, so this node runs only where ROS 2 is installed (apt `ros-jazzy-control-msgs`); its
logic (interpolation, checks, tolerances) is mm_driver.trajectory, tested without ROS.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from builtin_interfaces.msg import Duration
from control_msgs.action import FollowJointTrajectory
from mm_contract.description import default_joint_name
from mm_ros.process import rclpy_process
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectoryPoint

from mm_driver.errors import DriverError
from mm_driver.trajectory import Outcome, Tolerance, Tracker, Trajectory, TrajectoryError, Verdict, Waypoint
from mm_msgs.msg import ServoCommand


def _seconds(duration: Duration) -> float:
    return duration.sec + 1e-9 * duration.nanosec


def _tolerances(entries: list[Any]) -> dict[str, Tolerance]:
    """control_msgs/JointTolerance entries: > 0 is a tolerance; 0 (the default) and < 0 check nothing."""
    return {e.name: Tolerance(max(e.position, 0.0), max(e.velocity, 0.0)) for e in entries}


class TrajectoryNode(Node):
    """FollowJointTrajectory for the servos in `servos`, through their drivers."""

    def __init__(self) -> None:
        """Declare the parameters, then the per-servo publishers and subscriptions and the action server."""
        super().__init__("trajectory")
        servos = list(self.declare_parameter("servos", ["/servo1"]).value)
        names = list(self.declare_parameter("joint_names", [""]).value)
        self._rate_hz = float(self.declare_parameter("rate_hz", 100.0).value)
        self._goal_time_s = float(self.declare_parameter("goal_time_tolerance_s", 0.5).value)
        self._state_timeout_s = float(self.declare_parameter("state_timeout_s", 0.5).value)
        low = float(self.declare_parameter("position_min_rad", -12.566).value)
        high = float(self.declare_parameter("position_max_rad", 12.566).value)
        joints = [n for n in names if n] or [default_joint_name(s) for s in servos]
        if len(joints) != len(servos) or len(set(joints)) != len(joints):
            msg = f"joint_names {names} must name each of the servos {servos} once (empty: from their namespaces)"
            raise DriverError(msg)
        self.group = tuple(joints)
        self._limits = dict.fromkeys(self.group, (low, high))
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[float, float, Time]] = {}  # joint -> position, velocity, receive time
        self._token = 0  # a new goal increments it: the running one sees it and ends
        self._seq = 0
        group = ReentrantCallbackGroup()
        self._commands = {}
        for servo, joint in zip(servos, self.group, strict=True):
            self._commands[joint] = self.create_publisher(ServoCommand, f"{servo}/servo_command", 10)
            self.create_subscription(JointState, f"{servo}/joint_states", self._on_joints, 10, callback_group=group)
        self._server = ActionServer(
            self,
            FollowJointTrajectory,
            "follow_joint_trajectory",
            execute_callback=self._execute,
            goal_callback=lambda _: GoalResponse.ACCEPT,  # checked at execution: a refusal there says why
            cancel_callback=lambda _: CancelResponse.ACCEPT,
            callback_group=group,
        )
        self.get_logger().info(f"follow_joint_trajectory for {list(self.group)} ({servos}) at {self._rate_hz} Hz")

    def _on_joints(self, msg: JointState) -> None:
        now = self.get_clock().now()
        with self._lock:
            for k, name in enumerate(msg.name):
                if name in self._limits and k < len(msg.position):
                    velocity = msg.velocity[k] if k < len(msg.velocity) else 0.0
                    self._latest[name] = (msg.position[k], velocity, now)

    def _state(self, wait_s: float = 0.0) -> tuple[list[float], list[float]] | None:
        """Every group joint's latest position and velocity; None when one is missing or older than `state_timeout_s`.

        Waits up to `wait_s` (s, wall clock) for all of them.
        """
        deadline = time.monotonic() + wait_s
        while True:
            now = self.get_clock().now()
            with self._lock:
                latest = [self._latest.get(joint) for joint in self.group]
            if all(s is not None and (now - s[2]).nanoseconds * 1e-9 <= self._state_timeout_s for s in latest):
                return [s[0] for s in latest if s], [s[1] for s in latest if s]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def _wait_for_drivers(self) -> list[str]:
        """Wait up to `state_timeout_s` (wall clock) for every servo_command to reach a driver; the deaf topics.

        Commands published before DDS has matched a driver's subscription are lost, and the trajectory would start
        without the servos.
        """
        deadline = time.monotonic() + self._state_timeout_s
        while True:
            deaf = [p.topic_name for p in self._commands.values() if p.get_subscription_count() == 0]
            if not deaf or time.monotonic() > deadline:
                return deaf
            time.sleep(0.01)

    def _send(self, mode: int, positions: list[float], velocities: list[float]) -> None:
        for joint, position, velocity in zip(self.group, positions, velocities, strict=True):
            self._seq += 1
            self._commands[joint].publish(
                ServoCommand(
                    stamp=self.get_clock().now().to_msg(),
                    seq=self._seq,
                    mode=mode,
                    target=float(position),
                    target_velocity_rad_s=float(velocity),
                )
            )

    def _hold(self) -> None:
        self._send(ServoCommand.MODE_HOLD, [0.0] * len(self.group), [0.0] * len(self.group))

    def _end(self, goal_handle: ServerGoalHandle, verdict: Verdict, how: str) -> FollowJointTrajectory.Result:
        line = f"follow_joint_trajectory {how}: {verdict.outcome.name}: {verdict.message}"
        # rclpy refuses one call site logging at two severities: one call per severity.
        if verdict.outcome == Outcome.SUCCESSFUL:
            self.get_logger().info(line)
        else:
            self.get_logger().warning(line)
        getattr(goal_handle, how)()
        return FollowJointTrajectory.Result(
            error_code=getattr(FollowJointTrajectory.Result, verdict.outcome.name), error_string=verdict.message
        )

    def _execute(self, goal_handle: ServerGoalHandle) -> FollowJointTrajectory.Result:
        with self._lock:
            self._token += 1
            token = self._token
        try:
            tracker = self._prepare(goal_handle.request)
        except TrajectoryError as exc:
            return self._end(goal_handle, Verdict(exc.outcome, str(exc)), "abort")
        stamp = Time.from_msg(goal_handle.request.trajectory.header.stamp, clock_type=self.get_clock().clock_type)
        start = max(self.get_clock().now(), stamp) if stamp.nanoseconds else self.get_clock().now()
        rate = self.create_rate(self._rate_hz)
        try:
            while (verdict := self._step(goal_handle, tracker, start, token)) is None:
                rate.sleep()
        finally:
            self.destroy_rate(rate)
        if goal_handle.is_cancel_requested:
            return self._end(goal_handle, verdict, "canceled")
        return self._end(goal_handle, verdict, "succeed" if verdict.outcome == Outcome.SUCCESSFUL else "abort")

    def _prepare(self, goal: FollowJointTrajectory.Goal) -> Tracker:
        """The goal's trajectory from the group's state now, with its tolerances.

        Raises:
            TrajectoryError: no fresh joint_states, a driver not listening, or a goal that cannot run.
        """
        state = self._state(wait_s=self._state_timeout_s)
        if state is None:
            raise TrajectoryError(Outcome.INVALID_GOAL, "no joint_states from every servo")
        deaf = self._wait_for_drivers()
        if deaf:
            raise TrajectoryError(Outcome.INVALID_GOAL, f"no driver subscribes {', '.join(deaf)}: are they active?")
        points = [
            Waypoint(_seconds(p.time_from_start), p.positions, p.velocities, p.accelerations)
            for p in goal.trajectory.points
        ]
        trajectory = Trajectory(
            self.group,
            goal.trajectory.joint_names,
            points,
            start_positions=state[0],
            start_velocities=state[1],
            limits=self._limits,
        )
        return Tracker(
            trajectory,
            path=_tolerances(goal.path_tolerance),
            goal=_tolerances(goal.goal_tolerance),
            goal_time_tolerance_s=_seconds(goal.goal_time_tolerance) or self._goal_time_s,
        )

    def _step(self, goal_handle: ServerGoalHandle, tracker: Tracker, start: Time, token: int) -> Verdict | None:
        """One period: the verdict when the goal ends (the group holds unless it succeeded), else None."""
        t_s = (self.get_clock().now() - start).nanoseconds * 1e-9
        if self._token != token:
            return Verdict(Outcome.INVALID_GOAL, "preempted by a newer goal")
        verdict = None
        if goal_handle.is_cancel_requested:
            verdict = Verdict(Outcome.SUCCESSFUL, "cancelled: holding")
        else:
            want_p, want_v = tracker.trajectory.sample(max(t_s, 0.0))
            self._send(ServoCommand.MODE_POSITION, list(want_p), list(want_v))
            state = self._state()
            if state is None:
                verdict = Verdict(Outcome.PATH_TOLERANCE_VIOLATED, "joint_states stopped: holding")
            else:
                self._feedback(goal_handle, t_s, (list(want_p), list(want_v)), state)
                verdict = tracker.check(t_s, *state)
        if verdict is not None and (verdict.outcome != Outcome.SUCCESSFUL or goal_handle.is_cancel_requested):
            self._hold()
        return verdict

    def _feedback(
        self,
        goal_handle: ServerGoalHandle,
        t_s: float,
        desired: tuple[list[float], list[float]],
        actual: tuple[list[float], list[float]],
    ) -> None:
        elapsed = Duration(sec=int(t_s), nanosec=int((t_s % 1.0) * 1e9)) if t_s > 0.0 else Duration()

        def point(positions: list[float], velocities: list[float]) -> JointTrajectoryPoint:
            return JointTrajectoryPoint(positions=positions, velocities=velocities, time_from_start=elapsed)

        error = (
            [a - d for a, d in zip(actual[0], desired[0], strict=True)],
            [a - d for a, d in zip(actual[1], desired[1], strict=True)],
        )
        feedback = FollowJointTrajectory.Feedback(
            joint_names=list(self.group), desired=point(*desired), actual=point(*actual), error=point(*error)
        )
        feedback.header.stamp = self.get_clock().now().to_msg()
        goal_handle.publish_feedback(feedback)


def main(args: list[str] | None = None) -> None:
    """Run the trajectory node (`ros2 run mm_driver trajectory`)."""
    with rclpy_process(args):
        node = TrajectoryNode()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        try:
            executor.spin()
        finally:
            node.destroy_node()


if __name__ == "__main__":
    main()
