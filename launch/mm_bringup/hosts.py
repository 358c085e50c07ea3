"""A second host on this machine: a network namespace joined to this one by a veth pair, for multi-host runs.

The namespace this runs in is the *learner host* (``10.77.0.1``); `RemoteHost` makes the *servo host*
(``10.77.0.2``): a fresh network namespace with its own loopback and a mount namespace with its own ``/dev/shm``
and ``/etc/machine-id``, held open by a ``sleep`` started with ``unshare -n -m``, joined to this one by a veth
pair on the private test subnet ``10.77.0.0/24``. Commands run there through ``nsenter --net --mount``. A second
machine has its own shared memory and machine id, and DDS needs that: Fast DDS keeps its shared-memory transport's
port files in ``/dev/shm``, and with the machine's one shared across namespaces, discovery across the pair
succeeded in 2 of 9 tries (participants of both hosts took the same shared-memory ports), with a private one in
5 of 5. No named namespace (``ip netns add``) is used: those are bind mounts under ``/run/netns`` that outlive a
crashed run, while these namespaces, their mounts and the veth pair vanish with their last process. It refuses to
run in a namespace with any interface but loopback, so the veth pair never touches the real network: run it under
``tools/isolated.sh`` (``tools/two_hosts.sh`` does), which makes a loopback-only namespace first.

DDS across the two hosts is set up as on a LAN (ROS 2 Jazzy "Improved Dynamic Discovery"):
``ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET`` (multicast discovery, routed over the pair: ``224.0.0.0/4`` on both ends)
and ``ROS_STATIC_PEERS=<the other host>`` (unicast discovery as well, what a routed link or a cloud box needs). With
``LOCALHOST`` and the static peer alone, the hosts matched in every try until 12:30 on 2026-12-05 and in none
after (packets crossed both ways, nothing matched; docs/remote-learner.md): that setup is documented for real
hosts but not relied on here. No extra process is needed (a Fast DDS discovery server would be one more daemon and
one more single point of failure; its CLI is not in the ROS wheels either).

``link`` adds ``tc netem`` delay and loss on both ends of the veth pair (e.g. 25 ms each way = 50 ms RTT, 1 %
loss); a kernel without ``sch_netem`` refuses it, and `NetemUnavailableError` says so. A link with ``emulated``
joins the hosts by two TAP devices and `mm_bringup.linkemu`'s forwarding process instead, which applies the same
delay and loss in user space (same interface names and addresses): what such a kernel can run.

    python -m mm_bringup.hosts --learner "python -m mm_learning.learner_node" --servo "python -m mm_sim.twin_node"
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mm_bringup.errors import BringupError

LEARNER_ADDRESS = "10.77.0.1"
"""The learner host's address on the veth pair (this namespace)."""
SERVO_ADDRESS = "10.77.0.2"
"""The servo host's address on the veth pair (the new namespace)."""
PREFIX_LENGTH = 24
"""Prefix length of the private test subnet 10.77.0.0/24."""
MULTICAST = "224.0.0.0/4"
"""Routed over the pair on both hosts: DDS's SPDP multicast (239.255.0.1) needs a route, and the pair is the LAN."""
LEARNER_INTERFACE = "mm-learner"
SERVO_INTERFACE = "mm-servo"
MACHINE_ID = Path("/etc/machine-id")
"""Where Fast DDS reads the machine id it derives the host part of participant GUIDs from."""
SHARED_MEMORY = Path("/dev/shm")
"""Where Fast DDS keeps its shared-memory transport's segments and port files."""
_SETUP_TIMEOUT_S = 10.0  # hang protection of each `ip`/`tc` call (s, wall)


class HostsError(BringupError):
    """The second host could not be made (not root, no namespaces, a namespace with a way out, `ip` failed)."""


class NetemUnavailableError(HostsError):
    """The kernel refused a ``tc netem`` qdisc (no ``sch_netem`` module): delay and loss cannot be added here."""


@dataclass(frozen=True)
class Link:
    """Impairment of the link, applied in both directions (so the RTT is twice `delay_ms`).

    Attributes:
        delay_ms: one-way delay (ms).
        loss_percent: random loss of each packet in each direction (%).
        emulated: TAP devices and `mm_bringup.linkemu` (user space) instead of a veth pair with ``tc netem``.
    """

    delay_ms: float = 0.0
    loss_percent: float = 0.0
    emulated: bool = False

    def netem_arguments(self) -> list[str]:
        """The ``tc qdisc ... netem`` arguments of this link."""
        return ["delay", f"{self.delay_ms:g}ms", "loss", f"{self.loss_percent:g}%"]


