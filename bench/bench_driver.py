"""Driver numbers: joint_states rate, MoveTo latency, policy deploy time over ROS chunks and over CAN.

Deploys go over micro-ROS-sized chunks (DDS on loopback) and over CAN (ISO-TP on a python-can virtual bus, with
the 500 kbit/s bus time computed).

ROS part: the virtual servo (mm_sim twin node, real time, inertia disk) and the driver each run in their own
process, discovery limited to localhost and a random domain id (run it under `unshare -n` for a loopback-only
namespace, as tools/run_tests.sh does). CAN part: one process, the virtual servo's CAN port and the driver's
CanTransport + Deployer on a virtual bus; a third bus handle on the same channel counts every frame.

Baselines in the same run: the servo's own `state` rate next to `joint_states`; the deployer feeding the firmware
core directly (no transport) next to the DDS and CAN deploys.

The python-can virtual bus has no bit timing, so the CAN wall time is host time only. The 500 kbit/s bus time is
computed from the frames of the transfer with mm_driver.busload's bits per frame: a 29-bit data frame with n data
bytes is 67 + 8n bits without stuff bits and at most 67 + 8n + ⌊(53 + 8n) / 4⌋ bits with worst-case stuffing
(stuffing covers the 54 + 8n bits from SOF to the CRC); the servo's state stream (its STATE_* frames every 5 ms)
shares the bus and is stated separately.

Usage: python bench/bench_driver.py [--repeats N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "mm_driver" / "test"))  # the tests' helpers beside them

BITRATE = 500_000
SIZES = {"4 KB": 34, "16 KB": 100}  # hidden width of a [h, h] actor whose signed int16x8 image has about that size


def _images() -> dict[str, bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec
    from mm_contract.signing import public_key_hex
    from policies import sized_policy  # type: ignore[import-not-found]

    key = ec.generate_private_key(ec.SECP256R1())
    images = {name: sized_policy(key, hidden) for name, hidden in SIZES.items()}
    images["key"] = bytes.fromhex(public_key_hex(key))
    return images


def bench_core_baseline(images: dict[str, bytes], repeats: int) -> dict[str, float]:
    """The deployer feeding the virtual servo's firmware core directly (chunks of 448 B), no transport: the floor."""
    from driver_support import CoreLink  # type: ignore[import-not-found]
    from mm_driver.deploy import Deployer
    from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig

    out = {}
    for name in SIZES:
        times = []
        for _ in range(repeats):
            servo = VirtualServo(VirtualServoConfig(load="inertia_disk", public_key_hex=images["key"].hex()))
            deployer_box: list[Deployer] = []
            link = CoreLink(servo.core, lambda ack, d=deployer_box: d[0].on_ack(ack))
            deployer_box.append(Deployer(link, chunk_size=448, ack_timeout_s=0.5, max_rounds=3))
            outcome = deployer_box[0].deploy(images[name], previous_policy_crc32=0)
            assert outcome.success, outcome.message
            times.append(outcome.elapsed_s)
        out[name] = statistics.median(times)
    return out


