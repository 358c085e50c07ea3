"""The bringup as data: which nodes start, in which namespaces, with which parameter files and overrides.

`sim.launch.py`, `hardware.launch.py` (through `mm_bringup.launch_support`) and the composed runner
(`python -m mm_bringup.run`) all call `describe(kind, arguments)`, so `ros2 launch` and the runner start the
same nodes with the same parameters. This module needs no ROS: package share and prefix directories come from
`ament_index_python` by default and can be passed in (tests).

Parameters, lowest precedence first: each package's own `config/*.yaml` (the defaults), then
`mm_bringup/config/bringup.yaml` (what the bringup sets differently, same for every servo), then the user's
`params_file:=` if given, then the overrides computed here from the launch arguments (profile, load, transport,
CAN device ids, simulated time, the recorder's output and topics).

Servos live in namespaces `/<namespace>1` ... `/<namespace>N` (`servos:=N`); every servo gets its own driver,
learner and robot_state_publisher (TF frames prefixed `<namespace>i/`); rviz, the micro-ROS agent and the recorder
(`bag:=<dir>`: one bag of every servo's topics) are shared. `learner:=shared` starts one learner for all servos
instead (root namespace: one policy trained from all of them and deployed to all). `params_file:=<file>` adds a
parameter file of the user's to every node, after the bringup's (e.g. the learner's signing key and the virtual
servo's public key).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from mm_contract.description import build_urdf, default_joint_name, rename_joint
from mm_contract.errors import ContractError
from mm_contract.profiles import load_profile

from mm_bringup.errors import BringupError

ParameterValue = bool | int | float | str | list[str]
PackageDir = Callable[[str], Path]
"""Maps a package name to a directory of it (share or prefix); raises `BringupError` when not installed."""

SIM = "sim"
HARDWARE = "hardware"
KINDS = (SIM, HARDWARE)
TRUE_WORDS = ("true", "false")
# Optional nodes: started when their package is installed, skipped with a message otherwise.
OPTIONAL_PACKAGES = ("robot_state_publisher", "rviz2", "micro_ros_agent", "tf2_ros")
WORLD_FRAME = "world"
SERVO_SPACING_M = 0.25
"""With several servos, servo i's base_link stands at x = (i - 1) * SERVO_SPACING_M in the `world` frame (m)."""


@dataclass(frozen=True)
class Argument:
    """One launch argument (`name:=value` on `ros2 launch` and on the runner's command line)."""

    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


_COMMON = (
    Argument("servos", "1", "number of servos; each gets its own namespace /<namespace>1 ... /<namespace>N"),
    Argument("namespace", "servo", "namespace prefix of the servos (servo -> /servo1, /servo2, ...)"),
    Argument("profile", "", "mm_sim servo profile (mm_v3, mm_minimal, gimbal_bldc); empty: each package's default"),
    Argument("load", "", "load of that profile (inertia_disk, pendulum, spring); empty: each package's default"),
    Argument(
        "learner",
        "true",
        "true: a learner (train action, policy publisher) per servo, one policy each (their loads may differ); "
        "shared: one learner in the root namespace (/train) that trains one policy from every servo and deploys it "
        "to all (servos of one load class: its parameter `servos`); false: none",
        ("true", "shared", "false"),
    ),
    Argument(
        "robot_state_publisher",
        "true",
        "start robot_state_publisher per servo (TF for rviz) when it is installed",
        TRUE_WORDS,
    ),
    Argument("rviz", "true", "start rviz2 with mm_bringup's config when it is installed", TRUE_WORDS),
    Argument(
        "bag",
        "",
        "record every servo's topics (state, transitions, policy_ack, command, joint_states, reward) into this new "
        "bag directory (MCAP, mm_learning's recorder); empty: no recording",
    ),
    Argument(
        "params_file",
        "",
        "an extra parameter file given to every node after the bringup's own (its keys select the nodes, e.g. "
        "/**/learner or /**/virtual_servo); empty: none",
    ),
)
RECORDED_TOPICS = ("state", "transitions", "policy_ack", "command", "joint_states", "reward")
"""What the `bag:=` recorder records in each servo's namespace (the recorder's own default topics)."""
ARGUMENTS: dict[str, tuple[Argument, ...]] = {
    SIM: (
        *_COMMON,
        Argument(
            "driver", "true", "start a driver per virtual servo (joint_states, move_to, deploy_policy)", TRUE_WORDS
        ),
        Argument(
            "sim_time",
            "false",
            "true: the first virtual servo runs as fast as it can and publishes /clock, the others follow it, "
            "every other node uses simulated time",
            TRUE_WORDS,
        ),
    ),
    HARDWARE: (
        *_COMMON,
        Argument("transport", "ros", "how the drivers reach the servos: micro-ROS topics or CAN", ("ros", "can")),
        Argument(
            "agent",
            "udp4",
            "micro-ROS agent transport for transport:=ros (started when micro_ros_agent is installed); none: no agent",
            ("udp4", "serial", "none"),
        ),
        Argument("agent_port", "8888", "UDP port of the micro-ROS agent (agent:=udp4)"),
        Argument("agent_device", "/dev/ttyUSB0", "serial device of the micro-ROS agent (agent:=serial)"),
        Argument("can_interface", "", "python-can interface for transport:=can; empty: the driver's default"),
        Argument("can_channel", "", "python-can channel for transport:=can; empty: the driver's default"),
    ),
}


