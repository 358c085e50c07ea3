"""The ``recorder`` node: records a servo's topics into a rosbag2 MCAP bag (mm_learning.bags) without rosbag2.

``ros2 run mm_learning recorder --ros-args -r __ns:=/servo1 -p output:=bags/run1`` records the namespace's
``state``, ``transitions``, ``policy_ack``, ``command``, ``joint_states`` and ``reward`` topics. The bag is what
``ros2 bag record -s mcap`` would write: ``ros2 bag info/play`` read it on a ROS install, and
``mm_learning.bags.load_transitions`` turns it into a dataset for the learner.

ROS parameters: ``RecorderParameters`` (``ros2 param describe`` shows their descriptions).

Messages are taken serialized (raw subscriptions), as ``ros2 bag record`` does: the bytes written are the CDR the
publisher sent. SIGINT and SIGTERM stop the recording cleanly: messages already received are written and the
bag is closed (``metadata.yaml``, MCAP summary).
"""

from __future__ import annotations

import importlib
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import rclpy
import rclpy.logging
from diagnostic_msgs.msg import DiagnosticArray
from mm_ros.diagnostics import ERROR, OK, WARN, Health, diagnostic_array
from mm_ros.parameters import declare, parameter, read
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from mm_learning.bags import BEST_EFFORT, RELIABLE, BagError, BagWriter

SERVO_TOPICS = {
    "state": "mm_msgs/msg/ServoState",
    "transitions": "mm_msgs/msg/TransitionBatch",
    "policy_ack": "mm_msgs/msg/PolicyAck",
    "command": "mm_msgs/msg/ServoCommand",
    "joint_states": "sensor_msgs/msg/JointState",
    "reward": "mm_msgs/msg/Reward",
    "heartbeat": "mm_msgs/msg/Heartbeat",
}
"""Types of the topics a servo namespace carries (docs/architecture.md)."""
BEST_EFFORT_TOPICS = frozenset({"state", "heartbeat"})
"""Published best effort: a reliable subscription would not match them."""
# Deep queues: the bag is written in the callback, and a burst (24-sample batches) must not overflow keep-last.
_QUEUE_DEPTH = 1000


def _servo_topic(name: str) -> str:
    """The servo topic a name ends with (``servo1/state`` -> ``state``)."""
    return name.rsplit("/", 1)[-1]


def topic_type(entry: str) -> tuple[str, str]:
    """``(name, pkg/msg/Type)`` of a ``topics`` entry (``[ns/]name`` of a servo topic, or ``name:pkg/msg/Type``).

    Raises:
        BagError: an unknown name without a type, or a malformed type.
    """
    name, _, msgtype = entry.partition(":")
    msgtype = msgtype or SERVO_TOPICS.get(_servo_topic(name), "")
    if msgtype.count("/") != 2:
        msg = f"topic entry {entry!r}: give one of {sorted(SERVO_TOPICS)} or name:pkg/msg/Type"
        raise BagError(msg)
    return name, msgtype


def _message_class(msgtype: str) -> type:
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as err:
        msg = f"cannot import {msgtype} ({err}); build and source the package that defines it"
        raise BagError(msg) from err


@dataclass(frozen=True)
class RecorderParameters:
    """The recorder's parameters (declared and read through `mm_ros.parameters`)."""

    output: str = parameter("", "bag directory to create (must not exist)")
    topics: tuple[str, ...] = parameter(
        tuple(SERVO_TOPICS)[:6],
        "topic names relative to the namespace: `name` for a servo topic (also below a servo's namespace, e.g. "
        "servo1/state for a recorder of several servos), or name:pkg/msg/Type",
    )
    flush_period_s: float = parameter(
        1.0, "write the pending chunk to disk this often (s); a SIGKILL loses at most this much"
    )
    diagnostics_period_s: float = parameter(
        1.0,
        "/diagnostics period (s): messages per topic, the bag, the last flush; ERROR when writing fails (a full "
        "disk), WARN while a topic has recorded nothing",
    )