def bench_can(images: dict[str, bytes], repeats: int) -> dict[str, Any]:
    """Deploy over ISO-TP on a virtual bus to the virtual servo's CAN port; count frames with a sniffer."""
    import can
    from mm_driver.busload import FrameLayout, frame_bits
    from mm_driver.can_transport import CanTransport
    from mm_driver.deploy import Deployer
    from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig

    layout = FrameLayout.from_dbc()
    transfer_names = {"POLICY_TP_DATA", "POLICY_TP_FLOW", "POLICY_ACK"}
    results: dict[str, Any] = {}
    for name in SIZES:
        walls, host_frames, servo_frames, bits_nominal, bits_stuffed = [], [], [], [], []
        for _ in range(repeats):
            channel = f"bench-{uuid.uuid4().hex}"
            servo = VirtualServo(VirtualServoConfig(load="inertia_disk", public_key_hex=images["key"].hex()))
            servo_bus = can.Bus(interface="virtual", channel=channel)
            sniffer = can.Bus(interface="virtual", channel=channel)
            servo.attach_can(servo_bus, 1)
            stop = threading.Event()
            lock = threading.Lock()

            def run(servo: VirtualServo = servo, stop: threading.Event = stop, lock: threading.Lock = lock) -> None:
                while not stop.is_set():
                    with lock:
                        servo.step(1)

            thread = threading.Thread(target=run, daemon=True)
            transport = CanTransport(interface="virtual", channel=channel, device_id=1)
            deployer = Deployer(transport, chunk_size=1024, ack_timeout_s=1.0, max_rounds=3)
            transport.open(lambda _s: None, deployer.on_ack)
            while sniffer.recv(timeout=0.0) is not None:
                pass
            thread.start()
            outcome = deployer.deploy(images[name], previous_policy_crc32=0)
            stop.set()
            thread.join()
            transport.close()
            assert outcome.success, outcome.message
            frames = []
            while (msg := sniffer.recv(timeout=0.0)) is not None:
                frames.append(msg)
            # The transfer's frames: ISO-TP data and flow control, and acks.
            transfer = [m for m in frames if layout.name_of(m.arbitration_id) in transfer_names]
            walls.append(outcome.elapsed_s)
            host_frames.append(sum(1 for m in transfer if layout.name_of(m.arbitration_id) == "POLICY_TP_DATA"))
            servo_frames.append(len(transfer) - host_frames[-1])
            bits_nominal.append(sum(frame_bits(len(m.data)) for m in transfer))
            bits_stuffed.append(sum(frame_bits(len(m.data), worst_case=True) for m in transfer))
            servo_bus.shutdown()
            sniffer.shutdown()
        results[name] = {
            "bytes": len(images[name]),
            "wall_s": statistics.median(walls),
            "host_frames": host_frames[-1],
            "servo_frames": servo_frames[-1],
            "bus_s_nominal": bits_nominal[-1] / BITRATE,
            "bus_s_worst_stuffing": bits_stuffed[-1] / BITRATE,
        }
    state_bits_per_s = sum(frame_bits(dlc) for dlc in layout.state) / 0.005
    results["state_stream_share"] = state_bits_per_s / BITRATE
    return results


