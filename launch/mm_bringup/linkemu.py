"""A network link emulated in user space, for kernels without ``sch_netem``: two TAP devices, frames delayed and lost.

`mm_bringup.hosts.RemoteHost` joins its two namespaces with a veth pair and impairs it with ``tc netem``; where the
kernel has no netem qdisc (``tc`` answers "Specified qdisc kind is unknown"), a `Link` with ``emulated=True`` joins
them with this instead: one TAP device in each namespace (the same interface names and addresses as the veth pair)
and a forwarding process that copies every Ethernet frame from one to the other after ``delay_ms`` and drops each
with probability ``loss_percent`` / 100, independently per frame and direction, as ``netem delay D loss L`` on both
ends of the pair does. A constant delay keeps each direction in order, as netem's does without jitter. The
forwarder is a process of its own, so the GIL of the caller (a bench's rclpy client) does not add jitter.

    python -m mm_bringup.linkemu --servo-netns-pid PID --delay-ms 25 --loss-percent 1

creates ``mm-learner`` in its own network namespace and ``mm-servo`` in the namespace of process PID, prints
``ready`` and forwards until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mm_bringup.errors import BringupError

TUNSETIFF = 0x400454CA
"""ioctl of /dev/net/tun that attaches the file to a (new) interface (linux/if_tun.h)."""
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME_BYTES = 65_536
"""Largest frame read at once (a TAP's MTU is 1500 unless raised)."""
_POLL_S = 0.1  # longest wait for a frame while none is due, so a stop request is seen (s)


class LinkEmulatorError(BringupError):
    """A TAP device could not be made or moved (no /dev/net/tun, not root)."""


@dataclass
class DelayLine:
    """Frames of both directions waiting for their due time; each one is lost with probability `loss`.

    Attributes:
        delay_s: one-way delay (s).
        loss: probability that a frame is dropped.
        rng: draws the losses.
    """

    delay_s: float
    loss: float
    rng: random.Random
    _queue: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _sequence: int = 0
    dropped: int = 0
    forwarded: int = 0

    def push(self, frame: bytes, out: int, now: float) -> None:
        """Queue `frame` (read at `now`, s) for output `out`, unless it is lost."""
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        self._sequence += 1
        heapq.heappush(self._queue, (now + self.delay_s, self._sequence, out, frame))

    def wait_s(self, now: float) -> float:
        """How long until the next frame is due (s); `_POLL_S` at most."""
        return min(_POLL_S, max(0.0, self._queue[0][0] - now)) if self._queue else _POLL_S

    def due(self, now: float) -> list[tuple[int, bytes]]:
        """The frames due by `now` (s), in order: (output, frame)."""
        frames = []
        while self._queue and self._queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(self._queue)
            frames.append((out, frame))
        self.forwarded += len(frames)
        return frames


def open_tap(name: str) -> int:
    """A file descriptor of a new TAP interface `name` (no packet-information header) in this namespace."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        msg = f"cannot open /dev/net/tun ({exc}): the link emulator needs the tun driver and root"
        raise LinkEmulatorError(msg) from exc
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        msg = f"cannot create TAP interface {name!r}: {exc}"
        raise LinkEmulatorError(msg) from exc
    return fd


def forward(fds: tuple[int, int], line: DelayLine, running: list[bool]) -> None:
    """Copy frames between the two TAP descriptors through `line` while ``running[0]``."""
    other = {fds[0]: fds[1], fds[1]: fds[0]}
    while running[0]:
        try:
            readable, _, _ = select.select(list(fds), [], [], line.wait_s(time.monotonic()))
        except InterruptedError:
            continue
        now = time.monotonic()
        for fd in readable:
            line.push(os.read(fd, MAX_FRAME_BYTES), other[fd], now)
        for out, frame in line.due(time.monotonic()):
            try:
                os.write(out, frame)
            except OSError:  # the interface is down (set up later, or being removed): the frame is lost
                line.dropped += 1


def main(argv: Sequence[str] | None = None) -> int:
    """Make both TAP devices, print ``ready``, forward until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servo-netns-pid", type=int, required=True, help="a process in the servo host's namespace")
    parser.add_argument("--learner-tap", default="mm-learner")
    parser.add_argument("--servo-tap", default="mm-servo")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay (ms)")
    parser.add_argument("--loss-percent", type=float, default=0.0, help="loss of each frame in each direction (%%)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the losses")
    args = parser.parse_args(argv)
    learner = open_tap(args.learner_tap)
    servo = open_tap(args.servo_tap)
    moved = subprocess.run(
        ["ip", "link", "set", args.servo_tap, "netns", str(args.servo_netns_pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    if moved.returncode != 0:
        print(f"cannot move {args.servo_tap} into the servo host: {moved.stderr.strip()}", file=sys.stderr)
        return 1
    running = [True]

    def stop(_signum: int, _frame: object) -> None:
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    line = DelayLine(args.delay_ms / 1e3, args.loss_percent / 100.0, random.Random(args.seed))
    print("ready", flush=True)
    forward((learner, servo), line, running)
    print(f"forwarded {line.forwarded} frames, dropped {line.dropped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
