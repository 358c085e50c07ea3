"""The driver node with `transport: can` against the virtual servo's CAN side (plant + firmware core + TFLite
Micro, answering the DBC protocol) on a python-can virtual bus. The virtual bus exists only inside one process,
so servo, driver and client share this process (the driver still runs in its own rclpy context).

MoveTo through PID and through a deployed policy over CAN, a 16 KB policy deployed over ISO-TP by the
deploy_policy action, a refusal that keeps the previous policy, and a transfer whose chunks stop: the servo's
TRUNCATED ack is the action's result.

Timing on a loaded or stalling host: the CAN state frames carry no servo time, so moves are judged on the host's
receive stamps; the driver's timeouts (state_timeout_s, ack_timeout_s, each goal's timeout_s) outlast a 2 s stall,
and the test's own waits are hang protection only.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("rclpy")
import can
import rclpy
from cryptography.hazmat.primitives.asymmetric import ec
from driver_support import FaultyLink
from mm_contract.signing import public_key_hex
from mm_driver.driver_node import LATCHED_QOS, DriverNode, DriverParameters
from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig
from mm_testing.ros_support import Client
from policies import pd_policy, sized_policy
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from mm_msgs.action import DeployPolicy, MoveTo
from mm_msgs.msg import PolicyAck, PolicyBlob, ServoCommand

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/can_servo"
DEVICE = 5
MOVE_TIMEOUT_S = 20.0  # host time (CAN states carry no servo time): a stall counts, so the move gets room
WAIT_S = 30.0  # hang protection of the test's own waits


class PacedServo:
    """A VirtualServo stepped in real time (5 ticks per 5 ms) in a thread, serving its CAN port every tick."""

    def __init__(self, servo: VirtualServo) -> None:
        self.servo = servo
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period_s = 5 * self.servo.dt_s
        deadline = time.monotonic()
        while not self._stop.is_set():
            with self.lock:
                self.servo.step(5)
            deadline += period_s
            if time.monotonic() - deadline > 0.05:
                deadline = time.monotonic()  # starved (a loaded machine): resume from now, never a burst
            # Pacing the plant to the wall clock, not synchronising the test.
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def policy_crc32(self) -> int:
        with self.lock:
            return int(self.servo.state().policy_crc32)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rig(key: ec.EllipticCurvePrivateKey) -> Iterator[dict[str, Any]]:
    channel = f"mm-driver-can-{uuid.uuid4().hex}"
    # The watchdog is tested over DDS; here a 2 s timeout keeps a loaded shared machine from tripping it.
    config = VirtualServoConfig(
        load="inertia_disk", public_key_hex=public_key_hex(key), seed=3, heartbeat_timeout_s=2.0
    )
    servo = VirtualServo(config)
    servo_bus = can.Bus(interface="virtual", channel=channel)
    servo.attach_can(servo_bus, DEVICE)
    paced = PacedServo(servo)
    context = Context()
    rclpy.init(context=context)
    overrides = {
        "transport": "can",
        "can_interface": "virtual",
        "can_channel": channel,
        "can_device_id": DEVICE,
        "state_timeout_s": 3.0,
        "ack_timeout_s": 1.0,
    }
    node = DriverNode(
        context=context,
        namespace=NS,
        parameter_overrides=[Parameter(name, value=value) for name, value in overrides.items()],
    )
    executor = MultiThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:  # spin_once in a loop that ends before the executor shuts down (see ros_support.Client)
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    client = Client("can_driver_client")
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        yield {
            "paced": paced,
            "client": client,
            "move": client.action(MoveTo, f"{NS}/move_to"),
            "deploy": client.action(DeployPolicy, f"{NS}/deploy_policy"),
            "blob": client.node.create_publisher(PolicyBlob, f"{NS}/policy", LATCHED_QOS),
            "node": node,
        }
    finally:
        client.close()
        node.trigger_shutdown()
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        paced.close()
        servo_bus.shutdown()


def _deploy(rig: dict[str, Any], image: bytes) -> Any:
    rig["blob"].publish(PolicyBlob(image=list(image), policy_crc32=zlib.crc32(image)))
    client, node = rig["client"], rig["node"]
    client.wait_for(lambda: node._blob is not None and bytes(node._blob.image) == image, WAIT_S, "the blob")
    accepted, result, _ = client.call(rig["deploy"], DeployPolicy.Goal())
    assert accepted
    return result


def test_joint_states_from_can_state_frames(rig: dict[str, Any]) -> None:
    client = rig["client"]
    joints = client.subscribe(JointState, f"{NS}/joint_states")
    try:
        client.wait_for(lambda: len(joints) > 5, WAIT_S, "joint_states from CAN")
    finally:
        # Servo, driver and client share this process: 200 Hz of joint_states callbacks left running starve the
        # ISO-TP flow control of the later deploy tests (a 16 KB deploy took 330 s instead of 9 s).
        client.unsubscribe(f"{NS}/joint_states")
    assert list(joints[-1].name) == [f"{NS.strip('/')}_joint"]  # one joint name per servo: its namespace


def test_pid_moves_over_can(rig: dict[str, Any]) -> None:
    for target in (1.0, -0.7, 2.2):
        goal = MoveTo.Goal(target_rad=target, tolerance_rad=0.02, controller="pid", timeout_s=MOVE_TIMEOUT_S)
        accepted, result, _ = rig["client"].call(rig["move"], goal)
        assert accepted and result.success, result.message
        assert abs(result.final_error_rad) < 0.02


def test_16k_policy_over_isotp_then_refusal_then_policy_moves(
    rig: dict[str, Any], key: ec.EllipticCurvePrivateKey, report: Any
) -> None:
    big = sized_policy(key, hidden=100)
    result = _deploy(rig, big)
    assert result.success, result.message
    assert rig["paced"].policy_crc32() == zlib.crc32(big) == result.active_policy_crc32
    report(f"CAN (virtual bus, ISO-TP): {len(big)} B policy deployed by the driver in {result.elapsed_s:.3f} s wall")
    other = ec.generate_private_key(ec.SECP256R1())
    refused = _deploy(rig, sized_policy(other, hidden=100))
    assert not refused.success and "SIGNATURE" in refused.message
    assert rig["paced"].policy_crc32() == zlib.crc32(big) == refused.active_policy_crc32
    pd = pd_policy(key)
    assert _deploy(rig, pd).success
    for target in (0.8, -1.5):
        goal = MoveTo.Goal(target_rad=target, tolerance_rad=0.02, controller="policy", timeout_s=MOVE_TIMEOUT_S)
        accepted, moved, _ = rig["client"].call(rig["move"], goal)
        assert accepted and moved.success, moved.message


def test_a_transfer_whose_chunks_stop_ends_with_the_servos_truncated_ack(
    rig: dict[str, Any], key: ec.EllipticCurvePrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's link stops delivering after 5 chunks (ISO-TP messages): the driver stops sending after its
    silent rounds, the servo abandons the transfer after its transfer timeout (2 s of control time) and sends a
    REJECTED/TRUNCATED POLICY_ACK frame, and DeployPolicy reports that verdict with the policy the servo still
    runs.
    """
    node, paced = rig["node"], rig["paced"]
    previous = paced.policy_crc32()
    monkeypatch.setattr(node._deployer, "_link", FaultyLink(node._transport, stop_after=5))
    result = _deploy(rig, sized_policy(key, hidden=100))
    assert not result.success
    assert "refused by the servo (TRUNCATED" in result.message, result.message
    assert node._last_ack is not None and node._last_ack.reason == PolicyAck.REASON_TRUNCATED
    assert result.active_policy_crc32 == previous == paced.policy_crc32()


