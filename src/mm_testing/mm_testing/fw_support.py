"""Shared by the firmware tests: paths, a small contract section 5 image packer (the project's packer is
mm_contract.policy_image) and a trivial inference backend.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from mm_testing.paths import REPO

BUILD_DIR = Path(os.environ.get("MM_FIRMWARE_BUILD_DIR", REPO / "build" / "mm_firmware_core"))

# Format 2 (contract section 5): ... arena_bytes, model_crc32, schedule_range, 6 base gains, 2 reserved.
HEADER = struct.Struct("<4sHHBBBBI5fIIf6fII")
SCALES = (3.0, 40.0, 25.0, 2.0, 0.004)  # pos_scale_rad, vel_scale_rad_s, fine_gain_per_rad, current_limit_a, tau_s


def public_key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed point the firmware is configured with."""
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 over SHA-256, raw r || s (32 bytes each, big-endian), low-S as the firmware requires."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    s = min(s, P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def malleate(signature: bytes) -> bytes:
    """The other ECDSA encoding of the same signature: (r, n - s)."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")


def header(
    model: bytes,
    *,
    obs_dim: int = 8,
    action_dim: int = 1,
    magic: bytes = b"MMPL",
    version: int = 2,
    scales: tuple[float, ...] = SCALES,
    model_crc32: int | None = None,
    policy_decimation: int = 0,
    schedule_range: float = 0.0,
    base_gains: tuple[float, ...] = (0.0,) * 6,
    policy_version: int = 0,
) -> bytes:
    """The 80-byte header for model; keyword arguments forge individual fields."""
    crc = zlib.crc32(model) if model_crc32 is None else model_crc32
    return HEADER.pack(
        magic,
        version,
        HEADER.size,
        1,
        obs_dim,
        action_dim,
        policy_decimation,
        len(model),
        *scales,
        3000,
        crc,
        schedule_range,
        *base_gains,
        policy_version,
        0,
    )


def image(key: ec.EllipticCurvePrivateKey, model: bytes, **fields: object) -> bytes:
    """A signed image: header || model || signature."""
    signed = header(model, **fields) + model  # type: ignore[arg-type]
    return signed + sign_raw(key, signed)


class HalfGainBackend:
    """A trivial inference backend: action = 0.5 * coarse error; records loads."""

    def __init__(self) -> None:
        self.loaded: dict[int, bytes] = {}
        self.refuse = False

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Keep the model bytes per slot; refuse when told to."""
        if self.refuse:
            return False
        self.loaded[slot] = model
        return True

    def invoke(self, slot: int, observation: list[float]) -> float:
        """0.5 x the coarse error feature."""
        return 0.5 * observation[0]


def recorded_run(ticks: int = 3000, dt_s: float = 0.001) -> list[dict[str, float]]:
    """A deterministic recording of what a servo senses: a shaft turning several times back and forth (wrapping
    the encoder), a measured current, and position targets/reference velocities that change every 0.4 s.
    """
    import math

    rows = []
    for k in range(ticks):
        t = k * dt_s
        rows.append(
            {
                "angle_rad": 0.3 + 4.0 * math.sin(2 * math.pi * 0.7 * t) + 2.5 * t,
                "current_a": 1.5 * math.sin(2 * math.pi * 3.0 * t) + 0.2,
                "target_rad": (-2.0, 5.0, 0.5, 9.0, 3.3, -1.0, 7.0, 2.0)[(k // 400) % 8],
                "target_velocity_rad_s": (0.0, 12.0, -60.0, 3.0)[(k // 400) % 4],
            }
        )
    return rows


KCONFIG = REPO / "firmware" / "esp32" / "main" / "Kconfig.projbuild"


def kconfig_default(symbol: str) -> int:
    """The numeric default of the ESP32 app's Kconfig option `symbol` (e.g. MM_STATE_DECIMATION)."""
    match = re.search(rf"config {symbol}\n(?:\s+(?!config)\S.*\n)*?\s+default (\d+)\n", KCONFIG.read_text())
    assert match is not None, f"{symbol} has no default in {KCONFIG}"
    return int(match.group(1))


def require(module: str) -> ModuleType:
    """Import a workspace package the test compares against; fail (not skip) when it is missing, so a broken
    build can never turn a parity test into a silent skip.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} is not importable ({exc}): run `make build` and `source tools/env.sh`", pytrace=False)
