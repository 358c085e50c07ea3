"""The bringup description and the runner's command lines, without ROS (a fake install in tmp_path).

What `python -m mm_bringup.run sim|hardware ...` would start: which nodes, in which namespaces, with which
parameter files in which order and which argument-dependent overrides; bad arguments refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bringup_support import CONFIG_SOURCES, REPO, FakeInstall
from mm_bringup.bringup import (
    ARGUMENTS,
    HARDWARE,
    SIM,
    NodeSpec,
    configured_parameter,
    describe,
    rviz_config,
)
from mm_bringup.errors import BringupError
from mm_bringup.run import Runner

RVIZ_TEMPLATE = REPO / "launch" / "rviz" / "mm.rviz"


def _describe(install: FakeInstall, kind: str, *words: str, urdf: Callable[[str, str, str], str] | None = None) -> list:
    kwargs: dict[str, Any] = {"share": install.share, "installed": install.installed, "generated": install.root / "gen"}
    if urdf is not None:
        kwargs["urdf"] = urdf
    return describe(kind, list(words), **kwargs)


def _commands(install: FakeInstall, kind: str, directory: Path, *words: str) -> list[list[str]]:
    return Runner(_describe(install, kind, *words), prefix=install.prefix).commands(directory)


def _option_values(command: list[str], option: str) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == option]


def _overrides(command: list[str]) -> dict[str, Any]:
    """The generated override file of a command line (the last --params-file), as {node key: parameters}."""
    files = _option_values(command, "--params-file")
    return yaml.safe_load(Path(files[-1]).read_text(encoding="utf-8"))


def test_sim_defaults_start_twin_driver_learner_in_servo1(fake_install: FakeInstall, tmp_path: Path) -> None:
    commands = _commands(fake_install, SIM, tmp_path)
    bringup_yaml = str(fake_install.share("mm_bringup") / "config/bringup.yaml")
    expected = {
        "virtual_servo": fake_install.share("mm_sim") / "config/virtual_servo.yaml",
        "driver": fake_install.share("mm_driver") / "config/driver.yaml",
        "learner": fake_install.share("mm_learning") / "config/learner.yaml",
    }
    assert [Path(command[0]).name for command in commands] == list(expected)
    for command, (name, package_file) in zip(commands, expected.items(), strict=True):
        assert Path(command[0]).is_file()
        assert command[1] == "--ros-args"
        assert _option_values(command, "-r") == [f"__node:={name}", "__ns:=/servo1"]
        # The package's defaults first, the bringup's overrides after them; no argument-dependent overrides.
        assert _option_values(command, "--params-file") == [str(package_file), bringup_yaml]


def test_several_servos_get_own_namespaces_and_overrides(fake_install: FakeInstall, tmp_path: Path) -> None:
    commands = _commands(
        fake_install, SIM, tmp_path, "servos:=2", "namespace:=arm", "load:=inertia_disk", "learner:=false"
    )
    names = [(Path(c[0]).name, _option_values(c, "-r")[1]) for c in commands]
    assert names == [
        ("virtual_servo", "__ns:=/arm1"),
        ("driver", "__ns:=/arm1"),
        ("virtual_servo", "__ns:=/arm2"),
        ("driver", "__ns:=/arm2"),
    ]
    # Twin and driver get the same load (so the driver's URDF and energy model match the twin's plant).
    assert _overrides(commands[0]) == {"/arm1/virtual_servo": {"ros__parameters": {"load": "inertia_disk"}}}
    assert _overrides(commands[3]) == {"/arm2/driver": {"ros__parameters": {"load": "inertia_disk"}}}


def test_a_shared_learner_trains_every_servo_from_the_root_namespace(fake_install: FakeInstall) -> None:
    specs = _describe(fake_install, SIM, "servos:=3", "learner:=shared", "load:=inertia_disk")
    learners = [spec for spec in specs if spec.executable == "learner"]
    assert len(learners) == 1 and learners[0].namespace == ""
    assert learners[0].parameters == {"load": "inertia_disk", "servos": ["/servo1", "/servo2", "/servo3"]}
    assert [spec.namespace for spec in specs if spec.executable == "driver"] == ["/servo1", "/servo2", "/servo3"]
    with pytest.raises(BringupError, match="learner:=both is not one of true, shared, false"):
        _describe(fake_install, SIM, "learner:=both")


def test_sim_time_one_clock_leader_and_followers(fake_install: FakeInstall) -> None:
    specs = _describe(fake_install, SIM, "servos:=3", "sim_time:=true")
    twins = [spec.parameters for spec in specs if spec.executable == "virtual_servo"]
    assert twins == [{"time_mode": "fast"}, {"time_mode": "follow"}, {"time_mode": "follow"}]
    others = [spec for spec in specs if spec.executable != "virtual_servo"]
    assert others and all(spec.parameters == {"use_sim_time": True} for spec in others)


def test_hardware_can_gives_each_servo_its_device_id(fake_install: FakeInstall) -> None:
    fake_install.add("micro_ros_agent", "micro_ros_agent")
    specs = _describe(fake_install, HARDWARE, "transport:=can", "servos:=2", "can_channel:=can1", "learner:=false")
    # No virtual servos and no micro-ROS agent on CAN.
    assert [(spec.executable, spec.namespace) for spec in specs] == [("driver", "/servo1"), ("driver", "/servo2")]
    assert [dict(spec.parameters) for spec in specs] == [
        {"transport": "can", "can_device_id": 1, "can_channel": "can1"},
        {"transport": "can", "can_device_id": 2, "can_channel": "can1"},
    ]
    assert all(spec.lifecycle for spec in specs)


@pytest.mark.parametrize(
    ("words", "agent_arguments"),
    [
        ((), ["udp4", "--port", "8888"]),
        (("agent:=serial", "agent_device:=/dev/ttyACM0"), ["serial", "--dev", "/dev/ttyACM0"]),
    ],
)
def test_hardware_ros_starts_the_agent_when_installed(
    fake_install: FakeInstall, tmp_path: Path, words: tuple[str, ...], agent_arguments: list[str]
) -> None:
    without = _describe(fake_install, HARDWARE, *words)
    assert "micro_ros_agent" not in [spec.executable for spec in without]
    fake_install.add("micro_ros_agent", "micro_ros_agent")
    commands = _commands(fake_install, HARDWARE, tmp_path, *words)
    agent = commands[0]
    assert Path(agent[0]).name == "micro_ros_agent"
    assert agent[1:] == [*agent_arguments, "--ros-args"]
    assert [Path(c[0]).name for c in commands[1:]] == ["driver", "learner"]
    assert _overrides(commands[1]) == {"/servo1/driver": {"ros__parameters": {"transport": "ros"}}}


def test_robot_state_publisher_and_rviz_when_installed(
    fake_install: FakeInstall, fake_urdf: Callable[[str, str, str], str]
) -> None:
    fake_install.add("robot_state_publisher", "robot_state_publisher")
    fake_install.add("rviz2", "rviz2")
    _install_rviz_template(fake_install)
    specs = _describe(fake_install, SIM, "servos:=2", urdf=fake_urdf)
    publishers = [spec for spec in specs if spec.package == "robot_state_publisher"]
    # The URDF comes from the profile and load the driver's own parameter file configures.
    driver_file = CONFIG_SOURCES["mm_driver"]
    profile = configured_parameter(driver_file, "driver", "profile")
    load = configured_parameter(driver_file, "driver", "load")
    assert [(spec.namespace, dict(spec.parameters)) for spec in publishers] == [
        (
            "/servo1",
            {"robot_description": fake_urdf(str(profile), str(load), "servo1_joint"), "frame_prefix": "servo1/"},
        ),
        (
            "/servo2",
            {"robot_description": fake_urdf(str(profile), str(load), "servo2_joint"), "frame_prefix": "servo2/"},
        ),
    ]
    # One publisher of robot_description per namespace: robot_state_publisher's, not the driver's too.
    drivers = [spec for spec in specs if spec.executable == "driver"]
    assert [spec.parameters.get("publish_description") for spec in drivers] == [False, False]
    (rviz,) = [spec for spec in specs if spec.package == "rviz2"]
    assert rviz.namespace == ""
    assert rviz.arguments == ("-d", str(fake_install.root / "gen" / "servox2.rviz"))
    explicit = _describe(fake_install, SIM, "profile:=mm_minimal", "load:=inertia_disk", urdf=fake_urdf)
    (rviz,) = [spec for spec in explicit if spec.package == "rviz2"]
    assert rviz.arguments == ("-d", str(fake_install.share("mm_bringup") / "rviz" / "mm.rviz")), "one servo: as shipped"
    (publisher,) = [spec for spec in explicit if spec.package == "robot_state_publisher"]
    assert publisher.parameters["robot_description"] == fake_urdf("mm_minimal", "inertia_disk", "servo1_joint")


def _install_rviz_template(install: FakeInstall) -> None:
    (install.share("mm_bringup") / "rviz").mkdir()
    (install.share("mm_bringup") / "rviz" / "mm.rviz").write_text(RVIZ_TEMPLATE.read_text())


def _robot_models(config: dict[str, Any]) -> list[tuple[str, str]]:
    displays = config["Visualization Manager"]["Displays"]
    return [
        (d["Description Topic"]["Value"], d["TF Prefix"])
        for d in displays
        if d["Class"] == "rviz_default_plugins/RobotModel"
    ]


def test_rviz_config_shows_every_servo() -> None:
    config = yaml.safe_load(rviz_config(RVIZ_TEMPLATE.read_text(), ["/arm1", "/arm2", "/arm3"], "world"))
    assert _robot_models(config) == [
        ("/arm1/robot_description", "arm1"),
        ("/arm2/robot_description", "arm2"),
        ("/arm3/robot_description", "arm3"),
    ]
    classes = [d["Class"] for d in config["Visualization Manager"]["Displays"]]
    assert classes == ["rviz_default_plugins/Grid", *["rviz_default_plugins/RobotModel"] * 3, "rviz_default_plugins/TF"]
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "world"
    # The shipped file itself is the one-servo view.
    assert _robot_models(yaml.safe_load(RVIZ_TEMPLATE.read_text())) == [("/servo1/robot_description", "servo1")]
    with pytest.raises(BringupError, match="RobotModel"):
        rviz_config("Visualization Manager:\n  Displays: []\n  Global Options: {}\n", ["/a1"], "world")


@pytest.mark.parametrize("tf2_ros", [True, False], ids=["with-tf2_ros", "without-tf2_ros"])
def test_several_servos_share_one_world_frame_and_one_rviz_view(
    fake_install: FakeInstall, fake_urdf: Callable[[str, str, str], str], tf2_ros: bool
) -> None:
    for package in ("robot_state_publisher", "rviz2", *(["tf2_ros"] if tf2_ros else [])):
        fake_install.add(package, "static_transform_publisher" if package == "tf2_ros" else package)
    _install_rviz_template(fake_install)
    specs = _describe(fake_install, SIM, "servos:=3", "namespace:=arm", urdf=fake_urdf)
    frames = [spec.arguments for spec in specs if spec.executable == "static_transform_publisher"]
    assert frames == (
        [
            ("--x", x, "--frame-id", "world", "--child-frame-id", f"arm{i}/base_link")
            for i, x in enumerate(("0", "0.25", "0.5"), start=1)
        ]
        if tf2_ros
        else []
    )
    (rviz,) = [spec for spec in specs if spec.package == "rviz2"]
    generated = Path(rviz.arguments[1])
    assert generated == fake_install.root / "gen" / "armx3.rviz"
    config = yaml.safe_load(generated.read_text())
    assert [topic for topic, _ in _robot_models(config)] == [f"/arm{i}/robot_description" for i in (1, 2, 3)]
    fixed = config["Visualization Manager"]["Global Options"]["Fixed Frame"]
    assert fixed == ("world" if tf2_ros else "arm1/base_link")


def test_optional_nodes_can_be_switched_off(
    fake_install: FakeInstall, fake_urdf: Callable[[str, str, str], str]
) -> None:
    fake_install.add("robot_state_publisher", "robot_state_publisher")
    fake_install.add("rviz2", "rviz2")
    words = ("driver:=false", "learner:=false", "robot_state_publisher:=false", "rviz:=false")
    specs = _describe(fake_install, SIM, *words, urdf=fake_urdf)
    assert [spec.executable for spec in specs] == ["virtual_servo"]


@pytest.mark.parametrize(
    ("kind", "words", "match"),
    [
        ("sim", ["servos:=0"], "servos:=0 must be a whole number >= 1"),
        ("sim", ["servos:=two"], "must be a whole number"),
        ("sim", ["transport:=can"], "sim has no argument 'transport'"),
        ("sim", ["rviz:=yes"], "rviz:=yes is not one of true, false"),
        ("sim", ["servos=2"], "not of the form name:=value"),
        ("sim", ["namespace:=/"], "namespace:= must not be empty"),
        ("hardware", ["transport:=serial"], "transport:=serial is not one of ros, can"),
        ("replay", [], "unknown bringup 'replay'"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(
    fake_install: FakeInstall, kind: str, words: list[str], match: str
) -> None:
    with pytest.raises(BringupError, match=match):
        _describe(fake_install, kind, *words)


def test_missing_executable_says_to_rebuild(fake_install: FakeInstall, tmp_path: Path) -> None:
    (fake_install.root / "lib/mm_learning/learner").unlink()
    with pytest.raises(BringupError, match=r"mm_learning has no executable 'learner'.*rebuild"):
        _commands(fake_install, SIM, tmp_path)


@pytest.mark.parametrize("kind", [SIM, HARDWARE])
def test_every_argument_is_described_and_defaults_are_valid(fake_install: FakeInstall, kind: str) -> None:
    for argument in ARGUMENTS[kind]:
        assert len(argument.description) > 20, argument.name
        assert not argument.choices or argument.default in argument.choices, argument.name
    # The defaults alone describe a bringup that starts.
    assert _describe(fake_install, kind)


def test_bringup_yaml_applies_in_every_namespace_and_starts_the_driver() -> None:
    blocks = yaml.safe_load(CONFIG_SOURCES["mm_bringup"].read_text(encoding="utf-8"))
    assert all(key.startswith("/**") for key in blocks), "bringup overrides must match every servo namespace"
    assert blocks["/**/driver"]["ros__parameters"]["autostart"] is True


@pytest.mark.parametrize(
    ("node", "package"), [("virtual_servo", "mm_sim"), ("driver", "mm_driver"), ("learner", "mm_learning")]
)
def test_package_defaults_apply_to_namespaced_nodes(node: str, package: str) -> None:
    """A package's parameter file must reach its node in /servo1: rcl matches keys against /servo1/<node>."""
    blocks = yaml.safe_load(CONFIG_SOURCES[package].read_text(encoding="utf-8"))
    assert {"/**", f"/**/{node}"} & set(blocks), f"{package} keys: {sorted(blocks)}"


