"""ECDSA P-256 signing of policy images (servo contract section 5).

The signature is over SHA-256(header || model) and travels raw as ``r || s`` (32 bytes each, big-endian), the
form mbedTLS verifies without DER parsing. The firmware is configured with the public key as the 65-byte
uncompressed point (``04 || X || Y``) in hex, which :func:`public_key_hex` prints.

Signatures are low-S (``s <= n/2``): ECDSA also accepts ``(r, n - s)`` for the same data, and since the servo's
policy id is the CRC of the whole image (signature included), a second valid form would give the same content a
second id. :func:`sign` normalises, and :func:`verify` (like the firmware) refuses a high-S signature.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from mm_contract.errors import SignatureError
from mm_contract.policy_image import SIGNATURE_SIZE, parse_image

_COORD_BYTES = SIGNATURE_SIZE // 2
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n, the order of the P-256 group."""
HALF_ORDER = P256_ORDER // 2
PRIVATE_KEY_NAME = "policy_signing_key.pem"
PUBLIC_KEY_NAME = "policy_signing_key.pub.pem"


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """Create a new P-256 key pair as PEM files in ``directory``; the private key file is mode 0600.

    Returns:
        (private key path, public key path).

    Raises:
        SignatureError: if a key already exists there (a new key would orphan every servo configured with the
            old public key, so replacing one is a deliberate manual step).
    """
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / PRIVATE_KEY_NAME, directory / PUBLIC_KEY_NAME
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        # O_EXCL + mode at creation: the private key is never readable by others, not even briefly.
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        msg = f"{private_path} already exists; move it away first if you really want a new signing key"
        raise SignatureError(msg) from exc
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load a PEM P-256 private key (raises :class:`SignatureError` if missing or not a P-256 key)."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"cannot load private key {path}: {exc}; create one with `mm keygen`") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"{path} is not an ECDSA P-256 private key")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Load a PEM P-256 public key (raises :class:`SignatureError` if missing or not a P-256 key)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot load public key {path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SignatureError(f"{path} is not an ECDSA P-256 public key")
    return key


def public_key_hex(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> str:
    """The public key as the 65-byte uncompressed point ``04 || X || Y`` in lower-case hex (130 chars)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()


def sign(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 signature of SHA-256(``data``) as raw ``r || s`` (64 bytes)."""
    r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
    if s > HALF_ORDER:
        s = P256_ORDER - s  # the low-S form of the same signature: one valid encoding per signature
    return r.to_bytes(_COORD_BYTES, "big") + s.to_bytes(_COORD_BYTES, "big")


def verify(public_key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> None:
    """Check a raw low-S ``r || s`` signature of SHA-256(``data``); raises :class:`SignatureError` if it fails."""
    if len(signature) != SIGNATURE_SIZE:
        raise SignatureError(f"signature is {len(signature)} bytes, expected raw r || s of {SIGNATURE_SIZE}")
    r = int.from_bytes(signature[:_COORD_BYTES], "big")
    s = int.from_bytes(signature[_COORD_BYTES:], "big")
    if s > HALF_ORDER:
        msg = "signature has a high S (s > n/2): the servo accepts only the low-S form; re-sign the image"
        raise SignatureError(msg)
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        msg = "signature does not verify: the image was altered or signed with a different key"
        raise SignatureError(msg) from exc


def verify_image(public_key: ec.EllipticCurvePublicKey, image: bytes) -> None:
    """Parse ``image`` (structure, sizes, model CRC) and verify its signature, as the firmware does."""
    parsed = parse_image(image)
    verify(public_key, parsed.signed_bytes, parsed.signature)
