r"""Carry ROS 2 topics between hosts over Zenoh: each message's serialized CDR bytes as one Zenoh sample.

What rmw_zenoh (``RMW_IMPLEMENTATION=rmw_zenoh_cpp``) does for every topic of every node, done here for named
topics with the ``eclipse-zenoh`` Python package, for a machine where rmw_zenoh is not installed (the ROS wheels
of this project have no rmw_zenoh). DDS stays on each host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, no
static peers); one bridge per host subscribes its host's topics raw (no deserialisation) and puts the bytes on
the key ``<topic without the leading slash>``; the other bridge publishes the bytes it receives on the same topic
on its host. One bridge listens (``--listen tcp/10.77.0.2:7447``), the other connects to it; multicast scouting is
off, so a link beyond a LAN works the same way (the listening side is the one with a reachable address). Both
sides open Zenoh peers; for many hosts, point them at a router (``zenohd`` or ``rmw_zenohd``) with ``--connect``.

    # servo host: its transitions out, commands in
    python tools/zenoh_bridge.py --listen tcp/0.0.0.0:7447 \
        --out /servo1/transitions:mm_msgs/msg/TransitionBatch --in /servo1/command:mm_msgs/msg/ServoCommand
    # learner host: the opposite directions
    python tools/zenoh_bridge.py --connect tcp/10.77.0.2:7447 \
        --in /servo1/transitions:mm_msgs/msg/TransitionBatch --out /servo1/command:mm_msgs/msg/ServoCommand

Both directions are reliable (ROS: reliable, depth 100; Zenoh: reliable, blocking congestion control), as the
transitions and commands are on DDS (docs/architecture.md). See docs/remote-learner.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import rclpy
import zenoh
from rclpy.executors import ExternalShutdownException
from rclpy.qos import QoSProfile, ReliabilityPolicy


class BridgeError(Exception):
    """A bridge that cannot start as asked: a bad topic spec or an unknown message type."""


@dataclass(frozen=True)
class TopicSpec:
    """A ROS topic and its message type, e.g. ``/servo1/transitions:mm_msgs/msg/TransitionBatch``."""

    topic: str
    type_name: str

    @classmethod
    def parse(cls, text: str) -> TopicSpec:
        """`TOPIC:PACKAGE/msg/TYPE`; the topic must be absolute (it names the Zenoh key on both hosts)."""
        topic, _, type_name = text.partition(":")
        if not topic.startswith("/") or type_name.count("/") != 2:
            msg = f"topic spec {text!r} is not /absolute/topic:package/msg/Type"
            raise BridgeError(msg)
        return cls(topic, type_name)

    @property
    def key(self) -> str:
        """The Zenoh key expression of the topic."""
        return self.topic.lstrip("/")

    def message_type(self) -> Any:
        """The Python class of the message type."""
        package, kind, name = self.type_name.split("/")
        try:
            return getattr(importlib.import_module(f"{package}.{kind}"), name)
        except (ImportError, AttributeError) as exc:
            msg = f"unknown message type {self.type_name!r}: is its package built and sourced?"
            raise BridgeError(msg) from exc


def zenoh_config(listen: list[str], connect: list[str]) -> Any:
    """A Zenoh peer configuration with these endpoints and no multicast scouting."""
    config = zenoh.Config()
    config.insert_json5("mode", json.dumps("peer"))
    config.insert_json5("scouting/multicast/enabled", "false")
    if listen:
        config.insert_json5("listen/endpoints", json.dumps(listen))
    if connect:
        config.insert_json5("connect/endpoints", json.dumps(connect))
    return config


def _republish(publisher: Any) -> Callable[[Any], None]:
    """A Zenoh sample handler publishing the sample's bytes (serialized CDR) with a ROS publisher.

    Zenoh calls it from its own thread; rclpy's publish is thread-safe.
    """

    def handler(sample: Any) -> None:
        publisher.publish(sample.payload.to_bytes())

    return handler


def main(argv: list[str] | None = None) -> int:
    """Bridge the topics until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", action="append", default=[], help="Zenoh endpoint to listen on (tcp/ADDR:PORT)")
    parser.add_argument("--connect", action="append", default=[], help="Zenoh endpoint to connect to")
    parser.add_argument("--out", action="append", default=[], help="TOPIC:TYPE from this host's DDS to Zenoh")
    parser.add_argument("--in", dest="into", action="append", default=[], help="TOPIC:TYPE from Zenoh to this DDS")
    args = parser.parse_args(argv)
    try:
        outgoing = [TopicSpec.parse(text) for text in args.out]
        incoming = [TopicSpec.parse(text) for text in args.into]
        types = {spec: spec.message_type() for spec in (*outgoing, *incoming)}
    except BridgeError as exc:
        print(f"zenoh_bridge: {exc}", file=sys.stderr)
        return 2

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    with zenoh.open(zenoh_config(args.listen, args.connect)) as session:
        try:
            rclpy.init()
            node = rclpy.create_node("zenoh_bridge")
            for spec in outgoing:
                publisher = session.declare_publisher(
                    spec.key, reliability=zenoh.Reliability.RELIABLE, congestion_control=zenoh.CongestionControl.BLOCK
                )
                node.create_subscription(types[spec], spec.topic, publisher.put, qos, raw=True)
            for spec in incoming:
                session.declare_subscriber(spec.key, _republish(node.create_publisher(types[spec], spec.topic, qos)))
            node.get_logger().info(f"bridging out {[s.topic for s in outgoing]}, in {[s.topic for s in incoming]}")
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
