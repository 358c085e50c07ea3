"""CanTransport against a real firmware core on a python-can virtual bus: a 16 KB signed policy deployed over
ISO-TP and accepted; a corrupted chunk, a wrong CRC, a bad signature and a truncated transfer each refused with
the previous policy still active; commands, registers and the state stream through the DBC.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator

import mm_firmware_core as fw
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from driver_support import (
    AcceptAnyBackend,
    CanServo,
    FaultyLink,
    public_key_bytes,
    signed_image,
    wrong_crc_image,
)
from mm_driver.can_transport import CanTransport
from mm_driver.deploy import Deployer
from mm_driver.errors import DriverError
from mm_driver.transport import AckReason, Command, Mode, ServoSample

DEVICE = 7


class Link:
    """A CanTransport opened against a CanServo, with its samples and acks collected."""

    def __init__(self, servo: CanServo) -> None:
        self.transport = CanTransport(interface="virtual", channel=servo.channel, device_id=DEVICE)
        self.deployer = Deployer(self.transport, chunk_size=1024, ack_timeout_s=0.5, max_rounds=4)
        self.samples: list[ServoSample] = []
        self.new_sample = threading.Condition()
        self.transport.open(self._on_state, self.deployer.on_ack)

    def _on_state(self, sample: ServoSample) -> None:
        with self.new_sample:
            self.samples.append(sample)
            self.new_sample.notify_all()

    def wait_sample(self, predicate: object, timeout_s: float = 3.0) -> ServoSample:
        with self.new_sample:
            ok = self.new_sample.wait_for(lambda: self.samples and predicate(self.samples[-1]), timeout_s)  # type: ignore[operator]
            assert ok, f"no matching state sample within {timeout_s} s (last: {self.samples[-1:]})"
            return self.samples[-1]


@pytest.fixture
def rig(signing_key: ec.EllipticCurvePrivateKey) -> Iterator[tuple[CanServo, Link, int]]:
    """A servo on CAN already running a first policy, and the driver's link to it."""
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=AcceptAnyBackend(), heartbeat_timeout_s=0)
    first = signed_image(signing_key, 3000, seed=1)
    assert core.load_policy(first) == 0
    servo = CanServo(core, device_id=DEVICE)
    link = Link(servo)
    try:
        yield servo, link, zlib.crc32(first)
    finally:
        link.transport.close()
        servo.close()


@pytest.mark.slow
def test_16k_policy_over_isotp_is_accepted(
    rig: tuple[CanServo, Link, int], signing_key: ec.EllipticCurvePrivateKey, report: object
) -> None:
    servo, link, first = rig
    image = signed_image(signing_key, 16 * 1024, seed=2)
    outcome = link.deployer.deploy(image, previous_policy_crc32=first)
    assert outcome.success, outcome.message
    assert servo.policy_crc32() == zlib.crc32(image) == outcome.active_policy_crc32
    assert outcome.chunks_sent == 16 and outcome.chunks_resent == 0
    # The state stream reports it too (STATE_STATUS.policy_crc32).
    link.wait_sample(lambda s: s.policy_crc32 == zlib.crc32(image))
    report(f"CAN virtual bus: 16 KB deploy {outcome.elapsed_s:.3f} s wall, {link.transport.frames_sent} frames sent")  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupted_chunk", "wrong_crc", "bad_signature", "truncated_image", "abandoned"])
def test_refusals_keep_the_previous_policy(
    rig: tuple[CanServo, Link, int],
    signing_key: ec.EllipticCurvePrivateKey,
    other_key: ec.EllipticCurvePrivateKey,
    case: str,
) -> None:
    servo, link, first = rig
    image = signed_image(signing_key, 16 * 1024, seed=3)
    deployer, expected = (
        link.deployer,
        {
            "corrupted_chunk": AckReason.CRC,
            "wrong_crc": AckReason.CRC,
            "bad_signature": AckReason.SIGNATURE,
            "truncated_image": AckReason.FORMAT,
            "abandoned": AckReason.TRUNCATED,
        }[case],
    )
    if case == "corrupted_chunk":
        deployer = Deployer(FaultyLink(link.transport, corrupt=5), chunk_size=1024, ack_timeout_s=0.5, max_rounds=4)
    elif case == "abandoned":
        deployer = Deployer(FaultyLink(link.transport, stop_after=6), chunk_size=1024, ack_timeout_s=0.2, max_rounds=3)
    elif case == "wrong_crc":
        image = wrong_crc_image(signing_key, 16 * 1024)
    elif case == "bad_signature":
        image = signed_image(other_key, 16 * 1024, seed=3)
    elif case == "truncated_image":
        image = image[: 16 * 1024 - 1500]
    if deployer is not link.deployer:
        link.transport.close()
        link.transport.open(link._on_state, deployer.on_ack)
    outcome = deployer.deploy(image, previous_policy_crc32=first)
    assert (outcome.success, outcome.reason) == (False, expected), outcome.message
    assert servo.policy_crc32() == first
    assert f"{first:08x}" in outcome.message
    link.wait_sample(lambda s: s.policy_crc32 == first)


