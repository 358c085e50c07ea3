"""Quantised policies made with mm_learning's own converter for the driver tests (TensorFlow: seconds each).

- `pd_policy`: a hand-built actor computing a clipped PD law on the contract observation (coarse + fine
  error, minus velocity), so MoveTo through the deployed int16x8 policy is expected to settle. It is not a
  trained policy: training takes minutes, and these tests check the driver, not learning.
- `sized_policy`: random weights with hidden layers sized so the signed image is about `size` bytes.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

PD_GAINS = (1.0, 0.1, 5.0)  # coarse error, fine error, velocity (per observation feature)


def _pack(key: ec.EllipticCurvePrivateKey, layers: list[tuple[np.ndarray, str]], seed: int) -> bytes:
    from mm_contract.observation import ObsScales
    from mm_contract.profiles import load_profile
    from mm_contract.tflm import Scheme
    from mm_learning.actor import ActorSpec, DenseLayer
    from mm_learning.tflite_convert import convert, to_keras

    from mm_contract import policy_image, signing

    actor = ActorSpec(
        layers=tuple(DenseLayer(w.astype(np.float32), np.zeros(w.shape[1], np.float32), act) for w, act in layers),
        squash="clip",
        algorithm="PPO",
    )
    rng = np.random.default_rng(seed)
    model = convert(to_keras(actor), rng.uniform(-1, 1, (300, 8)).astype(np.float32), Scheme.INT16X8)
    scales = ObsScales.from_profile(load_profile("mm_v3"))
    header = policy_image.PolicyHeader(model_type=Scheme.INT16X8.model_type, scales=scales, arena_bytes=4096)
    return policy_image.pack_image(header, model, lambda data: signing.sign(key, data))


def pd_policy(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Signed image of the PD actor: a = clip(c·coarse + f·fine − d·velocity) as relu(z) − relu(−z)."""
    coarse, fine, velocity = PD_GAINS
    w = np.zeros((8, 1))
    w[0, 0], w[1, 0], w[2, 0] = coarse, fine, -velocity
    return _pack(key, [(np.hstack([w, -w]), "relu"), (np.array([[1.0], [-1.0]]), "linear")], seed=1)


def sized_policy(key: ec.EllipticCurvePrivateKey, hidden: int, seed: int = 2) -> bytes:
    """Signed image of a random [hidden, hidden] actor."""
    rng = np.random.default_rng(seed)
    shapes = [(8, hidden, "relu"), (hidden, hidden, "relu"), (hidden, 1, "linear")]
    return _pack(key, [(rng.normal(0, 0.3, (i, o)), act) for i, o, act in shapes], seed=seed)