@dataclass(frozen=True)
class NodeSpec:
    """One process of the bringup, as `launch_ros.actions.Node` takes it.

    `namespace` is absolute ("" for the root namespace); `name` "" keeps the executable's own node name.
    `parameter_files` are applied in order, then `parameters` (launch_ros writes them to a file keyed by the
    node's full name; the runner does the same). `arguments` are the executable's own (non-ROS) arguments.
    """

    package: str
    executable: str
    name: str = ""
    namespace: str = ""
    parameter_files: tuple[Path, ...] = ()
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    arguments: tuple[str, ...] = ()
    lifecycle: bool = False

    @property
    def full_name(self) -> str:
        """`/namespace/name` (or `/name`), or "" when the node keeps the executable's own name."""
        if not self.name:
            return ""
        return f"{self.namespace}/{self.name}"


def package_prefix(package: str) -> Path:
    """The install prefix of `package` (ament index); its executables are in `<prefix>/lib/<package>/`."""
    try:
        return Path(get_package_prefix(package))
    except PackageNotFoundError as exc:
        msg = f"package {package!r} is not installed: build the workspace and `source install/setup.bash`"
        raise BringupError(msg) from exc


def package_share(package: str) -> Path:
    """The installed share directory of `package` (as ament_index_python's get_package_share_directory)."""
    return package_prefix(package) / "share" / package


def is_installed(package: str, prefix: PackageDir = package_prefix) -> bool:
    """Whether `package` is in the ament index (optional nodes are skipped otherwise)."""
    try:
        prefix(package)
    except BringupError:
        return False
    return True


