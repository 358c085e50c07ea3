"""The learner on one host, the servo on another: two network namespaces joined by a veth pair (10.77.0.0/24).

The learner node and the operator run in this (the learner) host's namespace, the virtual servo and its driver in
a second namespace made by `mm_bringup.hosts.RemoteHost`; DDS finds the other host as on a LAN (discovery range
SUBNET, multicast routed over the pair) plus ROS_STATIC_PEERS, and each host has its own registry. A Train goal, a
DeployPolicy of the learner's blob to the driver over there, the servo's state with the new policy, and the
servo's transitions streaming back, all across the veth pair.

Run inside the loopback-only namespace: tools/run_tests.sh launch/test/test_two_hosts.py

The same across Zenoh: DDS kept on each host (no static peers) and tools/zenoh_bridge.py on both carrying the
servo's `command` and `transitions` as CDR bytes (eclipse-zenoh; rmw_zenoh is not in the ROS wheels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("rclpy")
from action_msgs.msg import GoalStatus
from mm_bringup.hosts import LEARNER_ADDRESS, SERVO_ADDRESS, HostsError, Link, RemoteHost, outside_interfaces
from zenoh_support import zenoh_stream

pytestmark = [pytest.mark.ros, pytest.mark.slow]

# The learner's smallest default goal: one ES generation of the schedule learner (the step budget rounds up),
# with small evaluations (src/mm_learning/test/test_learner_node.py).
LEARNER_PARAMETERS = {"episode_s": 1.0, "eval_moves": 2, "export_moves": 3}


def _can_make_hosts() -> str:
    """Why this machine cannot make the second host ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (CAP_NET_ADMIN) for the veth pair"
    if outside_interfaces():
        return "not in a loopback-only namespace: run through tools/run_tests.sh"
    return ""


pytestmark.append(pytest.mark.skipif(bool(_can_make_hosts()), reason=_can_make_hosts() or "ok"))


def test_the_hosts_reach_each_other_only_over_the_veth_pair() -> None:
    """Each host has its own loopback and one address on the pair; the servo host's TCP port is reached from here."""
    with RemoteHost() as host:
        listen = host.command(
            [
                sys.executable,
                "-c",
                "import socket; s = socket.create_server(('0.0.0.0', 7777)); "
                "c, peer = s.accept(); c.sendall(peer[0].encode())",
            ]
        )
        with subprocess.Popen(listen, stdout=subprocess.PIPE) as server:
            import socket

            deadline = time.monotonic() + 10.0
            while True:
                try:
                    with socket.create_connection((SERVO_ADDRESS, 7777), timeout=2.0) as conn:
                        assert conn.recv(64).decode() == LEARNER_ADDRESS  # the servo host saw us on the pair
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline, "the servo host's server did not come up"
                    time.sleep(0.1)
            server.wait(timeout=10.0)
        addresses = subprocess.run(
            host.command(["ip", "-4", "-o", "addr"]), capture_output=True, text=True, check=True
        ).stdout
        assert "127.0.0.1" in addresses and SERVO_ADDRESS in addresses and LEARNER_ADDRESS not in addresses
    # Nothing of the servo host is left here once it is closed.
    assert "mm-learner" not in Path("/proc/self/net/dev").read_text()


_ECHO = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7778)); "
    "[s.sendto(*s.recvfrom(64)) for _ in iter(int, 1)]"
)


def _round_trips(host: RemoteHost, count: int, timeout_s: float, *, first_within_s: float = 0.0) -> list[float]:
    """UDP round trips (s) of `count` probes to an echo server on the servo host; the lost ones are left out.

    With `first_within_s`, probes are sent until one comes back within that long (the server is up, ARP
    resolved) before the counted ones.
    """
    import socket

    times: list[float] = []
    with (
        subprocess.Popen(host.command([sys.executable, "-c", _ECHO])) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
    ):
        try:
            sock.settimeout(0.2)
            deadline = time.monotonic() + first_within_s
            while time.monotonic() < deadline and not _echo(sock, b"up"):
                pass
            sock.settimeout(timeout_s)
            for index in range(count):
                sent = time.monotonic()
                if _echo(sock, str(index).encode()):
                    times.append(time.monotonic() - sent)
        finally:
            server.kill()
    return times


