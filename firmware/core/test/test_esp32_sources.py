"""The ESP-IDF application's C sources compile (syntax and types, -Wall -Wextra -Werror) against the real core
headers and the real rosidl-generated mm_msgs C headers, for each Kconfig variant that changes the code.
Without outside sources ESP-IDF, FreeRTOS, micro-ROS and TFLite Micro come from declaration-only stubs
(firmware/tools/esp32_host_check/check.sh); with IDF_PATH, MM_MICRO_ROS_PATH and MM_TFLITE_MICRO_PATH set, the app
is also compiled against the real component sources for the ESP32 (check_idf.sh, see firmware/README.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mm_testing.fw_support import REPO, require


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


REAL_SOURCES = ("IDF_PATH", "MM_MICRO_ROS_PATH", "MM_TFLITE_MICRO_PATH")


def test_esp32_app_sources_match_real_components() -> None:
    missing = [name for name in REAL_SOURCES if not os.environ.get(name)]
    if missing:
        pytest.skip(
            f"real-source ESP32 check needs {', '.join(missing)} (checkouts of ESP-IDF, micro_ros_espidf_component "
            "and esp-tflite-micro, plus MM_MICRO_ROS_SRC and KCONFGEN: see firmware/README.md); nothing is fetched"
        )
    ament_index = require("ament_index_python.packages")
    try:
        msgs_include = Path(ament_index.get_package_prefix("mm_msgs")) / "include" / "mm_msgs"
    except ament_index.PackageNotFoundError:
        pytest.fail("mm_msgs is not built: run `make build` (colcon) and source install/setup.bash", pytrace=False)
    result = subprocess.run(
        ["sh", str(REPO / "firmware/tools/esp32_host_check/check_idf.sh"), str(msgs_include), str(_ros_include_root())],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok (ESP-IDF esp32") == 3, result.stdout + result.stderr


ESP32 = REPO / "firmware" / "esp32"
# CONFIG_* symbols the app may use without defining them: the components' own Kconfig options (ESP-IDF, FreeRTOS,
# mbedTLS and micro_ros_espidf_component, whose "micro-ROS Settings" menu defines the agent address and Wi-Fi).
COMPONENT_OPTIONS = {
    "CONFIG_IDF_TARGET",
    "CONFIG_FREERTOS_HZ",
    "CONFIG_ESP_MAIN_TASK_STACK_SIZE",
    "CONFIG_ESPTOOLPY_FLASHSIZE_4MB",
    "CONFIG_PARTITION_TABLE_SINGLE_APP_LARGE",
    "CONFIG_COMPILER_OPTIMIZATION_PERF",
    "CONFIG_MBEDTLS_ECDSA_C",
    "CONFIG_MBEDTLS_ECP_C",
    "CONFIG_MBEDTLS_ECP_DP_SECP256R1_ENABLED",
    "CONFIG_MBEDTLS_SHA256_C",
    "CONFIG_MBEDTLS_CMAC_C",
    "CONFIG_MICRO_ROS_AGENT_IP",
    "CONFIG_MICRO_ROS_AGENT_PORT",
    "CONFIG_MICRO_ROS_ESP_NETIF_WLAN",
    "CONFIG_MICRO_ROS_ESP_NETIF_ENET",
    "CONFIG_ESP_WIFI_SSID",
    "CONFIG_ESP_WIFI_PASSWORD",
    "CONFIG_ESP_MAXIMUM_RETRY",
}
# What uros_task.c may create, by the rclc/rcl call that creates it, keyed by the app-colcon.meta limit.
ENTITY_CALLS = {
    "RMW_UXRCE_MAX_NODES": r"\brclc_node_init\w*\s*\(",
    "RMW_UXRCE_MAX_PUBLISHERS": r"\brclc_publisher_init\w*\s*\(",
    "RMW_UXRCE_MAX_SUBSCRIPTIONS": r"\brclc_subscription_init\w*\s*\(",
    "RMW_UXRCE_MAX_SERVICES": r"\brclc_service_init\w*\s*\(",
    "RMW_UXRCE_MAX_CLIENTS": r"\brclc_client_init\w*\s*\(",
}


def _app_sources() -> list[Path]:
    return sorted(p for p in (ESP32 / "main").iterdir() if p.suffix in {".c", ".cc", ".h"})


def test_every_config_symbol_is_defined_by_a_kconfig() -> None:
    kconfig = (ESP32 / "main" / "Kconfig.projbuild").read_text()
    ours = {f"CONFIG_{name}" for name in re.findall(r"^\s*(?:menu)?config\s+(\w+)", kconfig, re.MULTILINE)}
    texts = [p.read_text() for p in _app_sources()] + [(ESP32 / "sdkconfig.defaults").read_text()]
    used = {m for text in texts for m in re.findall(r"(?<![A-Za-z0-9_])CONFIG_[A-Z0-9_]+", text)}
    assert used, "no CONFIG_ symbol found: the pattern is wrong"
    undefined = used - ours - COMPONENT_OPTIONS
    assert not undefined, f"CONFIG_ symbols no Kconfig defines (add them to Kconfig.projbuild): {sorted(undefined)}"


def _rmw_args(name: str) -> list[str]:
    return list(json.loads((ESP32 / name).read_text())["names"]["rmw_microxrcedds"]["cmake-args"])


def test_uart_colcon_meta_differs_only_in_the_transport() -> None:
    # micro-ROS reads app-colcon.meta only; the UART build puts app-colcon-uart.meta in its place (custom transport).
    wifi, uart = _rmw_args("app-colcon.meta"), _rmw_args("app-colcon-uart.meta")
    assert "-DRMW_UXRCE_TRANSPORT=udp" in wifi
    assert "-DRMW_UXRCE_TRANSPORT=custom" in uart
    assert [a for a in wifi if "TRANSPORT=" not in a] == [a for a in uart if "TRANSPORT=" not in a]


def test_micro_ros_entities_fit_the_colcon_meta_limits() -> None:
    args = _rmw_args("app-colcon.meta")
    limits = {m.group(1): int(m.group(2)) for a in args if (m := re.fullmatch(r"-D(RMW_UXRCE_\w+)=(\d+)", a))}
    source = "\n".join(p.read_text() for p in _app_sources())
    counts = {limit: len(re.findall(pattern, source)) for limit, pattern in ENTITY_CALLS.items()}
    assert counts["RMW_UXRCE_MAX_PUBLISHERS"] == 3, counts  # state, transitions, policy_ack
    assert counts["RMW_UXRCE_MAX_SUBSCRIPTIONS"] == 3, counts  # command, heartbeat, policy_chunk
    for limit, count in counts.items():
        assert limit in limits, f"app-colcon.meta sets no {limit}"
        assert count <= limits[limit], f"{count} entities for {limit}={limits[limit]}"
    # The executor's handles: one per subscription, service, client and timer.
    timers = len(re.findall(r"\brclc_timer_init\w*\s*\(", source))
    handles = (
        counts["RMW_UXRCE_MAX_SUBSCRIPTIONS"]
        + counts["RMW_UXRCE_MAX_SERVICES"]
        + counts["RMW_UXRCE_MAX_CLIENTS"]
        + timers
    )
    executor = re.search(r"rclc_executor_init\([^,]+,[^,]+,\s*(\d+)\s*,", source)
    assert executor is not None
    assert handles <= int(executor.group(1))
    assert limits.get("RMW_UXRCE_MAX_HISTORY", 4) >= 1