def test_configured_parameter_names_the_missing_value(tmp_path: Path) -> None:
    parameter_file = tmp_path / "driver.yaml"
    parameter_file.write_text("/**/driver:\n  ros__parameters:\n    load: spring\n", encoding="utf-8")
    assert configured_parameter(parameter_file, "driver", "load") == "spring"
    with pytest.raises(BringupError, match="sets no 'profile' for node 'driver': set the profile argument"):
        configured_parameter(parameter_file, "driver", "profile")


def test_override_file_is_keyed_like_launch_ros(tmp_path: Path) -> None:
    """launch_ros keys a dict of parameters by the node's full name (or /** without a name)."""
    from mm_bringup.run import overrides_file

    named = NodeSpec("mm_driver", "driver", "driver", "/servo3", parameters={"transport": "can"})
    path = overrides_file(named, tmp_path)
    assert path is not None
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {
        "/servo3/driver": {"ros__parameters": {"transport": "can"}}
    }
    assert overrides_file(NodeSpec("mm_driver", "driver", "driver", "/servo3"), tmp_path) is None


def test_robot_description_is_mm_sims_urdf_for_the_profile_and_load() -> None:
    from mm_bringup.bringup import robot_description

    urdf = robot_description("mm_v3", "spring", "servo2_joint")
    assert '<robot name="mm_servo_mm_v3_spring">' in urdf
    assert '<joint name="servo2_joint" type="continuous">' in urdf and "servo_joint" not in urdf
    with pytest.raises(BringupError, match=r"profile 'mm_v3' / load 'anvil'.*has no load 'anvil'"):
        robot_description("mm_v3", "anvil", "servo1_joint")


