"""The DBC is the one source of truth: frames the C core packs decode with cantools to the core's state, frames
cantools encodes drive the core, and the committed C code is what cantools generates from the DBC today.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cantools
import pytest
from cantools.database.can import Database
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import REPO, HalfGainBackend, image, public_key_bytes

MASK = 0x1FFFFC00
DEVICE = 7


def decode(db: Database, frame_id: int, data: bytes, *, choices: bool = False) -> dict[str, Any]:
    """Decode one frame by its (device-masked, extended) id."""
    result = db.get_message_by_frame_id(frame_id, force_extended_id=True).decode(data, decode_choices=choices)
    assert isinstance(result, dict)
    return result


@pytest.fixture
def db() -> Database:
    """The servo DBC as the host side loads it (device id bits masked out)."""
    import mm_firmware_core as fw

    loaded = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    assert isinstance(loaded, Database)
    return loaded


def test_state_frames_decode_to_the_core_state(db: Database) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    assert core.command(fw.MODE_TORQUE, -1.25) == 0
    for k in range(5):
        core.step(
            encoder_count=1000 + 40 * k,
            dt_s=0.001,
            current_a=-1.2,
            bus_voltage_v=47.9,
            temperature_c=41.4,
            power_w=-57.3 + k,
        )
    state = core.state()
    decoded: dict[str, float] = {}
    names = []
    for frame_id, data in endpoint.state_frames():
        assert frame_id & 0x3FF == DEVICE
        names.append(db.get_message_by_frame_id(frame_id, force_extended_id=True).name)
        decoded |= decode(db, frame_id, data)
    # STATE_STATUS closes the burst: a host has the whole state once it arrives (mm_driver's CanTransport).
    assert names == ["STATE_MOTION", "STATE_ELECTRICAL", "STATE_POWER", "STATE_STATUS"]
    assert state.power_w == pytest.approx(-53.3, abs=1e-5)  # the last tick's measured power (W)
    assert decoded["power"] == pytest.approx(state.power_w, abs=0)
    assert decoded["position"] == pytest.approx(state.position_rad, abs=0)
    assert decoded["velocity"] == pytest.approx(state.velocity_rad_s, abs=0)
    assert decoded["current"] == pytest.approx(-1.2, abs=1e-3)
    assert decoded["current_cmd"] == pytest.approx(-1.25, abs=1e-3)
    assert decoded["bus_voltage"] == pytest.approx(47.9, abs=0.01)
    assert decoded["temperature"] == 41
    assert decoded["mode"] == fw.MODE_TORQUE


def test_cantools_commands_drive_the_core(db: Database) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    command = db.get_message_by_name("COMMAND")
    fields: dict[str, int | float | str] = {
        "mode": "POSITION",
        "clear_faults": 0,
        "stream_transitions": 1,
        "target_velocity": 2.5,
        "target": 1.75,
    }
    brake = command.encode({**fields, "mode": "BRAKE"})
    assert endpoint.receive(command.frame_id | DEVICE, command.encode(fields)) == []
    assert endpoint.receive(command.frame_id | 99, brake) == []  # another servo's command
    core.step(encoder_count=0, dt_s=0.001)
    state = core.state()
    assert state.mode == fw.MODE_POSITION
    assert state.target_rad == pytest.approx(1.75)
    assert core.pop_batch().count == 1  # stream_transitions reached the core
    # Broadcast reaches every servo.
    endpoint.receive(command.frame_id | 1023, brake)
    assert core.state().mode == fw.MODE_BRAKE


def test_cantools_exploration_frames_give_the_next_command_its_noise(
    db: Database, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=HalfGainBackend(), heartbeat_timeout_s=0)
    assert core.load_policy(image(signing_key, bytes(100))) == 0
    endpoint = core.can_endpoint(DEVICE)
    exploration, command = db.get_message_by_name("EXPLORATION"), db.get_message_by_name("COMMAND")
    policy = command.encode(
        {"mode": "POLICY", "clear_faults": 0, "stream_transitions": 1, "target_velocity": 0.0, "target": 1.0}
    )
    noise = exploration.encode({"exploration_std": 0.25, "exploration_tau": 0.04})
    assert decode(db, exploration.frame_id | DEVICE, noise) == pytest.approx(
        {"exploration_std": 0.25, "exploration_tau": 0.04}
    )
    assert endpoint.receive(exploration.frame_id | DEVICE, noise) == []
    assert endpoint.receive(command.frame_id | DEVICE, policy) == []
    state = core.state()
    assert (state.mode, state.exploration_std) == (fw.MODE_POLICY, 0.25)
    core.step(encoder_count=0, dt_s=0.001)
    assert not core.pop_batch().flags[0] & fw.constant("MM_SAMPLE_POLICY"), "the applied action was noisy"
    # Used once: the next COMMAND alone runs the bare policy.
    endpoint.receive(command.frame_id | DEVICE, policy)
    assert core.state().exploration_std == 0.0


def test_register_write_then_read_round_trip(db: Database) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    request = db.get_message_by_name("REGISTER_REQUEST")
    kp_vel_micro = 0x0013
    (reply,) = endpoint.receive(
        request.frame_id | DEVICE, request.encode({"op": "WRITE", "register_id": kp_vel_micro, "value": 350_000})
    )
    answer = decode(db, reply[0], reply[1])
    assert (answer["op"], answer["register_id"], answer["value"], answer["status"]) == (2, kp_vel_micro, 350_000, 0)
    assert core.tuning().gains.kp_vel == pytest.approx(0.35)
    (reply,) = endpoint.receive(
        request.frame_id | DEVICE, request.encode({"op": "WRITE", "register_id": 0x0010, "value": 99_000})
    )
    assert decode(db, reply[0], reply[1], choices=True)["status"] == "OUT_OF_RANGE"


def test_heartbeat_frames_feed_the_watchdog(db: Database) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.005)
    endpoint = core.can_endpoint(DEVICE)
    heartbeat = db.get_message_by_name("HEARTBEAT")
    assert core.command(fw.MODE_TORQUE, 0.5) == 0
    for k in range(20):
        endpoint.receive(heartbeat.frame_id | DEVICE, heartbeat.encode({"seq": k}))
        core.step(encoder_count=0, dt_s=0.001)
    assert core.state().fault_flags == 0
    for _ in range(6):
        core.step(encoder_count=0, dt_s=0.001)
    assert core.state().fault_flags == fw.constant("MM_FAULT_HEARTBEAT_LOST")
    frame = endpoint.fault_frame()
    assert frame is not None
    fault = decode(db, frame[0], frame[1])
    assert fault["new_faults"] == fw.constant("MM_FAULT_HEARTBEAT_LOST")
    assert fault["mode"] == fw.MODE_HOLD


def test_committed_c_code_equals_what_cantools_generates(tmp_path: Path) -> None:
    cantools_exe = shutil.which("cantools") or str(Path(sys.executable).with_name("cantools"))
    env = {**os.environ, "MM_CAN_OUT": str(tmp_path), "CANTOOLS": cantools_exe}
    subprocess.run(["sh", str(REPO / "firmware/tools/generate_can.sh")], env=env, check=True, capture_output=True)
    committed = REPO / "firmware/core/can/generated"
    for name in ("mm_servo.h", "mm_servo.c"):
        fresh = _without_timestamp((tmp_path / name).read_text())
        assert fresh == _without_timestamp((committed / name).read_text()), (
            f"{name} differs from cantools output: run firmware/tools/generate_can.sh and commit"
        )


def _without_timestamp(text: str) -> str:
    """Cantools stamps its version and the date into the file comment; the code is what must match."""
    return "\n".join(line for line in text.splitlines() if "generated by cantools version" not in line)


def test_out_of_range_readings_saturate_in_the_state_frames(db: Database) -> None:
    """A sensor reading beyond a signal's range (or NaN) is reported at the range's end (0 for NaN), never as the
    undefined float-to-integer conversion the fuzzer found (firmware/tools/fuzz.sh).
    """
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0)
    endpoint = core.can_endpoint(DEVICE)
    for current, bus, want_current, want_bus in [(1e6, 1e6, 32.767, 655.35), (float("nan"), -5.0, 0.0, 0.0)]:
        core.step(encoder_count=1000, dt_s=0.001, current_a=current, bus_voltage_v=bus)
        decoded: dict[str, float] = {}
        for frame_id, data in endpoint.state_frames():
            decoded |= decode(db, frame_id, data)
        assert decoded["current"] == pytest.approx(want_current, abs=2e-3)
        assert decoded["bus_voltage"] == pytest.approx(want_bus, abs=0.01)
