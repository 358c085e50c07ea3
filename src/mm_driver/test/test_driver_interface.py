"""What a ros2cli user meets on the driver, across processes (driver and twin each in their own process):
parameters that are checked and take effect, `~/clear_faults`, lifecycle deactivate/activate, and the reason of
an invalid MoveTo goal in its result.

Run inside the loopback-only namespace: tools/run_tests.sh src/mm_driver/test/test_driver_interface.py
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from mm_testing.ros_support import Client, driver_args, node_process, twin_args, wait, write_params
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from std_srvs.srv import Trigger

from mm_msgs.action import MoveTo
from mm_msgs.msg import ServoState

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/citizen"
WAIT_S = 30.0  # hang protection of the test's own waits (wall clock)
LOST = ServoState.FAULT_HEARTBEAT_LOST


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Twin (0.5 s watchdog) + driver (autostart) in NS, and a client with the driver's interfaces."""
    root = tmp_path_factory.mktemp("citizen")
    params = write_params(root / "driver.yaml", "/**", {"autostart": True, "state_timeout_s": 3.0})
    twin = twin_args(NS, load="inertia_disk", heartbeat_timeout_s=0.5)
    with (
        node_process(twin, root / "twin.log") as twin_proc,
        node_process(driver_args(NS, params), root / "driver.log") as driver_proc,
    ):
        client = Client("citizen_client")
        client.watch("twin", twin_proc, root / "twin.log")
        client.watch("driver", driver_proc, root / "driver.log")
        try:
            states = client.subscribe(ServoState, f"{NS}/state", qos_profile_sensor_data)
            client.wait_for(lambda: bool(states), WAIT_S, "a servo state")
            clear = client.node.create_client(Trigger, f"{NS}/driver/clear_faults")
            change = client.node.create_client(ChangeState, f"{NS}/driver/change_state")
            assert clear.wait_for_service(timeout_sec=WAIT_S) and change.wait_for_service(timeout_sec=WAIT_S)
            yield {
                "client": client,
                "states": states,
                "move": client.action(MoveTo, f"{NS}/move_to"),
                "params": AsyncParameterClient(client.node, f"{NS}/driver"),
                "clear": clear,
                "change": change,
                "driver": driver_proc,
                "driver_log": root / "driver.log",
            }
        finally:
            client.close()


def _move(rig: dict[str, Any], target_rad: float, **fields: Any) -> tuple[bool, Any, int]:
    return rig["client"].call(rig["move"], MoveTo.Goal(target_rad=target_rad, controller="pid", **fields))


def _set(rig: dict[str, Any], name: str, value: Any) -> Any:
    params: AsyncParameterClient = rig["params"]
    assert params.wait_for_services(timeout_sec=WAIT_S)
    (result,) = wait(params.set_parameters([Parameter(name, value=value)]), WAIT_S).results
    return result


def _transition(rig: dict[str, Any], transition: int) -> bool:
    request = ChangeState.Request(transition=Transition(id=transition))
    return bool(wait(rig["change"].call_async(request), WAIT_S).success)


