"""What a node reports on `/diagnostics` (diagnostic_msgs/DiagnosticArray), built one way for every node.

The role of diagnostic_updater's status wrapper (that package has no pip wheel): a node says how it is with a
`Health` and `diagnostic_array` makes the message rqt_robot_monitor and diagnostic_aggregator read, named after the
node's fully qualified name so that several servos' nodes stay apart. The virtual servo publishes none, as the
firmware does not: its driver reports the servo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


@dataclass(frozen=True)
class Health:
    """One status of a node.

    Attributes:
        level: `OK`, `WARN` or `ERROR` (DiagnosticStatus levels, one byte).
        message: what is wrong, or what the node is doing.
        values: details as key/value text (units in the key, e.g. ``state_age_s``).
    """

    level: bytes
    message: str
    values: Mapping[str, str] = field(default_factory=dict)


def diagnostic_array(stamp: Time, node_name: str, task: str, hardware_id: str, health: Health) -> DiagnosticArray:
    """A DiagnosticArray with the one status `<node_name>: <task>` of `hardware_id` (e.g. the servo's namespace)."""
    status = DiagnosticStatus(
        level=health.level,
        name=f"{node_name}: {task}",
        message=health.message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in health.values.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array
