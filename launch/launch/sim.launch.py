"""Virtual servos with their drivers and learners; robot_state_publisher and rviz2 when installed.

    ros2 launch mm_bringup sim.launch.py                       # /servo1: virtual servo, driver, learner, rviz
    ros2 launch mm_bringup sim.launch.py servos:=2 rviz:=false load:=inertia_disk
    ros2 launch mm_bringup sim.launch.py --show-args           # every argument with its description

The nodes and parameters are described once in mm_bringup/bringup.py; `python -m mm_bringup.run sim` starts
the same ones without `launch`.
"""

from launch import LaunchDescription
from mm_bringup.bringup import SIM
from mm_bringup.launch_support import generate


def generate_launch_description() -> LaunchDescription:
    """The sim bringup (see mm_bringup.bringup.ARGUMENTS["sim"] for the arguments)."""
    return generate(SIM)
