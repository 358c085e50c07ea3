"""Python-packed policy images through the C core: accepted when good; every corruption refused with the
previous policy still active (servo contract section 5); chunked transfer with loss, duplicates, reordering.
"""

from __future__ import annotations

import dataclasses
import math
import random
import struct
import zlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.observation import ObsScales
from mm_testing.fw_support import HEADER, HalfGainBackend, header, image, public_key_bytes, require, sign_raw

MODEL = bytes(range(256)) * 3
BASE = (2.0, 5.0, 0.1, 1.0, 0.05, 30.0)  # a schedule image's PTOS base law: kp_pos, v_max, kp_vel, ki_vel, ff, decel
LINEAR = (2.0, 5.0, 0.1, 1.0, 0.05, 0.0)  # a linear PID: no braking deceleration a schedule could scale
ABOVE_2 = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", struct.pack("<f", 2.0))[0] + 1))[0]
ACCEPTED, REJECTED = 1, 2
REASON = {"NONE": 0, "CRC": 1, "FORMAT": 2, "SHAPE": 3, "SIGNATURE": 4, "TOO_LARGE": 5, "BACKEND": 6}


@pytest.fixture
def servo(signing_key: ec.EllipticCurvePrivateKey) -> tuple[Any, HalfGainBackend]:
    """A core that trusts signing_key, running the trivial backend."""
    import mm_firmware_core as fw

    backend = HalfGainBackend()
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=backend, heartbeat_timeout_s=0.0)
    return core, backend


