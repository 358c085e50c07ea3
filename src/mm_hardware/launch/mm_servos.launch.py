"""Muscle Memory servos under ros2_control.

ros2_control_node with the mm_hardware plugin, robot_state_publisher, joint_state_broadcaster and
joint_trajectory_controller (laid out as ros2_control_demos example_1 on Jazzy):

    ros2 launch mm_hardware mm_servos.launch.py can_interface:=can0
    ros2 launch mm_hardware mm_servos.launch.py mock_hardware:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import Command, LaunchConfiguration, PathSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """The control node, the robot description and the two spawners."""
    share = PathSubstitution(FindPackageShare("mm_hardware"))
    controllers = share / "config" / "mm_controllers.yaml"
    description = Command(
        [
            "xacro ",
            share / "description" / "urdf" / "mm_servos.urdf.xacro",
            " can_interface:=",
            LaunchConfiguration("can_interface"),
            " mock_hardware:=",
            LaunchConfiguration("mock_hardware"),
        ]
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "can_interface", default_value="can0", description="SocketCAN interface, up at 500 kbit/s"
            ),
            DeclareLaunchArgument(
                "mock_hardware", default_value="false", description="echo commands to states without a bus"
            ),
            Node(package="controller_manager", executable="ros2_control_node", parameters=[controllers]),
            Node(
                package="robot_state_publisher",
                executable="robot_state_publisher",
                parameters=[{"robot_description": ParameterValue(description, value_type=str)}],
            ),
            *(
                Node(package="controller_manager", executable="spawner", arguments=[name, "--param-file", controllers])
                for name in ("joint_state_broadcaster", "joint_trajectory_controller")
            ),
        ]
    )
