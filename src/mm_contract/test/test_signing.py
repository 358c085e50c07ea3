"""ECDSA P-256 policy signing: key files, the firmware key string, verification and tampering."""

from __future__ import annotations

import functools
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.errors import SignatureError
from mm_contract.observation import ObsScales
from mm_contract.policy_image import ModelType, PolicyHeader, pack_image
from mm_contract.signing import (
    HALF_ORDER,
    P256_ORDER,
    generate_keypair,
    load_private_key,
    load_public_key,
    public_key_hex,
    sign,
    verify,
    verify_image,
)

MODEL = b"\x1c\x00\x00\x00TFL3" + bytes(200)


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
    private_path, public_path = generate_keypair(tmp_path_factory.mktemp("keys"))
    return load_private_key(private_path), load_public_key(public_path)


def _image(key: ec.EllipticCurvePrivateKey) -> bytes:
    header = PolicyHeader(ModelType.INT16X8, ObsScales(3.0, 40.0, 25.0, 2.0, 0.004), arena_bytes=3552)
    return pack_image(header, MODEL, functools.partial(sign, key))


def test_keygen_writes_a_private_key_only_the_owner_can_read(tmp_path) -> None:
    private_path, public_path = generate_keypair(tmp_path)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in public_path.read_bytes()
    with pytest.raises(SignatureError, match="already exists"):
        generate_keypair(tmp_path)


def test_public_key_string_is_the_uncompressed_point(keys) -> None:
    private, public = keys
    text = public_key_hex(public)
    assert len(text) == 130 and text.startswith("04") and text == public_key_hex(private)
    numbers = public.public_numbers()
    assert int(text[2:66], 16) == numbers.x and int(text[66:], 16) == numbers.y


def test_signature_is_raw_r_s_and_verifies(keys) -> None:
    private, public = keys
    signature = sign(private, b"header||model")
    assert len(signature) == 64
    verify(public, b"header||model", signature)
    verify_image(public, _image(private))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda img: img[:16] + b"\x00\x00\x80\x40" + img[20:], id="header scale changed"),
        pytest.param(lambda img: img[:-1] + bytes([img[-1] ^ 1]), id="signature bit flipped"),
        pytest.param(lambda img: img[:-64] + bytes(64), id="signature zeroed"),
    ],
)
def test_tampered_image_fails_verification(keys, tamper) -> None:
    private, public = keys
    with pytest.raises(SignatureError, match="does not verify"):
        verify_image(public, tamper(_image(private)))


def test_image_signed_by_another_key_fails(keys) -> None:
    _, public = keys
    with pytest.raises(SignatureError, match="different key"):
        verify_image(public, _image(ec.generate_private_key(ec.SECP256R1())))


def test_loading_a_missing_or_wrong_key_says_what_to_do(tmp_path) -> None:
    with pytest.raises(SignatureError, match="mm keygen"):
        load_private_key(tmp_path / "missing.pem")
    _, public_path = generate_keypair(tmp_path)
    with pytest.raises(SignatureError, match="cannot load private key"):
        load_private_key(public_path)


def _malleate(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (P256_ORDER - s).to_bytes(32, "big")


def test_signatures_are_low_s_and_the_malleated_twin_is_refused(keys) -> None:
    """(r, n - s) is valid ECDSA for the same data; only the low-S form is produced and accepted, so one signed
    content has one image and one policy id (the servo's id is the CRC of the whole image).
    """
    private, public = keys
    for k in range(40):  # each signature has a fresh nonce: about half come out high-S before normalising
        data = bytes([k]) * 33
        sig = sign(private, data)
        assert int.from_bytes(sig[32:], "big") <= HALF_ORDER
        verify(public, data, sig)
        with pytest.raises(SignatureError, match="high S"):
            verify(public, data, _malleate(sig))
    image = _image(private)
    twin = image[:-64] + _malleate(image[-64:])
    with pytest.raises(SignatureError, match="high S"):
        verify_image(public, twin)