NETEM_50MS_RTT_1PCT = Link(delay_ms=25.0, loss_percent=1.0)
"""The issue's WAN-like link: 50 ms RTT, 1 % loss."""


def dds_environment(peer_address: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with DDS discovery on the subnet and of `peer_address`."""
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    env["ROS_STATIC_PEERS"] = peer_address
    return env


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=_SETUP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"{shlex.join(argv)} failed: {exc}"
        raise HostsError(msg) from exc


def _check(argv: Sequence[str]) -> None:
    done = _run(argv)
    if done.returncode != 0:
        msg = f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()}"
        raise HostsError(msg)


def outside_interfaces() -> list[str]:
    """The network interfaces of this namespace other than loopback and our veth end (`/proc/self/net/dev`)."""
    lines = Path("/proc/self/net/dev").read_text(encoding="utf-8").splitlines()[2:]
    names = [line.split(":", 1)[0].strip() for line in lines]
    return [name for name in names if name not in {"lo", LEARNER_INTERFACE}]


class RemoteHost:
    """The servo host: network and mount namespaces joined to this one by a veth pair (a context manager).

    Attributes:
        address: the servo host's address; `local_address` is this (the learner) host's.
    """

    def __init__(self, link: Link | None = None) -> None:
        """A servo host reached through `link` (None: an unimpaired veth pair)."""
        self.link = link
        self.address = SERVO_ADDRESS
        self.local_address = LEARNER_ADDRESS
        self._holder: subprocess.Popen[bytes] | None = None
        self._emulator: subprocess.Popen[str] | None = None
        self._machine_id: Path | None = None

    def __enter__(self) -> RemoteHost:
        """Make the namespaces and the veth pair (or the emulated link), address both ends, add netem if asked."""
        if outside := outside_interfaces():
            msg = (
                f"refusing to add a veth pair to a namespace with a way out ({', '.join(outside)}): run under "
                "tools/isolated.sh (a loopback-only network namespace)"
            )
            raise HostsError(msg)
        try:
            self._start_holder()
            if self.link is not None and self.link.emulated:
                self._start_emulator(self.link)
            else:
                _check(
                    [
                        "ip",
                        "link",
                        "add",
                        LEARNER_INTERFACE,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        SERVO_INTERFACE,
                        "netns",
                        str(self._pid()),
                    ]
                )
            _check(["ip", "addr", "add", f"{LEARNER_ADDRESS}/{PREFIX_LENGTH}", "dev", LEARNER_INTERFACE])
            _check(["ip", "link", "set", LEARNER_INTERFACE, "up"])
            _check(["ip", "route", "add", MULTICAST, "dev", LEARNER_INTERFACE])
            _check(self.command(["ip", "link", "set", "lo", "up"]))
            _check(self.command(["ip", "addr", "add", f"{SERVO_ADDRESS}/{PREFIX_LENGTH}", "dev", SERVO_INTERFACE]))
            _check(self.command(["ip", "link", "set", SERVO_INTERFACE, "up"]))
            _check(self.command(["ip", "route", "add", MULTICAST, "dev", SERVO_INTERFACE]))
            if self.link is not None and not self.link.emulated:
                self._add_netem(self.link)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Remove the veth pair and end the namespaces' holder."""
        self.close()

    def _start_holder(self) -> None:
        """Start the `sleep` that holds the namespaces, once its private /dev/shm and machine id are mounted."""
        mounts = [f"mount -t tmpfs -o mode=1777 servo-host-shm {SHARED_MEMORY}"]
        if MACHINE_ID.exists():
            fd, name = tempfile.mkstemp(prefix="mm-servo-host-", suffix=".machine-id")
            os.write(fd, f"{uuid.uuid4().hex}\n".encode())
            os.close(fd)
            self._machine_id = Path(name)
            mounts.append(f"mount --bind {shlex.quote(name)} {MACHINE_ID}")
        # unshare -m makes every mount of the new namespace private: none of these is seen outside it.
        script = " && ".join([*mounts, "exec sleep infinity"])
        try:
            self._holder = subprocess.Popen(["unshare", "-n", "-m", "sh", "-c", script])
        except OSError as exc:
            msg = f"cannot start `unshare` ({exc}): util-linux is needed"
            raise HostsError(msg) from exc
        deadline = time.monotonic() + _SETUP_TIMEOUT_S
        while Path(f"/proc/{self._holder.pid}/comm").read_text(encoding="utf-8").strip() != "sleep":
            if self._holder.poll() is not None:
                msg = f"`unshare -n -m` exited with {self._holder.returncode}: this user may not create namespaces"
                raise HostsError(msg)
            if time.monotonic() > deadline:
                msg = "the servo host's namespaces did not come up"
                raise HostsError(msg)
            time.sleep(0.01)

    def _pid(self) -> int:
        if self._holder is None:
            msg = "the servo host is not up: use RemoteHost as a context manager"
            raise HostsError(msg)
        return self._holder.pid

    def _start_emulator(self, link: Link) -> None:
        """The two TAP devices and their forwarder (`mm_bringup.linkemu`), once it says ``ready``."""
        argv = [
            sys.executable,
            "-m",
            "mm_bringup.linkemu",
            f"--servo-netns-pid={self._pid()}",
            f"--learner-tap={LEARNER_INTERFACE}",
            f"--servo-tap={SERVO_INTERFACE}",
            f"--delay-ms={link.delay_ms:g}",
            f"--loss-percent={link.loss_percent:g}",
        ]
        self._emulator = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        if self._emulator.stdout is None or self._emulator.stdout.readline().strip() != "ready":
            self._emulator.wait(timeout=_SETUP_TIMEOUT_S)
            msg = f"the link emulator exited with {self._emulator.returncode} (its error is above)"
            raise HostsError(msg)

    def _add_netem(self, link: Link) -> None:
        for command in (
            ["tc", "qdisc", "add", "dev", LEARNER_INTERFACE, "root", "netem", *link.netem_arguments()],
            self.command(["tc", "qdisc", "add", "dev", SERVO_INTERFACE, "root", "netem", *link.netem_arguments()]),
        ):
            done = _run(command)
            if done.returncode != 0:
                msg = f"the kernel refused `tc ... netem` ({done.stderr.strip()}): no sch_netem on this kernel"
                raise NetemUnavailableError(msg)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as a command line that runs on the servo host, in this process's working directory."""
        pid = self._pid()
        return [
            "nsenter",
            f"--net=/proc/{pid}/ns/net",
            f"--mount=/proc/{pid}/ns/mnt",
            f"--wd={os.getcwd()}",
            "--",
            *argv,
        ]

    def servo_environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a ROS process on the servo host (discovers the learner host)."""
        return dds_environment(self.local_address, base)

    def learner_environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a ROS process on the learner host (discovers the servo host)."""
        return dds_environment(self.address, base)

    def close(self) -> None:
        """Delete the veth pair (both ends) or stop the link emulator, and stop the holder; idempotent."""
        if self._emulator is not None:
            self._emulator.terminate()  # its TAP devices go with its descriptors
            self._emulator.wait()
            self._emulator = None
        _run(["ip", "link", "del", LEARNER_INTERFACE])
        if self._holder is not None:
            self._holder.terminate()
            self._holder.wait()
            self._holder = None
        if self._machine_id is not None:
            self._machine_id.unlink(missing_ok=True)
            self._machine_id = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command on each host until one exits or SIGINT/SIGTERM; the other is then stopped with SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learner", required=True, help="command line run on the learner host (this namespace)")
    parser.add_argument("--servo", required=True, help="command line run on the servo host (the new namespace)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="netem one-way delay on both ends (ms)")
    parser.add_argument("--loss-percent", type=float, default=0.0, help="netem random loss on both ends (%%)")
    parser.add_argument(
        "--emulated", action="store_true", help="TAP devices + mm_bringup.linkemu instead of veth + netem"
    )
    args = parser.parse_args(argv)
    impaired = args.delay_ms or args.loss_percent or args.emulated
    link = Link(args.delay_ms, args.loss_percent, args.emulated) if impaired else None
    try:
        with RemoteHost(link) as host:
            processes = [
                subprocess.Popen(shlex.split(args.learner), env=host.learner_environment()),
                subprocess.Popen(host.command(shlex.split(args.servo)), env=host.servo_environment()),
            ]
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while all(p.poll() is None for p in processes):
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            return max(abs(p.wait()) for p in processes)
    except HostsError as exc:
        print(f"two hosts: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
