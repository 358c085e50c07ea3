"""Fleet numbers: N = 1..16 virtual servos with a driver each, and the CAN bus load of N servos on one bus.

Issue 19, item 1: the servos run on this machine; the bus load of N servos on one 500 kbit/s bus is computed and
counted on a python-can virtual bus.

ROS part. Each servo is a twin process (mm_sim twin node, inertia disk, public key of this run's signing key) and
a driver process in its own namespace (/fleet1 ... /fleetN), as `sim.launch.py servos:=N` starts them; the driver
has one servo per instance (`can_device_id` is a single id), so N servos means N drivers. The twins run in REAL
TIME, not in fast mode: every figure here (state rate, goal → motion, deploy time) is a wall-clock figure of an
installation, and a fast twin (whose followers lag the leader on /clock) would report the host's speed instead of
the servo's stream; on an overloaded host a real-time twin falls behind the wall clock, which shows as a state rate
below 200 Hz, and that is what this bench is after. The fleet grows in place (1 → 2 → 4 → 8 → 16): each row
measures exactly the servos running then. Per row, one client process measures:

- state published per servo: from two ServoState messages of each twin (seq and the twin's own wall-clock stamp),
  so a client that cannot keep up does not bias it; the baseline is the N = 1 row of the same run;
- joint_states per servo: the samples each driver took (its /diagnostics `state_samples`, stamped by the driver;
  one joint_states message per sample);
- MoveTo goal → first motion: goals to all N at once, first joint_states sample > 2 mrad from the start, timed by
  that sample's stamp (the twin's clock, the wall clock) minus the send time, so the client's own lag is excluded;
- deploy of a ~12 KB signed policy (src/mm_driver/test/policies.py) through each driver's deploy_policy action: to
  all N one after another, and to all N at once (wall time until every result is back);
- CPU per servo: process CPU time (/proc/<pid>/stat) / wall time of the twin and of the driver.

CAN part (one process: the virtual bus exists only inside one). N `VirtualServo`s (twin + firmware core + CAN
port, device ids 1..N) stream their state frames on one virtual channel, stepped in lockstep at most at real
time; a driver `CanTransport` + `Deployer` deploys the same 12 KB image to device 1 while they stream, and a
third bus handle counts every frame. A virtual bus has no bit timing, so the frames are counted per second of
servo time and the 500 kbit/s load and deploy time are computed from the counted frames (mm_driver.busload's
bits per frame); heartbeats are not on the virtual bus (the drivers send them, not the transport) and are added
as computed. The computed table (mm_driver.busload) shows the knobs: state rate and heartbeats.

Run it in a loopback-only namespace (tools/isolated.sh python bench/bench_fleet.py), as `make bench` does.

Usage: python bench/bench_fleet.py [--max-n 16] [--quick] [--seconds S] [--moves M]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src" / "mm_driver" / "test"))  # the tests' helpers beside them

COUNTS = (1, 2, 4, 8, 16)
IMAGE_HIDDEN = 82  # hidden width of a [h, h] actor whose signed int16x8 image is about 12 KB
DEADLINE_S = 5.0  # a policy must reach a servo within this, with the fleet streaming (issue 19)
DECIMATIONS = (5, 10, 20, 50)  # state bursts every 5 control ticks (the firmware's default) and slower streams
MOTION_RAD = 2e-3  # first motion: a joint_states sample this far from where the shaft was
LOAD = "inertia_disk"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (s), from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _image() -> tuple[bytes, str]:
    """A ~12 KB signed policy and the public key (hex) the servos are given."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from mm_contract.signing import public_key_hex
    from policies import sized_policy  # type: ignore[import-not-found]

    key = ec.generate_private_key(ec.SECP256R1())
    return sized_policy(key, IMAGE_HIDDEN), public_key_hex(key)


# -- ROS: twins and drivers ------------------------------------------------------------------------------------


