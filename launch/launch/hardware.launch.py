"""Drivers for real servos (micro-ROS topics through the agent, or CAN), with their learners.

    ros2 launch mm_bringup hardware.launch.py                         # micro-ROS over UDP port 8888
    ros2 launch mm_bringup hardware.launch.py agent:=serial agent_device:=/dev/ttyUSB0
    ros2 launch mm_bringup hardware.launch.py transport:=can can_channel:=can0 servos:=2   # CAN ids 1 and 2
    ros2 launch mm_bringup hardware.launch.py --show-args

The micro-ROS agent starts when `micro_ros_agent` is installed (otherwise run it yourself). The nodes and
parameters are described once in mm_bringup/bringup.py; `python -m mm_bringup.run hardware` starts the same.
"""

from launch import LaunchDescription
from mm_bringup.bringup import HARDWARE
from mm_bringup.launch_support import generate


def generate_launch_description() -> LaunchDescription:
    """The hardware bringup (see mm_bringup.bringup.ARGUMENTS["hardware"] for the arguments)."""
    return generate(HARDWARE)