def _echo(sock: Any, probe: bytes) -> bool:
    """Send `probe` to the servo host's echo port; whether it came back before the socket's timeout."""
    sock.sendto(probe, (SERVO_ADDRESS, 7778))
    try:
        while sock.recv(64) != probe:  # a late echo of an earlier probe
            pass
    except (TimeoutError, ConnectionRefusedError):  # lost, or the server not up yet (ICMP port unreachable)
        return False
    return True


def test_an_emulated_link_delays_and_loses_what_crosses_it() -> None:
    """Where the kernel has no netem: TAP devices + mm_bringup.linkemu, 20 ms each way; then 50 % loss."""
    with RemoteHost(Link(delay_ms=20.0, emulated=True)) as host:
        rtts = _round_trips(host, 10, 2.0, first_within_s=10.0)
    assert len(rtts) == 10 and min(rtts) >= 0.040, rtts
    assert "mm-learner" not in Path("/proc/self/net/dev").read_text()
    # 50 % loss each way: a round trip survives 1 in 4 (expected 10 of 40; 2..20 holds with odds > 0.999).
    with RemoteHost(Link(loss_percent=50.0, emulated=True)) as host:
        survived = len(_round_trips(host, 40, 0.3, first_within_s=10.0))
    assert 2 <= survived <= 20, survived


def test_a_namespace_with_a_way_out_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mm_bringup.hosts.outside_interfaces", lambda: ["eth0"])
    with pytest.raises(HostsError, match=r"way out \(eth0\).*tools/isolated.sh"), RemoteHost():
        pass


def test_train_and_deploy_across_two_hosts_and_transitions_come_back(tmp_path: Path, report: Any) -> None:
    """In a fresh process (`python -m mm_bringup.two_hosts`): a pytest process whose rclpy already ran before the
    veth pair existed never discovered the other host (Fast DDS keeps the interfaces it saw first).
    """
    args = [str(tmp_path)] + [f"{name}:={json.dumps(value)}" for name, value in LEARNER_PARAMETERS.items()]
    done = subprocess.run(
        [sys.executable, "-m", "mm_bringup.two_hosts", *args], capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"/servo1/learner", "/servo1/driver", "/servo1/virtual_servo"} <= set(result["nodes"])
    assert result["train_status"] == GoalStatus.STATUS_SUCCEEDED and result["train_success"], result["train_message"]
    assert len(result["policy_id"]) == 64 and result["policy_crc32"] != 0
    # The driver on the servo host has no registry entry: it deploys the blob it got from `policy` over the pair.
    assert result["servo_registry_files"] == []
    deployment = result["deployment"]
    assert deployment["success"], deployment["message"]
    assert deployment["active_policy_crc32"] == result["policy_crc32"]
    stream = result["stream"]
    assert stream["samples"] >= 24, f"only {stream['samples']} transition samples came back from the servo host"
    report(
        f"two hosts (veth, DDS): deploy {deployment['wall_s']:.3f} s wall ({deployment['driver_elapsed_s']:.3f} s "
        f"driver), {stream['samples']} transitions in {stream['wall_s']:.2f} s = {stream['per_s']:.0f}/s on the "
        f"learner host ({stream['servo_s']:.2f} s of servo time)"
    )


def test_zenoh_carries_the_servo_topics_and_dds_alone_does_not(tmp_path: Path, report: Any) -> None:
    """Transitions come back through the bridges; the servo's `state`, not bridged, never arrives over DDS."""
    pytest.importorskip("zenoh")
    with RemoteHost() as host:
        stream = zenoh_stream(host, tmp_path)
    report(f"zenoh bridge (veth, CDR bytes): {stream.per_s:.0f} transitions/s on the learner host (servo: 1000/s)")
    assert stream.states_over_dds == 0, "the servo's state crossed over DDS: the hosts were not kept apart"
    assert stream.per_s > 500.0
