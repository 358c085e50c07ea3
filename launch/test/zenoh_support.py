"""The servo's topics across two hosts over Zenoh (tools/zenoh_bridge.py on both), for the test and the bench.

On the servo host (a `RemoteHost`): the virtual servo (real time, no heartbeat watchdog: no driver here) and a
bridge listening on the pair, sending `transitions` out and taking `command` in. On this host: the other bridge,
connecting, and an operator that commands a streamed PID move and counts the transitions that come back. DDS is
kept on each host (discovery LOCALHOST, no static peers), so only what the bridges carry crosses; the servo's
`state` is not bridged and is watched as the proof.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_testing.paths import REPO
from mm_testing.ros_support import Client, node_process, stop_process, twin_args

ZENOH_BRIDGE = REPO / "tools" / "zenoh_bridge.py"
ZENOH_PORT = 7447
TRANSITIONS = "/servo1/transitions:mm_msgs/msg/TransitionBatch"
COMMAND = "/servo1/command:mm_msgs/msg/ServoCommand"
DDS_ON_EACH_HOST = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_STATIC_PEERS": ""}
START_TIMEOUT_S = 120.0  # hang protection: the twin and both bridges start on a busy machine (s, wall)


@dataclass(frozen=True)
class ZenohStream:
    """What came back through Zenoh: transition samples, over wall_s (s) of arrivals; states seen over DDS."""

    samples: int
    wall_s: float
    states_over_dds: int

    @property
    def per_s(self) -> float:
        """Samples per second of wall time on the learner host."""
        return self.samples / self.wall_s if self.wall_s > 0.0 else 0.0


@contextmanager
def _running(argv: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running for the block (output in `log`), stopped with SIGTERM then SIGKILL."""
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        stop_process(process)


def zenoh_stream(host: Any, out: Path, batches_to_count: int = 40) -> ZenohStream:
    """Bridges on both hosts, a streamed move, `batches_to_count` TransitionBatch arrivals timed on this host."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from mm_msgs.msg import ServoCommand, ServoState, TransitionBatch

    env = os.environ | DDS_ON_EACH_HOST
    bridge = [sys.executable, str(ZENOH_BRIDGE)]
    endpoint = f"tcp/{host.address}:{ZENOH_PORT}"
    servo_bridge = [*bridge, "--listen", endpoint, "--out", TRANSITIONS, "--in", COMMAND]
    learner_bridge = [*bridge, "--connect", endpoint, "--in", TRANSITIONS, "--out", COMMAND]
    twin = twin_args("/servo1", load="inertia_disk", heartbeat_timeout_s=0.0)
    with (
        node_process(twin, out / "zenoh_twin.log", prefix=host.command([]), env=env),
        _running(host.command(servo_bridge), out / "zenoh_servo_bridge.log", env),
        _running(learner_bridge, out / "zenoh_learner_bridge.log", env),
    ):
        client = Client("zenoh_operator")
        try:
            reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            batches = client.subscribe(TransitionBatch, "/servo1/transitions", reliable, arrival=True)
            states = client.subscribe(ServoState, "/servo1/state", qos_profile_sensor_data)
            publisher = client.node.create_publisher(ServoCommand, "/servo1/command", reliable)
            stream = ServoCommand(mode=ServoCommand.MODE_POSITION, target=0.5, stream_transitions=True)
            deadline = time.monotonic() + START_TIMEOUT_S
            while not client.poll(lambda: bool(batches), 1.0):
                assert time.monotonic() < deadline, "no transitions came back through Zenoh"
                publisher.publish(stream)  # again until the bridges are connected: they keep no history
            first = len(batches)
            assert client.poll(lambda: len(batches) > first + batches_to_count, 60.0), "the transitions stopped"
            window = batches[first : first + batches_to_count + 1]
            publisher.publish(ServoCommand(mode=ServoCommand.MODE_HOLD))
            # Samples after the first arrival, over the time from it to the last one.
            return ZenohStream(
                samples=sum(int(msg.count) for _, msg in window[1:]),
                wall_s=window[-1][0] - window[0][0],
                states_over_dds=len(states),
            )
        finally:
            client.close()
