"""What travels between the driver and one servo, independent of the link (micro-ROS topics or CAN).

The field meanings and units are those of mm_msgs ServoState / ServoCommand / PolicyChunk / PolicyAck
(docs/servo-contract.md sections 6-7); these plain types let the deployer, the move supervisor and their tests
run without ROS. The modes, ack statuses and reasons are mm_contract.constants' (re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mm_contract.constants import AckReason, AckStatus, Fault, Mode

__all__ = [
    "Ack",
    "AckCallback",
    "AckReason",
    "AckStatus",
    "Chunk",
    "ChunkLink",
    "Command",
    "Mode",
    "ServoSample",
    "StateCallback",
    "Transport",
    "fault_names",
]


def fault_names(flags: int) -> list[str]:
    """The names of the fault bits set in `flags` (ServoState.fault_flags), lowest bit first."""
    return [str(fault.name) for fault in Fault if flags & fault]


@dataclass(frozen=True)
class Command:
    """A ServoCommand: mode and target, with optional limits and PID gains (0 keeps the servo's value).

    Attributes:
        mode: the mode to enter.
        target: rad in POSITION/POLICY, A in TORQUE, ignored otherwise.
        target_velocity_rad_s: reference velocity (rad/s), 0 for step moves.
        max_velocity_rad_s: PID velocity limit (rad/s).
        current_limit_a: current limit (A), at most the servo's hard limit.
        kp_pos, kp_vel, ki_vel, gravity_ff_a: cascaded PID gains (1/s, A·s/rad, A/rad, A); all 0 keeps them.
        clear_faults: clear latched faults whose cause is gone.
        stream_transitions: stream TransitionBatch samples.
        exploration_std: POLICY mode: std of the noise the servo adds to the policy's normalised action, in
            [0, 1] (0: none; docs/servo-contract.md section 4); no effect in other modes.
        exploration_tau_s: POLICY mode: correlation time of that noise (s), >= 0 (0: white).
    """

    mode: Mode
    target: float = 0.0
    target_velocity_rad_s: float = 0.0
    max_velocity_rad_s: float = 0.0
    current_limit_a: float = 0.0
    kp_pos: float = 0.0
    kp_vel: float = 0.0
    ki_vel: float = 0.0
    gravity_ff_a: float = 0.0
    clear_faults: bool = False
    stream_transitions: bool = False
    exploration_std: float = 0.0
    exploration_tau_s: float = 0.0


@dataclass(frozen=True)
class ServoSample:
    """One state sample of the servo (ServoState), stamped with the servo's clock (s; sim time for the twin).

    `power_w` is the electrical power drawn from the bus as the servo measured it (W; negative: regenerating).
    """

    stamp_s: float
    mode: int
    fault_flags: int
    position_rad: float
    velocity_rad_s: float
    current_a: float
    current_cmd_a: float
    effort_nm: float
    bus_voltage_v: float
    power_w: float
    temperature_c: float
    target_rad: float
    policy_crc32: int


@dataclass(frozen=True)
class Chunk:
    """One piece of a policy transfer (contract section 6): `data` starts at byte `index * chunk_size`."""

    transfer_id: int
    total_size: int
    image_crc32: int
    index: int
    chunk_size: int
    data: bytes


@dataclass(frozen=True)
class Ack:
    """The servo's answer to a transfer (PolicyAck); `missing` lists the lowest missing indices it reported."""

    transfer_id: int
    status: AckStatus
    reason: AckReason
    received_chunks: int
    total_chunks: int
    missing: tuple[int, ...]
    active_policy_crc32: int


StateCallback = Callable[[ServoSample], None]
AckCallback = Callable[[Ack], None]


class ChunkLink(Protocol):
    """The part of a transport the deployer needs."""

    @property
    def max_chunk_data(self) -> int:
        """Largest chunk payload (bytes) one transfer unit of this link carries."""
        ...

    def send_chunk(self, chunk: Chunk) -> None:
        """Send one chunk (may block until the link has taken it)."""
        ...


class Transport(ChunkLink, Protocol):
    """A link to one servo. `open` starts delivering samples and acks to the callbacks (from any thread)."""

    def open(self, on_state: StateCallback, on_ack: AckCallback) -> None:
        """Open the link's resources and start receiving."""
        ...

    def close(self) -> None:
        """Stop receiving and release the link's resources (idempotent)."""
        ...

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` (s, wall) until a command sent now reaches the servo; False if it does not."""
        ...

    def send_command(self, command: Command) -> None:
        """Send a command."""
        ...

    def send_heartbeat(self, seq: int) -> None:
        """Send heartbeat number `seq`."""
        ...
