"""Policy image security through the C core (servo contract section 5): anti-rollback on policy_version (offset 72)
and low-S signatures only, so one signed content has exactly one accepted image and one policy id.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.observation import ObsScales
from mm_testing.fw_support import HEADER, HalfGainBackend, image, malleate, public_key_bytes, require, sign_raw

MODEL = bytes(range(256)) * 3
ACCEPTED, REJECTED = 1, 2
NONE, SIGNATURE, ROLLBACK = 0, 4, 9


def _servo(key: ec.EllipticCurvePrivateKey, **config: int) -> Any:
    import mm_firmware_core as fw

    return fw.ServoCore(public_key=public_key_bytes(key), backend=HalfGainBackend(), heartbeat_timeout_s=0.0, **config)


def _deploy_chunked(core: Any, img: bytes, transfer_id: int) -> tuple[int, int]:
    """Send img in 200-byte chunks; returns the final ack's (status, reason)."""
    for index, off in enumerate(range(0, len(img), 200)):
        core.policy_chunk(
            transfer_id=transfer_id,
            total_size=len(img),
            image_crc32=zlib.crc32(img),
            index=index,
            chunk_size=200,
            data=img[off : off + 200],
        )
    ack = core.policy_ack()
    return int(ack.status), int(ack.reason)


def test_policy_version_is_decoded_from_offset_72(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core = _servo(signing_key)
    img = image(signing_key, MODEL, policy_version=0x01020304)
    assert img[72:76] == (0x01020304).to_bytes(4, "little")
    assert core.load_policy(img) == NONE
    active = core.active_policy()
    assert active is not None and active.policy_version == 0x01020304
    assert core.policy_version_floor() == 0x01020304


def test_old_new_old_refuses_the_rollback_and_keeps_the_new_policy(signing_key: ec.EllipticCurvePrivateKey) -> None:
    import mm_firmware_core as fw

    core = _servo(signing_key)
    old = image(signing_key, MODEL, policy_version=1)
    new = image(signing_key, MODEL[::-1], policy_version=2)
    assert _deploy_chunked(core, old, 11) == (ACCEPTED, NONE)
    assert core.policy_version_floor() == 1
    assert _deploy_chunked(core, new, 12) == (ACCEPTED, NONE)
    assert core.policy_version_floor() == 2
    assert core.command(fw.MODE_POLICY, 3.0) == 0
    # The old image is genuinely signed, yet refused as a rollback; the new one keeps running.
    assert _deploy_chunked(core, old, 13) == (REJECTED, ROLLBACK)
    assert core.state().policy_crc32 == zlib.crc32(new)
    assert core.policy_ack().active_policy_crc32 == zlib.crc32(new)
    assert core.policy_version_floor() == 2
    assert core.step(encoder_count=0, dt_s=0.001).current_cmd_a == pytest.approx(1.0)
    assert core.state().mode == fw.MODE_POLICY
    # Direct loads (the boot path) obey the same rule; unversioned (0) is below any version.
    assert core.load_policy(old) == ROLLBACK
    assert core.load_policy(image(signing_key, MODEL)) == ROLLBACK
    # Equal version: redeploying the same release stays possible.
    assert core.load_policy(new) == NONE
    assert _deploy_chunked(core, new, 14) == (ACCEPTED, NONE)
    assert core.state().policy_crc32 == zlib.crc32(new)


def test_the_floor_survives_a_reboot_through_the_config(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """What the ESP32 app does with NVS: read the floor after a commit, pass it back at the next boot."""
    first = _servo(signing_key)
    assert first.load_policy(image(signing_key, MODEL, policy_version=7)) == NONE
    stored = first.policy_version_floor()
    rebooted = _servo(signing_key, policy_version_floor=stored)
    assert rebooted.policy_version_floor() == 7
    assert rebooted.load_policy(image(signing_key, MODEL, policy_version=6)) == ROLLBACK
    assert rebooted.state().policy_crc32 == 0
    assert rebooted.load_policy(image(signing_key, MODEL, policy_version=7)) == NONE


def test_unversioned_images_work_until_a_versioned_one_was_accepted(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core = _servo(signing_key)
    assert core.load_policy(image(signing_key, MODEL)) == NONE
    assert core.load_policy(image(signing_key, MODEL[::-1])) == NONE
    assert core.policy_version_floor() == 0


def test_a_refused_image_never_raises_the_floor(signing_key: ec.EllipticCurvePrivateKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    core = _servo(signing_key)
    assert core.load_policy(image(other, MODEL, policy_version=100)) == SIGNATURE
    assert core.policy_version_floor() == 0
    assert core.load_policy(image(signing_key, MODEL, policy_version=1)) == NONE


def test_registry_versions_deploy_in_order_and_refuse_the_rollback(
    tmp_path: Path, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    """The registry signs max(existing) + 1 into each new policy; an older registry entry is then refused."""
    policy_image = require("mm_contract.policy_image")
    registry_mod = require("mm_contract.registry")
    signing = require("mm_contract.signing")
    sign = functools.partial(signing.sign, signing_key)
    head = policy_image.PolicyHeader(
        model_type=policy_image.ModelType.INT8, scales=ObsScales(3.0, 40.0, 25.0, 2.0, 0.004), arena_bytes=2800
    )
    registry = registry_mod.Registry(tmp_path / "reg")
    a = registry.add(policy_image.pack_image(head, MODEL, sign), {"created_utc": "1"}, sign=sign)
    b = registry.add(policy_image.pack_image(head, MODEL[::-1], sign), {"created_utc": "2"}, sign=sign)
    assert (a.policy_version, b.policy_version) == (1, 2)
    core = _servo(signing_key)
    assert core.load_policy(a.image()) == NONE
    assert core.load_policy(b.image()) == NONE
    assert core.load_policy(a.image()) == ROLLBACK
    assert core.state().policy_crc32 == b.policy_crc32


def test_a_malleated_signature_is_refused_and_yields_no_second_id(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """(r, n - s) is mathematically valid ECDSA; the core takes only the low-S form, so the same signed content
    never becomes a second accepted image with a second policy id.
    """
    import mm_firmware_core as fw

    core = _servo(signing_key)
    img = image(signing_key, MODEL)
    signed, sig = img[:-64], img[-64:]
    twin = signed + malleate(sig)
    assert twin != img and zlib.crc32(twin) != zlib.crc32(img)
    assert core.load_policy(img) == NONE
    assert core.command(fw.MODE_POLICY, 3.0) == 0
    assert core.load_policy(twin) == SIGNATURE
    assert _deploy_chunked(core, twin, 21) == (REJECTED, SIGNATURE)
    assert core.state().policy_crc32 == zlib.crc32(img)
    # On a fresh servo the malleated form is refused too: it is never an id of its own.
    fresh = _servo(signing_key)
    assert fresh.load_policy(twin) == SIGNATURE
    assert fresh.state().policy_crc32 == 0


def test_high_s_is_refused_whatever_the_signing_produced(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """Many signatures: every low-S one verifies, every high-S twin is refused (covers s near n/2 statistically)."""
    core = _servo(signing_key)
    for k in range(12):
        model = bytes([k]) * 100
        signed = HEADER.pack(b"MMPL", 2, 80, 1, 8, 1, 0, len(model), 3.0, 40.0, 25.0, 2.0, 0.004, 3000,
                             zlib.crc32(model), 0.0, *(0.0,) * 6, 0, 0) + model  # fmt: skip
        sig = sign_raw(signing_key, signed)
        assert core.load_policy(signed + malleate(sig)) == SIGNATURE, k
        assert core.load_policy(signed + sig) == NONE, k
