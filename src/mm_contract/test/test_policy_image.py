"""Policy images (servo contract section 5): packed images parse back identically; every inconsistency refused."""

from __future__ import annotations

import math
import struct
import zlib

import pytest
from mm_contract.errors import PolicyImageError
from mm_contract.observation import ObsScales
from mm_contract.policy_image import HEADER_SIZE, ModelType, PolicyHeader, pack_image, parse_image, policy_crc32
from mm_testing.paths import REPO

MODEL = bytes(range(256)) * 3
SIGNATURE = bytes(range(64))


def _image(model: bytes = MODEL, model_type: ModelType = ModelType.INT16X8) -> bytes:
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    return pack_image(PolicyHeader(model_type=model_type, scales=scales, arena_bytes=3552), model, lambda _: SIGNATURE)


def test_image_parses_back_identically() -> None:
    image = _image()
    parsed = parse_image(image)
    assert parsed.model == MODEL and parsed.signature == SIGNATURE and parsed.raw == image
    assert parsed.header.model_size == len(MODEL) and parsed.header.model_crc32 == zlib.crc32(MODEL)
    assert parsed.header.arena_bytes == 3552 and parsed.header.model_type is ModelType.INT16X8
    assert parsed.header.scales.fine_gain_per_rad == 25.0
    # Re-packing the parsed header reproduces the image byte for byte.
    assert pack_image(parsed.header, parsed.model, lambda _: parsed.signature) == image
    assert parsed.signed_bytes == image[:-64]


def test_layout_matches_the_contract_table() -> None:
    image = _image()
    assert image[:4] == b"MMPL"
    assert struct.unpack_from("<HHBBB", image, 4) == (2, HEADER_SIZE, 2, 8, 1)
    assert HEADER_SIZE == 80
    assert struct.unpack_from("<I", image, 12)[0] == len(MODEL)
    assert struct.unpack_from("<5f", image, 16)[1] == 40.0
    assert struct.unpack_from("<II", image, 36) == (3552, zlib.crc32(MODEL))
    # A plain policy (not schedule mode): schedule_range, the six base gains and both reserved words are 0.
    assert struct.unpack_from("<7f", image, 44) == (0.0,) * 7
    assert struct.unpack_from("<II", image, 72) == (0, 0)
    assert len(image) == 80 + len(MODEL) + 64


BASE = (2.0, 5.0, 0.125, 1.0, 0.5, 30.0)  # PTOS: decel 30 rad/s², kp_pos 2 (1/s)
LINEAR = (2.0, 5.0, 0.125, 1.0, 0.5, 0.0)  # a linear PID: no braking deceleration to schedule
F32_ABOVE_2 = struct.unpack("<f", struct.pack("<I", struct.unpack("<I", struct.pack("<f", 2.0))[0] + 1))[0]


def _schedule_header(schedule_range: float = 0.25, base_gains: tuple[float, ...] = BASE) -> PolicyHeader:
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    return PolicyHeader(
        ModelType.INT8,
        scales,
        arena_bytes=3552,
        schedule_range=schedule_range,
        base_gains=base_gains,  # type: ignore[arg-type]
    )


def test_schedule_fields_sit_at_offsets_44_to_76_and_round_trip() -> None:
    image = pack_image(_schedule_header(), MODEL, lambda _: SIGNATURE)
    assert struct.unpack_from("<f", image, 44)[0] == 0.25
    assert struct.unpack_from("<6f", image, 48) == BASE
    assert struct.unpack_from("<II", image, 72) == (0, 0)
    parsed = parse_image(image)
    assert parsed.header.schedule_range == 0.25 and parsed.header.base_gains == BASE
    assert pack_image(parsed.header, parsed.model, lambda _: SIGNATURE) == image


