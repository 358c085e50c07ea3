"""Shared by the driver tests: signed images, links that lose/duplicate/corrupt chunks, and a real firmware
core answering the DBC protocol on a python-can virtual bus (no twin needed).
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable

import can
import mm_firmware_core as fw
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.observation import ObsScales
from mm_contract.policy_image import HEADER_SIZE, SIGNATURE_SIZE, ModelType, PolicyHeader, pack_image
from mm_contract.signing import public_key_hex, sign
from mm_driver.errors import DriverError
from mm_driver.transport import Ack, AckReason, AckStatus, Chunk, ChunkLink

SCALES = ObsScales(3.14159265, 160.0, 40.0, 4.0, 0.002)


def signed_image(key: ec.EllipticCurvePrivateKey, size: int, *, seed: int = 0) -> bytes:
    """A signed image of exactly `size` bytes whose model is deterministic filler (the test backend loads any)."""
    model = bytes((i * 131 + seed * 7 + 1) & 0xFF for i in range(size - HEADER_SIZE - SIGNATURE_SIZE))
    header = PolicyHeader(model_type=ModelType.INT8, scales=SCALES, arena_bytes=3000)
    return pack_image(header, model, functools.partial(sign, key))


def wrong_crc_image(key: ec.EllipticCurvePrivateKey, size: int) -> bytes:
    """A validly signed image whose header's model_crc32 does not match its model (a wrong CRC, not corruption)."""
    body = bytearray(signed_image(key, size, seed=11)[:-64])
    body[40:44] = (0xDEADBEEF).to_bytes(4, "little")
    return bytes(body) + sign(key, bytes(body))


def public_key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte point the core is configured with."""
    return bytes.fromhex(public_key_hex(key))


class AcceptAnyBackend:
    """Inference backend that loads any model and outputs 0 (the deploy tests never run a policy)."""

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Accept."""
        return True

    def invoke(self, slot: int, observation: list[float]) -> float:
        """No action."""
        return 0.0


def ack_of(a: fw.cs.PolicyAck) -> Ack:
    """The driver's Ack of a firmware core's PolicyAck."""
    return Ack(
        a.transfer_id,
        AckStatus(a.status),
        AckReason(a.reason),
        a.received_chunks,
        a.total_chunks,
        tuple(a.missing[: a.missing_count]),
        a.active_policy_crc32,
    )


class CoreLink:
    """A link straight into a firmware core (chunks in, acks out), like the servo's `policy_chunk` topic."""

    def __init__(self, core: fw.ServoCore, on_ack: Callable[..., None], max_chunk_data: int = 448) -> None:
        self.core = core
        self.on_ack = on_ack
        self.max_chunk_data = max_chunk_data

    def send_chunk(self, chunk: Chunk) -> None:
        _, due = self.core.policy_chunk(
            transfer_id=chunk.transfer_id,
            total_size=chunk.total_size,
            image_crc32=chunk.image_crc32,
            index=chunk.index,
            chunk_size=chunk.chunk_size,
            data=chunk.data,
        )
        if due:
            self.on_ack(ack_of(self.core.policy_ack()))


class FaultyLink:
    """Wraps a link: drops chunks the first time (`drop`), fails to send some the first time (`fail`: DriverError,
    as a send that timed out), duplicates some, corrupts one (every copy), or stops delivering after N.
    """

    def __init__(
        self,
        inner: ChunkLink,
        *,
        drop: set[int] | None = None,
        fail: set[int] | None = None,
        duplicate: set[int] | None = None,
        corrupt: int | None = None,
        stop_after: int | None = None,
    ) -> None:
        self.inner = inner
        self.drop = set(drop or ())
        self.fail = set(fail or ())
        self.duplicate = set(duplicate or ())
        self.corrupt = corrupt
        self.stop_after = stop_after
        self.delivered = 0

    @property
    def max_chunk_data(self) -> int:
        return self.inner.max_chunk_data

    def send_chunk(self, chunk: Chunk) -> None:
        if self.stop_after is not None and self.delivered >= self.stop_after:
            return  # the rest of the transfer never arrives
        if chunk.index in self.drop:
            self.drop.discard(chunk.index)
            return
        if chunk.index in self.fail:
            self.fail.discard(chunk.index)
            raise DriverError(f"chunk {chunk.index} could not be sent (test link)")
        if chunk.index == self.corrupt:  # every copy: a resend must not repair it
            chunk = Chunk(**{**vars(chunk), "data": bytes([chunk.data[0] ^ 0xFF]) + chunk.data[1:]})
        self.inner.send_chunk(chunk)
        self.delivered += 1
        if chunk.index in self.duplicate:
            self.inner.send_chunk(chunk)


class CanServo:
    """A real firmware core behind its CAN endpoint on a virtual bus, streaming state frames every period."""

    def __init__(self, core: fw.ServoCore, *, device_id: int, channel: str | None = None, period_s: float = 0.01):
        self.core = core
        self.channel = channel or f"mm-driver-{uuid.uuid4().hex}"
        self.endpoint = core.can_endpoint(device_id)
        self.bus = can.Bus(interface="virtual", channel=self.channel)
        self.lock = threading.Lock()
        self.period_s = period_s
        self.power_w = 0.0  # electrical power the servo measures each period (W); set it under `lock`
        self.frames_in = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_state = time.monotonic()
        while not self._stop.is_set():
            msg = self.bus.recv(timeout=0.002)
            with self.lock:
                out = []
                if msg is not None:
                    self.frames_in += 1
                    out += self.endpoint.receive(msg.arbitration_id, bytes(msg.data))
                now = time.monotonic()
                if now >= next_state:
                    self.core.step(encoder_count=0, dt_s=0.001, power_w=self.power_w)
                    self.endpoint.tick(self.period_s)
                    out += self.endpoint.state_frames()
                    truncated = self.endpoint.truncated_ack_frame()  # the servo gave up on a transfer
                    out += [truncated] if truncated is not None else []
                    next_state = now + self.period_s
            for frame_id, data in out:
                self.bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=True))

    def policy_crc32(self) -> int:
        with self.lock:
            return int(self.core.state().policy_crc32)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.bus.shutdown()
