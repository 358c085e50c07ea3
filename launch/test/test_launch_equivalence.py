"""sim.launch.py / hardware.launch.py and the composed runner start the same processes.

The launch file's LaunchDescription is visited with a LaunchContext as `ros2 launch` visits it (arguments
declared, the OpaqueFunction run), every launch_ros Node's command line is expanded, and it must equal the
runner's command line for the same arguments: same executables, node names, namespaces, parameter files in the
same order and the same generated overrides. Needs `launch` and `launch_ros` (a ROS 2 install); skipped where
they are not installed (this bare machine: shared/docs/ros2-on-pip.md), where the ROS-free tests in
test_bringup.py cover the runner's side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from bringup_support import REPO

# `launch` alone is not a good probe: the repository's own launch/ directory imports as a namespace package.
pytest.importorskip("launch_ros", reason="launch_ros is not installed: the launch-side half needs a ROS 2 install")
from launch import LaunchContext
from launch.launch_description_sources import get_launch_description_from_python_launch_file
from launch.utilities import perform_substitutions
from launch_ros.actions import LifecycleNode, Node
from mm_bringup.bringup import HARDWARE, SIM, describe
from mm_bringup.run import Runner

LAUNCH_FILES = {SIM: REPO / "launch/launch/sim.launch.py", HARDWARE: REPO / "launch/launch/hardware.launch.py"}


def _normalised(command: list[str], generated_dir: Path) -> list[Any]:
    """A command line with generated parameter files replaced by their content (their paths are temporary)."""
    result: list[Any] = []
    for i, word in enumerate(command):
        path = Path(word)
        if i > 0 and command[i - 1] == "--params-file" and (path.parent == generated_dir or "launch_params_" in word):
            result.append(yaml.safe_load(path.read_text(encoding="utf-8")))
        else:
            result.append(word)
    return result


def _launch_commands(kind: str, arguments: dict[str, str]) -> list[tuple[list[Any], bool]]:
    """Every node of the launch file: its expanded, normalised command line and whether it is a LifecycleNode."""
    context = LaunchContext()
    # What `ros2 launch mm_bringup <file> name:=value` does with the arguments before visiting.
    context.launch_configurations.update(arguments)
    pending: list[Any] = [get_launch_description_from_python_launch_file(str(LAUNCH_FILES[kind]))]
    commands = []
    while pending:
        entity = pending.pop(0)
        if isinstance(entity, Node):
            # The same expansion Node.execute does, without starting the process.
            entity._perform_substitutions(context)
            context.extend_locals(
                {
                    "ros_specific_arguments": {
                        "name": f"__node:={entity.node_name.rsplit('/', 1)[-1]}",
                        "ns": f"__ns:={entity.expanded_node_namespace}",
                    }
                }
            )
            command = [perform_substitutions(context, part) for part in entity.cmd]
            commands.append((_normalised(command, Path(tempfile.gettempdir())), isinstance(entity, LifecycleNode)))
        else:
            pending[0:0] = entity.visit(context) or []
    return commands


@pytest.mark.parametrize(
    ("kind", "arguments"),
    [
        (SIM, {}),
        (SIM, {"servos": "2", "load": "inertia_disk", "sim_time": "true", "learner": "false"}),
        (HARDWARE, {}),
        (HARDWARE, {"transport": "can", "servos": "2", "can_channel": "can1"}),
        (HARDWARE, {"agent": "serial", "agent_device": "/dev/ttyACM0"}),
    ],
)
def test_launch_file_and_runner_start_the_same_nodes(kind: str, arguments: dict[str, str], tmp_path: Path) -> None:
    specs = describe(kind, arguments)
    runner_commands = [_normalised(command, tmp_path) for command in Runner(specs).commands(tmp_path)]
    launched = _launch_commands(kind, arguments)
    assert [command for command, _ in launched] == runner_commands
    # The driver is a lifecycle node on both sides (launch can send it ChangeState events).
    assert [lifecycle for _, lifecycle in launched] == [spec.lifecycle for spec in specs]
    assert any(spec.executable == "driver" for spec in specs)
