"""CAN bus load of a fleet of servos on one bus, from the frame layout of the project's DBC.

How many servos can share one classic CAN bus (500 kbit/s by default) and still take a new policy in a few
seconds? Every servo streams its state (the DBC's `STATE_*` frames, one burst every `state_decimation` control
ticks) and receives heartbeats from its host; a policy transfer then gets what is left of the bus, because its
ISO-TP frames have a higher message type (lower priority) than the state and heartbeat frames and lose every
arbitration to them. This module computes that from the frames the protocol really sends:

- frame sizes (DLC) and the 29-bit id format from `mm_servo.dbc` (read with cantools, never retyped here);
- the ISO-TP framing of a policy chunk (16-byte chunk header + data, one ISO-TP message per chunk, one flow
  control frame per message because the servo grants block size 0) from `mm_driver.can_transport`, which sends
  those frames, and one POLICY_ACK when the transfer is judged;
- bits per classic CAN data frame, nominal and with worst-case bit stuffing.

Bits of one data frame with n data bytes (Davis et al., "Controller Area Network (CAN) schedulability analysis",
2007): g + 8n + 13 + ⌊(g + 8n − 1) / 4⌋ with worst-case stuffing, where g = 54 control bits under stuffing for a
29-bit id (34 for 11-bit) and the 13 bits after the CRC (delimiter, ACK slot and delimiter, end of frame, the
3-bit intermission) are never stuffed; without stuff bits it is g + 8n + 13 (131 bits for 8 bytes, 29-bit id).

The knobs are a `Fleet`: state rate (control rate / state decimation: the firmware's CONFIG_MM_CONTROL_RATE_HZ and
CONFIG_MM_STATE_DECIMATION, the twin's `control_rate_hz` and `state_decimation`), heartbeat period (the driver's
`heartbeat_period_s`), heartbeats per servo or one broadcast to device 1023 for all, bit rate and policy bytes per
ISO-TP message (`can_bitrate`, `can_chunk_size`). ROS-free: the bench and the tests call it directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cantools
from mm_contract.constants import CAN_DEVICE_BITS, CAN_TYPE_MASK, ISOTP_MAX_PAYLOAD
from mm_firmware_core import dbc_path

from mm_driver.can_transport import CHUNK_HEADER, isotp_frame_dlcs
from mm_driver.errors import DriverError

# Bits of a classic CAN data frame outside the data field: stuffed control bits (SOF, id, control, CRC) and the
# 13 unstuffed bits after the CRC (delimiter, ACK, delimiter, EOF 7, intermission 3).
_STUFFED_CONTROL_BITS = {True: 54, False: 34}  # 29-bit id, 11-bit id
_UNSTUFFED_TAIL_BITS = 13
STATE_PREFIX = "STATE_"
"""The DBC messages of one state burst: every message whose name starts with this (mm_can_state_frames)."""

FrameCounts = Mapping[int, float]
"""Frames by data length: DLC (0..8) → number of frames (or frames per second)."""


def frame_bits(dlc: int, *, extended: bool = True, worst_case: bool = False) -> int:
    """Bits on the wire of one classic CAN data frame with `dlc` data bytes, intermission included.

    Args:
        dlc: data bytes, 0..8.
        extended: a 29-bit id (this protocol's) rather than an 11-bit one.
        worst_case: count the most stuff bits the frame can carry (one per four equal bits); False: none.

    Raises:
        DriverError: dlc outside 0..8 (classic CAN).
    """
    if not 0 <= dlc <= 8:
        raise DriverError(f"a classic CAN frame carries 0..8 data bytes, not {dlc}")
    stuffed = _STUFFED_CONTROL_BITS[extended] + 8 * dlc
    return stuffed + _UNSTUFFED_TAIL_BITS + ((stuffed - 1) // 4 if worst_case else 0)


def bits(frames: FrameCounts, *, extended: bool = True, worst_case: bool = False) -> float:
    """Total bits of `frames` (DLC → count); bits per second when the counts are per second."""
    return sum(count * frame_bits(dlc, extended=extended, worst_case=worst_case) for dlc, count in frames.items())


@dataclass(frozen=True)
class FrameLayout:
    """The sizes this computation needs, as the DBC declares them.

    Attributes:
        extended: the protocol's ids are 29-bit.
        state: DLC of each frame of one state burst (the `STATE_*` messages).
        heartbeat: DLC of HEARTBEAT.
        flow_control: DLC of POLICY_TP_FLOW (the servo pads flow control to this).
        ack: DLC of POLICY_ACK.
        tp_data: largest DLC of POLICY_TP_DATA (ISO-TP frames may be shorter; no padding).
        types: message type (frame id >> 10) → message name, to classify frames seen on a bus.
    """

    extended: bool
    state: tuple[int, ...]
    heartbeat: int
    flow_control: int
    ack: int
    tp_data: int
    types: Mapping[int, str]

    @classmethod
    def from_dbc(cls, path: Path | None = None) -> FrameLayout:
        """Read the layout from `path` (default: the installed mm_servo.dbc).

        Raises:
            DriverError: the file is not a CAN database, or lacks a message this computation needs.
        """
        path = path or dbc_path()
        db = cantools.database.load_file(str(path), frame_id_mask=CAN_TYPE_MASK)
        if not isinstance(db, cantools.database.can.Database):
            raise DriverError(f"{path} is not a CAN database; reinstall mm_firmware_core")
        messages = {m.name: m for m in db.messages}
        needed = ("HEARTBEAT", "POLICY_TP_DATA", "POLICY_TP_FLOW", "POLICY_ACK")
        missing = [name for name in needed if name not in messages]
        state = tuple(m.length for name, m in sorted(messages.items()) if name.startswith(STATE_PREFIX))
        if missing or not state:
            missing += [] if state else [f"{STATE_PREFIX}*"]
            raise DriverError(f"{path} has no {', '.join(missing)}: it is not this project's servo protocol")
        return cls(
            extended=all(m.is_extended_frame for m in messages.values()),
            state=state,
            heartbeat=messages["HEARTBEAT"].length,
            flow_control=messages["POLICY_TP_FLOW"].length,
            ack=messages["POLICY_ACK"].length,
            tp_data=messages["POLICY_TP_DATA"].length,
            types={(m.frame_id & CAN_TYPE_MASK) >> CAN_DEVICE_BITS: m.name for m in db.messages},
        )

    def name_of(self, frame_id: int) -> str:
        """The DBC message name of a frame id (any device); "?" for a type the DBC does not define."""
        return self.types.get((frame_id & CAN_TYPE_MASK) >> CAN_DEVICE_BITS, "?")


@dataclass(frozen=True)
class Fleet:
    """The knobs: what N servos on one bus send besides a policy transfer.

    Attributes:
        control_rate_hz: the servos' control rate (Hz; firmware CONFIG_MM_CONTROL_RATE_HZ).
        state_decimation: control ticks per state burst (CONFIG_MM_STATE_DECIMATION); a burst is every
            `STATE_*` frame once.
        heartbeat_period_s: the host's heartbeat period (s; the driver's `heartbeat_period_s`).
        broadcast_heartbeat: one HEARTBEAT to device 1023 serves every servo (the firmware accepts it); False:
            one per servo, as one driver per servo sends them today.
        bitrate_bps: bus bit rate (bit/s).
        chunk_size: policy bytes per ISO-TP message (the driver's `can_chunk_size`).
        worst_case: count worst-case bit stuffing (False: no stuff bits; real traffic lies in between).
    """

    control_rate_hz: float
    state_decimation: int
    heartbeat_period_s: float
    bitrate_bps: float
    chunk_size: int
    broadcast_heartbeat: bool = False
    worst_case: bool = True

    def __post_init__(self) -> None:
        checks = {
            "control_rate_hz must be > 0": self.control_rate_hz > 0.0,
            "state_decimation must be >= 1": self.state_decimation >= 1,
            "heartbeat_period_s must be > 0": self.heartbeat_period_s > 0.0,
            "bitrate_bps must be > 0": self.bitrate_bps > 0.0,
            f"chunk_size must be in 1..{ISOTP_MAX_PAYLOAD - CHUNK_HEADER.size} (the servo's ISO-TP buffer)": 1
            <= self.chunk_size
            <= ISOTP_MAX_PAYLOAD - CHUNK_HEADER.size,
        }
        problems = [text for text, ok in checks.items() if not ok]
        if problems:
            raise DriverError("; ".join(problems))

    @property
    def state_rate_hz(self) -> float:
        """State bursts per second per servo (Hz)."""
        return self.control_rate_hz / self.state_decimation


def _add(into: dict[int, float], dlc: int, count: float) -> None:
    into[dlc] = into.get(dlc, 0.0) + count


def stream_frames_per_s(servos: int, fleet: Fleet, layout: FrameLayout) -> dict[str, dict[int, float]]:
    """Frames per second of `servos` servos streaming state and receiving heartbeats.

    By kind ("state", "heartbeat") and DLC.
    """
    state: dict[int, float] = {}
    for dlc in layout.state:
        _add(state, dlc, servos * fleet.state_rate_hz)
    heartbeats = (1 if fleet.broadcast_heartbeat and servos else servos) / fleet.heartbeat_period_s
    return {"state": state, "heartbeat": {layout.heartbeat: heartbeats}}


def transfer_frames(image_bytes: int, chunk_size: int, layout: FrameLayout) -> dict[str, dict[int, float]]:
    """Frames of one policy transfer without loss, by kind ("data", "flow_control", "ack") and DLC.

    One ISO-TP message per chunk of `chunk_size` bytes (16-byte header first); the servo grants block size 0, so
    one flow control frame follows each first frame; one POLICY_ACK answers the complete image.
    """
    if image_bytes < 1:
        raise DriverError(f"a policy image has at least 1 byte, not {image_bytes}")
    data: dict[int, float] = {}
    flow = 0
    for offset in range(0, image_bytes, chunk_size):
        dlcs = isotp_frame_dlcs(CHUNK_HEADER.size + min(chunk_size, image_bytes - offset))
        for dlc in dlcs:
            _add(data, dlc, 1)
        flow += len(dlcs) > 1
    return {"data": data, "flow_control": {layout.flow_control: flow}, "ack": {layout.ack: 1}}


@dataclass(frozen=True)
class BusLoad:
    """The bus with N servos streaming, and one policy transfer in what is left.

    Attributes:
        servos: servos on the bus.
        stream_frames_per_s: state + heartbeat frames per second.
        stream_bits_per_s: their bits per second.
        load: share of the bus they take (0..1, above 1: the bus cannot carry them).
        transfer_frames: frames of one policy transfer.
        transfer_bits: their bits.
        deploy_s: time for that transfer with the stream running (s; inf when the stream fills the bus).
    """

    servos: int
    stream_frames_per_s: float
    stream_bits_per_s: float
    load: float
    transfer_frames: int
    transfer_bits: float
    deploy_s: float


def total(by_kind: Mapping[str, FrameCounts]) -> dict[int, float]:
    """Frames of every kind together, by DLC."""
    out: dict[int, float] = {}
    for frames in by_kind.values():
        for dlc, count in frames.items():
            _add(out, dlc, count)
    return out


def bus_load(servos: int, image_bytes: int, fleet: Fleet, layout: FrameLayout) -> BusLoad:
    """Load of `servos` streaming servos and the time to deploy an `image_bytes` policy to one of them."""
    if servos < 0:
        raise DriverError(f"servos must be >= 0, not {servos}")
    stream = total(stream_frames_per_s(servos, fleet, layout))
    transfer = total(transfer_frames(image_bytes, fleet.chunk_size, layout))
    stream_bits = bits(stream, extended=layout.extended, worst_case=fleet.worst_case)
    transfer_bits = bits(transfer, extended=layout.extended, worst_case=fleet.worst_case)
    spare_bps = fleet.bitrate_bps - stream_bits
    return BusLoad(
        servos=servos,
        stream_frames_per_s=sum(stream.values()),
        stream_bits_per_s=stream_bits,
        load=stream_bits / fleet.bitrate_bps,
        transfer_frames=int(sum(transfer.values())),
        transfer_bits=transfer_bits,
        deploy_s=transfer_bits / spare_bps if spare_bps > 0.0 else math.inf,
    )


def max_servos(image_bytes: int, deadline_s: float, fleet: Fleet, layout: FrameLayout) -> int:
    """The most servos whose streaming leaves room to deploy an `image_bytes` policy within `deadline_s` (s).

    0 when not even a bus without servos deploys it in time. Raises `DriverError` for a deadline <= 0.
    """
    if deadline_s <= 0.0:
        raise DriverError(f"deadline_s must be > 0, not {deadline_s}")
    # The deploy time grows with every servo, so count up until it misses; a 29-bit id addresses 1022 servos.
    servos = 0
    while servos < 1022 and bus_load(servos + 1, image_bytes, fleet, layout).deploy_s <= deadline_s:
        servos += 1
    return servos