def _rates(client: Any, ns: str, seconds: float) -> dict[str, float]:
    """joint_states received by a client, and the servo's own state publishing rate (from ServoState.seq)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    from mm_msgs.msg import ServoState

    joints = client.subscribe(JointState, f"{ns}/joint_states")
    states = client.subscribe(ServoState, f"{ns}/state", qos_profile_sensor_data)
    client.wait_for(lambda: len(joints) > 10 and len(states) > 10, 30.0, "joint_states and state")
    n_joints, first_state, t0 = len(joints), states[-1], time.monotonic()
    time.sleep(seconds)  # a measurement window, not synchronisation
    window_s = time.monotonic() - t0
    return {
        "joint_states_hz": (len(joints) - n_joints) / window_s,
        "state_published_hz": (states[-1].seq - first_state.seq) / window_s,
    }


def _latency(client: Any, move: Any, ns: str, repeats: int) -> dict[str, float]:
    """Goal sent → first joint_states sample more than 2 mrad from where the shaft was."""
    from mm_testing.ros_support import wait
    from sensor_msgs.msg import JointState

    from mm_msgs.action import MoveTo

    joints = client.messages.get(f"{ns}/joint_states") or client.subscribe(JointState, f"{ns}/joint_states")
    latencies = []
    for i in range(repeats):
        start, seen = joints[-1].position[0], len(joints)
        t_goal = time.monotonic()
        handle_future = move.send_goal_async(MoveTo.Goal(target_rad=1.0 if i % 2 == 0 else -1.0, controller="pid"))
        client.wait_for(
            lambda seen=seen, start=start: any(abs(j.position[0] - start) > 2e-3 for j in joints[seen:]),
            10.0,
            "first motion",
        )
        latencies.append(time.monotonic() - t_goal)
        wait(wait(handle_future, 10.0).get_result_async(), 30.0)
    return {"median_s": statistics.median(latencies), "max_s": max(latencies)}


def _deploys(client: Any, deploy: Any, ns: str, log: Path, image: bytes, *, repeats: int) -> dict[str, float]:
    """deploy_policy of `image` published as the latest blob: driver-measured and client round-trip times."""
    from mm_driver.driver_node import LATCHED_QOS

    from mm_msgs.action import DeployPolicy
    from mm_msgs.msg import PolicyBlob

    publisher = client.node.create_publisher(PolicyBlob, f"{ns}/policy", LATCHED_QOS)
    elapsed, roundtrip, sent = [], [], []
    for _ in range(repeats):
        taken = log.read_text().count("ready")
        publisher.publish(PolicyBlob(image=list(image), policy_crc32=zlib.crc32(image)))
        # The driver logs each blob it takes; wait for it before asking for the deploy.
        client.wait_for(lambda taken=taken: log.read_text().count("ready") > taken, 10.0, "the blob taken")
        t0 = time.monotonic()
        accepted, result, _ = client.call(deploy, DeployPolicy.Goal(), timeout_s=60.0)
        roundtrip.append(time.monotonic() - t0)
        assert accepted and result.success, result.message if result else "rejected"
        elapsed.append(result.elapsed_s)
        sent.append(result.chunks_sent)
    client.node.destroy_publisher(publisher)
    return {
        "bytes": len(image),
        "chunks": -(-len(image) // 448),
        "median_s": statistics.median(elapsed),
        "median_roundtrip_s": statistics.median(roundtrip),
        "max_roundtrip_s": max(roundtrip),
        "median_sent": statistics.median(sent),
    }


def bench_ros(images: dict[str, bytes], repeats: int, seconds: float) -> dict[str, Any]:
    """Twin + driver processes over DDS: joint_states rate, goal→first-motion latency, deploy times."""
    from mm_testing.ros_support import Client, driver_args, node_process, twin_args, write_params

    from mm_msgs.action import DeployPolicy, MoveTo

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    ns = "/bench"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = write_params(root / "driver.yaml", "/**", {"autostart": True})
        twin = twin_args(ns, load="inertia_disk", public_key=images["key"].hex())
        with node_process(twin, root / "twin.log"), node_process(driver_args(ns, params), root / "driver.log"):
            client = Client("bench_driver_client")
            try:
                move = client.action(MoveTo, f"{ns}/move_to")
                deploy = client.action(DeployPolicy, f"{ns}/deploy_policy")
                out: dict[str, Any] = _rates(client, ns, seconds)
                out["goal_to_first_motion"] = _latency(client, move, ns, repeats)
                for name in SIZES:
                    out[f"deploy_{name}"] = _deploys(
                        client, deploy, ns, root / "driver.log", images[name], repeats=repeats
                    )
            finally:
                client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repetitions of each measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="joint_states rate window (s)")
    options = parser.parse_args()
    images = _images()
    core = bench_core_baseline(images, options.repeats)
    can_results = bench_can(images, options.repeats)
    ros = bench_ros(images, options.repeats, options.seconds)

    print("### Driver (mm_driver) with the virtual servo, loopback DDS and a python-can virtual bus\n")
    print("| what | value |\n|---|---|")
    print(f"| `state` published by the servo (baseline, from its seq) | {ros['state_published_hz']:.1f} Hz |")
    print(f"| `joint_states` received from the driver | {ros['joint_states_hz']:.1f} Hz |")
    lat = ros["goal_to_first_motion"]
    print(
        f"| MoveTo goal → first motion (> 2 mrad in joint_states) | {lat['median_s'] * 1e3:.1f} ms median, "
        f"{lat['max_s'] * 1e3:.1f} ms max |"
    )
    print(
        "\n| deploy | image | core directly (baseline) | ROS chunks of 448 B: driver / client round trip "
        "| CAN ISO-TP, host wall | CAN bus time at 500 kbit/s |"
    )
    print("|---|---|---|---|---|---|")
    for name in SIZES:
        r, c = ros[f"deploy_{name}"], can_results[name]
        print(
            f"| {name} | {r['bytes']} B | {core[name] * 1e3:.1f} ms | {r['median_s'] * 1e3:.1f} ms / "
            f"{r['median_roundtrip_s'] * 1e3:.1f} ms ({r['chunks']} chunks, median {r['median_sent']:.0f} sent) | "
            f"{c['wall_s'] * 1e3:.1f} ms | "
            f"{c['bus_s_nominal'] * 1e3:.0f}–{c['bus_s_worst_stuffing'] * 1e3:.0f} ms "
            f"({c['host_frames']} + {c['servo_frames']} frames) |"
        )
    print(
        f"\nCAN bus time: frames of the transfer × (67 + 8·DLC) bits, up to worst-case stuffing; the servo's state "
        f"stream takes another {can_results['state_stream_share'] * 100:.0f} % of the bus at 500 kbit/s.\n"
    )
    print(json.dumps({"ros": ros, "can": can_results, "core_baseline_s": core}, indent=2))


if __name__ == "__main__":
    main()
