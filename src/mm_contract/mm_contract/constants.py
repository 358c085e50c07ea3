"""The servo's facts in Python, defined once: modes, faults, ack statuses and reasons, sample flags, sizes, CAN.

Every other Python module takes them from here (servo contract: docs/servo-contract.md; CAN: firmware/README.md).
The enum members carry the names of the mm_msgs constants (`Mode.POLICY` is `ServoCommand.MODE_POLICY`,
`Fault.END_STOP` is `ServoState.FAULT_END_STOP`, `AckReason.ROLLBACK` is `PolicyAck.REASON_ROLLBACK`,
`SampleFlag.GUARD` is `TransitionBatch.FLAG_GUARD`). The C core keeps its own definition
(firmware/core/include/mm_core), the .msg files theirs and the DBC its value tables;
`firmware/core/test/test_constants.py` checks this module against all three, so none of them can drift alone.
ROS-free and free of the firmware binding (mm_contract sits below both).
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Mode(IntEnum):
    """ServoCommand.MODE_* (contract section 7)."""

    IDLE = 0  # coast, no current
    HOLD = 1  # hold the position at entry with the PID
    TORQUE = 2  # current command (A)
    POSITION = 3  # cascaded PID to a target (rad)
    POLICY = 4  # the active policy to a target (rad)
    BRAKE = 5  # brake on, driver off


class Fault(IntFlag):
    """ServoState.FAULT_* bits, latched until an explicit clear (contract section 7)."""

    OVERCURRENT = 0x01
    OVERTEMPERATURE = 0x02
    UNDERVOLTAGE = 0x04
    OVERVOLTAGE = 0x08
    ENCODER = 0x10
    END_STOP = 0x20
    HEARTBEAT_LOST = 0x40
    POLICY = 0x80


BLOCKING_FAULTS = ~Fault.END_STOP
"""Faults that refuse active-mode commands (and so stop a move) until cleared: every fault but END_STOP, which only
blocks current into the stop so the host can drive away from it (C: MM_FAULTS_BLOCKING)."""


class AckStatus(IntEnum):
    """PolicyAck.STATUS_*."""

    RECEIVING = 0
    ACCEPTED = 1
    REJECTED = 2


class AckReason(IntEnum):
    """PolicyAck.REASON_*: why the servo refused an image (contract sections 5 and 6)."""

    NONE = 0
    CRC = 1
    FORMAT = 2
    SHAPE = 3
    SIGNATURE = 4
    TOO_LARGE = 5
    BACKEND = 6
    TRUNCATED = 7
    BUSY = 8
    ROLLBACK = 9


class SampleFlag(IntFlag):
    """TransitionBatch.FLAG_* bits of one transition sample (contract section 4)."""

    EPISODE_START = 1  # first sample after a new target, reset or mode change
    FAULT = 2  # a fault was active on this tick
    POLICY = 4  # the action came from the active policy, without exploration noise
    GUARD = 8  # the guard drove this tick (the classical controller, not the policy)


OBS_DIM = 8
"""Observation features (contract section 3; TransitionBatch.OBS_DIM)."""
ACTION_DIM = 1
"""Action dimension (contract section 4)."""
BATCH_MAX_SAMPLES = 24
"""Samples per TransitionBatch at most (TransitionBatch.MAX_SAMPLES)."""
ACK_MAX_MISSING = 32
"""Missing chunk indices one PolicyAck lists at most."""
ENCODER_COUNTS = 16384
"""AS5047 counts per revolution of the output shaft (14 bit; contract section 2)."""
PUBLIC_KEY_BYTES = 65
"""Policy signing key as the servo stores it: uncompressed P-256 point 0x04 || X || Y (bytes)."""

CAN_DEVICE_BITS = 10
"""A 29-bit CAN frame id is (message type << CAN_DEVICE_BITS) | device id (mm_servo.dbc)."""
CAN_DEVICE_MASK = (1 << CAN_DEVICE_BITS) - 1
"""The device id bits of a frame id."""
CAN_TYPE_MASK = 0x1FFFFFFF & ~CAN_DEVICE_MASK
"""The message type bits of a 29-bit frame id: cantools' frame_id_mask for the DBC."""
CAN_BROADCAST = CAN_DEVICE_MASK
"""Device id 1023: every servo (HEARTBEAT, EXPLORATION, COMMAND and COMMAND_AUTH only)."""
CHUNK_HEADER_BYTES = 16
"""The policy chunk header of one ISO-TP message: transfer_id, total_size, image_crc32 (u32), index, chunk_size
(u16), little-endian (contract section 6)."""
ISOTP_MAX_PAYLOAD = 1040
"""Largest ISO-TP message the servo reassembles (bytes): one chunk header + 1024 bytes of chunk data."""

# The ESP32 firmware's configuration as shipped: ESP32_<name> is the default of Kconfig CONFIG_MM_<name>
# (firmware/esp32/main/Kconfig.projbuild), which the twin mirrors.
ESP32_STATE_DECIMATION = 5
"""Control ticks per published state (and per CAN state burst)."""
ESP32_UROS_HEARTBEAT_TIMEOUT_MS = 500
"""Heartbeat timeout without CAN, micro-ROS only (ms of control time)."""
ESP32_CURRENT_LIMIT_MA = 4000
"""Current limit in effect at boot (mA)."""
ESP32_OVERCURRENT_MA = 6000
"""Measured current that latches OVERCURRENT (mA)."""
ESP32_TFLM_ARENA_BYTES = 8192
"""TFLite Micro arena per policy slot (bytes)."""
ESP32_MAX_POLICY_BYTES = 32 * 1024
"""Largest policy image, header and signature included (bytes)."""
