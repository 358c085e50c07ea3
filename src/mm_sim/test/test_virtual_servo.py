"""The ROS-free virtual servo: MuJoCo plant + the firmware's C core + TFLite Micro, driven like the real servo.

PID mode reaches its target; heartbeat loss holds (or brakes) within 50 ms of simulated time with the fault
latched; a policy packed and signed by mm_learning travels in PolicyChunk-sized pieces, is accepted and runs
through TFLite Micro, and explores around its output when a command asks for exploration noise; bad images are
refused with the previous policy still active; the CAN side answers the DBC protocol on a python-can virtual bus,
policies over ISO-TP included.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import mm_firmware_core as fw
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.policy_image import HEADER_SIZE
from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig, VirtualServoError
from virtual_servo_support import Signed, signed_policy

CHUNK = 448  # mm_msgs/PolicyChunk.MAX_DATA
ACCEPTED, REJECTED = 1, 2
REASON_SIGNATURE, REASON_CRC, REASON_BACKEND, REASON_TOO_LARGE = 4, 1, 6, 5
FAULT_HEARTBEAT_LOST = 64


@pytest.fixture(scope="module")
def signed() -> Signed:
    """A small int8 policy, signed (TensorFlow: a few seconds)."""
    return signed_policy(5)


def deploy(servo: VirtualServo, image: bytes, transfer_id: int, drop: set[int] | None = None) -> Any:
    """Send `image` in PolicyChunk-sized pieces (leaving out indices in `drop`); return the last ack."""
    crc = zlib.crc32(image)
    acks = []
    for index, offset in enumerate(range(0, len(image), CHUNK)):
        if drop and index in drop:
            continue
        data = image[offset : offset + CHUNK]
        due = servo.policy_chunk(
            transfer_id=transfer_id, total_size=len(image), image_crc32=crc, index=index, chunk_size=CHUNK, data=data
        )
        if due:
            acks.append(servo.policy_ack())
    assert acks, "no ack was due after the last chunk"
    return acks[-1]


def test_position_mode_reaches_the_target() -> None:
    servo = VirtualServo(VirtualServoConfig(heartbeat_timeout_s=0.0))
    assert servo.command(fw.MODE_POSITION, 1.0) == 0
    servo.step(1500)
    state = servo.state()
    assert state.mode == fw.MODE_POSITION and state.fault_flags == 0
    assert abs(state.position_rad - 1.0) < 0.01, state.position_rad
    assert abs(servo.plant.angle_rad - 1.0) < 0.01, "the plant itself (not only the core's estimate) moved"
    assert state.tick == servo.ticks + 1  # the power-up reading is the core's first tick


def test_a_shaft_at_rest_at_zero_boots_at_zero_not_one_turn_up() -> None:
    for seed in range(8):
        servo = VirtualServo(VirtualServoConfig(seed=seed, load="inertia_disk"))
        servo.step(20)
        assert abs(servo.state().position_rad) < 0.01, (seed, servo.state().position_rad)


@pytest.mark.parametrize(("brake", "mode"), [(False, fw.MODE_HOLD), (True, fw.MODE_BRAKE)])
def test_heartbeat_loss_holds_or_brakes_within_50_ms_and_latches_the_fault(brake: bool, mode: int) -> None:
    timeout_s = 0.2
    servo = VirtualServo(VirtualServoConfig(heartbeat_timeout_s=timeout_s, watchdog_brake=brake))
    assert servo.command(fw.MODE_POSITION, 3.0) == 0
    for seq in range(15):  # 150 ms of a move towards 3 rad, heartbeats every 10 ms
        servo.step(10)
        servo.heartbeat(seq)
    assert servo.state().mode == fw.MODE_POSITION and servo.state().velocity_rad_s > 1.0, "the move is under way"
    last_heartbeat_s = servo.time_s
    while servo.state().mode == fw.MODE_POSITION:
        servo.step(1)
        assert servo.time_s - last_heartbeat_s < 1.0, "the watchdog never fired"
    reaction_s = servo.time_s - last_heartbeat_s - timeout_s
    state = servo.state()
    assert state.mode == mode and state.fault_flags & FAULT_HEARTBEAT_LOST
    assert 0.0 < reaction_s <= 0.050, f"reacted {reaction_s * 1e3:.1f} ms after the timeout"
    caught_rad = state.position_rad
    servo.step(500)
    state = servo.state()
    assert state.mode == mode and state.fault_flags & FAULT_HEARTBEAT_LOST, "latched until cleared"
    assert abs(state.position_rad - caught_rad) < (0.01 if brake else 0.6), "it stays where it was caught"
    servo.step(100)
    assert abs(servo.state().position_rad - state.position_rad) < 0.005, "the shaft stopped"
    assert servo.command(fw.MODE_POSITION, 0.0) != 0, "active modes are refused while the fault is latched"
    servo.heartbeat(99)
    assert servo.command(fw.MODE_HOLD, clear_faults=True) == 0
    servo.step(1)
    assert servo.state().fault_flags == 0


def test_same_seed_same_run_and_another_seed_another_noise() -> None:
    def run(seed: int) -> list[float]:
        servo = VirtualServo(VirtualServoConfig(seed=seed, heartbeat_timeout_s=0.0))
        servo.command(fw.MODE_POSITION, 0.5)
        positions = []
        for _ in range(50):
            servo.step(4)
            positions.append(servo.state().position_rad)
        return positions

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_bad_configuration_is_refused_with_the_fix() -> None:
    with pytest.raises(VirtualServoError, match="65-byte uncompressed P-256 point"):
        VirtualServo(VirtualServoConfig(public_key_hex="04abcd"))
    with pytest.raises(VirtualServoError, match="not hex"):
        VirtualServo(VirtualServoConfig(public_key_hex="zz"))
    with pytest.raises(VirtualServoError, match="control_rate_hz"):
        VirtualServoConfig(control_rate_hz=50)


def test_plant_factors_change_the_true_plant_and_not_the_firmware() -> None:
    """A servo whose pendulum is 1.5 times as heavy moves otherwise under the same command; the core's config is
    the profile's.
    """

    def sag(factors: dict[str, float]) -> tuple[float, Any]:
        servo = VirtualServo(VirtualServoConfig(heartbeat_timeout_s=0.0, plant_factors=factors))
        servo.command(fw.MODE_TORQUE, 0.0)
        servo.step(1)
        servo.command(fw.MODE_POSITION, 1.0)
        servo.step(150)
        return servo.plant.angle_rad, servo

    nominal, heavy = sag({}), sag({"load.mass_kg": 1.5})
    assert heavy[1].plant.load.mass_kg == pytest.approx(1.5 * nominal[1].plant.load.mass_kg)
    assert abs(heavy[0] - nominal[0]) > 0.01, "150 ms into the same move the heavier arm is elsewhere"
    assert heavy[1].load == nominal[1].load, "the firmware side is configured from the profile"
    with pytest.raises(VirtualServoError, match=r"plant_factors: 'load\.colour' names no numeric"):
        VirtualServo(VirtualServoConfig(plant_factors={"load.colour": 2.0}))


@pytest.mark.slow
def test_signed_policy_in_chunks_is_accepted_and_runs_through_tflite_micro(signed: Signed) -> None:
    from mm_contract.policy_image import policy_crc32
    from mm_contract.tflm import TflmPolicy

    # The random actor drives the pendulum far past the target, where the core's guard (servo contract section 4)
    # would hand the move to the PID: it is off here, so every tick is the policy's (firmware/core/test/test_guard.py).
    config = VirtualServoConfig(
        public_key_hex=signed.public_hex, heartbeat_timeout_s=0.0, guard_error_rad=0.0, guard_saturation_s=0.0
    )
    servo = VirtualServo(config)
    assert servo.command(fw.MODE_POLICY, 1.0) != 0, "no policy yet: POLICY mode is refused"
    ack = deploy(servo, signed.image, transfer_id=7)
    assert (ack.transfer_id, ack.status) == (7, ACCEPTED)
    assert ack.active_policy_crc32 == policy_crc32(signed.image) == servo.state().policy_crc32
    assert servo.command(fw.MODE_POLICY, 1.0) == 0
    reference = TflmPolicy(signed.model, arena_bytes=8192)
    limit_a = servo.profile.driver.current_limit_a
    commands = []
    for _ in range(300):
        out = servo.step(1)
        expected_a = float(reference(np.asarray(servo.core.observation(), dtype=np.float32))[0]) * limit_a
        assert out.current_cmd_a == pytest.approx(expected_a, abs=1e-5)
        commands.append(out.current_cmd_a)
    assert servo.state().mode == fw.MODE_POLICY and servo.state().fault_flags == 0
    assert np.ptp(commands) > 0.05, "the policy acted on a changing observation"


def _policy_transitions(servo: VirtualServo, signed: Signed, std: float, ticks: int = 240) -> dict[str, np.ndarray]:
    """POLICY mode to 1 rad streaming transitions; their actions and flags next to the deterministic policy's
    output (TFLite Micro run on each sample's observation).
    """
    from mm_contract.tflm import TflmPolicy

    reference = TflmPolicy(signed.model, arena_bytes=8192)
    assert servo.command(fw.MODE_POLICY, 1.0, stream_transitions=True, exploration_std=std, exploration_tau_s=0.02) == 0
    servo.step(ticks)
    obs, actions, flags = [], [], []
    while (batch := servo.core.pop_batch()).count:
        obs += [batch.observations[i * 8 : (i + 1) * 8] for i in range(batch.count)]
        actions += batch.actions[: batch.count]
        flags += batch.flags[: batch.count]
    observations = np.array(obs, dtype=np.float32)
    policy = np.array([float(reference(o)[0]) for o in observations])
    return {"actions": np.array(actions), "flags": np.array(flags), "policy": policy}


@pytest.mark.slow
def test_policy_mode_explores_around_the_policy_when_asked(signed: Signed) -> None:
    policy_flag = fw.constant("MM_SAMPLE_POLICY")
    config = VirtualServoConfig(public_key_hex=signed.public_hex, heartbeat_timeout_s=0.0)
    runs = {}
    for name, std, seed in (("plain", 0.0, 3), ("noisy", 0.25, 3), ("same_seed", 0.25, 3), ("other", 0.25, 4)):
        servo = VirtualServo(dataclasses.replace(config, seed=seed))
        assert deploy(servo, signed.image, transfer_id=1).status == ACCEPTED
        runs[name] = _policy_transitions(servo, signed, std)
        assert servo.state().mode == fw.MODE_POLICY and servo.state().fault_flags == 0
    plain, noisy = runs["plain"], runs["noisy"]
    assert len(plain["actions"]) == len(noisy["actions"]) == 240
    # std 0: the applied action is the policy's own output, flagged as such.
    assert np.allclose(plain["actions"], plain["policy"], atol=1e-5)
    assert np.all(plain["flags"] & policy_flag)
    # std 0.25: the servo explored around the policy; the samples say so and carry what it applied.
    deviation = noisy["actions"] - noisy["policy"]
    assert np.mean(np.abs(deviation) > 1e-3) > 0.95
    assert 0.1 < float(np.std(deviation)) < 0.4
    assert not np.any(noisy["flags"] & policy_flag)
    assert np.all(np.abs(noisy["actions"]) <= 1.0)
    # The twin's `seed` seeds the core's noise: same seed, same run; another seed, another noise.
    assert np.array_equal(runs["same_seed"]["actions"], noisy["actions"])
    assert not np.array_equal(runs["other"]["actions"], noisy["actions"])


@pytest.mark.slow
def test_bad_policies_are_refused_and_the_previous_policy_stays_active(signed: Signed) -> None:
    servo = VirtualServo(VirtualServoConfig(public_key_hex=signed.public_hex, heartbeat_timeout_s=0.0))
    assert deploy(servo, signed.image, transfer_id=1).status == ACCEPTED
    good_id = servo.state().policy_crc32
    other_key = ec.generate_private_key(ec.SECP256R1())
    flipped = bytearray(signed.image)
    flipped[HEADER_SIZE + 12] ^= (
        0xFF  # a model byte, with the image CRC recomputed by the sender: the model CRC catches it
    )
    bad_signature = bytearray(signed.image)
    bad_signature[-1] ^= 0x01
    cases = [
        (signed.pack(key=other_key), REASON_SIGNATURE),
        (bytes(bad_signature), REASON_SIGNATURE),
        (bytes(flipped), REASON_CRC),
        (signed.pack(arena_bytes=64 * 1024), REASON_BACKEND),  # more arena than a slot has (8 KB)
        (signed.pack(model=signed.model + bytes(32 * 1024)), REASON_TOO_LARGE),  # above max_policy_bytes
    ]
    for transfer_id, (image, reason) in enumerate(cases, start=2):
        ack = deploy(servo, image, transfer_id)
        assert (ack.status, ack.reason) == (REJECTED, reason), (transfer_id, ack.status, ack.reason)
        assert ack.active_policy_crc32 == good_id == servo.state().policy_crc32
    truncated = deploy(servo, signed.pack(arena_bytes=5000), transfer_id=50, drop={1, 2})
    assert truncated.status == 0 and list(truncated.missing[: truncated.missing_count]) == [1, 2]
    assert servo.state().policy_crc32 == good_id
    assert servo.command(fw.MODE_POLICY, 0.5) == 0
    servo.step(10)
    assert servo.state().mode == fw.MODE_POLICY and servo.state().fault_flags == 0


# -- CAN ------------------------------------------------------------------------------------------------------
DEVICE = 5
MASK = 0x1FFFFC00


@pytest.fixture
def can_buses() -> Iterator[tuple[Any, Any, Any]]:
    """(servo bus, host bus, monitor bus) on a fresh python-can virtual channel."""
    import can

    channel = f"mm-{uuid.uuid4().hex}"
    buses = [can.Bus(interface="virtual", channel=channel) for _ in range(3)]
    try:
        yield buses[0], buses[1], buses[2]
    finally:
        for bus in buses:
            bus.shutdown()


def _frame_id(db: Any, name: str) -> int:
    return int(db.get_message_by_name(name).frame_id) | DEVICE


def _decoded(db: Any, monitor: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    while (msg := monitor.recv(timeout=0.0)) is not None:
        message = db.get_message_by_frame_id(msg.arbitration_id, force_extended_id=True)
        if message.name.startswith("POLICY_TP_"):
            continue  # ISO-TP frames carry variable-length transport payloads, not DBC signals
        out.append((message.name, message.decode(bytes(msg.data), decode_choices=False)))
    return out


def test_can_commands_move_the_servo_and_state_frames_report_it(can_buses: tuple[Any, Any, Any]) -> None:
    import can
    import cantools

    servo_bus, host, monitor = can_buses
    db: Any = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    servo = VirtualServo(VirtualServoConfig(heartbeat_timeout_s=0.0, initial_angle_rad=0.2))
    servo.attach_can(servo_bus, DEVICE)
    command = db.get_message_by_name("COMMAND")
    fields = {s.name: 0 for s in command.signals} | {"mode": fw.MODE_POSITION, "target": 1.2}
    host.send(can.Message(arbitration_id=_frame_id(db, "COMMAND"), data=command.encode(fields), is_extended_id=True))
    servo.step(1500)
    frames = _decoded(db, monitor)
    motion = [f for name, f in frames if name == "STATE_MOTION"]
    assert len(motion) == 1500 // servo.config.state_decimation
    assert motion[0]["position"] == pytest.approx(0.2, abs=0.01)
    assert motion[-1]["position"] == pytest.approx(1.2, abs=0.01)
    assert any(name == "STATE_STATUS" for name, _ in frames)


@pytest.mark.slow
def test_policy_over_isotp_on_the_can_bus_is_accepted(can_buses: tuple[Any, Any, Any], signed: Signed) -> None:
    import cantools
    import isotp

    servo_bus, host, monitor = can_buses
    db: Any = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    servo = VirtualServo(VirtualServoConfig(public_key_hex=signed.public_hex, heartbeat_timeout_s=0.0))
    servo.attach_can(servo_bus, DEVICE)
    address = isotp.Address(
        isotp.AddressingMode.Normal_29bits,
        txid=_frame_id(db, "POLICY_TP_DATA"),
        rxid=_frame_id(db, "POLICY_TP_FLOW"),
    )
    stack = isotp.CanStack(host, address=address, params={"blocking_send": False, "max_frame_size": 4095})
    image, crc, chunk = signed.image, zlib.crc32(signed.image), 1024
    stack.start()
    try:
        for index, offset in enumerate(range(0, len(image), chunk)):
            stack.send(struct.pack("<IIIHH", 9, len(image), crc, index, chunk) + image[offset : offset + chunk])
            for _ in range(20_000):  # 20 s of simulated time at most, served tick by tick
                if not stack.transmitting():
                    break
                servo.step(1)
            assert not stack.transmitting(), "the ISO-TP transfer stalled"
        servo.step(5)
    finally:
        stack.stop()
    acks = [f for name, f in _decoded(db, monitor) if name == "POLICY_ACK"]
    assert acks and acks[-1]["transfer_id"] == 9 and acks[-1]["status"] == ACCEPTED, acks[-1:]
    assert servo.state().policy_crc32 == crc