@pytest.mark.parametrize(
    ("schedule_range", "base_gains", "reason"),
    [
        (F32_ABOVE_2, BASE, r"schedule_range=2\.00000023\d* must be in \[0, 2\.0\]"),
        (2.5, BASE, "schedule_range=2.5 must be in"),
        (-0.1, BASE, "schedule_range=-0.1"),
        (-1e-30, BASE, "schedule_range=-1e-30"),
        (math.nan, BASE, "schedule_range=nan must be in"),
        (math.inf, BASE, "schedule_range=inf must be in"),
        (-math.inf, BASE, "schedule_range=-inf must be in"),
        (0.3, (2.0, 5.0, -0.1, 1.0, 0.0, 30.0), "kp_vel=-0.1"),
        (0.0, (2.0, 5.0, -0.1, 1.0, 0.0, 0.0), "kp_vel=-0.1"),
        (0.0, (2.0, math.inf, 0.1, 1.0, 0.0, 0.0), "v_max=inf must be"),
        (0.3, (2.0, 5.0, 0.1, math.nan, 0.0, 30.0), "ki_vel=nan must be"),
        (0.0, (2.0, 5.0, 0.1, 1.0, 0.0, -1.0), "decel_rad_s2=-1.0 must be"),
        (0.3, (0.0, 5.0, 0.1, 1.0, 0.0, 30.0), "PTOS"),
        (0.3, LINEAR, "needs a PTOS base law: decel_rad_s2=0.0 must be > 0"),
        (1e-45, LINEAR, "needs a PTOS base law"),  # the smallest float32 > 0 is schedule mode
        (2.0, (0.0,) * 6, "needs a PTOS base law"),
        (0.3, (2.0, 5.0, 0.1), "base_gains has 3 values"),
    ],
)
def test_schedule_fields_the_servo_refuses_are_refused(
    schedule_range: float, base_gains: tuple[float, ...], reason: str
) -> None:
    """The firmware's rules (mm_policy_image.c schedule_valid): schedule_range finite and in [0, 2], base gains finite
    and >= 0, and in schedule mode a PTOS base law (decel_rad_s2 > 0, kp_pos > 0);
    firmware/core/test/test_policy_image.py shows the core refusing the same images.
    """
    header = _schedule_header(schedule_range, base_gains)
    with pytest.raises(PolicyImageError, match=reason):
        pack_image(header, MODEL, lambda _: SIGNATURE)
    if len(base_gains) == 6:
        # A forged header with the same fields is refused when parsed, too (the message shows the float32 value).
        image = bytearray(_image())
        struct.pack_into("<f6f", image, 44, schedule_range, *base_gains)
        with pytest.raises(PolicyImageError, match=r"^(schedule_range=|schedule mode|base gain)"):
            parse_image(bytes(image))


@pytest.mark.parametrize(
    ("schedule_range", "base_gains"),
    [
        (0.0, (0.0, 5.0, 0.1, 1.0, 0.0, 30.0)),  # PTOS without kp_pos: no base law runs
        (0.0, LINEAR),
        (0.0, (0.0,) * 6),
        (-0.0, LINEAR),  # -0 is 0 to the servo (not below 0, not schedule mode)
        (1e-50, LINEAR),  # rounds to float32 0: what the servo reads is a plain policy
        (1e-45, BASE),
        (0.5, BASE),
        (1.5, BASE),
        (2.0, BASE),
        (2.00000001, BASE),  # rounds to float32 2.0, which the servo accepts
        (2.0, (1e-3, 1e-3, 0.0, 0.0, 0.0, 1e-3)),
    ],
)
def test_schedule_fields_the_servo_accepts_are_accepted(schedule_range: float, base_gains: tuple[float, ...]) -> None:
    """The same rules on the edges the servo accepts, judged on the float32 values the header carries."""
    image = pack_image(_schedule_header(schedule_range, base_gains), MODEL, lambda _: SIGNATURE)
    parsed = parse_image(image)
    assert parsed.header.schedule_range == struct.unpack("<f", struct.pack("<f", schedule_range))[0]
    assert parsed.header.base_gains == struct.unpack("<6f", struct.pack("<6f", *base_gains))