@dataclass
class Servo:
    """One servo of the fleet: its namespace, twin and driver processes, and the driver's log."""

    ns: str
    twin: Any
    driver: Any
    driver_log: Path
    move: Any = None
    deploy: Any = None

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the twin and the driver."""
        return {"twin": self.twin.pid, "driver": self.driver.pid}


def _stamp_s(stamp: Any) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def _first_motion(joint_states: list[Any], sent_s: float, target_rad: float) -> float | None:
    """Goal sent at `sent_s` (s, wall clock) → first motion (s); None while no sample shows it yet.

    The motion: the first sample stamped after `sent_s` more than MOTION_RAD beyond the last one stamped before it,
    towards `target_rad`.
    """
    samples = [(_stamp_s(m.header.stamp), m.position[0]) for m in list(joint_states)]
    before = [position for stamp, position in samples if stamp < sent_s]
    if not before:
        return None
    start = before[-1]
    direction = 1.0 if target_rad > start else -1.0
    moved = (stamp for stamp, position in samples if stamp >= sent_s and (position - start) * direction > MOTION_RAD)
    first = next(moved, None)
    return None if first is None else first - sent_s


class Fleet:
    """Twins and drivers started into `stack`, reached through one client."""

    def __init__(self, stack: ExitStack, root: Path, image: bytes, public_key: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from mm_testing.ros_support import Client, write_params

        self._stack, self._root, self._image, self._public_key = stack, root, image, public_key
        self._params = write_params(root / "driver.yaml", "/**", {"autostart": True, "load": LOAD})
        self.servos: list[Servo] = []
        self.client = Client("bench_fleet_client")
        stack.callback(self.client.close)
        # namespace -> (stamp in s, values) of its driver's latest /diagnostics status
        self.diagnostics: dict[str, tuple[float, dict[str, str]]] = {}
        self.client.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self._blobs: list[Any] = []

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            ns = status.hardware_id.split(" ", 1)[0]
            values = {kv.key: kv.value for kv in status.values}
            with self.client.cond:
                self.diagnostics[ns] = (_stamp_s(msg.header.stamp), values)
                self.client.cond.notify_all()

    def grow(self, count: int) -> None:
        """Start servos until `count` run; wait until every new driver streams and holds the policy blob."""
        from mm_driver.driver_node import LATCHED_QOS
        from mm_testing.ros_support import driver_args, node_process, twin_args

        from mm_msgs.action import DeployPolicy, MoveTo
        from mm_msgs.msg import PolicyBlob

        new = []
        for k in range(len(self.servos) + 1, count + 1):
            ns, root = f"/fleet{k}", self._root
            twin = self._stack.enter_context(
                node_process(twin_args(ns, load=LOAD, public_key=self._public_key), root / f"twin{k}.log")
            )
            log = root / f"driver{k}.log"
            driver = self._stack.enter_context(node_process(driver_args(ns, self._params), log))
            self.client.watch(f"twin{k}", twin, root / f"twin{k}.log")
            self.client.watch(f"driver{k}", driver, log)
            new.append(Servo(ns, twin, driver, log))
        for servo in new:
            servo.move = self.client.action(MoveTo, f"{servo.ns}/move_to", timeout_s=180.0)
            servo.deploy = self.client.action(DeployPolicy, f"{servo.ns}/deploy_policy", timeout_s=180.0)
            blob = self.client.node.create_publisher(PolicyBlob, f"{servo.ns}/policy", LATCHED_QOS)
            blob.publish(PolicyBlob(image=list(self._image), policy_crc32=zlib.crc32(self._image)))
            self._blobs.append(blob)
        self.servos += new
        self.client.wait_for(
            lambda: all(
                s.ns in self.diagnostics and int(self.diagnostics[s.ns][1].get("state_samples", "0")) > 0
                for s in self.servos
            ),
            180.0,
            "every driver's first state",
        )
        self.client.wait_for(
            lambda: all("ready" in s.driver_log.read_text() for s in new), 60.0, "the policy blob in every driver"
        )

    def terminate(self) -> None:
        """Ask every twin and driver to stop (SIGTERM), without waiting."""
        for servo in self.servos:
            servo.twin.terminate()
            servo.driver.terminate()

    def state_snapshot(self) -> dict[str, tuple[int, float]]:
        """(seq, the twin's stamp in s) of one fresh ServoState of every servo (a short-lived subscription)."""
        from rclpy.qos import qos_profile_sensor_data

        from mm_msgs.msg import ServoState

        boxes = {s.ns: self.client.subscribe(ServoState, f"{s.ns}/state", qos_profile_sensor_data) for s in self.servos}
        start = {ns: len(box) for ns, box in boxes.items()}
        try:
            self.client.wait_for(lambda: all(len(b) > start[ns] for ns, b in boxes.items()), 60.0, "servo states")
            return {ns: (box[-1].seq, _stamp_s(box[-1].stamp)) for ns, box in boxes.items()}
        finally:
            for ns in boxes:
                self.client.unsubscribe(f"{ns}/state")

    def measure_rates(self, seconds: float) -> dict[str, Any]:
        """State published and taken per servo, CPU per servo, over a window of `seconds` (s, wall)."""
        cpu0 = {s.ns: {name: cpu_seconds(pid) for name, pid in s.pids.items()} for s in self.servos}
        wall0 = time.monotonic()
        with self.client.cond:
            diag0 = dict(self.diagnostics)
        states0 = self.state_snapshot()
        time.sleep(seconds)  # the measurement window, not synchronisation
        states1 = self.state_snapshot()
        with self.client.cond:
            diag1 = dict(self.diagnostics)
        wall_s = time.monotonic() - wall0
        cpu1 = {s.ns: {name: cpu_seconds(pid) for name, pid in s.pids.items()} for s in self.servos}
        per_servo = {}
        for s in self.servos:
            (seq0, t0), (seq1, t1) = states0[s.ns], states1[s.ns]
            (d0, v0), (d1, v1) = diag0[s.ns], diag1[s.ns]
            taken = int(v1["state_samples"]) - int(v0["state_samples"])
            per_servo[s.ns] = {
                "state_published_hz": (seq1 - seq0) / (t1 - t0),
                "joint_states_hz": taken / (d1 - d0) if d1 > d0 else float("nan"),
                "cpu_twin": (cpu1[s.ns]["twin"] - cpu0[s.ns]["twin"]) / wall_s,
                "cpu_driver": (cpu1[s.ns]["driver"] - cpu0[s.ns]["driver"]) / wall_s,
            }
        return {"window_s": wall_s, "per_servo": per_servo}

    def measure_moves(self, moves: int) -> dict[str, Any]:
        """MoveTo goals to every servo at once, `moves` times: goal sent → first motion in the servo's stamps."""
        from sensor_msgs.msg import JointState

        from mm_msgs.action import MoveTo

        boxes = {s.ns: self.client.subscribe(JointState, f"{s.ns}/joint_states", 200) for s in self.servos}

        def one(servo: Servo) -> tuple[float | None, str]:
            box = boxes[servo.ns]
            target = 0.0 if box[-1].position[0] > 0.5 else 1.0  # a 1 rad step away from where the shaft is
            sent: list[float] = []  # the twin stamps its states with the wall clock
            _, result, _ = self.client.call(
                servo.move, MoveTo.Goal(target_rad=target), timeout_s=120.0, on_send=lambda: sent.append(time.time())
            )
            latency: list[float] = []

            def found() -> bool:
                value = _first_motion(box, sent[0], target)
                latency.extend([] if value is None else [value])
                return value is not None

            self.client.poll(found, 10.0)  # the client may lag its topics
            outcome = "settled" if result and result.success else (result.message if result else "no result")
            return (latency[0] if latency else None), outcome

        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        try:
            self.client.wait_for(lambda: all(boxes.values()), 60.0, "joint_states of every servo")
            for _ in range(moves):
                time.sleep(0.5)  # pacing: the shafts come to rest after the previous round
                with ThreadPoolExecutor(len(self.servos)) as pool:
                    for latency, outcome in pool.map(one, self.servos):
                        latencies += [] if latency is None else [latency]
                        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            for ns in boxes:
                self.client.unsubscribe(f"{ns}/joint_states")
        return {
            "median_s": statistics.median(latencies) if latencies else float("nan"),
            "max_s": max(latencies, default=float("nan")),
            "moves": moves * len(self.servos),
            "moved": len(latencies),
            "settled": outcomes.pop("settled", 0),
            "failed": outcomes,  # the driver's result message of each move that did not settle -> count
        }

    def measure_deploys(self) -> dict[str, Any]:
        """The blob deployed to every servo one after another, then to all at once (wall time, s)."""
        from mm_msgs.action import DeployPolicy

        def one(servo: Servo) -> tuple[bool, float, int]:
            _, result, _ = self.client.call(servo.deploy, DeployPolicy.Goal(), timeout_s=120.0)
            if result is None:
                return False, float("nan"), 0
            return bool(result.success), float(result.elapsed_s), int(result.chunks_resent)

        t0 = time.monotonic()
        sequential = [one(s) for s in self.servos]
        sequential_s = time.monotonic() - t0
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(self.servos)) as pool:
            concurrent = list(pool.map(one, self.servos))
        concurrent_s = time.monotonic() - t0
        return {
            "bytes": len(self._image),
            "sequential_s": sequential_s,
            "sequential_ok": sum(ok for ok, _, _ in sequential),
            "sequential_driver_s": [elapsed for _, elapsed, _ in sequential],
            "sequential_resent": sum(resent for _, _, resent in sequential),
            "concurrent_s": concurrent_s,
            "concurrent_ok": sum(ok for ok, _, _ in concurrent),
            "concurrent_driver_s": [elapsed for _, elapsed, _ in concurrent],
            "concurrent_resent": sum(resent for _, _, resent in concurrent),
        }


