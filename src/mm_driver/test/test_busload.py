"""mm_driver.busload: bits per CAN frame, ISO-TP framing, the stream and policy-transfer load of a fleet, and the
largest fleet that still deploys in time, against numbers worked out by hand; the transfer's frames against a
real deploy (CanTransport + the firmware core's CAN endpoint on a python-can virtual bus).
"""

from __future__ import annotations

import math
from pathlib import Path

import can
import mm_firmware_core as fw
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from driver_support import AcceptAnyBackend, CanServo, public_key_bytes, signed_image
from mm_driver.busload import Fleet, FrameLayout, bus_load, frame_bits, max_servos, transfer_frames
from mm_driver.can_transport import CanTransport, isotp_frame_dlcs
from mm_driver.deploy import Deployer
from mm_driver.errors import DriverError

IMAGE_BYTES = 12 * 1024
# 12 messages of 16 + 1024 B; each a first frame (8 B) + 147 consecutive frames of 8 B + one of 1 + 5 B.
# Worst case: 12 × 148 data, 12 flow control and 1 ack frames of 8 B at 160 bits, 12 frames of 6 B at 140.
TRANSFER_BITS_WORST = (12 * 148 + 12 + 1) * 160 + 12 * 140  # 287,920
TRANSFER_BITS_NOMINAL = (12 * 148 + 12 + 1) * 131 + 12 * 115  # 235,739


@pytest.fixture(scope="module")
def layout() -> FrameLayout:
    return FrameLayout.from_dbc()


def fleet(**changes: object) -> Fleet:
    """The firmware's defaults: 1 kHz control, a state burst every 5 ticks, a heartbeat every 20 ms, 500 kbit/s."""
    knobs: dict[str, object] = {
        "control_rate_hz": 1000.0,
        "state_decimation": 5,
        "heartbeat_period_s": 0.02,
        "bitrate_bps": 500_000,
        "chunk_size": 1024,
    }
    return Fleet(**(knobs | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dlc", "extended", "nominal", "worst"),
    [
        (8, True, 131, 160),  # 54 stuffed control bits + 64 data + 13 tail; +⌊117/4⌋ stuff bits
        (4, True, 99, 120),  # the HEARTBEAT frame
        (0, True, 67, 80),
        (8, False, 111, 135),  # 11-bit id: the textbook 135-bit worst case
        (0, False, 47, 55),
    ],
)
def test_frame_bits_match_the_hand_count(dlc: int, extended: bool, nominal: int, worst: int) -> None:
    assert frame_bits(dlc, extended=extended) == nominal
    assert frame_bits(dlc, extended=extended, worst_case=True) == worst


def test_a_frame_carries_at_most_eight_bytes() -> None:
    with pytest.raises(DriverError, match=r"0\.\.8 data bytes"):
        frame_bits(9)


def test_the_layout_is_read_from_the_dbc(layout: FrameLayout) -> None:
    assert layout.extended
    assert layout.state == (8, 8, 4, 8)  # STATE_ELECTRICAL, STATE_MOTION, STATE_POWER, STATE_STATUS
    assert (layout.heartbeat, layout.flow_control, layout.ack, layout.tp_data) == (4, 8, 8, 8)
    assert layout.name_of(0x030 << 10 | 7) == "POLICY_TP_DATA"


def test_a_database_without_the_servo_messages_is_refused(tmp_path: Path) -> None:
    dbc = tmp_path / "other.dbc"
    dbc.write_text('VERSION ""\n\nBS_:\n\nBU_: A\n\nBO_ 2147483649 OTHER: 8 A\n SG_ x : 0|8@1+ (1,0) [0|255] "" A\n')
    with pytest.raises(DriverError, match=r"HEARTBEAT.*not this project's servo protocol"):
        FrameLayout.from_dbc(dbc)


@pytest.mark.parametrize(
    ("payload", "dlcs"),
    [(1, [2]), (7, [8]), (8, [8, 3]), (13, [8, 8]), (1040, [8] + [8] * 147 + [6])],
)
def test_isotp_framing(payload: int, dlcs: list[int]) -> None:
    assert isotp_frame_dlcs(payload) == dlcs


def test_transfer_of_a_12_kb_image(layout: FrameLayout) -> None:
    frames = transfer_frames(IMAGE_BYTES, 1024, layout)
    assert frames == {"data": {8: 12 * 148, 6: 12}, "flow_control": {8: 12}, "ack": {8: 1}}
    assert bus_load(0, IMAGE_BYTES, fleet(), layout).transfer_bits == TRANSFER_BITS_WORST
    assert bus_load(0, IMAGE_BYTES, fleet(worst_case=False), layout).transfer_bits == TRANSFER_BITS_NOMINAL


def test_stream_load_per_servo(layout: FrameLayout) -> None:
    # 200 state bursts of three 8-byte frames (160 bits each worst case) and the 4-byte STATE_POWER (120 bits),
    # and 50 heartbeats of 4 bytes (120 bits).
    one = bus_load(1, IMAGE_BYTES, fleet(), layout)
    assert one.stream_frames_per_s == 850
    assert one.stream_bits_per_s == 600 * 160 + 200 * 120 + 50 * 120 == 126_000
    assert one.load == pytest.approx(0.252)
    three = bus_load(3, IMAGE_BYTES, fleet(), layout)
    assert three.deploy_s == pytest.approx(TRANSFER_BITS_WORST / (500_000 - 3 * 126_000))  # 2.36 s
    assert math.isinf(bus_load(4, IMAGE_BYTES, fleet(), layout).deploy_s)  # 504 kbit/s of stream: no room


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({}, 3),  # 200 Hz state, worst-case stuffing: 4 servos already take 101 % of the bus
        ({"worst_case": False}, 4),  # nominal bits: 103,350 bit/s per servo, 4 leave 87 kbit/s (2.7 s)
        ({"state_decimation": 20}, 12),  # 50 Hz: 36,000 bit/s per servo, 12 leave 68 kbit/s (4.2 s), 13 need 9.0 s
        ({"state_decimation": 20, "broadcast_heartbeat": True}, 14),  # 30,000 per servo + 6,000: 14 need 3.9 s
    ],
)
def test_largest_fleet_that_deploys_in_5_s(layout: FrameLayout, knobs: dict[str, object], expected: int) -> None:
    knobbed = fleet(**knobs)
    assert max_servos(IMAGE_BYTES, 5.0, knobbed, layout) == expected
    assert bus_load(expected, IMAGE_BYTES, knobbed, layout).deploy_s <= 5.0
    assert bus_load(expected + 1, IMAGE_BYTES, knobbed, layout).deploy_s > 5.0


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(DriverError, match=r"state_decimation must be >= 1.*chunk_size must be in 1\.\.1024"):
        fleet(state_decimation=0, chunk_size=2048)