@pytest.mark.slow
def test_servo_abandons_a_stalled_transfer_and_says_so(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """With a short transfer timeout the servo's own REJECTED/TRUNCATED ack ends the deployment."""
    core = fw.ServoCore(
        public_key=public_key_bytes(signing_key),
        backend=AcceptAnyBackend(),
        heartbeat_timeout_s=0,
        transfer_timeout_s=0.05,  # 50 control ticks of the harness: half a second of wall time
    )
    first = signed_image(signing_key, 3000, seed=1)
    assert core.load_policy(first) == 0
    servo = CanServo(core, device_id=DEVICE)
    link = Link(servo)
    try:
        deployer = Deployer(FaultyLink(link.transport, stop_after=4), chunk_size=1024, ack_timeout_s=0.5, max_rounds=20)
        link.transport.close()
        link.transport.open(link._on_state, deployer.on_ack)
        outcome = deployer.deploy(signed_image(signing_key, 16 * 1024, seed=9), previous_policy_crc32=zlib.crc32(first))
    finally:
        link.transport.close()
        servo.close()
    assert (outcome.success, outcome.reason) == (False, AckReason.TRUNCATED)
    assert outcome.message.startswith("refused by the servo (TRUNCATED"), outcome.message
    assert servo.policy_crc32() == zlib.crc32(first) == outcome.active_policy_crc32


def test_commands_registers_and_state_over_can(rig: tuple[CanServo, Link, int]) -> None:
    servo, link, _ = rig
    link.transport.send_command(Command(Mode.POSITION, target=0.75, kp_pos=20.0, kp_vel=0.05, ki_vel=1.5))
    sample = link.wait_sample(lambda s: s.mode == Mode.POSITION)
    assert sample.target_rad == pytest.approx(0.75)
    with servo.lock:
        tuning = servo.core.tuning()
        target = servo.core.state().target_rad
    assert target == pytest.approx(0.75)
    assert (tuning.gains.kp_pos, tuning.gains.kp_vel, tuning.gains.ki_vel) == pytest.approx((20.0, 0.05, 1.5))
    link.transport.send_command(Command(Mode.HOLD))
    link.wait_sample(lambda s: s.mode == Mode.HOLD)
    # The measured power arrives in STATE_POWER, within the same burst as the rest of the state.
    with servo.lock:
        servo.power_w = 17.25
    link.wait_sample(lambda s: s.power_w == 17.25 and s.mode == Mode.HOLD)


def test_policy_command_with_exploration_over_can(rig: tuple[CanServo, Link, int]) -> None:
    import can
    import cantools

    servo, link, _ = rig
    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=0x1FFFFC00)
    monitor = can.Bus(interface="virtual", channel=servo.channel)
    try:
        link.transport.send_command(Command(Mode.POLICY, target=0.5, exploration_std=0.3, exploration_tau_s=0.02))
        link.wait_sample(lambda s: s.mode == Mode.POLICY)
        with servo.lock:
            assert servo.core.state().exploration_std == pytest.approx(0.3)
        # A command without exploration (what MoveTo sends) sends no EXPLORATION frame: the servo explores not.
        link.transport.send_command(Command(Mode.POLICY, target=0.6))
        for _ in range(300):  # the servo thread takes the frame within a period or two; 3 s at most
            with servo.lock:
                if servo.core.state().target_rad == pytest.approx(0.6):
                    break
            time.sleep(0.01)
        frames = []
        while (msg := monitor.recv(timeout=0.0)) is not None:
            name = db.get_message_by_frame_id(msg.arbitration_id, force_extended_id=True).name  # type: ignore[union-attr]
            if name in {"EXPLORATION", "COMMAND"}:
                frames.append((name, db.decode_message(name, bytes(msg.data))))  # type: ignore[union-attr]
    finally:
        monitor.shutdown()
    with servo.lock:
        state = servo.core.state()
    assert (state.mode, state.target_rad, state.exploration_std) == (Mode.POLICY, pytest.approx(0.6), 0.0)
    assert [name for name, _ in frames] == ["EXPLORATION", "COMMAND", "COMMAND"]
    sent = frames[0][1]
    assert (sent["exploration_std"], sent["exploration_tau"]) == pytest.approx((0.3, 0.02))


def test_device_id_and_interface_errors_say_what_to_do() -> None:
    with pytest.raises(DriverError, match=r"1\.\.1022"):
        CanTransport(interface="virtual", channel="x", device_id=1023)
    transport = CanTransport(interface="no-such-interface", channel="x", device_id=1)
    with pytest.raises(DriverError, match="cannot open CAN interface 'no-such-interface'"):
        transport.open(lambda s: None, lambda a: None)
    with pytest.raises(DriverError, match="not open"):
        transport.send_heartbeat(1)
