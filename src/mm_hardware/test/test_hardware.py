"""The ros2_control hardware interface (src/mm_hardware): its ROS-free core's C++ tests, run by ctest from the
colcon build, and the consistency of the package's plugin description, example URDF and controller file.

The plugin itself (MmSystemHardware) needs ros2_control, which is not installed here: colcon builds only the core
and its tests (README.md, section "ros2_control": what was and was not built).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from mm_testing.ctest_support import run_ctest
from mm_testing.paths import REPO

PACKAGE = REPO / "src" / "mm_hardware"
BUILD_DIR = Path(os.environ.get("MM_HARDWARE_BUILD_DIR", REPO / "build" / "mm_hardware"))
XACRO_NS = "{http://www.ros.org/wiki/xacro}"


def _registered_tests() -> list[str]:
    """The test names CMakeLists.txt registers with add_test (one ctest per C++ test function)."""
    text = (PACKAGE / "CMakeLists.txt").read_text()
    block = re.search(r"foreach\(name\s+(.*?)\)", text, re.S)
    assert block is not None, "CMakeLists.txt registers no C++ tests"
    return block.group(1).split()


def test_core_ctest_passes() -> None:
    """Frame round trips against the firmware's decoder, faults to read errors, re-activation clearing them,
    heartbeats against the firmware's watchdog, mode switching, mock echo, configuration checks.
    """
    output = run_ctest(
        BUILD_DIR, "run tools/build_ws.sh (BUILD_TESTING=ON) or set MM_HARDWARE_BUILD_DIR to the mm_hardware build"
    )
    names = _registered_tests()
    assert f"tests passed, 0 tests failed out of {len(names)}" in output, output


def test_every_cpp_test_is_registered() -> None:
    """Each test function in main()'s table is an add_test of CMakeLists.txt, so none is silently skipped."""
    source = (PACKAGE / "test" / "test_servo_system.cpp").read_text()
    table = re.findall(r'\{"(\w+)",\s*\w+\}', source)
    assert table, "no test table found in test_servo_system.cpp"
    assert sorted(table) == sorted(_registered_tests())


def _ros2_control_tag() -> ET.Element:
    root = ET.parse(PACKAGE / "description" / "ros2_control" / "mm_servos.ros2_control.xacro").getroot()
    macro = next(m for m in root.iter(f"{XACRO_NS}macro") if m.get("name") == "mm_servos_ros2_control")
    tag = macro.find("ros2_control")
    assert tag is not None
    return tag


def test_urdf_names_the_exported_plugin() -> None:
    """The <plugin> of the example URDF is the class mm_hardware.xml exports, and the source exports that type."""
    library = ET.parse(PACKAGE / "mm_hardware.xml").getroot()
    cls = library.find("class")
    assert cls is not None
    assert cls.get("base_class_type") == "hardware_interface::SystemInterface"
    assert _ros2_control_tag().findtext("hardware/plugin") == cls.get("name")
    source = (PACKAGE / "src" / "mm_system_hardware.cpp").read_text()
    assert f"PLUGINLIB_EXPORT_CLASS({cls.get('type')}, hardware_interface::SystemInterface)" in source
    assert library.get("path") == "mm_hardware"
    assert "add_library(mm_hardware SHARED" in (PACKAGE / "CMakeLists.txt").read_text()


def test_controllers_use_interfaces_the_urdf_exports() -> None:
    """joint_trajectory_controller's joints and interfaces exist in the <ros2_control> tag, and the update rate
    gives a heartbeat at least every heartbeat_period_s.
    """
    root = ET.parse(PACKAGE / "description" / "ros2_control" / "mm_servos.ros2_control.xacro").getroot()
    joint_macro = next(m for m in root.iter(f"{XACRO_NS}macro") if m.get("name") == "mm_servo_joint")
    commands = {c.get("name") for c in joint_macro.iter("command_interface")}
    states = {s.get("name") for s in joint_macro.iter("state_interface")}
    tag = _ros2_control_tag()
    joints = [j.get("name") for j in tag.iter(f"{XACRO_NS}mm_servo_joint")]
    assert len(set(joints)) == len(joints) == 2
    node_ids = [j.get("node_id") for j in tag.iter(f"{XACRO_NS}mm_servo_joint")]
    assert len(set(node_ids)) == len(node_ids)

    config = yaml.safe_load((PACKAGE / "config" / "mm_controllers.yaml").read_text())
    jtc = config["joint_trajectory_controller"]["ros__parameters"]
    assert set(jtc["joints"]) <= set(joints)
    assert set(jtc["command_interfaces"]) <= commands
    assert set(jtc["state_interfaces"]) <= states
    params = {p.get("name"): p.text or "" for p in tag.iter("param")}
    period_s = float(params["heartbeat_period_s"])
    assert 1.0 / config["controller_manager"]["ros__parameters"]["update_rate"] <= period_s