def test_the_schedule_range_limit_is_the_firmwares() -> None:
    from mm_contract.policy_image import MAX_SCHEDULE_RANGE

    header = (REPO / "firmware/core/include/mm_core/mm_policy_image.h").read_text()
    assert f"#define MM_MAX_SCHEDULE_RANGE {MAX_SCHEDULE_RANGE}f" in header


def test_the_policy_decimation_travels_in_byte_11() -> None:
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    header = PolicyHeader(ModelType.INT16X8, scales, arena_bytes=3552, policy_decimation=10)
    image = pack_image(header, MODEL, lambda _: SIGNATURE)
    assert image[11] == 10 and parse_image(image).header.policy_decimation == 10
    assert _image()[11] == 0 and parse_image(_image()).header.policy_decimation == 0, "0: the servo's default"
    with pytest.raises(PolicyImageError, match="policy_decimation=256 must be in"):
        pack_image(PolicyHeader(ModelType.INT16X8, scales, 3552, policy_decimation=256), MODEL, lambda _: SIGNATURE)


def test_policy_crc32_is_the_crc_of_the_whole_image() -> None:
    image = _image()
    assert policy_crc32(image) == zlib.crc32(image) == parse_image(image).policy_crc32


def _patched(offset: int, fmt: str, value: object) -> bytes:
    image = bytearray(_image())
    struct.pack_into(fmt, image, offset, value)
    return bytes(image)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (_patched(0, "<4s", b"MMPX"), "magic"),
        (_patched(4, "<H", 1), "format_version"),
        (_patched(4, "<H", 3), "format_version"),
        (_patched(6, "<H", 64), "header_size"),
        (_patched(8, "<B", 7), "model_type"),
        (_patched(9, "<B", 9), "obs_dim"),
        (_patched(12, "<I", len(MODEL) + 1), "model_size"),
        (_patched(40, "<I", 0), "model_crc32"),
        (_patched(HEADER_SIZE + 10, "<B", 0xFF), "model_crc32"),
        (_image()[:-1], "truncated"),
        (_image()[:100], "shorter than header"),
    ],
)
def test_inconsistent_images_are_refused_naming_the_field(image: bytes, reason: str) -> None:
    with pytest.raises(PolicyImageError, match=reason):
        parse_image(image)


def test_image_above_the_maximum_size_is_refused() -> None:
    with pytest.raises(PolicyImageError, match="above the maximum"):
        parse_image(_image(), max_image_bytes=len(_image()) - 1)


def test_signer_must_return_a_raw_64_byte_signature() -> None:
    scales = ObsScales(1.0, 1.0, 1.0, 1.0, 0.001)
    with pytest.raises(PolicyImageError, match="raw 64-byte"):
        pack_image(PolicyHeader(ModelType.INT8, scales, 1024), MODEL, lambda _: b"\x30" * 70)


def test_the_policy_version_sits_at_offset_72_and_round_trips() -> None:
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    header = PolicyHeader(ModelType.INT16X8, scales, arena_bytes=3552, policy_version=41)
    image = pack_image(header, MODEL, lambda _: SIGNATURE)
    assert struct.unpack_from("<II", image, 72) == (41, 0)
    assert parse_image(image).header.policy_version == 41
    # The packing step's version argument (what the registry supplies) wins over the header's.
    versioned = pack_image(header, MODEL, lambda _: SIGNATURE, version=0xFFFFFFFF)
    assert parse_image(versioned).header.policy_version == 0xFFFFFFFF
    assert parse_image(_image()).header.policy_version == 0  # default: unversioned
    for bad in (-1, 1 << 32):
        with pytest.raises(PolicyImageError, match="policy_version"):
            pack_image(header, MODEL, lambda _: SIGNATURE, version=bad)


def test_the_version_is_covered_by_the_signature() -> None:
    signed: list[bytes] = []
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    pack_image(PolicyHeader(ModelType.INT8, scales, 1024), MODEL, lambda d: signed.append(d) or SIGNATURE, version=5)
    assert signed[0][72:76] == (5).to_bytes(4, "little")
