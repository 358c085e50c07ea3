"""launch/launch_ros actions from the bringup description (used by sim.launch.py and hardware.launch.py).

Only this module imports `launch`; everything it starts comes from `mm_bringup.bringup.describe`, the same
description the composed runner (`python -m mm_bringup.run`) starts, so both bring up the same nodes with the
same parameter files and overrides.
"""

from __future__ import annotations

from typing import Any

from launch import Action, LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from mm_bringup.bringup import ARGUMENTS, OPTIONAL_PACKAGES, NodeSpec, describe, is_installed


def node_action(spec: NodeSpec) -> Node:
    """The launch_ros action of one node: a LifecycleNode (transition events, ChangeState) or a Node."""
    parameters: list[Any] = [str(path) for path in spec.parameter_files]
    if spec.parameters:
        parameters.append(dict(spec.parameters))
    kwargs: dict[str, Any] = {
        "package": spec.package,
        "executable": spec.executable,
        "namespace": spec.namespace,
        "parameters": parameters,
        "remappings": list(spec.remappings),
        "arguments": list(spec.arguments),
        "output": "screen",
    }
    if spec.name:
        kwargs["name"] = spec.name
    return LifecycleNode(**kwargs) if spec.lifecycle else Node(**kwargs)


def _setup(context: LaunchContext, kind: str) -> list[Action]:
    values = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in ARGUMENTS[kind]}
    actions: list[Action] = [
        LogInfo(msg=f"{package} is not installed: not started")
        for package in OPTIONAL_PACKAGES
        if not is_installed(package)
    ]
    return actions + [node_action(spec) for spec in describe(kind, values)]


def generate(kind: str) -> LaunchDescription:
    """The launch description of bringup `kind`: every argument declared with its description, then the nodes."""
    declared = [
        DeclareLaunchArgument(
            argument.name,
            default_value=argument.default,
            description=argument.description,
            choices=list(argument.choices) or None,
        )
        for argument in ARGUMENTS[kind]
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_setup, args=[kind])])
