"""Optional SecOC-style authentication of CAN commands (mm_can_auth_*, COMMAND_AUTH in mm_servo.dbc): off by
default; when on, a frame that acts on the servo takes effect only after a COMMAND_AUTH frame with a fresh counter
and the AES-128-CMAC tag over that frame; anything else is refused and counted.
"""

from __future__ import annotations

import struct
from typing import Any

import cantools
import pytest
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

DEVICE = 7
KEY = bytes(range(16))
TORQUE = 2


def _ids() -> dict[str, int]:
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path())
    return {m.name: (m.frame_id & 0x1FFFFC00) | DEVICE for m in db.messages}


def _tag(key: bytes, frame_id: int, data: bytes, freshness: int) -> bytes:
    """The tag computed independently of the core (pyca/cryptography's CMAC)."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(struct.pack("<IB", frame_id, len(data)) + data + struct.pack("<I", freshness))
    return mac.finalize()[:4]


def _command(mode: int, target: float) -> bytes:
    return struct.pack("<BBhf", mode, 0, 0, target)


def _servo(auth: bool) -> tuple[Any, Any]:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    if auth:
        endpoint.enable_auth(KEY)
    return core, endpoint


def _send_authenticated(endpoint: Any, frame_id: int, data: bytes, freshness: int, key: bytes = KEY) -> None:
    ids = _ids()
    endpoint.receive(frame_id, data)
    endpoint.receive(ids["COMMAND_AUTH"], struct.pack("<I", freshness) + _tag(key, frame_id, data, freshness))


def test_the_core_computes_the_documented_tag() -> None:
    import mm_firmware_core as fw

    ids = _ids()
    data = _command(TORQUE, 0.5)
    assert fw.CanEndpoint.auth_tag(KEY, ids["COMMAND"], data, 42) == _tag(KEY, ids["COMMAND"], data, 42)


def test_off_by_default_commands_apply_directly() -> None:
    core, endpoint = _servo(auth=False)
    endpoint.receive(_ids()["COMMAND"], _command(TORQUE, 0.5))
    assert core.state().mode == TORQUE


def test_a_command_with_a_valid_tag_and_fresh_counter_applies() -> None:
    core, endpoint = _servo(auth=True)
    ids = _ids()
    _send_authenticated(endpoint, ids["COMMAND"], _command(TORQUE, 0.5), freshness=1)
    assert core.state().mode == TORQUE
    assert core.step(encoder_count=100, dt_s=0.001).current_cmd_a == pytest.approx(0.5)
    assert endpoint.auth_stats() == (1, 0, 1)


def test_untagged_wrong_tag_and_replayed_frames_are_refused_and_counted() -> None:
    core, endpoint = _servo(auth=True)
    ids = _ids()
    torque = _command(TORQUE, 0.5)
    # No tag at all: held, then dropped when the next protected frame arrives.
    endpoint.receive(ids["COMMAND"], torque)
    assert core.state().mode == 0
    endpoint.receive(ids["COMMAND"], torque)
    assert endpoint.auth_stats()[1] == 1
    # Wrong key, and a tag of another frame.
    endpoint.receive(ids["COMMAND_AUTH"], struct.pack("<I", 1) + _tag(bytes(16), ids["COMMAND"], torque, 1))
    endpoint.receive(ids["COMMAND"], torque)
    endpoint.receive(ids["COMMAND_AUTH"], struct.pack("<I", 1) + _tag(KEY, ids["COMMAND"], _command(TORQUE, 4.0), 1))
    assert core.state().mode == 0
    assert endpoint.auth_stats() == (0, 3, 0)
    # A stray tag with nothing held.
    endpoint.receive(ids["COMMAND_AUTH"], struct.pack("<I", 2) + _tag(KEY, ids["COMMAND"], torque, 2))
    assert endpoint.auth_stats() == (0, 4, 0)
    # Valid once; the same pair replayed (old counter) and an older counter are refused.
    _send_authenticated(endpoint, ids["COMMAND"], torque, freshness=5)
    assert core.state().mode == TORQUE
    idle = _command(0, 0.0)
    _send_authenticated(endpoint, ids["COMMAND"], idle, freshness=5)
    _send_authenticated(endpoint, ids["COMMAND"], idle, freshness=3)
    assert core.state().mode == TORQUE
    assert endpoint.auth_stats() == (1, 6, 5)
    _send_authenticated(endpoint, ids["COMMAND"], idle, freshness=6)
    assert core.state().mode == 0
    assert endpoint.auth_stats() == (2, 6, 6)


def test_heartbeats_and_register_writes_need_a_tag_too() -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.05)
    endpoint = core.can_endpoint(DEVICE)
    endpoint.enable_auth(KEY)
    ids = _ids()
    _send_authenticated(endpoint, ids["COMMAND"], _command(TORQUE, 0.5), freshness=1)
    # Forged heartbeats (no tag) do not feed the watchdog: it trips after 50 ms.
    for k in range(60):
        endpoint.receive(ids["HEARTBEAT"], struct.pack("<I", k))
        core.step(encoder_count=100, dt_s=0.001)
    assert core.state().fault_flags & fw.constant("MM_FAULT_HEARTBEAT_LOST")
    # An untagged register write changes nothing; a tagged one answers and applies.
    limit = struct.pack("<BHi", 2, 0x0010, 1000) + b"\0"
    assert endpoint.receive(ids["REGISTER_REQUEST"], limit) == []
    assert core.tuning().current_limit_a == pytest.approx(4.0)
    endpoint.receive(ids["REGISTER_REQUEST"], limit)
    reply = endpoint.receive(ids["COMMAND_AUTH"], struct.pack("<I", 2) + _tag(KEY, ids["REGISTER_REQUEST"], limit, 2))
    assert len(reply) == 1 and core.tuning().current_limit_a == pytest.approx(1.0)
