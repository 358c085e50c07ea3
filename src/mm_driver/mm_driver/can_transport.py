"""The servo over CAN (python-can: socketcan, slcan, virtual, ...), framed by the project's DBC.

Frames come from `mm_servo.dbc` through cantools (frame id = message type << 10 | device id, 29-bit); policy
chunks travel one per ISO-TP message (can-isotp) with the 16-byte chunk header of the contract, section 6.
The DBC's POLICY_ACK frame carries the transfer id, status, reason, the number of missing chunks and the lowest
missing index, but not the active policy: an ACCEPTED ack means the transfer's image (whose CRC-32 is the policy
id) is now active, and otherwise the last STATE_STATUS frame says what runs.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from typing import Any, cast

import can
import cantools
import isotp
from mm_contract.constants import CAN_DEVICE_MASK, CAN_TYPE_MASK, ISOTP_MAX_PAYLOAD
from mm_firmware_core import dbc_path

from mm_driver.errors import DriverError
from mm_driver.transport import Ack, AckCallback, AckReason, AckStatus, Chunk, Command, ServoSample, StateCallback

CHUNK_HEADER = struct.Struct("<IIIHH")
"""transfer_id, total_size, image_crc32, index, chunk_size: constants.CHUNK_HEADER_BYTES (test_constants.py)."""
NO_MISSING = 0xFFFF
# Registers written before a COMMAND frame, which carries no limits or gains: Command field -> the register's name
# in the DBC's register_id value table (the DBC holds the ids; the name's unit suffix gives the scale).
REGISTERS = {
    "current_limit_a": "CURRENT_LIMIT_MA",
    "max_velocity_rad_s": "MAX_VELOCITY_MRAD_S",
    "kp_pos": "KP_POS_MILLI",
    "kp_vel": "KP_VEL_MICRO",
    "ki_vel": "KI_VEL_MICRO",
    "gravity_ff_a": "GRAVITY_FF_MA",
}
_GAINS = ("kp_pos", "kp_vel", "ki_vel", "gravity_ff_a")
# The integer unit a register name ends with, as the DBC's register_id comment defines them: SI value x factor.
REGISTER_UNITS = {"_MA": 1e3, "_MS": 1e3, "_MRAD_S": 1e3, "_MILLI": 1e3, "_MICRO": 1e6}


def register_scale(name: str) -> float:
    """Factor from a register's SI value to its int32 value, read from the register's name.

    1e3 for CURRENT_LIMIT_MA (A to mA), 1e6 for KP_VEL_MICRO; 1 for a name without a unit suffix (counts, bits).
    """
    return next((factor for suffix, factor in REGISTER_UNITS.items() if name.endswith(suffix)), 1.0)


# ISO 15765-2 on classic CAN, normal addressing, no padding: data bytes a single, first and consecutive frame carry,
# and the longest message a first frame's 12-bit length announces.
ISOTP_SINGLE_DATA, ISOTP_FIRST_DATA, ISOTP_CONSECUTIVE_DATA, ISOTP_SHORT_LENGTH_MAX = 7, 6, 7, 4095


def isotp_frame_dlcs(payload_bytes: int) -> list[int]:
    """The DLC of every frame ISO-TP sends for one message of `payload_bytes`.

    A single frame, or a first frame and consecutive frames, the last one as short as its data (the DBC's
    POLICY_TP_DATA is not padded).

    Raises:
        DriverError: an empty message, or one longer than a 12-bit first frame announces (4095 B).
    """
    if not 1 <= payload_bytes <= ISOTP_SHORT_LENGTH_MAX:
        raise DriverError(f"an ISO-TP message here has 1..{ISOTP_SHORT_LENGTH_MAX} bytes, not {payload_bytes}")
    if payload_bytes <= ISOTP_SINGLE_DATA:
        return [1 + payload_bytes]
    full, rest = divmod(payload_bytes - ISOTP_FIRST_DATA, ISOTP_CONSECUTIVE_DATA)
    return [2 + ISOTP_FIRST_DATA] + [1 + ISOTP_CONSECUTIVE_DATA] * full + ([1 + rest] if rest else [])


class CanTransport:
    """A `Transport` to one servo on a CAN bus."""

    def __init__(
        self,
        *,
        interface: str,
        channel: str,
        device_id: int,
        bitrate: int = 500_000,
        chunk_size: int = ISOTP_MAX_PAYLOAD - CHUNK_HEADER.size,
        send_timeout_s: float = 5.0,
    ) -> None:
        """Describe the link; nothing is opened until `open`.

        Args:
            interface: python-can interface name (socketcan, slcan, virtual, ...).
            channel: the interface's channel (can0, /dev/ttyACM0@115200, any name on `virtual`).
            device_id: the servo's id, 1..1022.
            bitrate: bus bit rate (bit/s); ignored by interfaces without bit timing (virtual).
            chunk_size: policy bytes per ISO-TP message (at most 1024: the servo's buffer holds 1040 with header).
            send_timeout_s: longest a chunk may take to leave (flow control included) (s).
        """
        if not 1 <= device_id <= 1022:
            raise DriverError(f"device_id {device_id} must be in 1..1022 (1023 is broadcast)")
        if not 1 <= chunk_size <= ISOTP_MAX_PAYLOAD - CHUNK_HEADER.size:
            raise DriverError(f"chunk_size {chunk_size} must be in 1..{ISOTP_MAX_PAYLOAD - CHUNK_HEADER.size} B")
        self._interface, self._channel, self._bitrate = interface, channel, bitrate
        self._device = device_id
        self._chunk_size = chunk_size
        self._send_timeout_s = send_timeout_s
        db = cantools.database.load_file(str(dbc_path()), frame_id_mask=CAN_TYPE_MASK)
        if not isinstance(db, cantools.database.can.Database):
            raise DriverError(f"{dbc_path()} is not a CAN database; reinstall mm_firmware_core")
        self._db = db
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._stack: isotp.NotifierBasedCanStack | None = None
        self._lock = threading.Lock()
        self._partial: dict[str, Any] = {}
        self._target = 0.0
        self._transfers: dict[int, tuple[int, int]] = {}  # transfer id -> (chunks, image crc)
        self.frames_sent = 0
        self.frames_received = 0

    def _id(self, name: str) -> int:
        return int(self._db.get_message_by_name(name).frame_id) | self._device

    @property
    def max_chunk_data(self) -> int:
        """Policy bytes per ISO-TP message."""
        return self._chunk_size

    def open(self, on_state: StateCallback, on_ack: AckCallback) -> None:
        """Open the bus, start the receiver and the ISO-TP sender.

        Raises:
            DriverError: the interface cannot be opened (names the interface and channel).
        """
        self.close()
        self._on_state, self._on_ack = on_state, on_ack
        try:
            bus = can.Bus(interface=self._interface, channel=self._channel, bitrate=self._bitrate)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            msg = f"cannot open CAN interface {self._interface!r} channel {self._channel!r}: {exc}"
            raise DriverError(msg) from exc
        self._bus = bus
        address = isotp.Address(
            isotp.AddressingMode.Normal_29bits, txid=self._id("POLICY_TP_DATA"), rxid=self._id("POLICY_TP_FLOW")
        )
        self._notifier = can.Notifier(bus, [self._on_frame])
        self._stack = isotp.NotifierBasedCanStack(
            bus,
            self._notifier,
            address=address,
            params={"blocking_send": True, "max_frame_size": ISOTP_MAX_PAYLOAD, "tx_padding": None},
        )
        self._stack.start()

    def close(self) -> None:
        """Stop the receiver and the ISO-TP stack, shut the bus down."""
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    # -- sending -------------------------------------------------------------------------------------------

    def _send(self, name: str, signals: dict[str, float | int | str]) -> None:
        if self._bus is None:
            raise DriverError("the CAN transport is not open; configure the driver first")
        data = self._db.get_message_by_name(name).encode(signals)
        self._bus.send(can.Message(arbitration_id=self._id(name), data=data, is_extended_id=True))
        self.frames_sent += 1

    def send_command(self, command: Command) -> None:
        """Write the command's non-zero limits and gains to registers, then send the COMMAND frame.

        Exploration noise travels in an EXPLORATION frame just before the COMMAND frame it belongs to (the servo
        uses it for that one command); a command without exploration sends none.
        """
        gains_given = any(getattr(command, name) for name in _GAINS)
        for field, register in REGISTERS.items():
            value = float(getattr(command, field))
            if value or (gains_given and field in _GAINS):
                raw = round(value * register_scale(register))
                self._send("REGISTER_REQUEST", {"op": "WRITE", "register_id": register, "value": raw})
        self._target = float(command.target)
        if command.exploration_std or command.exploration_tau_s:
            self._send(
                "EXPLORATION",
                {"exploration_std": command.exploration_std, "exploration_tau": command.exploration_tau_s},
            )
        self._send(
            "COMMAND",
            {
                "mode": int(command.mode),
                "clear_faults": int(command.clear_faults),
                "stream_transitions": int(command.stream_transitions),
                "target_velocity": command.target_velocity_rad_s,
                "target": command.target,
            },
        )

    def wait_ready(self, timeout_s: float) -> bool:
        """A CAN bus has no subscriptions to match: ready as soon as it is open."""
        return self._bus is not None

    def send_heartbeat(self, seq: int) -> None:
        """Send a HEARTBEAT frame."""
        self._send("HEARTBEAT", {"seq": seq & 0xFFFFFFFF})

    def send_chunk(self, chunk: Chunk) -> None:
        """Send one chunk as one ISO-TP message (blocks until its last frame left).

        Raises:
            DriverError: the servo's flow control did not let the message through in time.
        """
        if self._stack is None:
            raise DriverError("the CAN transport is not open; configure the driver first")
        count = -(-chunk.total_size // chunk.chunk_size)
        with self._lock:
            self._transfers[chunk.transfer_id] = (count, chunk.image_crc32)
        header = CHUNK_HEADER.pack(
            chunk.transfer_id, chunk.total_size, chunk.image_crc32, chunk.index, chunk.chunk_size
        )
        try:
            self._stack.send(header + chunk.data, send_timeout=self._send_timeout_s)
        except isotp.BlockingSendFailure as exc:
            raise DriverError(f"ISO-TP send of chunk {chunk.index} failed ({exc}); is the servo on the bus?") from exc
        self.frames_sent += len(isotp_frame_dlcs(len(header) + len(chunk.data)))

    # -- receiving -----------------------------------------------------------------------------------------

    def _on_frame(self, msg: can.Message) -> None:
        """Notifier thread: decode the servo's frames addressed to our device."""
        if not msg.is_extended_id or msg.arbitration_id & CAN_DEVICE_MASK != self._device:
            return
        self.frames_received += 1
        try:
            spec = self._db.get_message_by_frame_id(msg.arbitration_id, force_extended_id=True)
        except KeyError:
            return
        if spec.name in {"POLICY_TP_DATA", "POLICY_TP_FLOW", "HEARTBEAT", "EXPLORATION", "COMMAND", "REGISTER_REQUEST"}:
            return  # ISO-TP is the stack's; the rest are host frames
        signals = cast(dict[str, Any], spec.decode(bytes(msg.data), decode_choices=False))
        if spec.name == "POLICY_ACK":
            self._ack(signals)
            return
        with self._lock:
            self._partial.update({f"{spec.name}.{k}": v for k, v in signals.items()})
            partial = dict(self._partial)
        if spec.name == "STATE_STATUS" and "STATE_MOTION.position" in partial:
            self._on_state(self._sample(partial, msg.timestamp or time.time()))

    def _sample(self, p: dict[str, Any], stamp_s: float) -> ServoSample:
        return ServoSample(
            stamp_s=float(stamp_s),
            mode=int(p.get("STATE_ELECTRICAL.mode", 0)),
            fault_flags=int(p.get("STATE_STATUS.fault_flags", 0)),
            position_rad=float(p["STATE_MOTION.position"]),
            velocity_rad_s=float(p["STATE_MOTION.velocity"]),
            current_a=float(p.get("STATE_ELECTRICAL.current", 0.0)),
            current_cmd_a=float(p.get("STATE_ELECTRICAL.current_cmd", 0.0)),
            effort_nm=math.nan,  # not on the bus
            bus_voltage_v=float(p.get("STATE_ELECTRICAL.bus_voltage", math.nan)),
            power_w=float(p.get("STATE_POWER.power", math.nan)),
            temperature_c=float(p.get("STATE_ELECTRICAL.temperature", math.nan)),
            target_rad=self._target,
            policy_crc32=int(p.get("STATE_STATUS.policy_crc32", 0)),
        )

    def _ack(self, s: dict[str, Any]) -> None:
        transfer_id = int(s["transfer_id"])
        with self._lock:
            total, image_crc = self._transfers.get(transfer_id, (0, 0))
            active = int(self._partial.get("STATE_STATUS.policy_crc32", 0))
        status = AckStatus(int(s["status"]))
        missing_count = int(s["missing_count"])
        first = int(s["first_missing"])
        self._on_ack(
            Ack(
                transfer_id=transfer_id,
                status=status,
                reason=AckReason(int(s["reason"])),
                received_chunks=max(0, total - missing_count),
                total_chunks=total,
                missing=() if first == NO_MISSING else (first,),
                active_policy_crc32=image_crc if status == AckStatus.ACCEPTED else active,
            )
        )
