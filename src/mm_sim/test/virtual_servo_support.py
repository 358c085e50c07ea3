"""Shared by the virtual servo tests (no tests here): a small quantised policy, signed as the learner signs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec


@dataclass(frozen=True)
class Signed:
    """A signing key, its firmware public key in hex, a quantised model and a packed, signed image of it."""

    key: ec.EllipticCurvePrivateKey
    public_hex: str
    model: bytes
    image: bytes

    def pack(self, *, arena_bytes: int = 4096, model: bytes | None = None, key: Any = None) -> bytes:
        """Another image of (by default) the same model, signed with `key` (default: this key)."""
        return _pack(model or self.model, key or self.key, arena_bytes)


def _pack(model: bytes, key: ec.EllipticCurvePrivateKey, arena_bytes: int) -> bytes:
    from mm_contract.observation import ObsScales
    from mm_contract.profiles import load_profile
    from mm_contract.tflm import Scheme

    from mm_contract import policy_image, signing

    scales = ObsScales.from_profile(load_profile("mm_v3"))
    header = policy_image.PolicyHeader(model_type=Scheme.INT8.model_type, scales=scales, arena_bytes=arena_bytes)
    return policy_image.pack_image(header, model, lambda data: signing.sign(key, data))


def signed_policy(seed: int) -> Signed:
    """A random [16] relu int8 actor converted by mm_learning's converter and signed with a fresh key.

    TensorFlow converts it: a few seconds, so callers keep it in a module-scoped fixture.
    """
    from mm_contract.tflm import Scheme
    from mm_learning.actor import ActorSpec, DenseLayer
    from mm_learning.tflite_convert import convert, to_keras

    from mm_contract import signing

    rng = np.random.default_rng(seed)
    actor = ActorSpec(
        layers=(
            DenseLayer(rng.normal(0, 0.6, (8, 16)).astype(np.float32), np.zeros(16, np.float32), "relu"),
            DenseLayer(rng.normal(0, 0.6, (16, 1)).astype(np.float32), np.zeros(1, np.float32), "linear"),
        ),
        squash="clip",
        algorithm="PPO",
    )
    model = convert(to_keras(actor), rng.uniform(-1, 1, (300, 8)).astype(np.float32), Scheme.INT8)
    key = ec.generate_private_key(ec.SECP256R1())
    return Signed(key, signing.public_key_hex(key), model, _pack(model, key, 4096))