def test_good_image_is_active_and_drives_the_servo(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    import mm_firmware_core as fw

    core, backend = servo
    img = image(signing_key, MODEL)
    assert core.load_policy(img) == REASON["NONE"]
    assert core.state().policy_crc32 == zlib.crc32(img)
    assert backend.loaded[next(iter(backend.loaded))] == MODEL
    assert core.command(fw.MODE_POLICY, 3.0) == 0
    # coarse error 3 rad / 3 rad = 1 -> action 0.5 -> 0.5 * current_limit_a (2 A in the image)
    assert core.step(encoder_count=0, dt_s=0.001).current_cmd_a == pytest.approx(1.0)


def _corruptions(key: ec.EllipticCurvePrivateKey, other: ec.EllipticCurvePrivateKey) -> dict[str, tuple[bytes, str]]:
    good = image(key, MODEL)
    flipped_model = bytearray(good)
    flipped_model[HEADER.size + 12] ^= 1
    flipped_sig = bytearray(good)
    flipped_sig[-5] ^= 0x80
    return {
        "model byte flipped (model CRC)": (bytes(flipped_model), "CRC"),
        "signature byte flipped": (bytes(flipped_sig), "SIGNATURE"),
        "signed by another key": (image(other, MODEL), "SIGNATURE"),
        "unsigned (zero signature)": (good[:-64] + bytes(64), "SIGNATURE"),
        "truncated by one byte": (good[:-1], "FORMAT"),
        "truncated to half": (good[: len(good) // 2], "FORMAT"),
        "header only": (good[:80], "FORMAT"),
        "wrong magic": (image(key, MODEL, magic=b"MMPX"), "FORMAT"),
        "format version 1": (image(key, MODEL, version=1), "FORMAT"),
        "format version 3": (image(key, MODEL, version=3), "FORMAT"),
        "negative scale": (image(key, MODEL, scales=(3.0, -40.0, 25.0, 2.0, 0.004)), "FORMAT"),
        "schedule_range just above 2": (image(key, MODEL, schedule_range=ABOVE_2, base_gains=BASE), "FORMAT"),
        "schedule_range 2.5": (image(key, MODEL, schedule_range=2.5, base_gains=BASE), "FORMAT"),
        "schedule_range negative": (image(key, MODEL, schedule_range=-0.2, base_gains=BASE), "FORMAT"),
        "schedule_range NaN": (image(key, MODEL, schedule_range=math.nan, base_gains=BASE), "FORMAT"),
        "schedule_range inf": (image(key, MODEL, schedule_range=math.inf, base_gains=BASE), "FORMAT"),
        "negative base gain": (image(key, MODEL, schedule_range=0.3, base_gains=(2, 5, -0.1, 1, 0, 30)), "FORMAT"),
        "infinite base gain": (image(key, MODEL, base_gains=(2, math.inf, 0.1, 1, 0, 0)), "FORMAT"),
        "negative decel, no schedule": (image(key, MODEL, base_gains=(2, 5, 0.1, 1, 0, -1)), "FORMAT"),
        "PTOS base without kp_pos": (image(key, MODEL, schedule_range=0.3, base_gains=(0, 5, 0.1, 1, 0, 30)), "FORMAT"),
        "schedule on a linear base (decel 0)": (image(key, MODEL, schedule_range=0.3, base_gains=LINEAR), "FORMAT"),
        "schedule without base gains": (image(key, MODEL, schedule_range=2.0), "FORMAT"),
        "obs_dim 7": (image(key, MODEL, obs_dim=7), "SHAPE"),
        "action_dim 2": (image(key, MODEL, action_dim=2), "SHAPE"),
        "header CRC lies (signed)": (image(key, MODEL, model_crc32=zlib.crc32(MODEL) ^ 1), "CRC"),
        "larger than the policy buffer": (good + bytes(70_000), "TOO_LARGE"),
    }


def test_every_corruption_is_refused_and_the_last_good_policy_keeps_running(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    import mm_firmware_core as fw

    core, _ = servo
    good = image(signing_key, MODEL)
    assert core.load_policy(good) == 0
    assert core.command(fw.MODE_POLICY, 3.0) == 0
    other = ec.generate_private_key(ec.SECP256R1())
    for name, (blob, reason) in _corruptions(signing_key, other).items():
        assert core.load_policy(blob) == REASON[reason], name
        ack = core.policy_ack()
        assert (ack.status, ack.reason) == (REJECTED, REASON[reason]), name
        assert core.state().policy_crc32 == zlib.crc32(good), name
        assert core.step(encoder_count=0, dt_s=0.001).current_cmd_a == pytest.approx(1.0), name
        assert core.state().mode == fw.MODE_POLICY, name


def test_backend_refusal_keeps_the_previous_policy(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    core, backend = servo
    good = image(signing_key, MODEL)
    assert core.load_policy(good) == 0
    backend.refuse = True
    assert core.load_policy(image(signing_key, MODEL[::-1])) == REASON["BACKEND"]
    assert core.state().policy_crc32 == zlib.crc32(good)


def _chunks(img: bytes, size: int) -> list[tuple[int, bytes]]:
    return [(i, img[off : off + size]) for i, off in enumerate(range(0, len(img), size))]


def test_chunked_transfer_survives_loss_duplicates_and_reordering(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    core, _ = servo
    img = image(signing_key, MODEL)
    chunks = _chunks(img, 64)
    rng = random.Random(5)
    first_pass = [c for c in chunks if c[0] not in (3, 9)] + [chunks[4], chunks[4]]
    rng.shuffle(first_pass)
    header_fields = {"transfer_id": 77, "total_size": len(img), "image_crc32": zlib.crc32(img), "chunk_size": 64}
    for index, data in first_pass:
        status, _ = core.policy_chunk(index=index, data=data, **header_fields)
        assert status == 0
    ack = core.policy_ack()
    assert list(ack.missing[: ack.missing_count]) == [3, 9]
    assert (ack.received_chunks, ack.total_chunks) == (len(chunks) - 2, len(chunks))
    assert core.state().policy_crc32 == 0
    for index in (9, 3):
        status, due = core.policy_chunk(index=index, data=chunks[index][1], **header_fields)
    assert (status, due) == (ACCEPTED, True)
    assert core.policy_ack().active_policy_crc32 == zlib.crc32(img)


def test_corrupted_transfer_fails_the_image_crc(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    core, _ = servo
    img = image(signing_key, MODEL)
    bad = bytearray(img)
    bad[100] ^= 0xFF
    for index, data in _chunks(bytes(bad), 200):
        status, _ = core.policy_chunk(
            transfer_id=5, total_size=len(img), image_crc32=zlib.crc32(img), index=index, chunk_size=200, data=data
        )
    assert status == REJECTED
    assert core.policy_ack().reason == REASON["CRC"]
    assert core.state().policy_crc32 == 0


def test_images_from_the_project_packer_are_accepted(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    policy_image = require("mm_contract.policy_image")
    core, _ = servo
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    head = policy_image.PolicyHeader(model_type=policy_image.ModelType.INT8, scales=scales, arena_bytes=2800)
    img = policy_image.pack_image(head, MODEL, lambda data: sign_raw(signing_key, data))
    assert core.load_policy(img) == 0
    assert core.state().policy_crc32 == policy_image.policy_crc32(img)
    active = core.active_policy()
    assert active is not None and active.policy_decimation == 0
    # The decimation the policy was trained at reaches the core's header (the core runs it at that rate).
    decimated = policy_image.pack_image(
        dataclasses.replace(head, policy_decimation=10), MODEL, lambda data: sign_raw(signing_key, data)
    )
    assert core.load_policy(decimated) == 0
    active = core.active_policy()
    assert active is not None and active.policy_decimation == 10


def test_header_helper_matches_the_contract_layout() -> None:
    raw = header(MODEL)
    assert len(raw) == 80
    assert raw[:4] == b"MMPL"
    assert int.from_bytes(raw[12:16], "little") == len(MODEL)


def test_packer_and_core_agree_on_the_format() -> None:
    """One definition per side: the C header's sizes and version equal mm_contract.policy_image's."""
    import mm_firmware_core as fw

    policy_image = require("mm_contract.policy_image")
    assert fw.constant("MM_POLICY_HEADER_BYTES") == policy_image.HEADER_SIZE == len(header(MODEL))
    assert fw.constant("MM_POLICY_SIGNATURE_BYTES") == policy_image.SIGNATURE_SIZE
    assert fw.constant("MM_POLICY_FORMAT_VERSION") == policy_image.FORMAT_VERSION


def test_schedule_fields_reach_the_core_and_round_trip(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    """A schedule image packed by mm_learning is accepted; the core decodes schedule_range and the base gains at
    the offsets the packer wrote; schedule_range 0 with zero gains (the default) is a plain policy.
    """
    policy_image = require("mm_contract.policy_image")
    core, _ = servo
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    head = policy_image.PolicyHeader(
        model_type=policy_image.ModelType.INT8, scales=scales, arena_bytes=2800, schedule_range=1.75, base_gains=BASE
    )
    img = policy_image.pack_image(head, MODEL, lambda data: sign_raw(signing_key, data))
    assert core.load_policy(img) == 0
    active = core.active_policy()
    assert active is not None
    assert active.schedule_range == 1.75
    g = active.base_gains
    got = (g.kp_pos, g.v_max, g.kp_vel, g.ki_vel, g.gravity_ff_a, g.decel_rad_s2)
    assert got == pytest.approx(BASE)
    assert policy_image.parse_image(img).header.base_gains == pytest.approx(BASE)
    plain = policy_image.pack_image(
        dataclasses.replace(head, schedule_range=0.0, base_gains=policy_image.NO_BASE),
        MODEL,
        lambda data: sign_raw(signing_key, data),
    )
    assert core.load_policy(plain) == 0
    active = core.active_policy()
    assert active is not None and active.schedule_range == 0.0


def test_the_packer_and_the_core_agree_on_every_schedule_field(
    servo: tuple[Any, HalfGainBackend], signing_key: ec.EllipticCurvePrivateKey
) -> None:
    """mm_contract.policy_image refuses exactly the schedule fields the core refuses (REASON_FORMAT) and accepts the
    rest, over the edges of every rule: schedule_range around 0 and 2 and non-finite, base laws PTOS, linear, without
    kp_pos, all 0, negative and non-finite gains. Images are forged by fw_support (no Python-side check).
    """
    policy_image = require("mm_contract.policy_image")
    core, _ = servo
    tiny = struct.unpack("<f", struct.pack("<I", 1))[0]  # the smallest float32 > 0: schedule mode
    ranges = (0.0, -0.0, tiny, 0.5, 1.5, 2.0, ABOVE_2, -tiny, -0.5, math.nan, math.inf, -math.inf)
    bases = (
        BASE,
        LINEAR,
        (0.0,) * 6,
        (0.0, 5.0, 0.1, 1.0, 0.05, 30.0),  # PTOS without kp_pos
        (2.0, 5.0, 0.1, 1.0, 0.05, tiny),  # the smallest deceleration > 0
        (2.0, 5.0, -0.1, 1.0, 0.05, 30.0),
        (2.0, 5.0, 0.1, 1.0, math.nan, 30.0),
        (2.0, 5.0, 0.1, 1.0, 0.05, -1.0),
        (2.0, 5.0, 0.1, 1.0, 0.05, math.inf),
    )
    accepted = refused = 0
    for rho in ranges:
        for base in bases:
            img = image(signing_key, MODEL, schedule_range=rho, base_gains=base)
            reason = core.load_policy(img)
            assert reason in (REASON["NONE"], REASON["FORMAT"]), (rho, base)
            try:
                policy_image.parse_image(img)
                python_accepts = True
            except policy_image.PolicyImageError:
                python_accepts = False
            assert python_accepts == (reason == REASON["NONE"]), (rho, base, reason)
            accepted += python_accepts
            refused += not python_accepts
    # Schedule mode (0 < rho <= 2) takes only the PTOS laws; rho 0 (and -0) any finite gains >= 0.
    assert accepted == 4 * 2 + 2 * 5 and refused == len(ranges) * len(bases) - accepted