class RecorderNode(Node):
    """Subscribes to the configured topics and writes every message to the bag."""

    def __init__(self) -> None:
        super().__init__("recorder")
        declare(self, RecorderParameters)
        params: RecorderParameters = read(self, RecorderParameters)
        if not params.output:
            msg = "parameter `output` is empty; set the bag directory to create (-p output:=bags/run1)"
            raise BagError(msg)
        topics = [topic_type(entry) for entry in params.topics]
        self.bag = BagWriter(Path(params.output).expanduser())
        self.received = 0
        for name, msgtype in topics:
            best_effort = _servo_topic(name) in BEST_EFFORT_TOPICS
            full_name = self.resolve_topic_name(name)
            self.bag.add_topic(full_name, msgtype, qos=BEST_EFFORT if best_effort else RELIABLE)
            reliability = ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
            self.create_subscription(
                _message_class(msgtype),
                name,
                partial(self._on_message, full_name),
                QoSProfile(depth=_QUEUE_DEPTH, reliability=reliability),
                raw=True,
            )
        self.failure = ""  # why writing the bag failed (OSError: a full disk, a removed directory)
        self._flushed_wall_s = time.monotonic()
        self.create_timer(params.flush_period_s, self._flush)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(params.diagnostics_period_s, self._diagnostics)
        self.get_logger().info(f"recording {[t for t, _ in topics]} to {self.bag.path}")

    def _on_message(self, topic: str, data: bytes) -> None:
        try:
            self.bag.write(topic, data, self.get_clock().now().nanoseconds)
        except OSError as err:
            self._failed(err)
            return
        self.received += 1

    def _flush(self) -> None:
        try:
            self.bag.flush()
        except OSError as err:
            self._failed(err)
            return
        self._flushed_wall_s = time.monotonic()

    def _failed(self, err: OSError) -> None:
        if not self.failure:
            self.get_logger().error(f"cannot write {self.bag.path}: {err}; what was flushed before is kept")
        self.failure = str(err)

    def health(self) -> Health:
        """How the recording goes: ERROR when the bag cannot be written, WARN while a topic has nothing yet."""
        values = {topic: str(count) for topic, count in self.bag.counts.items()}
        values |= {"bag": str(self.bag.path), "last_flush_age_s": f"{time.monotonic() - self._flushed_wall_s:.1f}"}
        silent = [topic for topic, count in self.bag.counts.items() if count == 0]
        if self.failure:
            return Health(ERROR, f"cannot write the bag: {self.failure}", values)
        if silent:
            return Health(WARN, f"nothing recorded yet on {', '.join(silent)}", values)
        return Health(OK, f"{self.received} messages recorded", values)

    def _diagnostics(self) -> None:
        stamp = self.get_clock().now().to_msg()
        array = diagnostic_array(stamp, self.get_fully_qualified_name(), "recording", str(self.bag.path), self.health())
        self._diagnostics_pub.publish(array)


def main(args: list[str] | None = None) -> None:
    """Run the recorder until SIGINT/SIGTERM, then write what arrived and close the bag."""
    # Our own signal handling: rclpy's would shut the context down before the last messages are taken.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    node: RecorderNode | None = None
    try:
        node = RecorderNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
        _drain(executor, node)
    except BagError as err:
        rclpy.logging.get_logger("recorder").fatal(str(err))
        raise SystemExit(1) from None
    except ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.bag.close()
            node.get_logger().info(f"closed {node.bag.path}: {node.bag.counts}")
        rclpy.try_shutdown()


def _drain(executor: Any, node: RecorderNode) -> None:
    """Take the messages DDS already holds for us (delivered before the stop) until a spin brings none."""
    while True:
        before = node.received
        executor.spin_once(timeout_sec=0.05)
        if node.received == before:
            return


if __name__ == "__main__":
    main()
