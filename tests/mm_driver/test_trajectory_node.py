"""The trajectory node (FollowJointTrajectory) driving two virtual servos through their drivers, across processes.

control_msgs has no pip wheel: this runs where ROS 2 Jazzy is installed (ros-jazzy-control-msgs) and is skipped
here; the node's logic is tested without ROS in test_trajectory.py.

Run inside the loopback-only namespace: tools/run_tests.sh tests/mm_driver/test_trajectory_node.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("control_msgs", reason="control_msgs is not installed (apt ros-jazzy-control-msgs)")
from builtin_interfaces.msg import Duration
from control_msgs.action import FollowJointTrajectory
from control_msgs.msg import JointTolerance
from ros_support import Client, driver_args, node_process, ros_args, twin_args, write_params
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

pytestmark = [pytest.mark.ros, pytest.mark.slow]

WAIT_S = 30.0
JOINTS = ["traj1_joint", "traj2_joint"]


def _goal(joints: list[str], points: list[tuple[float, list[float]]]) -> FollowJointTrajectory.Goal:
    trajectory = JointTrajectory(
        joint_names=joints,
        points=[
            JointTrajectoryPoint(positions=p, time_from_start=Duration(sec=int(t), nanosec=int(t % 1 * 1e9)))
            for t, p in points
        ],
    )
    tolerance = [JointTolerance(name=j, position=0.3) for j in joints]
    return FollowJointTrajectory.Goal(trajectory=trajectory, goal_tolerance=tolerance, path_tolerance=tolerance)


def test_two_servos_follow_one_trajectory_and_a_bad_goal_says_why(tmp_path: Path) -> None:
    params = write_params(tmp_path / "d.yaml", "/**", {"autostart": True})
    servos = ["/traj1", "/traj2"]
    trajectory = ros_args("mm_driver.trajectory_node", None, servos=servos)
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
            assert abs(joints[0][-1].position[0] - 0.5) < 0.3 and abs(joints[1][-1].position[0]) < 0.3
            accepted, result, _ = client.call(follow, _goal(["elbow"], [(1.0, [0.0])]))
            assert accepted and result.error_code == FollowJointTrajectory.Result.INVALID_JOINTS
            assert "unknown joints ['elbow']" in result.error_string
        finally:
            client.close()
