"""The driver node against the virtual servo (mm_sim twin node), each in its own process, over DDS.

MoveTo to 20 seeded targets through PID and through a deployed quantised policy; policy deployment over ROS
chunks (16 KB accepted; corrupted chunk, wrong CRC, bad signature, truncated image and an abandoned transfer
refused with the previous policy still active); goal rejection, preemption and cancel; robot_description,
joint_states and diagnostics; heartbeat loss; two servos in two namespaces; lifecycle transitions.

Timing on a loaded or stalling host: what is asserted about the servo is read in the servo's own time (its state
stamps and ticks; the heartbeat test steps a virtual servo itself, so no wall stall exists for that servo). The
driver runs with parameters that tolerate a 1-2 s stall of any process (state_timeout_s, ack_timeout_s; the rig's
watchdog timeout is long because the watchdog has its own test), and every wall-clock wait of the test is hang
protection only.

Run inside the loopback-only namespace: tools/run_tests.sh src/mm_driver/test/test_driver_node.py
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time
from cryptography.hazmat.primitives.asymmetric import ec
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from driver_support import FaultyLink, wrong_crc_image
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from mm_contract.registry import Registry
from mm_contract.signing import public_key_hex
from mm_driver.deploy import Deployer
from mm_driver.driver_node import LATCHED_QOS
from mm_driver.ros_transport import RELIABLE_QOS, RosTransport
from mm_driver.transport import Mode
from mm_sim.evaluate import seeded_moves
from mm_sim.twin_node import CLOCK_QOS, VirtualServoNode
from mm_testing.ros_support import (
    Client,
    driver_args,
    node_process,
    ros_context,
    stamp_s,
    twin_args,
    wait,
    write_params,
)
from policies import pd_policy, sized_policy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from mm_msgs.action import DeployPolicy, MoveTo
from mm_msgs.msg import Heartbeat, PolicyAck, PolicyBlob, ServoCommand, ServoState

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NS = "/servo1"
TOLERANCE_RAD = 0.02
STALL_TOLERANT = {"state_timeout_s": 3.0, "ack_timeout_s": 1.0}  # driver parameters that outlast a 2 s stall
WAIT_S = 30.0  # hang protection of the test's own waits (wall clock)


@pytest.fixture(scope="module")
def keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """The key the servos trust, and another one."""
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def images(keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]) -> dict[str, bytes]:
    """Quantised policies converted by mm_learning: the PD actor, and a ~16 KB random one."""
    key, other = keys
    big = sized_policy(key, hidden=100)
    return {"pd": pd_policy(key), "16k": big, "16k_other_key": sized_policy(other, hidden=100)}


@pytest.fixture(scope="module")
def rig(
    tmp_path_factory: pytest.TempPathFactory,
    keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey],
    images: dict[str, bytes],
) -> Iterator[dict[str, Any]]:
    """Twin + driver in NS (real time, inertia disk), a registry holding the PD policy, and a client.

    The twin's watchdog allows 3 s without a heartbeat, so a starved driver does not trip it in the other tests.
    """
    root = tmp_path_factory.mktemp("driver")
    registry = Registry(root / "policies")
    pd_entry = registry.add(images["pd"], {"objective": "accuracy", "algorithm": "ppo"})
    params = write_params(
        root / "driver.yaml",
        "/**",
        {"autostart": True, "registry_dir": str(registry.root), "default_timeout_s": 3.0} | STALL_TOLERANT,
    )
    twin = twin_args(NS, load="inertia_disk", public_key=public_key_hex(keys[0]), seed=1, heartbeat_timeout_s=3.0)
    with (
        node_process(twin, root / "twin.log") as twin_proc,
        node_process(driver_args(NS, params), root / "driver.log") as driver_proc,
    ):
        client = Client("driver_test_client")
        client.watch("twin", twin_proc, root / "twin.log")
        client.watch("driver", driver_proc, root / "driver.log")
        try:
            states = client.subscribe(ServoState, f"{NS}/state", qos_profile_sensor_data)
            yield {
                "client": client,
                "states": states,
                "move": client.action(MoveTo, f"{NS}/move_to"),
                "deploy": client.action(DeployPolicy, f"{NS}/deploy_policy"),
                "pd_id": pd_entry.policy_id,
                "driver_log": root / "driver.log",
            }
        finally:
            client.close()


def _latest_state(rig: dict[str, Any]) -> ServoState:
    client, states = rig["client"], rig["states"]
    client.wait_for(lambda: bool(states), WAIT_S, "a servo state")
    return states[-1]


def _move(rig: dict[str, Any], target_rad: float, controller: str = "pid", **fields: Any) -> tuple[bool, Any, int]:
    goal = MoveTo.Goal(target_rad=target_rad, tolerance_rad=TOLERANCE_RAD, controller=controller, **fields)
    return rig["client"].call(rig["move"], goal)


def test_description_joint_states_and_diagnostics(rig: dict[str, Any]) -> None:
    client = rig["client"]
    description = client.subscribe(String, f"{NS}/robot_description", LATCHED_QOS)
    joints = client.subscribe(JointState, f"{NS}/joint_states")
    diagnostics = client.subscribe(DiagnosticArray, "/diagnostics")
    client.wait_for(lambda: bool(description and joints and diagnostics), WAIT_S, "description, joints, diagnostics")
    assert '<joint name="servo1_joint"' in description[0].data  # from the namespace: one name per servo
    assert list(joints[-1].name) == ["servo1_joint"] and len(joints[-1].position) == 1
    client.wait_for(
        lambda: any(s.level == DiagnosticStatus.OK and s.name.endswith(": servo") for s in diagnostics[-1].status),
        WAIT_S,
        "an OK servo diagnostic",
    )
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    assert values["faults"] == "none" and values["policy_crc32"] == "00000000"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"target_rad": math.nan}, "target_rad is nan"),
        ({"target_rad": 100.0}, "outside the limits"),
        ({"target_rad": 0.5, "tolerance_rad": -0.1}, "tolerance_rad"),
        ({"target_rad": 0.5, "timeout_s": 1e6}, "timeout_s"),
        ({"target_rad": 0.5, "controller": "magic"}, "controller 'magic' is unknown"),
        ({"target_rad": 0.5, "controller": "policy"}, "the servo has no policy"),
    ],
)
def test_bad_goals_are_aborted_with_the_reason_in_the_result_and_log(
    rig: dict[str, Any], fields: dict[str, Any], reason: str
) -> None:
    _latest_state(rig)
    accepted, result, _ = rig["client"].call(rig["move"], MoveTo.Goal(**fields))
    assert accepted and not result.success and reason in result.message
    assert reason in rig["driver_log"].read_text()


def _twenty_moves(rig: dict[str, Any], controller: str, report: Any) -> None:
    targets = [m.target_rad for m in seeded_moves(20, seed=11)]
    errors, settles, energies = [], [], []
    for target in targets:
        accepted, result, _ = _move(rig, target, controller)
        assert accepted
        assert result.success, f"{controller} move to {target:.3f}: {result.message}"
        assert abs(result.final_error_rad) < TOLERANCE_RAD
        assert result.elapsed_s > 0.0 and result.peak_current_a > 0.0 and result.energy_j > 0.0
        errors.append(abs(result.final_error_rad))
        settles.append(result.settle_time_s)
        energies.append(result.energy_j)
        state = _latest_state(rig)
        assert state.mode == (Mode.POSITION if controller == "pid" else Mode.POLICY)
    report(
        f"driver+twin MoveTo x20 ({controller}): max |final error| {max(errors) * 1e3:.2f} mrad, "
        f"mean settle {sum(settles) / 20:.3f} s, mean energy {sum(energies) / 20:.3f} J"
    )


def test_move_to_20_seeded_targets_with_pid(rig: dict[str, Any], report: Any) -> None:
    _twenty_moves(rig, "pid", report)


def _publish_blob(rig: dict[str, Any], image: bytes) -> None:
    node = rig["client"].node
    if "blob_pub" not in rig:
        rig["blob_pub"] = node.create_publisher(PolicyBlob, f"{NS}/policy", LATCHED_QOS)
    rig["blob_pub"].publish(PolicyBlob(image=list(image), policy_crc32=zlib.crc32(image), policy_id="test"))


def _deploy(rig: dict[str, Any], policy_id: str = "") -> Any:
    feedback: list[Any] = []
    accepted, result, _ = rig["client"].call(rig["deploy"], DeployPolicy.Goal(policy_id=policy_id), feedback=feedback)
    assert accepted
    return result, feedback


def test_16k_policy_over_ros_chunks_is_accepted(rig: dict[str, Any], images: dict[str, bytes], report: Any) -> None:
    image = images["16k"]
    _publish_blob(rig, image)
    # The blob is taken from the transient-local topic; wait until the driver has it.
    rig["client"].wait_for(lambda: "ready" in rig["driver_log"].read_text(), WAIT_S, "the driver to take the blob")
    result, feedback = _deploy(rig)
    assert result.success, result.message
    assert result.active_policy_crc32 == zlib.crc32(image)
    assert result.chunks_sent >= math.ceil(len(image) / 448)
    assert {f.phase for f in feedback} >= {"sending", "verifying"}
    assert feedback[-1].total_chunks == math.ceil(len(image) / 448)
    # Feedback (a topic) and result (a service) race; the verdict's feedback counts every chunk as acknowledged.
    rig["client"].wait_for(lambda: feedback[-1].chunks_acked == feedback[-1].total_chunks, WAIT_S, "chunks_acked")
    rig["client"].wait_for(
        lambda: rig["states"][-1].policy_crc32 == zlib.crc32(image), WAIT_S, "the state to show the new policy"
    )
    report(f"ROS chunks: {len(image)} B policy deployed in {result.elapsed_s:.3f} s ({result.chunks_sent} chunks)")


@pytest.mark.parametrize("case", ["wrong_crc", "bad_signature", "truncated_image"])
def test_bad_blobs_are_refused_and_the_previous_policy_stays(
    rig: dict[str, Any],
    keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey],
    images: dict[str, bytes],
    case: str,
) -> None:
    previous = _latest_state(rig).policy_crc32
    assert previous == zlib.crc32(images["16k"])
    image = {
        "wrong_crc": lambda: wrong_crc_image(keys[0], 16 * 1024),
        "bad_signature": lambda: images["16k_other_key"],
        "truncated_image": lambda: images["16k"][:-1000],
    }[case]()
    blobs_taken = rig["driver_log"].read_text().count("ready")
    _publish_blob(rig, image)
    rig["client"].wait_for(
        lambda: rig["driver_log"].read_text().count("ready") > blobs_taken, WAIT_S, "the driver to take the new blob"
    )
    result, _ = _deploy(rig)
    assert not result.success
    expected = {"wrong_crc": "CRC", "bad_signature": "SIGNATURE", "truncated_image": "FORMAT"}[case]
    assert f"refused by the servo ({expected}" in result.message
    assert result.active_policy_crc32 == previous == result.previous_policy_crc32
    assert _latest_state(rig).policy_crc32 == previous


@pytest.mark.parametrize("case", ["corrupted_chunk", "abandoned_transfer"])
def test_faulty_chunk_streams_are_refused(rig: dict[str, Any], images: dict[str, bytes], case: str) -> None:
    """The test sends the chunks itself (RosTransport + Deployer in a node of its own in NS), through a link that
    corrupts one chunk or stops after 12 of them. A stopped transfer ends with the servo's own verdict: after its
    transfer timeout (2 s of servo time) it publishes REJECTED/TRUNCATED on `policy_ack` with the chunks it had,
    and the deployer, which stopped sending after 3 silent rounds, reports that verdict.
    """
    client = rig["client"]
    previous = _latest_state(rig).policy_crc32
    acks = client.messages.get(f"{NS}/policy_ack") or client.subscribe(PolicyAck, f"{NS}/policy_ack", RELIABLE_QOS)
    transfer_id = {"corrupted_chunk": 0x5EED0001, "abandoned_transfer": 0x5EED0002}[case]
    # A client of its own (context and spinning thread), not a node added to and removed from the running
    # client's executor: once under load (two CPU hogs) that client received nothing more after this test.
    sender = Client("chunk_sender", namespace=NS)
    transport = RosTransport(sender.node, chunk_size=448)
    faults: dict[str, Any] = {"corrupt": 7} if case == "corrupted_chunk" else {"stop_after": 12}
    deployer = Deployer(
        FaultyLink(transport, **faults), chunk_size=448, ack_timeout_s=1.0, max_rounds=3, verdict_timeout_s=WAIT_S
    )
    transport.open(lambda _: None, deployer.on_ack)
    try:
        sender.wait_for(
            lambda: (
                sender.node.count_publishers(f"{NS}/policy_ack") > 0
                and sender.node.count_subscribers(f"{NS}/policy_chunk") > 0
            ),
            WAIT_S,
            "the servo's policy topics",
        )
        outcome = deployer.deploy(images["16k"], previous_policy_crc32=previous, transfer_id=transfer_id)
    finally:
        sender.stop()
        transport.close()
        sender.close()
    assert not outcome.success
    expected = "CRC" if case == "corrupted_chunk" else "TRUNCATED"
    assert outcome.reason.name == expected, outcome.message
    assert f"refused by the servo ({expected}" in outcome.message, "the servo's verdict, not the deployer's"
    if case == "abandoned_transfer":
        client.wait_for(lambda: any(a.transfer_id == transfer_id for a in acks), WAIT_S, "the ack")
        (truncated,) = [a for a in acks if a.transfer_id == transfer_id]
        assert (truncated.status, truncated.reason) == (PolicyAck.STATUS_REJECTED, PolicyAck.REASON_TRUNCATED)
        # The chunks go back to back and the twin's reader keeps 10, so some of the 12 may have been dropped.
        assert 0 < truncated.received_chunks <= 12 and truncated.active_policy_crc32 == previous
    assert _latest_state(rig).policy_crc32 == previous == outcome.active_policy_crc32


def test_move_to_20_seeded_targets_with_a_deployed_policy(rig: dict[str, Any], report: Any) -> None:
    result, _ = _deploy(rig, rig["pd_id"][:12])  # from the registry, by id prefix
    assert result.success, result.message
    _twenty_moves(rig, "policy", report)


def test_preemption_and_cancel_hold(rig: dict[str, Any]) -> None:
    client = rig["client"]
    first_handle: list[Any] = []
    results: list[Any] = []

    def preempt(handle: Any) -> None:
        first_handle.append(handle)
        results.append(client.call(rig["move"], MoveTo.Goal(target_rad=-2.0, controller="pid"), on_accepted=cancel))

    def cancel(handle: Any) -> None:
        wait(handle.cancel_goal_async(), WAIT_S)

    accepted, first, _ = client.call(
        rig["move"], MoveTo.Goal(target_rad=2.5, controller="pid", timeout_s=20.0), on_accepted=preempt
    )
    assert accepted and not first.success and "preempted" in first.message
    ((second_accepted, second, _),) = results
    assert second_accepted and not second.success and "cancelled" in second.message
    client.wait_for(lambda: rig["states"][-1].mode == Mode.HOLD, WAIT_S, "HOLD after cancel")


def test_torque_and_hold_through_the_driver_servo_command(rig: dict[str, Any]) -> None:
    """Baselines that need other modes use the driver's `servo_command`; bad ones are ignored with a reason."""
    client, states = rig["client"], rig["states"]
    publisher = client.node.create_publisher(ServoCommand, f"{NS}/servo_command", 10)
    try:
        client.wait_for(lambda: publisher.get_subscription_count() > 0, WAIT_S, "the driver's servo_command")
        publisher.publish(ServoCommand(mode=ServoCommand.MODE_POSITION, target=100.0))
        client.wait_for(lambda: "ignored servo_command (mode 3)" in rig["driver_log"].read_text(), WAIT_S, "the log")
        start = states[-1].position_rad
        publisher.publish(ServoCommand(mode=ServoCommand.MODE_TORQUE, target=0.3))
        client.wait_for(
            lambda: states[-1].mode == Mode.TORQUE and abs(states[-1].position_rad - start) > 0.5, WAIT_S, "torque"
        )
        assert states[-1].current_cmd_a == pytest.approx(0.3, abs=0.05)
        publisher.publish(ServoCommand(mode=ServoCommand.MODE_HOLD))
        client.wait_for(lambda: states[-1].mode == Mode.HOLD and abs(states[-1].velocity_rad_s) < 0.5, WAIT_S, "hold")
    finally:
        client.node.destroy_publisher(publisher)