def test_a_real_transfer_sends_the_computed_frames(
    signing_key: ec.EllipticCurvePrivateKey, layout: FrameLayout
) -> None:
    """Deploy a 12 KB image to the firmware core's CAN endpoint and count what a third bus handle sees."""
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=AcceptAnyBackend(), heartbeat_timeout_s=0)
    servo = CanServo(core, device_id=3)
    sniffer = can.Bus(interface="virtual", channel=servo.channel)
    transport = CanTransport(interface="virtual", channel=servo.channel, device_id=3)
    deployer = Deployer(transport, chunk_size=1024, ack_timeout_s=5.0, max_rounds=3)
    seen: dict[str, dict[int, float]] = {}
    try:
        transport.open(lambda _sample: None, deployer.on_ack)
        outcome = deployer.deploy(signed_image(signing_key, IMAGE_BYTES), previous_policy_crc32=0)
    finally:
        transport.close()
        servo.close()
        while (msg := sniffer.recv(timeout=0.0)) is not None:
            kind = seen.setdefault(layout.name_of(msg.arbitration_id), {})
            kind[msg.dlc] = kind.get(msg.dlc, 0) + 1
        sniffer.shutdown()
    assert outcome.success, outcome.message
    assert outcome.chunks_resent == 0
    computed = transfer_frames(IMAGE_BYTES, 1024, layout)
    assert seen["POLICY_TP_DATA"] == computed["data"]
    assert seen["POLICY_TP_FLOW"] == computed["flow_control"]
    assert seen["POLICY_ACK"] == computed["ack"]
    # The endpoint's state bursts are the DBC's STATE_* frames, each of its declared size.
    states = sorted(name for name in seen if name.startswith("STATE_"))
    assert states == ["STATE_ELECTRICAL", "STATE_MOTION", "STATE_POWER", "STATE_STATUS"]
    assert [set(seen[name]) for name in states] == [{dlc} for dlc in layout.state]
