"""Seeded, bounded fuzzing of the real core under AddressSanitizer + UndefinedBehaviorSanitizer
(firmware/core/test/fuzz_core.c, built and run by firmware/tools/fuzz.sh).

The images come from here, signed deterministically (RFC 6979, low-S) with a fixed test key so a run is
reproducible from its seed: genuine ones (good_*, versions 0..3, one schedule) and ones the servo must always
refuse although most carry a valid signature (bad fields under the signature, another key, a high-S twin, a lying
model CRC). The harness mutates and replays them whole and in chunks, then drives the CAN endpoint with random and
hostile frames and ISO-TP sequences, half of the time with authenticated commands on (only its own tagged frames
may pass); see the file's header for the oracles. The counts land in the summary.
"""

from __future__ import annotations

import os
import re
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from mm_testing.fw_support import P256_ORDER, REPO, header, malleate, public_key_bytes

SEED = int(os.environ.get("MM_FUZZ_SEED", "20261122"))
IMAGE_CASES = int(os.environ.get("MM_FUZZ_IMAGE_CASES", "6000"))
CAN_FRAMES = int(os.environ.get("MM_FUZZ_CAN_FRAMES", "1000000"))
BASE = (2.0, 5.0, 0.1, 1.0, 0.05, 30.0)


def _sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    s = min(s, P256_ORDER - s)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _image(key: ec.EllipticCurvePrivateKey, model: bytes, **fields: object) -> bytes:
    signed = header(model, **fields) + model  # type: ignore[arg-type]
    return signed + _sign(key, signed)


def _corpus(directory: Path) -> tuple[Path, list[Path]]:
    key = ec.derive_private_key(0x5EC0_0001, ec.SECP256R1())
    other = ec.derive_private_key(0x5EC0_0002, ec.SECP256R1())
    model_a, model_b = bytes(range(256)) * 3, bytes(range(255, -1, -1)) * 2 + b"tail"
    good_v2 = _image(key, model_b, policy_version=2)
    images: dict[str, bytes] = {
        "good_v0": _image(key, model_a),
        "good_v1": _image(key, model_a, policy_version=1),
        "good_v2": good_v2,
        "good_v3_schedule": _image(key, model_a[:500], policy_version=3, schedule_range=0.3, base_gains=BASE),
        # Valid signatures over images the servo must refuse.
        "bad_obs_dim": _image(key, model_a, obs_dim=7, policy_version=5),
        "bad_schedule_range": _image(key, model_a, schedule_range=2.5, base_gains=BASE, policy_version=5),
        "bad_model_crc": _image(key, model_a, model_crc32=zlib.crc32(model_a) ^ 1, policy_version=5),
        "bad_format_version": _image(key, model_a, version=1, policy_version=5),
        "bad_negative_scale": _image(key, model_a, scales=(3.0, -40.0, 25.0, 2.0, 0.004), policy_version=5),
        "bad_other_key": _image(other, model_a, policy_version=9),
        "bad_high_s": good_v2[:-64] + malleate(good_v2[-64:]),
    }
    pub = directory / "public_key.bin"
    pub.write_bytes(public_key_bytes(key))
    paths = []
    for name, blob in images.items():
        path = directory / f"{name}.mmpl"
        path.write_bytes(blob)
        paths.append(path)
    return pub, paths


def _counts(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", text)}


def test_fuzzed_images_chunks_and_can_frames_never_break_the_core(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    pub, images = _corpus(tmp_path)
    cmd = ["sh", str(REPO / "firmware/tools/fuzz.sh"), str(tmp_path / "build"), str(pub), str(SEED)]
    cmd += [str(IMAGE_CASES), str(CAN_FRAMES), *map(str, images)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert "Sanitizer" not in output and "runtime error" not in output, output[-6000:]
    assert result.returncode == 0, output[-6000:]
    c = _counts(result.stdout)
    report(f"fuzz (seed {SEED}): " + " ".join(line.strip() for line in result.stdout.splitlines()))
    assert (c["image_cases"], c["can_frames"]) == (IMAGE_CASES, CAN_FRAMES)
    oracles = ("wrong_accepts", "last_good_lost", "false_refusals", "floor_violations", "current_violations")
    for oracle in (*oracles, "auth_violations"):
        assert c[oracle] == 0, output[-6000:]
    # The run exercised what it claims: accepts, refusals (rollbacks among them), clean deliveries, transfers.
    assert c["accepted"] > 0 and c["refused"] > 0 and c["rollbacks"] > 0
    assert c["false_refusal_checks"] > 0 and c["isotp_transfers"] > 0
    assert c["max_abs_current_a"] <= c["limit_a"]
    # Authenticated commands (half the CAN campaign): exactly the harness's own tagged frames got through.
    assert c["auth_sent"] > 0 and c["auth_accepted"] == c["auth_sent"] and c["auth_refused"] > 0
