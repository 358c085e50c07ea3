"""Creating and destroying a node's ROS entities."""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription


def destroy_entity(node: Node, entity: Any) -> None:
    """Destroy a publisher, subscription or action server created on `node` (so the node forgets it too)."""
    if isinstance(entity, Publisher):
        node.destroy_publisher(entity)
    elif isinstance(entity, Service):
        node.destroy_service(entity)
    elif isinstance(entity, Subscription):
        node.destroy_subscription(entity)
    else:
        entity.destroy()