def _mean(rows: dict[str, dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rows.values())


def _row(fleet: Fleet, n: int, seconds: float, moves: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Grow `fleet` to `n` servos and measure it."""
    t0 = time.monotonic()
    fleet.grow(n)
    log(f"fleet: {n} servos up ({time.monotonic() - t0:.0f} s)")
    rates = fleet.measure_rates(seconds)
    per = rates["per_servo"]
    row = {
        "servos": n,
        "startup_s": time.monotonic() - t0,
        "state_published_hz_min": min(r["state_published_hz"] for r in per.values()),
        "state_published_hz_mean": _mean(per, "state_published_hz"),
        "joint_states_hz_min": min(r["joint_states_hz"] for r in per.values()),
        "joint_states_hz_mean": _mean(per, "joint_states_hz"),
        "cpu_twin": _mean(per, "cpu_twin"),
        "cpu_driver": _mean(per, "cpu_driver"),
        "goal_to_first_motion": fleet.measure_moves(moves),
        "deploy": fleet.measure_deploys(),
        "rates": rates,
    }
    log(f"fleet: {n} servos measured")
    return row


def bench_ros(
    counts: list[int], image: bytes, public_key: str, *, seconds: float, moves: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """One row per fleet size in `counts` (ascending), the fleet growing in place."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        fleet = Fleet(stack, Path(tmp), image, public_key)
        try:
            for n in counts:
                try:
                    rows.append(_row(fleet, n, seconds, moves, log))
                except AssertionError as exc:  # a wait of ros_support timed out: the fleet broke down at this size
                    log(f"fleet: {n} servos failed: {exc}")
                    rows.append({"servos": n, "failed": str(exc).splitlines()[0]})
                    break
        finally:
            fleet.terminate()  # all at once; the stack then reaps them one by one
    return rows


# -- CAN: bus load, computed and counted -------------------------------------------------------------------------


def can_knobs(decimation: int, **changes: Any) -> Any:
    """The bus-load knobs at the firmware's defaults, with `state_decimation` = `decimation`.

    The defaults come from their sources: the twin's control rate, the driver's heartbeat, bit rate and ISO-TP chunk.
    """
    from mm_contract.profiles import load_profile
    from mm_driver.busload import Fleet as BusFleet
    from mm_driver.driver_node import DriverParameters

    driver = DriverParameters()
    return BusFleet(
        control_rate_hz=load_profile("mm_v3").control.rate_hz,
        state_decimation=decimation,
        heartbeat_period_s=driver.heartbeat_period_s,
        bitrate_bps=driver.can_bitrate,
        chunk_size=driver.can_chunk_size,
        **changes,
    )


def computed_can(counts: list[int], image_bytes: int) -> dict[str, Any]:
    """mm_driver.busload for each stream decimation: load and deploy time per N, and the largest N for 5 s."""
    from mm_driver.busload import FrameLayout, bus_load, max_servos

    layout = FrameLayout.from_dbc()
    out: dict[str, Any] = {}
    for decimation in DECIMATIONS:
        knobs = can_knobs(decimation)
        out[str(decimation)] = {
            "state_rate_hz": knobs.state_rate_hz,
            "rows": {
                n: {"load": (b := bus_load(n, image_bytes, knobs, layout)).load, "deploy_s": b.deploy_s} for n in counts
            },
            "max_servos_worst": max_servos(image_bytes, DEADLINE_S, knobs, layout),
            "max_servos_nominal": max_servos(image_bytes, DEADLINE_S, can_knobs(decimation, worst_case=False), layout),
            "max_servos_broadcast_heartbeat": max_servos(
                image_bytes, DEADLINE_S, can_knobs(decimation, broadcast_heartbeat=True), layout
            ),
        }
    return out


class CanRig:
    """N virtual servos (device ids 1..N) and a driver's CanTransport on one virtual bus.

    A third bus handle counts every frame; the servos are stepped in lockstep, at most at real time.
    """

    def __init__(self, n: int, decimation: int, public_key: str) -> None:
        import can
        from mm_driver.busload import FrameLayout
        from mm_driver.can_transport import CanTransport
        from mm_driver.deploy import Deployer
        from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig

        self.layout = FrameLayout.from_dbc()
        self.knobs = can_knobs(decimation)
        channel = f"bench-fleet-{uuid.uuid4().hex}"
        config = VirtualServoConfig(load=LOAD, public_key_hex=public_key, state_decimation=decimation)
        self.servos = [VirtualServo(config) for _ in range(n)]
        self._buses = [can.Bus(interface="virtual", channel=channel) for _ in self.servos]
        for device, (servo, bus) in enumerate(zip(self.servos, self._buses, strict=True), start=1):
            servo.attach_can(bus, device)
        self._sniffer = can.Bus(interface="virtual", channel=channel)
        self._decimation = decimation
        self.period_s = decimation * self.servos[0].dt_s
        self.servo_s = 0.0
        self._wall0 = time.monotonic()
        chunk = self.knobs.chunk_size
        self.transport = CanTransport(interface="virtual", channel=channel, device_id=1, chunk_size=chunk)
        self.deployer = Deployer(self.transport, chunk_size=chunk, ack_timeout_s=5.0, max_rounds=3)
        self.transport.open(lambda _sample: None, self.deployer.on_ack)

    def period(self) -> None:
        """One state period of every servo, then wait for the wall clock if servo time ran ahead of it."""
        for servo in self.servos:
            servo.step(self._decimation)
        self.servo_s += self.period_s
        ahead_s = self.servo_s - (time.monotonic() - self._wall0)
        if ahead_s > 0.0:
            time.sleep(ahead_s)  # at most real time: the host's ISO-TP sender keeps its real-time pace

    def frames(self) -> dict[str, dict[int, float]]:
        """Every frame seen since the last call, by DBC message name and DLC."""
        seen: dict[str, dict[int, float]] = {}
        while (msg := self._sniffer.recv(timeout=0.0)) is not None:
            kind = seen.setdefault(self.layout.name_of(msg.arbitration_id), {})
            kind[msg.dlc] = kind.get(msg.dlc, 0) + 1
        return seen

    def deploy(self, image: bytes) -> tuple[bool, float]:
        """Deploy `image` to device 1 while every servo streams; (accepted, servo time it took in s)."""
        from mm_driver.errors import DriverError

        outcome: list[bool] = []

        def send() -> None:
            try:
                outcome.append(self.deployer.deploy(image, previous_policy_crc32=0).success)
            except DriverError:
                outcome.append(False)

        sender = threading.Thread(target=send)
        start_s = self.servo_s
        sender.start()
        while sender.is_alive():
            self.period()
        return outcome[0], self.servo_s - start_s

    def close(self) -> None:
        """Close the transport and every bus handle."""
        self.transport.close()
        for bus in [*self._buses, self._sniffer]:
            bus.shutdown()


def measured_can(n: int, decimation: int, image: bytes, public_key: str, stream_s: float) -> dict[str, Any]:
    """N servos on one virtual bus: state frames counted over `stream_s` (s, servo time), then a deploy to device 1.

    The 500 kbit/s load and deploy time follow from the counted frames (worst-case stuffing), heartbeats added as
    computed.
    """
    from mm_driver.busload import STATE_PREFIX, bits, stream_frames_per_s, total, transfer_frames

    rig = CanRig(n, decimation, public_key)
    try:
        rig.frames()
        periods = round(stream_s / rig.period_s)
        for _ in range(periods):
            rig.period()
        stream_servo_s = periods * rig.period_s
        state = {name: f for name, f in rig.frames().items() if name.startswith(STATE_PREFIX)}
        deployed, deploy_servo_s = rig.deploy(image)
        during = rig.frames()
    finally:
        rig.close()
    knobs, layout = rig.knobs, rig.layout
    counted = {
        "data": during.get("POLICY_TP_DATA", {}),
        "flow_control": during.get("POLICY_TP_FLOW", {}),
        "ack": during.get("POLICY_ACK", {}),
    }
    computed = transfer_frames(len(image), knobs.chunk_size, layout)
    state_bits = bits(total(state), worst_case=True) / stream_servo_s
    heartbeat_bits = bits(stream_frames_per_s(n, knobs, layout)["heartbeat"], worst_case=True)
    spare_bps = knobs.bitrate_bps - state_bits - heartbeat_bits
    transfer_bits = bits(total(counted), worst_case=True)
    return {
        "servos": n,
        "state_decimation": decimation,
        "deployed": deployed,
        "state_frames_per_servo_s": sum(sum(f.values()) for f in state.values()) / (n * stream_servo_s),
        "state_frames_per_servo_s_computed": len(layout.state) * knobs.state_rate_hz,
        "transfer_frames": {kind: int(sum(f.values())) for kind, f in counted.items()},
        "transfer_frames_computed": {kind: int(sum(f.values())) for kind, f in computed.items()},
        "transfer_frames_match": counted == computed,
        "load_worst": (state_bits + heartbeat_bits) / knobs.bitrate_bps,
        "deploy_bus_s_worst": transfer_bits / spare_bps if spare_bps > 0.0 else float("inf"),
        "deploy_servo_s": deploy_servo_s,
    }


# -- report --------------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}"


def print_ros(rows: list[dict[str, Any]], cores: int) -> None:
    """The fleet table; the N = 1 row is the baseline of the run."""
    base = rows[0]
    print("### Many servos, one machine (twin in real time + a driver per servo, loopback DDS)\n")
    print(
        f"Baseline: the N = {base['servos']} row of this run. Rates per servo (min / mean); CPU per servo as "
        f"process CPU time / wall (1.00 = one core; this machine has {cores})."
    )
    print(
        "\n| servos | state published (Hz) | joint_states (Hz) | goal → first motion, median / max (ms) "
        "| moves settled | deploy 12 KB to all: one by one / at once (s) | driver's time per deploy: one by one / "
        "at once, median (ms) | CPU per servo: twin + driver | fleet CPU / cores |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['servos']} | failed: {r['failed']} |")
            continue
        lat, dep = r["goal_to_first_motion"], r["deploy"]
        cpu = r["cpu_twin"] + r["cpu_driver"]
        print(
            f"| {r['servos']} | {r['state_published_hz_min']:.0f} / {r['state_published_hz_mean']:.0f} "
            f"| {r['joint_states_hz_min']:.0f} / {r['joint_states_hz_mean']:.0f} "
            f"| {_ms(lat['median_s'])} / {_ms(lat['max_s'])} | {lat['settled']}/{lat['moves']} "
            f"| {dep['sequential_s']:.2f} / {dep['concurrent_s']:.2f} "
            f"({dep['sequential_ok']}, {dep['concurrent_ok']} accepted) "
            f"| {_ms(statistics.median(dep['sequential_driver_s']))} / "
            f"{_ms(statistics.median(dep['concurrent_driver_s']))} "
            f"| {r['cpu_twin']:.2f} + {r['cpu_driver']:.2f} = {cpu:.2f} | {cpu * r['servos'] / cores:.0%} |"
        )
    for r in rows:
        for message, count in r.get("goal_to_first_motion", {}).get("failed", {}).items():
            print(f"\nN = {r['servos']}: {count} move(s) did not settle: {message}")
    print()


def print_can(computed: dict[str, Any], measured: list[dict[str, Any]], counts: list[int], image_bytes: int) -> None:
    """The computed bus-load table with its knobs, and the virtual-bus counts next to it."""
    print(f"### CAN: N servos on one 500 kbit/s bus, a {image_bytes} B policy to one of them\n")
    print(
        "Computed (mm_driver.busload, frame sizes from mm_servo.dbc, worst-case bit stuffing): stream load = state "
        "frames + one heartbeat per servo every 20 ms; deploy = the transfer's frames (ISO-TP data, flow control, "
        "ack) in the bus time the stream leaves. Largest N deploying within 5 s: worst-case stuffing / no stuff "
        "bits / worst case with one broadcast heartbeat for all.\n"
    )
    print("| state rate (decimation) | " + " | ".join(f"N = {n}: load, deploy" for n in counts) + " | largest N |")
    print("|---" * (len(counts) + 2) + "|")
    for decimation, c in computed.items():
        cells = [
            f"{row['load']:.0%}, {row['deploy_s']:.1f} s"
            if row["deploy_s"] != float("inf")
            else f"{row['load']:.0%}, —"
            for row in c["rows"].values()
        ]
        print(
            f"| {c['state_rate_hz']:.0f} Hz ({decimation}) | " + " | ".join(cells) + f" | {c['max_servos_worst']} / "
            f"{c['max_servos_nominal']} / {c['max_servos_broadcast_heartbeat']} |"
        )
    print(
        "\nCounted on a python-can virtual bus (no bit timing: frames per second of servo time; load and deploy time "
        "computed from the counted frames, worst-case stuffing, heartbeats added as computed):\n"
    )
    print(
        "| servos | decimation | state frames per servo-second: counted / computed | transfer frames (data + flow "
        "control + ack): counted / computed | load | deploy at 500 kbit/s | accepted |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in measured:
        counted, computed_frames = m["transfer_frames"], m["transfer_frames_computed"]
        deploy = "no room" if m["deploy_bus_s_worst"] == float("inf") else f"{m['deploy_bus_s_worst']:.2f} s"
        print(
            f"| {m['servos']} | {m['state_decimation']} | {m['state_frames_per_servo_s']:.0f} / "
            f"{m['state_frames_per_servo_s_computed']:.0f} | "
            f"{counted['data']} + {counted['flow_control']} + {counted['ack']} / "
            f"{computed_frames['data']} + {computed_frames['flow_control']} + {computed_frames['ack']} | "
            f"{m['load_worst']:.0%} | {deploy} | {'yes' if m['deployed'] else 'no'} |"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=COUNTS[-1], help="largest fleet (of 1, 2, 4, 8, 16)")
    parser.add_argument("--quick", action="store_true", help="N up to 4, shorter windows, one move")
    parser.add_argument("--seconds", type=float, default=3.0, help="rate window per fleet size (s, wall)")
    parser.add_argument("--moves", type=int, default=2, help="MoveTo rounds per fleet size")
    parser.add_argument("--can-seconds", type=float, default=1.0, help="servo time of the CAN stream count (s)")
    options = parser.parse_args()
    max_n = min(options.max_n, 4) if options.quick else options.max_n
    seconds = min(options.seconds, 2.0) if options.quick else options.seconds
    moves = 1 if options.quick else options.moves
    counts = [n for n in COUNTS if n <= max_n]
    if not counts:
        parser.error(f"--max-n {options.max_n}: the smallest fleet is {COUNTS[0]}")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    image, public_key = _image()
    computed = computed_can(counts, len(image))
    measured = [measured_can(n, DECIMATIONS[0], image, public_key, options.can_seconds) for n in counts]
    measured.append(measured_can(counts[-1], 20, image, public_key, options.can_seconds))
    log("fleet: CAN part done")
    rows = bench_ros(counts, image, public_key, seconds=seconds, moves=moves, log=log)
    cores = os.cpu_count() or 1

    print_ros(rows, cores)
    print_can(computed, measured, counts, len(image))
    hosts = two_hosts(log)
    result = {"cores": cores, "ros": rows, "can": {"computed": computed, "measured": measured}, "two_hosts": hosts}
    print(json.dumps(result, indent=2))


def two_hosts(log: Callable[[str], None]) -> list[dict[str, Any]]:
    """bench/two_hosts.py (learner and servo in two namespaces, with and without netem) in its own process.

    Its own process: rclpy started here before the veth pair existed would not discover the other host.
    """
    log("fleet: two hosts")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("two_hosts.py"))], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(f"## Two hosts\n\nbench/two_hosts.py failed ({done.returncode}):\n{done.stderr[-2000:]}\n")
        return []
    results, end = json.JSONDecoder().raw_decode(done.stdout)
    print("## Two hosts (bench/two_hosts.py)\n")
    print(done.stdout[end:].strip() + "\n")
    return list(results)


if __name__ == "__main__":
    main()
