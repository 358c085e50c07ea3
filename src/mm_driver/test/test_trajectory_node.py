"""The trajectory node (FollowJointTrajectory) driving two virtual servos through their drivers, across processes.

control_msgs has no pip wheel: this runs where ROS 2 Jazzy is installed (ros-jazzy-control-msgs) and is skipped
here; the node's logic is tested without ROS in test_trajectory.py.

Run inside the loopback-only namespace: tools/run_tests.sh src/mm_driver/test/test_trajectory_node.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("control_msgs", reason="control_msgs is not installed (apt ros-jazzy-control-msgs)")
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Duration
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointTolerance
from mm_testing.ros_support import Client, driver_args, node_process, ros_args, twin_args, wait, write_params
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mm_msgs.msg import ServoCommand, ServoState

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WAIT_S = 30.0
JOINTS = ["traj1_joint", "traj2_joint"]


def _goal(
    joints: list[str], points: list[tuple[float, list[float]]], *, path_rad: float = 1.0
) -> FollowJointTrajectory.Goal:
    """A goal with a path tolerance of `path_rad` and a goal tolerance of 0.1 rad within 1 s.

    The twins run in real time on a machine that may be busy: a starved twin falls behind the wall clock that
    the trajectory runs on, so the path tolerance of the good goal is loose (the tolerance logic itself is tested
    exactly without ROS).
    """
    trajectory = JointTrajectory(
        joint_names=joints,
        points=[
            JointTrajectoryPoint(positions=p, time_from_start=Duration(sec=int(t), nanosec=int(t % 1 * 1e9)))
            for t, p in points
        ],
    )
    return FollowJointTrajectory.Goal(
        trajectory=trajectory,
        path_tolerance=[JointTolerance(name=j, position=path_rad) for j in joints],
        goal_tolerance=[JointTolerance(name=j, position=0.1) for j in joints],
        goal_time_tolerance=Duration(sec=1),
    )


def test_two_servos_follow_one_trajectory_and_a_bad_goal_says_why(tmp_path: Path) -> None:
    params = write_params(tmp_path / "d.yaml", "/**", {"autostart": True})
    servos = ["/traj1", "/traj2"]
    trajectory = ros_args("mm_driver.trajectory_node", None, servos=servos, state_timeout_s=2.0)  # a busy host
    with (
        node_process(twin_args(servos[0], load="inertia_disk"), tmp_path / "twin1.log"),
        node_process(twin_args(servos[1], load="inertia_disk"), tmp_path / "twin2.log"),
        node_process(driver_args(servos[0], params), tmp_path / "driver1.log"),
        node_process(driver_args(servos[1], params), tmp_path / "driver2.log"),
        node_process(trajectory, tmp_path / "trajectory.log"),
    ):
        client = Client("trajectory_client")
        try:
            follow = client.action(FollowJointTrajectory, "/follow_joint_trajectory")
            joints = [client.subscribe(JointState, f"{ns}/joint_states") for ns in servos]
            client.wait_for(lambda: all(joints), WAIT_S, "joint_states of both servos")
            feedback: list = []
            accepted, result, _ = client.call(
                follow, _goal(JOINTS, [(1.0, [1.0, -1.0]), (2.0, [0.5, 0.0])]), feedback=feedback
            )
            assert accepted and result.error_code == FollowJointTrajectory.Result.SUCCESSFUL, result.error_string
            assert feedback and list(feedback[-1].joint_names) == JOINTS
            assert abs(joints[0][-1].position[0] - 0.5) < 0.1 and abs(joints[1][-1].position[0]) < 0.1
            # A path tolerance no servo can keep: aborted with the joints named, and the group holds.
            accepted, result, _ = client.call(follow, _goal(JOINTS, [(0.5, [2.0, 2.0])], path_rad=0.001))
            assert accepted and result.error_code == FollowJointTrajectory.Result.PATH_TOLERANCE_VIOLATED
            assert "traj1_joint position error" in result.error_string
            # Cancel a long trajectory: the group holds (servo mode HOLD), the goal ends canceled.
            states = [client.subscribe(ServoState, f"{ns}/state", qos_profile_sensor_data) for ns in servos]
            accepted, result, status = client.call(
                follow,
                _goal(JOINTS, [(20.0, [2.0, -2.0])]),
                on_accepted=lambda handle: wait(handle.cancel_goal_async(), WAIT_S),
            )
            assert accepted and status == GoalStatus.STATUS_CANCELED and "cancelled" in result.error_string
            client.wait_for(lambda: all(s and s[-1].mode == ServoCommand.MODE_HOLD for s in states), WAIT_S, "HOLD")
            accepted, result, _ = client.call(follow, _goal(["elbow"], [(1.0, [0.0])]))
            assert accepted and result.error_code == FollowJointTrajectory.Result.INVALID_JOINTS
            assert "unknown joints ['elbow']" in result.error_string
        finally:
            client.close()
