"""Policy transfer over CAN: ISO-TP frames produced by the can-isotp package (over a python-can virtual bus)
reassemble in the C core's receiver, whose flow-control frames can-isotp obeys; the ack comes back as a
POLICY_ACK frame that cantools decodes from the shared DBC.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from typing import Any

import can
import cantools
import isotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import HalfGainBackend, image, public_key_bytes

DEVICE = 12
MASK = 0x1FFFFC00
TP_DATA, TP_FLOW = 0xC000, 0xC400


def _chunk_messages(img: bytes, transfer_id: int, chunk_size: int) -> list[bytes]:
    crc = zlib.crc32(img)
    return [
        struct.pack("<IIIHH", transfer_id, len(img), crc, index, chunk_size) + img[off : off + chunk_size]
        for index, off in enumerate(range(0, len(img), chunk_size))
    ]


@pytest.mark.parametrize(("block_size", "chunk_size", "padding"), [(0, 600, None), (4, 1000, 0xCC)])
def test_can_isotp_transfer_is_reassembled_and_acknowledged(
    signing_key: ec.EllipticCurvePrivateKey, block_size: int, chunk_size: int, padding: int | None
) -> None:
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    assert isinstance(db, cantools.database.can.Database)
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=HalfGainBackend(), heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE, block_size=block_size)
    img = image(signing_key, bytes(range(256)) * 9)
    messages = _chunk_messages(img, transfer_id=31, chunk_size=chunk_size)
    # Out of order, with a duplicate: the reassembler must not care.
    messages = [*messages[::-1], messages[0]]

    channel = f"mm-{uuid.uuid4().hex}"
    host_bus = can.Bus(interface="virtual", channel=channel)
    servo_bus = can.Bus(interface="virtual", channel=channel)
    address = isotp.Address(isotp.AddressingMode.Normal_29bits, txid=TP_DATA | DEVICE, rxid=TP_FLOW | DEVICE)
    stack = isotp.CanStack(
        host_bus, address=address, params={"blocking_send": False, "max_frame_size": 4095, "tx_padding": padding}
    )
    acks: list[Any] = []
    frames_seen = 0

    def pump(timeout_s: float) -> bool:
        """Feed one frame from the bus to the C endpoint and send its replies; False when none came."""
        nonlocal frames_seen
        msg = servo_bus.recv(timeout=timeout_s)
        if msg is None:
            return False
        frames_seen += 1
        for frame_id, data in endpoint.receive(msg.arbitration_id, bytes(msg.data)):
            if frame_id & MASK == TP_FLOW:
                servo_bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=True))
            else:
                acks.append(
                    db.get_message_by_frame_id(frame_id, force_extended_id=True).decode(data, decode_choices=False)
                )
        return True

    stack.start()
    try:
        for payload in messages:
            stack.send(payload)
            while stack.transmitting():
                assert pump(2.0), "can-isotp stopped sending (flow control not understood?)"
            while pump(0.0):  # the virtual bus queues synchronously: drain what is already there
                pass
    finally:
        stack.stop()
        host_bus.shutdown()
        servo_bus.shutdown()

    assert frames_seen > len(img) // 7
    assert acks, "no POLICY_ACK frame came back"
    final = acks[-1]
    assert final["transfer_id"] == 31
    assert final["status"] == 1, final  # ACCEPTED
    assert core.state().policy_crc32 == zlib.crc32(img)


def test_corrupt_isotp_stream_is_not_accepted(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """Frames out of sequence drop the ISO-TP message: nothing reaches the reassembler, no policy changes."""
    import mm_firmware_core as fw

    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=HalfGainBackend(), heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    payload = _chunk_messages(image(signing_key, bytes(300)), transfer_id=2, chunk_size=500)[0]
    ff = bytes([0x10 | (len(payload) >> 8), len(payload) & 0xFF]) + payload[:6]
    replies = endpoint.receive(TP_DATA | DEVICE, ff)
    assert replies and replies[0][1][0] == 0x30  # flow control: continue to send
    assert endpoint.receive(TP_DATA | DEVICE, bytes([0x22]) + payload[13:20]) == []  # sequence 2 before 1
    assert core.policy_ack().received_chunks == 0
    assert core.state().policy_crc32 == 0
