"""Every message the ESP32 publishes or subscribes fits the micro-ROS transport limits.

micro-ROS (XRCE-DDS) with default settings has a 512 B MTU: a best-effort message must fit one MTU and a reliable
one at most MTU x history (4 x 512 B = 2 KB); larger messages are dropped silently by the agent. Each transport
fragment also carries XRCE headers (message 4 B, submessage 4 B, WRITE_DATA request/object ids 4 B) and, on a
serial transport, framing; 24 B per fragment are reserved for them here. Worst case = every bounded sequence full.
Servo-side messages may not contain unbounded fields at all (their size could not be bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("rclpy")
from rclpy.serialization import serialize_message
from rosidl_parser import definition as idl

MTU_B = 512
HISTORY = 4
XRCE_OVERHEAD_B = 24
BEST_EFFORT_LIMIT_B = MTU_B - XRCE_OVERHEAD_B
RELIABLE_LIMIT_B = HISTORY * (MTU_B - XRCE_OVERHEAD_B)


def _import(name: str) -> type:
    from mm_msgs import msg

    return getattr(msg, name)


def _worst_case(msg_cls: type) -> Any:
    """Build an instance of ``msg_cls`` with every bounded sequence/array filled to its maximum."""
    msg = msg_cls()
    for field, slot in zip(msg_cls.get_fields_and_field_types(), msg_cls.SLOT_TYPES, strict=True):
        setattr(msg, field, _worst_value(slot, getattr(msg, field), field, msg_cls.__name__))
    return msg


def _worst_value(slot: Any, current: Any, field: str, owner: str) -> Any:
    if isinstance(slot, idl.UnboundedSequence | idl.UnboundedString | idl.UnboundedWString):
        msg = f"{owner}.{field} is unbounded: a servo-side message needs a bound to fit micro-ROS"
        raise AssertionError(msg)
    if isinstance(slot, idl.BoundedString):
        return "x" * slot.maximum_size
    if isinstance(slot, idl.BoundedSequence | idl.Array):
        count = slot.maximum_size if isinstance(slot, idl.BoundedSequence) else slot.size
        inner = slot.value_type
        if isinstance(inner, idl.NamespacedType):
            return [_worst_case(type(_nested_default(current, inner))) for _ in range(count)]
        return [_zero(inner)] * count if not _is_bytes(inner) else bytes(count)
    if isinstance(slot, idl.NamespacedType):
        return _worst_case(type(current))
    return current


def _nested_default(current: Any, inner: idl.NamespacedType) -> Any:
    module = __import__(".".join(inner.namespaces), fromlist=[inner.name])
    return getattr(module, inner.name)()


def _is_bytes(inner: Any) -> bool:
    return isinstance(inner, idl.BasicType) and inner.typename in ("uint8", "octet", "char")


def _zero(inner: Any) -> Any:
    if isinstance(inner, idl.BasicType) and inner.typename in ("float", "double"):
        return 0.0
    if isinstance(inner, idl.BasicType) and inner.typename == "boolean":
        return False
    return 0


# (message, QoS on the servo side, limit): every topic the firmware and the twin publish or subscribe.
SERVO_SIDE = [
    ("ServoState", "best effort", BEST_EFFORT_LIMIT_B),
    ("Heartbeat", "best effort", BEST_EFFORT_LIMIT_B),
    ("ServoCommand", "reliable", BEST_EFFORT_LIMIT_B),  # kept to one MTU: commands must not fragment
    ("PolicyChunk", "reliable", BEST_EFFORT_LIMIT_B),  # one chunk per MTU by design (contract section 6)
    ("PolicyAck", "reliable", BEST_EFFORT_LIMIT_B),
    ("TransitionBatch", "reliable", RELIABLE_LIMIT_B),
]


@pytest.mark.ros
@pytest.mark.parametrize(("name", "qos", "limit_b"), SERVO_SIDE)
def test_servo_side_message_fits_micro_ros(name: str, qos: str, limit_b: int, report: Callable[[str], None]) -> None:
    size_b = len(serialize_message(_worst_case(_import(name))))
    report(f"micro-ROS size: {name:<16} {qos:<12} worst case {size_b:5d} B (limit {limit_b} B)")
    assert size_b <= limit_b, f"{name} worst case {size_b} B exceeds the micro-ROS {qos} limit {limit_b} B"


@pytest.mark.ros
def test_worst_case_detects_an_oversized_message() -> None:
    """The size check itself works: a full TransitionBatch is larger than one MTU, so it cannot be best effort."""
    size_b = len(serialize_message(_worst_case(_import("TransitionBatch"))))
    assert size_b > BEST_EFFORT_LIMIT_B


@pytest.mark.ros
def test_unbounded_fields_are_refused() -> None:
    """A message with an unbounded field (PolicyBlob, learner side only) cannot be given a worst case."""
    with pytest.raises(AssertionError, match="unbounded"):
        _worst_case(_import("PolicyBlob"))


@pytest.mark.ros
def test_transition_batch_capacity_matches_its_constants() -> None:
    """The array bounds agree with MAX_SAMPLES and OBS_DIM, so the firmware can fill them exactly."""
    cls = _import("TransitionBatch")
    slots = dict(zip(cls.get_fields_and_field_types(), cls.SLOT_TYPES, strict=True))
    assert slots["observations"].maximum_size == cls.MAX_SAMPLES * cls.OBS_DIM
    for column in (
        "actions",
        "position_rad",
        "velocity_rad_s",
        "current_a",
        "target_rad",
        "power_w",
        "flags",
    ):
        assert slots[column].maximum_size == cls.MAX_SAMPLES, column
    chunk = _import("PolicyChunk")
    chunk_slots = dict(zip(chunk.get_fields_and_field_types(), chunk.SLOT_TYPES, strict=True))
    assert chunk_slots["data"].maximum_size == chunk.MAX_DATA
