"""The servo over its micro-ROS topics (the ESP32 through micro-ros-agent, or the twin), in the node's namespace.

Topics, types and QoS as the firmware uses them (docs/architecture.md): `state` best effort, `command` and
`policy_chunk` and `policy_ack` reliable, `heartbeat` best effort.

`state` and `policy_ack` are received by a small node of the transport's own (`<driver name>_link` in the
driver's namespace) spun by a single-threaded executor in the transport's thread, as the CAN transport has its
receive thread: the driver's multi-threaded executor serves actions, services and parameters of a lifecycle node
and took about 1.3 ms per wake-up, so a 200 Hz stream sharing it lost samples (joint_states at 166–193 Hz with
one servo, about 100 Hz per servo with four on two cores).
"""

from __future__ import annotations

import threading
from typing import Any

from mm_ros.entities import destroy_entity
from mm_ros.process import SideNode
from rclpy.callback_groups import CallbackGroup
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from mm_driver.transport import Ack, AckCallback, AckReason, AckStatus, Chunk, Command, ServoSample, StateCallback
from mm_msgs.msg import Heartbeat, PolicyAck, PolicyChunk, ServoCommand, ServoState

RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# A whole image is queued at once; the servo's own reader keeps 10, and the deployer resends what it lost.
CHUNK_QOS = QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def stamp_s(stamp: Any) -> float:
    """A builtin_interfaces/Time as seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def sample_from_msg(msg: Any) -> ServoSample:
    """A ServoState as a ServoSample."""
    return ServoSample(
        stamp_s=stamp_s(msg.stamp),
        mode=int(msg.mode),
        fault_flags=int(msg.fault_flags),
        position_rad=float(msg.position_rad),
        velocity_rad_s=float(msg.velocity_rad_s),
        current_a=float(msg.current_a),
        current_cmd_a=float(msg.current_cmd_a),
        effort_nm=float(msg.effort_nm),
        bus_voltage_v=float(msg.bus_voltage_v),
        power_w=float(msg.power_w),
        temperature_c=float(msg.temperature_c),
        target_rad=float(msg.target_rad),
        policy_crc32=int(msg.policy_crc32),
    )


def ack_from_msg(msg: Any) -> Ack:
    """A PolicyAck as an Ack."""
    return Ack(
        transfer_id=int(msg.transfer_id),
        status=AckStatus(msg.status),
        reason=AckReason(msg.reason),
        received_chunks=int(msg.received_chunks),
        total_chunks=int(msg.total_chunks),
        missing=tuple(int(i) for i in msg.missing),
        active_policy_crc32=int(msg.active_policy_crc32),
    )


class RosTransport:
    """A `Transport` made of the node's publishers and subscriptions (created in `open`, destroyed in `close`)."""

    def __init__(self, node: Node, *, chunk_size: int, callback_group: CallbackGroup | None = None) -> None:
        """Bind to `node` (its namespace is the servo's); chunks carry at most `chunk_size` bytes (≤ MAX_DATA)."""
        self._node = node
        self._chunk_size = min(chunk_size, PolicyChunk.MAX_DATA)
        self._group = callback_group
        self._entities: list[Any] = []
        self._matched = threading.Condition()
        self._seq = 0
        self._link: SideNode | None = None

    @property
    def max_chunk_data(self) -> int:
        """Bytes per PolicyChunk."""
        return self._chunk_size

    def open(self, on_state: StateCallback, on_ack: AckCallback) -> None:
        """Create the publishers and subscriptions."""
        self.close()
        node = self._node
        self._command = node.create_publisher(
            ServoCommand,
            "command",
            RELIABLE_QOS,
            event_callbacks=PublisherEventCallbacks(matched=self._on_matched),
            callback_group=self._group,
        )
        self._heartbeat = node.create_publisher(Heartbeat, "heartbeat", qos_profile_sensor_data)
        self._chunk = node.create_publisher(PolicyChunk, "policy_chunk", CHUNK_QOS)
        # Its own node and thread, not the driver's (mm_ros.process.SideNode).
        self._link = SideNode(node, "link")
        link = self._link.node
        link.create_subscription(ServoState, "state", lambda m: on_state(sample_from_msg(m)), qos_profile_sensor_data)
        link.create_subscription(PolicyAck, "policy_ack", lambda m: on_ack(ack_from_msg(m)), RELIABLE_QOS)
        self._entities = [self._command, self._heartbeat, self._chunk]

    def close(self) -> None:
        """Stop receiving; destroy the publishers, the receiving node and its executor."""
        if self._link is not None:
            self._link.destroy()
        self._link = None
        for entity in self._entities:
            destroy_entity(self._node, entity)
        self._entities = []

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the servo subscribes `command`: a reliable, volatile message sent before that is lost."""
        with self._matched:
            return self._matched.wait_for(lambda: self._command.get_subscription_count() > 0, timeout_s)

    def _on_matched(self, _status: Any) -> None:
        with self._matched:
            self._matched.notify_all()

    def send_command(self, command: Command) -> None:
        """Publish a ServoCommand."""
        self._seq += 1
        msg = ServoCommand(seq=self._seq & 0xFFFFFFFF, stamp=self._node.get_clock().now().to_msg())
        for name, value in vars(command).items():
            setattr(msg, name, int(value) if name == "mode" else value)
        self._command.publish(msg)

    def send_heartbeat(self, seq: int) -> None:
        """Publish a Heartbeat."""
        self._heartbeat.publish(Heartbeat(stamp=self._node.get_clock().now().to_msg(), seq=seq & 0xFFFFFFFF))

    def send_chunk(self, chunk: Chunk) -> None:
        """Publish one PolicyChunk."""
        self._chunk.publish(
            PolicyChunk(
                transfer_id=chunk.transfer_id,
                total_size=chunk.total_size,
                image_crc32=chunk.image_crc32,
                index=chunk.index,
                chunk_size=chunk.chunk_size,
                data=chunk.data,
            )
        )