def parse_arguments(kind: str, given: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Every argument of `kind` with its value: `given` (`name:=value` words or a mapping) over the defaults.

    Raises `BringupError` for an unknown kind, an unknown argument, a malformed word or a value outside the
    argument's choices.
    """
    if kind not in ARGUMENTS:
        msg = f"unknown bringup {kind!r}: choose one of {', '.join(KINDS)}"
        raise BringupError(msg)
    declared = {argument.name: argument for argument in ARGUMENTS[kind]}
    pairs: dict[str, str] = {}
    if isinstance(given, Mapping):
        pairs.update(given)
    else:
        for word in given:
            name, sep, value = word.partition(":=")
            if not sep:
                msg = f"argument {word!r} is not of the form name:=value (like ros2 launch)"
                raise BringupError(msg)
            pairs[name] = value
    values = {name: argument.default for name, argument in declared.items()}
    for name, value in pairs.items():
        if name not in declared:
            msg = f"{kind} has no argument {name!r}; its arguments: {', '.join(declared)}"
            raise BringupError(msg)
        choices = declared[name].choices
        if choices and value not in choices:
            msg = f"{name}:={value} is not one of {', '.join(choices)}"
            raise BringupError(msg)
        values[name] = value
    return values


def configured_parameter(parameter_file: Path, node_name: str, parameter: str) -> ParameterValue:
    """The value a package's parameter file gives `parameter` of node `node_name` (any namespace).

    Used to build the URDF for robot_state_publisher from the same profile/load the driver is configured with,
    so that default stays in the driver's file only.
    """
    try:
        blocks = yaml.safe_load(parameter_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        msg = f"cannot read parameter file {parameter_file}: {exc}"
        raise BringupError(msg) from exc
    for key in (node_name, f"/{node_name}", f"/**/{node_name}", "/**"):
        values = (blocks.get(key) or {}).get("ros__parameters", {})
        if parameter in values:
            return values[parameter]
    msg = f"{parameter_file} sets no {parameter!r} for node {node_name!r}: set the {parameter} argument"
    raise BringupError(msg)


def robot_description(profile: str, load: str, joint: str) -> str:
    """URDF of the servo and its load (mm_contract.description), joint called `joint`, as the driver publishes it."""
    try:
        servo_profile = load_profile(profile)
        return rename_joint(build_urdf(servo_profile, servo_profile.load(load)), joint)
    except ContractError as exc:
        msg = f"profile {profile!r} / load {load!r}: {exc}"
        raise BringupError(msg) from exc


def rviz_config(template: str, namespaces: Sequence[str], fixed_frame: str) -> str:
    """mm_bringup's rviz config (`template`, YAML) with one RobotModel per servo namespace and `fixed_frame`.

    Each RobotModel reads `<namespace>/robot_description` and its TF frames prefixed `<namespace>/` (as each
    servo's robot_state_publisher publishes them).

    Raises:
        BringupError: the template has no RobotModel display to copy.
    """
    config = yaml.safe_load(template)
    manager = config["Visualization Manager"]
    displays = manager["Displays"]
    models = [d for d in displays if d.get("Class") == "rviz_default_plugins/RobotModel"]
    if not models:
        msg = "the rviz template has no rviz_default_plugins/RobotModel display to copy per servo"
        raise BringupError(msg)
    at = displays.index(models[0])
    copies = []
    for namespace in namespaces:
        name = namespace.strip("/")
        model = yaml.safe_load(yaml.safe_dump(models[0]))  # a deep copy of the template's display
        model["Name"] = f"RobotModel {name}"
        model["Description Topic"]["Value"] = f"{namespace}/robot_description"
        model["TF Prefix"] = name
        copies.append(model)
    manager["Displays"] = [*displays[:at], *copies, *(d for d in displays[at:] if d not in models)]
    manager["Global Options"]["Fixed Frame"] = fixed_frame
    return yaml.safe_dump(config, sort_keys=False)


def _generated_dir() -> Path:
    """Where the bringup writes files it generates per launch (ROS_HOME/mm_bringup, as ROS 2 places logs)."""
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / "mm_bringup"


def _write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def _flag(values: Mapping[str, str], name: str) -> bool:
    return values[name] == "true"


def _servo_count(values: Mapping[str, str]) -> int:
    try:
        count = int(values["servos"])
    except ValueError:
        count = 0
    if count < 1:
        msg = f"servos:={values['servos']} must be a whole number >= 1"
        raise BringupError(msg)
    return count


def describe(
    kind: str,
    arguments: Sequence[str] | Mapping[str, str] = (),
    *,
    share: PackageDir = package_share,
    installed: Callable[[str], bool] = is_installed,
    urdf: Callable[[str, str, str], str] = robot_description,
    generated: Path | None = None,
) -> list[NodeSpec]:
    """Every node of bringup `kind` ("sim" or "hardware") for `arguments` (`name:=value` words or a mapping).

    `share` finds package share directories (parameter files, rviz config), `installed` decides whether the
    optional nodes (robot_state_publisher, rviz2, micro_ros_agent, tf2_ros) can start, `urdf` builds the robot
    description from a profile, load and joint name. With several servos and rviz, the rviz config showing all
    of them is written into `generated` (default ROS_HOME/mm_bringup).
    """
    values = parse_arguments(kind, arguments)
    count = _servo_count(values)
    prefix = values["namespace"].strip("/")
    if not prefix:
        msg = "namespace:= must not be empty: several servos need their own namespaces"
        raise BringupError(msg)
    bringup_file = share("mm_bringup") / "config" / "bringup.yaml"
    # The user's file comes after the bringup's own, so it has the last word before the argument overrides.
    extra = (Path(values["params_file"]).expanduser().resolve(),) if values["params_file"] else ()
    driver_file = share("mm_driver") / "config" / "driver.yaml"
    learner_file = share("mm_learning") / "config" / "learner.yaml"
    model: dict[str, ParameterValue] = {name: values[name] for name in ("profile", "load") if values[name]}
    sim_time = kind == SIM and _flag(values, "sim_time")
    clock: dict[str, ParameterValue] = {"use_sim_time": True} if sim_time else {}
    specs: list[NodeSpec] = []
    if kind == HARDWARE and values["transport"] == "ros" and values["agent"] != "none" and installed("micro_ros_agent"):
        agent = (
            ("udp4", "--port", values["agent_port"])
            if values["agent"] == "udp4"
            else ("serial", "--dev", values["agent_device"])
        )
        specs.append(NodeSpec("micro_ros_agent", "micro_ros_agent", arguments=agent))
    for index in range(1, count + 1):
        namespace = f"/{prefix}{index}"
        # Each servo's joint has its own name on /joint_states: the driver derives it from its namespace
        # (servo1_joint, ...) unless `joint_name` is set; robot_state_publisher's URDF must use the same one.
        joint = default_joint_name(namespace)
        # robot_state_publisher publishes robot_description where it runs; the driver then does not.
        state_publisher = _flag(values, "robot_state_publisher") and installed("robot_state_publisher")
        if kind == SIM:
            # One simulated clock for every servo: the first leads on /clock, the others step to it.
            time_mode = {"time_mode": "fast" if index == 1 else "follow"} if sim_time else {}
            specs.append(
                NodeSpec(
                    "mm_sim",
                    "virtual_servo",
                    "virtual_servo",
                    namespace,
                    (share("mm_sim") / "config" / "virtual_servo.yaml", bringup_file, *extra),
                    model | time_mode,
                )
            )
        if kind == HARDWARE or _flag(values, "driver"):
            transport: dict[str, ParameterValue] = {}
            if kind == HARDWARE:
                transport["transport"] = values["transport"]
                if values["transport"] == "can":
                    # One bus, one CAN id per servo: servo i answers to device id i (ids 1..1022).
                    transport["can_device_id"] = index
                    transport |= {name: values[name] for name in ("can_interface", "can_channel") if values[name]}
            specs.append(
                NodeSpec(
                    "mm_driver",
                    "driver",
                    "driver",
                    namespace,
                    (driver_file, bringup_file, *extra),
                    model | transport | clock | ({"publish_description": False} if state_publisher else {}),
                    lifecycle=True,
                )
            )
        if values["learner"] == "true":
            specs.append(
                NodeSpec(
                    "mm_learning", "learner", "learner", namespace, (learner_file, bringup_file, *extra), model | clock
                )
            )
        if state_publisher:
            description = urdf(
                str(values["profile"] or configured_parameter(driver_file, "driver", "profile")),
                str(values["load"] or configured_parameter(driver_file, "driver", "load")),
                joint,
            )
            specs.append(
                NodeSpec(
                    "robot_state_publisher",
                    "robot_state_publisher",
                    "robot_state_publisher",
                    namespace,
                    (bringup_file, *extra),
                    {"robot_description": description, "frame_prefix": f"{prefix}{index}/"} | clock,
                )
            )
    if values["learner"] == "shared":
        servos: list[str] = [f"/{prefix}{index}" for index in range(1, count + 1)]
        specs.append(
            NodeSpec(
                "mm_learning",
                "learner",
                "learner",
                "",
                (learner_file, bringup_file, *extra),
                model | clock | {"servos": servos},
            )
        )
    if values["bag"]:
        # One recorder for every servo: one bag, as `ros2 bag record` of all their topics would write.
        topics = [f"{prefix}{index}/{topic}" for index in range(1, count + 1) for topic in RECORDED_TOPICS]
        recording: dict[str, ParameterValue] = {
            "output": str(Path(values["bag"]).expanduser().resolve()),
            "topics": topics,
        }
        specs.append(NodeSpec("mm_learning", "recorder", "recorder", "", (bringup_file, *extra), recording | clock))
    views = _views(
        values, count, prefix, installed=installed, share=share("mm_bringup"), generated=generated or _generated_dir()
    )
    return specs + [replace(spec, parameter_files=(bringup_file, *extra), parameters=dict(clock)) for spec in views]


def _views(
    values: Mapping[str, str],
    count: int,
    prefix: str,
    *,
    installed: Callable[[str], bool],
    share: Path,
    generated: Path,
) -> list[NodeSpec]:
    """The shared view nodes: one `world` frame for several servos (tf2_ros), and rviz2 showing every servo.

    Each servo's TF tree (robot_state_publisher, frames `<namespace>i/`) hangs from `world`, the servos side by
    side; rviz2 gets mm_bringup's config, rewritten into `generated` with one RobotModel per servo when there are
    several.
    """
    specs = []
    world = count > 1 and _flag(values, "robot_state_publisher") and installed("tf2_ros")
    if world:
        specs += [
            NodeSpec(
                "tf2_ros",
                "static_transform_publisher",
                f"{prefix}{index}_world",
                arguments=(
                    *("--x", f"{(index - 1) * SERVO_SPACING_M:g}"),
                    *("--frame-id", WORLD_FRAME, "--child-frame-id", f"{prefix}{index}/base_link"),
                ),
            )
            for index in range(1, count + 1)
        ]
    if _flag(values, "rviz") and installed("rviz2"):
        config = share / "rviz" / "mm.rviz"
        if count > 1:
            namespaces = [f"/{prefix}{index}" for index in range(1, count + 1)]
            text = rviz_config(
                config.read_text(encoding="utf-8"), namespaces, WORLD_FRAME if world else f"{prefix}1/base_link"
            )
            config = _write_atomically(generated / f"{prefix}x{count}.rviz", text)
        specs.append(NodeSpec("rviz2", "rviz2", "rviz2", arguments=("-d", str(config))))
    return specs