def test_bag_adds_one_recorder_of_every_servo_topic(fake_install: FakeInstall, tmp_path: Path) -> None:
    fake_install.add("mm_learning", "learner", "recorder")
    bag = tmp_path / "bags" / "run1"
    commands = _commands(fake_install, SIM, tmp_path, "servos:=2", f"bag:={bag}", "sim_time:=true")
    recorders = [c for c in commands if Path(c[0]).name == "recorder"]
    assert len(recorders) == 1 and len(commands) == 7  # twin, driver, learner per servo, and one recorder
    assert _option_values(recorders[0], "-r") == ["__node:=recorder"]  # root namespace: both servos' topics
    parameters = _overrides(recorders[0])["/recorder"]["ros__parameters"]
    assert parameters["output"] == str(bag)
    assert parameters["use_sim_time"] is True  # stamped in the simulated time the servos publish
    topics = parameters["topics"]
    for servo in ("servo1", "servo2"):
        assert {f"{servo}/state", f"{servo}/transitions", f"{servo}/joint_states", f"{servo}/command"} <= set(topics)
    assert not [c for c in _commands(fake_install, SIM, tmp_path) if Path(c[0]).name == "recorder"]


def test_params_file_comes_after_the_bringup_files_of_every_node(fake_install: FakeInstall, tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    commands = _commands(fake_install, SIM, tmp_path, f"params_file:={mine}", "load:=spring")
    bringup_yaml = str(fake_install.share("mm_bringup") / "config/bringup.yaml")
    for command in commands:
        files = _option_values(command, "--params-file")
        # package defaults, bringup.yaml, the user's file, then the argument overrides (load:=spring)
        assert files[1:3] == [bringup_yaml, str(mine)], command
        assert len(files) == 4