def test_heartbeat_loss_holds_within_50_ms_of_servo_time(tmp_path: Path, report: Any) -> None:
    """The driver's heartbeats stop (SIGSTOP) and the servo must hold within its watchdog timeout + 50 ms of its
    own time after the last heartbeat it received.

    The servo is a virtual servo node in this process, stepped by this test one state period at a time (fast
    mode: it publishes /clock, and the driver, in its own process, beats its heart on that simulated time). Before
    each period every callback waiting for the servo is handled, and each heartbeat the servo handles is noted
    with the servo's time, so the reference is the servo's own last heartbeat: DDS latency, lost best-effort
    heartbeats and wall stalls of any process change nothing in the measurement. While the driver is alive the
    servo never runs more than 200 ms of its time past its last heartbeat (before it is commanded, it idles without
    a watchdog and runs until the driver's first heartbeat).
    """
    ns, timeout_s = "/watchdog", 0.5
    params = write_params(tmp_path / "driver.yaml", "/**", {"autostart": True, "use_sim_time": True} | STALL_TOLERANT)
    overrides = {"load": "inertia_disk", "time_mode": "fast", "heartbeat_timeout_s": timeout_s}
    with ros_context() as context, node_process(driver_args(ns, params), tmp_path / "driver.log") as driver_proc:
        node = VirtualServoNode(
            context=context, namespace=ns, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        servo = node.servo
        received: list[float] = []  # servo time (s) of every heartbeat the servo handled
        handle_heartbeat = servo.heartbeat

        def noted_heartbeat(seq: int = 0) -> None:
            received.append(servo.time_s)
            handle_heartbeat(seq)

        servo.heartbeat = noted_heartbeat  # type: ignore[method-assign]
        clock = node.create_publisher(Clock, "/clock", CLOCK_QOS)

        def period() -> Any:
            """Handle what waits for the servo, then run one state period; the state after it."""
            for _ in range(20):
                executor.spin_once(timeout_sec=0.0)
            node.run_period()
            return servo.state()

        def run_alive(seconds: float) -> None:
            """Run `seconds` of servo time, never more than 200 ms past the servo's last heartbeat."""
            end_s, deadline = servo.time_s + seconds, time.monotonic() + WAIT_S
            while servo.time_s < end_s:
                assert driver_proc.poll() is None, (tmp_path / "driver.log").read_text()
                assert time.monotonic() < deadline, "the driver's heartbeats did not keep up"
                if received and servo.time_s - received[-1] < 0.2:
                    period()
                else:  # wait for the driver; /clock again, in case it lost the last one (best effort)
                    now_ns = round(servo.time_s * 1e9)
                    clock.publish(Clock(clock=Time(sec=now_ns // 10**9, nanosec=now_ns % 10**9)))
                    executor.spin_once(timeout_sec=0.05)

        try:
            deadline = time.monotonic() + WAIT_S
            while not received:  # IDLE (no watchdog) until the driver, on this /clock, sends its first heartbeat
                assert time.monotonic() < deadline, "no heartbeat from the driver"
                period()
                time.sleep(servo.config.state_decimation * servo.dt_s)  # about real time: no hurry before it is up
            assert servo.command(ServoCommand.MODE_POSITION, 0.5) == 0
            run_alive(0.3)
            alive = servo.state()
            os.kill(driver_proc.pid, signal.SIGSTOP)
            try:
                states = [
                    period() for _ in range(int((timeout_s + 0.2) / (servo.config.state_decimation * servo.dt_s)))
                ]
            finally:
                os.kill(driver_proc.pid, signal.SIGCONT)
        finally:
            executor.remove_node(node)
            node.destroy_node()
    assert alive.mode == Mode.POSITION and not alive.fault_flags, "alive while the driver beat"
    lost = next(s for s in states if s.fault_flags & ServoState.FAULT_HEARTBEAT_LOST)
    assert lost.mode in {Mode.HOLD, Mode.BRAKE}
    delay_s = (lost.tick - 1) * servo.dt_s - received[-1] - timeout_s
    report(f"heartbeat loss: HOLD/BRAKE {delay_s * 1e3:.1f} ms (servo time) after the {timeout_s} s timeout")
    assert -1e-9 <= delay_s <= 0.05  # a hold on the timeout's own tick computes to -1e-16 s in float


def test_two_servos_in_two_namespaces_with_lifecycle(tmp_path: Path) -> None:
    """Two twins and two drivers; the second driver is brought up through its lifecycle services."""
    auto = write_params(tmp_path / "a.yaml", "/**", {"autostart": True} | STALL_TOLERANT)
    manual = write_params(tmp_path / "b.yaml", "/**", {"autostart": False} | STALL_TOLERANT)
    twin = {"load": "inertia_disk", "heartbeat_timeout_s": 3.0}
    with (
        node_process(twin_args("/left", **twin), tmp_path / "twin_left.log"),
        node_process(twin_args("/right", **twin), tmp_path / "twin_right.log"),
        node_process(driver_args("/left", auto), tmp_path / "driver_left.log"),
        node_process(driver_args("/right", manual), tmp_path / "driver_right.log"),
    ):
        client = Client("two_servo_client")
        try:
            change = client.node.create_client(ChangeState, "/right/driver/change_state")
            assert change.wait_for_service(timeout_sec=WAIT_S)
            for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
                response = wait(change.call_async(ChangeState.Request(transition=Transition(id=transition))), WAIT_S)
                assert response.success, transition
            left = client.action(MoveTo, "/left/move_to")
            right = client.action(MoveTo, "/right/move_to")
            states = {
                ns: client.subscribe(ServoState, f"/{ns}/state", qos_profile_sensor_data) for ns in ("left", "right")
            }
            # joint_states flow once a driver is active and has the servo's state: then goals can be judged.
            joints = [client.subscribe(JointState, f"/{ns}/joint_states") for ns in ("left", "right")]
            client.wait_for(lambda: all(states.values()) and all(joints), WAIT_S, "both servos' states and joints")
            # One /joint_states can carry both: each driver names its joint after its namespace.
            assert [list(j[-1].name) for j in joints] == [["left_joint"], ["right_joint"]]
            futures = [
                left.send_goal_async(MoveTo.Goal(target_rad=1.2, controller="pid")),
                right.send_goal_async(MoveTo.Goal(target_rad=-0.8, controller="pid")),
            ]
            handles = [wait(f, WAIT_S) for f in futures]
            assert all(h.accepted for h in handles)
            results = [wait(h.get_result_async(), WAIT_S).result for h in handles]
            assert all(r.success for r in results), [r.message for r in results]
            assert abs(states["left"][-1].position_rad - 1.2) < TOLERANCE_RAD
            assert abs(states["right"][-1].position_rad + 0.8) < TOLERANCE_RAD
            deactivate = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
            assert wait(change.call_async(deactivate), WAIT_S).success
            client.wait_for(lambda: states["right"][-1].mode == Mode.HOLD, WAIT_S, "HOLD after deactivate")
        finally:
            client.close()


def test_fast_mode_driver_follows_the_simulated_clock(tmp_path: Path, report: Any) -> None:
    """A fast twin publishes /clock; the driver on use_sim_time judges moves and beats its heart in sim time.

    The twin runs at up to 2x real time with a 4 s (sim) watchdog: 2 s of wall time for a starved driver to
    answer on this shared 2-core machine. Heartbeats are stamped and timed by the simulated clock: their stamps
    are the servo's time (a wall-clock driver would stamp them in 2026), and the servo never saw them stop for
    its watchdog timeout. Their gaps are reported, not asserted: the driver's latency, stretched by the speed-up,
    shows in them under load (70 ms median seen at load 13).
    """
    params = write_params(tmp_path / "fast.yaml", "/**", {"autostart": True, "use_sim_time": True} | STALL_TOLERANT)
    twin = twin_args("/fast", load="inertia_disk", time_mode="fast", fast_max_factor=2.0, heartbeat_timeout_s=4.0)
    with (
        node_process(twin, tmp_path / "twin.log") as twin_proc,
        node_process(driver_args("/fast", params), tmp_path / "driver.log") as driver_proc,
    ):
        client = Client("fast_client")
        client.watch("twin", twin_proc, tmp_path / "twin.log")
        client.watch("driver", driver_proc, tmp_path / "driver.log")
        try:
            move = client.action(MoveTo, "/fast/move_to")
            joints = client.subscribe(JointState, "/fast/joint_states")
            states = client.subscribe(ServoState, "/fast/state", qos_profile_sensor_data)
            beats = client.subscribe(Heartbeat, "/fast/heartbeat", qos_profile_sensor_data)
            client.wait_for(lambda: bool(joints and states and beats), WAIT_S, "joint_states, state and heartbeat")
            t0 = time.monotonic()
            sims = []
            for target in (1.0, -1.0, 2.0):
                accepted, result, _ = client.call(move, MoveTo.Goal(target_rad=target, controller="pid"))
                assert accepted and result.success, result.message
                sims.append(result.elapsed_s)
            wall_s = time.monotonic() - t0
            stamps = [stamp_s(b.stamp) for b in beats[-40:]]
            gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
            assert abs(stamps[-1] - stamp_s(states[-1].stamp)) < 0.5
            assert not states[-1].fault_flags & ServoState.FAULT_HEARTBEAT_LOST
            report(
                f"fast twin (<= 2x): 3 moves took {sum(sims):.3f} s sim time in {wall_s:.3f} s wall; heartbeat gaps "
                f"{gaps[len(gaps) // 2] * 1e3:.0f} ms median, {gaps[-1] * 1e3:.0f} ms max (sim time, period 50 ms)"
            )
        finally:
            client.close()