def test_torque_command_over_can(rig: dict[str, Any]) -> None:
    """The driver's servo_command path works the same on CAN (COMMAND frame, target in A)."""
    client, servo = rig["client"], rig["paced"]
    publisher = client.node.create_publisher(ServoCommand, f"{NS}/servo_command", 10)
    joints = client.subscribe(JointState, f"{NS}/joint_states")
    try:
        client.wait_for(lambda: publisher.get_subscription_count() > 0, WAIT_S, "the driver's servo_command")
        publisher.publish(ServoCommand(mode=ServoCommand.MODE_TORQUE, target=0.25))
        client.wait_for(lambda: bool(joints) and abs(joints[-1].velocity[0]) > 1.0, WAIT_S, "the shaft to spin up")
        with servo.lock:
            state = servo.servo.state()
        assert state.mode == ServoCommand.MODE_TORQUE and state.current_cmd_a == pytest.approx(0.25, abs=0.02)
        publisher.publish(ServoCommand(mode=ServoCommand.MODE_HOLD))
        client.wait_for(lambda: abs(joints[-1].velocity[0]) < 0.5, WAIT_S, "the shaft to stop in HOLD")
    finally:
        client.node.destroy_publisher(publisher)
        client.unsubscribe(f"{NS}/joint_states")


@pytest.mark.parametrize(
    ("overrides", "logged"),
    [
        ({"transport": "serial"}, "transport 'serial' is unknown"),
        ({"transport": "can", "can_interface": "no-such-bus"}, "cannot open CAN interface 'no-such-bus'"),
        ({"profile": "no_such_profile"}, "profile/load parameters"),
        ({"position_min_rad": 1.0, "position_max_rad": -1.0}, "position limits"),
    ],
)
def test_configure_fails_cleanly_on_bad_parameters(
    overrides: dict[str, Any], logged: str, capfd: pytest.CaptureFixture[str]
) -> None:
    context = Context()
    rclpy.init(context=context)
    try:
        node = DriverNode(
            context=context, parameter_overrides=[Parameter(name, value=value) for name, value in overrides.items()]
        )
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert logged in capfd.readouterr().err
        # Nothing was left open: a corrected configuration can be tried again from the same node.
        node.set_parameters([Parameter(name, value=getattr(DriverParameters(), name)) for name in overrides])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
