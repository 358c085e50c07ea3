"""Abandoned policy transfers (servo contract section 6): when a chunk of a new transfer_id arrives before the
previous transfer completed, or no chunk arrives for `transfer_timeout_s`, the servo acknowledges the old transfer
REJECTED with REASON_TRUNCATED, once, and keeps its previous policy, so the driver can tell a truncated transfer
from a silent one. Through the binding and as POLICY_ACK frames over CAN.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cantools
import pytest
from cantools.database.can import Database
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import HalfGainBackend, image, public_key_bytes

CHUNK = 64
DT_S = 0.001
DEVICE = 21
MASK = 0x1FFFFC00


@pytest.fixture
def images(signing_key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    """Two different signed images: the one running and the one being sent."""
    return image(signing_key, bytes(range(200)) * 3), image(signing_key, bytes(range(250)) * 4)


def _core(signing_key: ec.EllipticCurvePrivateKey, first: bytes, transfer_timeout_s: float = 2.0) -> Any:
    """A core running `first`, abandoning transfers after `transfer_timeout_s` (s) without a chunk."""
    import mm_firmware_core as fw

    core = fw.ServoCore(
        public_key=public_key_bytes(signing_key),
        backend=HalfGainBackend(),
        heartbeat_timeout_s=0.0,
        transfer_timeout_s=transfer_timeout_s,
    )
    assert core.load_policy(first) == 0
    return core


def _chunks(img: bytes, transfer_id: int) -> list[dict[str, Any]]:
    crc = zlib.crc32(img)
    return [
        {
            "transfer_id": transfer_id,
            "total_size": len(img),
            "image_crc32": crc,
            "index": i,
            "chunk_size": CHUNK,
            "data": img[off : off + CHUNK],
        }
        for i, off in enumerate(range(0, len(img), CHUNK))
    ]


def _assert_truncated(ack: Any, transfer_id: int, received: int, total: int, active_crc32: int) -> None:
    import mm_firmware_core as fw

    assert ack is not None, "no truncated ack"
    assert (ack.transfer_id, ack.status, ack.reason) == (
        transfer_id,
        fw.constant("MM_ACK_REJECTED"),
        fw.constant("MM_REASON_TRUNCATED"),
    )
    assert (ack.received_chunks, ack.total_chunks, ack.active_policy_crc32) == (received, total, active_crc32)


def test_new_transfer_id_truncates_the_unfinished_transfer(
    signing_key: ec.EllipticCurvePrivateKey, images: tuple[bytes, bytes]
) -> None:
    first, second = images
    core = _core(signing_key, first)
    running = core.state().policy_crc32
    old, new = _chunks(second, 70), _chunks(second, 71)
    for chunk in old[:5]:
        core.policy_chunk(**chunk)
    assert core.truncated_ack() is None
    core.policy_chunk(**new[0])
    _assert_truncated(core.truncated_ack(), 70, 5, len(old), running)
    assert core.truncated_ack() is None, "reported once"
    assert core.state().policy_crc32 == running
    # The new transfer is unaffected and completes.
    for chunk in new[1:]:
        status, _ = core.policy_chunk(**chunk)
    assert status == 1
    assert core.state().policy_crc32 == zlib.crc32(second)
    assert core.truncated_ack() is None


def test_silent_transfer_times_out_as_truncated(
    signing_key: ec.EllipticCurvePrivateKey, images: tuple[bytes, bytes]
) -> None:
    import mm_firmware_core as fw

    first, second = images
    core = _core(signing_key, first, transfer_timeout_s=0.05)
    running = core.state().policy_crc32
    chunks = _chunks(second, 80)
    for chunk in chunks[:3]:
        core.policy_chunk(**chunk)
        for _ in range(40):  # 40 ms between chunks: alive
            core.step(encoder_count=0, dt_s=DT_S)
        assert core.truncated_ack() is None
    for _ in range(15):  # 55 ms of silence in all
        core.step(encoder_count=0, dt_s=DT_S)
    _assert_truncated(core.truncated_ack(), 80, 3, len(chunks), running)
    ack = core.policy_ack()
    assert (ack.transfer_id, ack.reason) == (80, fw.constant("MM_REASON_TRUNCATED"))
    for _ in range(100):
        core.step(encoder_count=0, dt_s=DT_S)
    assert core.truncated_ack() is None
    assert core.state().policy_crc32 == running
    # The previous policy still drives: target 3 rad ahead -> coarse error 1 -> action 0.5 -> 1 A of 2 A.
    assert core.command(fw.MODE_POLICY, 3.0) == 0
    assert core.step(encoder_count=0, dt_s=DT_S).current_cmd_a == pytest.approx(1.0)


def test_zero_transfer_timeout_waits_forever(
    signing_key: ec.EllipticCurvePrivateKey, images: tuple[bytes, bytes]
) -> None:
    first, second = images
    core = _core(signing_key, first, transfer_timeout_s=0.0)
    core.policy_chunk(**_chunks(second, 90)[0])
    for _ in range(3000):
        core.step(encoder_count=0, dt_s=DT_S)
    assert core.truncated_ack() is None
    assert core.policy_ack().status == 0  # still receiving


def _isotp_frames(message: bytes) -> list[bytes]:
    """ISO 15765-2 first frame + consecutive frames (the receiver's block size 0: one flow control only)."""
    assert 7 < len(message) < 4096
    frames = [bytes([0x10 | len(message) >> 8, len(message) & 0xFF]) + message[:6]]
    for seq, off in enumerate(range(6, len(message), 7), start=1):
        frames.append(bytes([0x20 | seq & 0x0F]) + message[off : off + 7])
    return frames


def _decode(db: Database, frame_id: int, data: bytes) -> dict[str, Any]:
    decoded = db.get_message_by_frame_id(frame_id, force_extended_id=True).decode(data, decode_choices=True)
    assert isinstance(decoded, dict)
    return decoded


def _send_chunk(db: Database, endpoint: Any, chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """One chunk as one ISO-TP message; returns the POLICY_ACK frames the servo answered with, decoded."""
    tp_data = db.get_message_by_name("POLICY_TP_DATA").frame_id | DEVICE
    ack_id = db.get_message_by_name("POLICY_ACK").frame_id | DEVICE
    message = struct.pack(
        "<IIIHH", chunk["transfer_id"], chunk["total_size"], chunk["image_crc32"], chunk["index"], CHUNK
    )
    acks = []
    for frame in _isotp_frames(message + chunk["data"]):
        for frame_id, data in endpoint.receive(tp_data, frame):
            if frame_id == ack_id:
                acks.append(_decode(db, frame_id, data))
    return acks


def test_can_acks_truncated_transfers(signing_key: ec.EllipticCurvePrivateKey, images: tuple[bytes, bytes]) -> None:
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    assert isinstance(db, Database)
    first, second = images
    core = _core(signing_key, first, transfer_timeout_s=0.05)
    endpoint = core.can_endpoint(DEVICE)
    old, new = _chunks(second, 100), _chunks(second, 101)
    for chunk in old[:4]:
        assert _send_chunk(db, endpoint, chunk) == []
    acks = _send_chunk(db, endpoint, new[0])
    assert [(a["transfer_id"], a["status"], a["reason"]) for a in acks] == [(100, "REJECTED", "TRUNCATED")]
    assert acks[0]["missing_count"] == 0
    # The new transfer then falls silent: the ack comes from the timeout, polled once per period.
    for _ in range(49):
        core.step(encoder_count=0, dt_s=DT_S)
        assert endpoint.truncated_ack_frame() is None
    for _ in range(3):
        core.step(encoder_count=0, dt_s=DT_S)
    frame = endpoint.truncated_ack_frame()
    assert frame is not None
    decoded = _decode(db, *frame)
    assert (decoded["transfer_id"], decoded["status"], decoded["reason"]) == (101, "REJECTED", "TRUNCATED")
    assert endpoint.truncated_ack_frame() is None
    assert core.state().policy_crc32 == zlib.crc32(first)
