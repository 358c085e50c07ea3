"""The ESP-IDF application's C sources compile (syntax and types, -Wall -Wextra -Werror) against the real core
headers and the real rosidl-generated mm_msgs C headers, for each Kconfig variant that changes the code.
ESP-IDF itself is not available here: its APIs come from declaration-only stubs (firmware/tools/esp32_host_check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fw_support import REPO, require


def _ros_include_root() -> Path:
    distro = os.environ.get("ROS_DISTRO")
    return Path(f"/opt/ros/{distro}/include") if distro else Path(sys.prefix) / "include"


def test_esp32_app_sources_match_core_and_messages() -> None:
    ament_index = require("ament_index_python.packages")
    try:
        msgs_include = Path(ament_index.get_package_prefix("mm_msgs")) / "include" / "mm_msgs"
    except ament_index.PackageNotFoundError:
        pytest.fail("mm_msgs is not built: run `make build` (colcon) and source install/setup.bash", pytrace=False)
    ros_include = _ros_include_root()
    assert (ros_include / "rcl" / "rcl" / "rcl.h").is_file() or (ros_include / "rcl" / "rcl.h").is_file(), (
        f"rcl headers not found under {ros_include}"
    )
    result = subprocess.run(
        ["sh", str(REPO / "firmware/tools/esp32_host_check/check.sh"), str(msgs_include), str(ros_include)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok:") == 3