def test_parameters_are_described_checked_and_take_effect(rig: dict[str, Any]) -> None:
    params: AsyncParameterClient = rig["params"]
    assert params.wait_for_services(timeout_sec=WAIT_S)
    (described,) = wait(params.describe_parameters(["position_max_rad"]), WAIT_S).descriptors
    assert described.description and described.floating_point_range
    assert described.floating_point_range[0].to_value < 1000.0
    (autostart,) = wait(params.describe_parameters(["autostart"]), WAIT_S).descriptors
    assert autostart.read_only

    refused = {
        "position_max_rad": 1000.0,  # out of range
        "autostart": False,  # read-only
        "default_controller": "magic",  # not a choice
        "transport": "can",  # takes effect at configure only: refused while configured
        "position_min_rad": 20.0,  # above position_max_rad
    }
    for name, value in refused.items():
        result = _set(rig, name, value)
        assert not result.successful and result.reason, f"{name} := {value!r} was accepted"
    assert "read-only" in _set(rig, "autostart", True).reason
    assert "configure" in _set(rig, "transport", "can").reason
    (value,) = wait(params.get_parameters(["position_max_rad"]), WAIT_S).values
    assert (value.type, value.double_value) == (ParameterType.PARAMETER_DOUBLE, 12.566)

    # A valid value takes effect at once: targets beyond the new limit are refused with the limit in the reason.
    assert _set(rig, "position_max_rad", 1.0).successful
    try:
        accepted, result, status = _move(rig, 1.5)
        assert accepted and status == GoalStatus.STATUS_ABORTED and not result.success
        assert "outside the limits" in result.message and "1]" in result.message
        accepted, result, _ = _move(rig, 0.8)
        assert accepted and result.success, result.message
    finally:
        assert _set(rig, "position_max_rad", 12.566).successful


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"target_rad": float("nan")}, "target_rad is nan"),
        ({"target_rad": 100.0}, "outside the limits"),
        ({"target_rad": 0.5, "timeout_s": 1e6}, "timeout_s"),
        ({"target_rad": 0.5, "controller": "magic"}, "controller 'magic' is unknown"),
        ({"target_rad": 0.5, "controller": "policy"}, "the servo has no policy"),
    ],
)
def test_invalid_goals_are_aborted_with_the_reason_in_the_result(
    rig: dict[str, Any], fields: dict[str, Any], reason: str
) -> None:
    accepted, result, status = rig["client"].call(rig["move"], MoveTo.Goal(**fields))
    assert accepted and status == GoalStatus.STATUS_ABORTED
    assert not result.success and reason in result.message
    assert reason in rig["driver_log"].read_text()


def test_deactivate_then_activate_clears_its_own_heartbeat_fault(rig: dict[str, Any]) -> None:
    client, states = rig["client"], rig["states"]
    accepted, result, _ = _move(rig, 0.5)
    assert accepted and result.success, result.message
    assert _transition(rig, Transition.TRANSITION_DEACTIVATE)
    # HOLD without heartbeats: the servo's watchdog latches HEARTBEAT_LOST after 0.5 s of its time.
    client.wait_for(lambda: bool(states[-1].fault_flags & LOST), WAIT_S, "HEARTBEAT_LOST after deactivate")
    response = wait(rig["clear"].call_async(Trigger.Request()), WAIT_S)
    assert not response.success and "not active" in response.message
    assert _transition(rig, Transition.TRANSITION_ACTIVATE)
    client.wait_for(lambda: not states[-1].fault_flags & LOST, WAIT_S, "HEARTBEAT_LOST cleared on activate")
    accepted, result, _ = _move(rig, -0.5)
    assert accepted and result.success, result.message


def test_clear_faults_service_reports_what_cleared(rig: dict[str, Any]) -> None:
    client, states = rig["client"], rig["states"]
    response = wait(rig["clear"].call_async(Trigger.Request()), WAIT_S)
    assert response.success and response.message == "no faults latched"
    accepted, result, _ = _move(rig, 0.2)
    assert accepted and result.success, result.message
    # The driver stops (its heartbeats with it) longer than the servo's watchdog timeout.
    os.kill(rig["driver"].pid, signal.SIGSTOP)
    try:
        client.wait_for(lambda: bool(states[-1].fault_flags & LOST), WAIT_S, "HEARTBEAT_LOST while stopped")
    finally:
        os.kill(rig["driver"].pid, signal.SIGCONT)
    accepted, result, _ = _move(rig, 0.4)
    assert accepted and not result.success and "HEARTBEAT_LOST" in result.message
    response = wait(rig["clear"].call_async(Trigger.Request()), WAIT_S)
    assert response.success, response.message
    assert "cleared: HEARTBEAT_LOST" in response.message
    # The driver answered once the servo's state showed the fault gone; this client's copy of that state may
    # still be on its way.
    client.wait_for(lambda: not states[-1].fault_flags & LOST, WAIT_S, "HEARTBEAT_LOST cleared in the state")
    accepted, result, _ = _move(rig, 0.4)
    assert accepted and result.success, result.message
