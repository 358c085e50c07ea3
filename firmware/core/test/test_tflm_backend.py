"""The twin's path: the C core runs a real integer policy through a caller-supplied backend, here the Python
TFLite Micro runtime (mm_contract.tflm) behind the ctypes callback, exactly as the ESP32 runs it through
policy_tflm.cc; the core's current command is the policy's action times the image's current limit.
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.observation import ObsScales
from mm_testing.fw_support import public_key_bytes, require

LIMIT_A = 2.0


class TflmBackend:
    """Two TFLite Micro interpreters (the core's double buffer)."""

    def __init__(self, policy_type: type) -> None:
        self._policy_type = policy_type
        self.slots: dict[int, object] = {}

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Load model into slot with the arena the image asks for."""
        self.slots[slot] = self._policy_type(model, arena_bytes=max(arena_bytes, 16 * 1024))
        return True

    def invoke(self, slot: int, observation: list[float]) -> float:
        """Run the slot's model on the 8 features."""
        return float(self.slots[slot](np.asarray(observation, dtype=np.float32))[0])  # type: ignore[operator]


@pytest.mark.slow
def test_core_runs_an_int8_policy_through_tflite_micro(signing_key: ec.EllipticCurvePrivateKey) -> None:
    import mm_firmware_core as fw

    require("mm_learning")
    from mm_contract.tflm import Scheme, TflmPolicy
    from mm_learning.actor import ActorSpec, DenseLayer
    from mm_learning.tflite_convert import convert, to_keras

    from mm_contract import policy_image, signing

    rng = np.random.default_rng(3)
    actor = ActorSpec(
        layers=(
            DenseLayer(rng.normal(0, 0.6, (8, 16)).astype(np.float32), np.zeros(16, np.float32), "relu"),
            DenseLayer(rng.normal(0, 0.6, (16, 1)).astype(np.float32), np.zeros(1, np.float32), "linear"),
        ),
        squash="clip",
        algorithm="PPO",
    )
    model = convert(to_keras(actor), rng.uniform(-1, 1, (300, 8)).astype(np.float32), Scheme.INT8)
    scales = ObsScales(3.0, 40.0, 25.0, LIMIT_A, 0.004)
    header = policy_image.PolicyHeader(model_type=Scheme.INT8.model_type, scales=scales, arena_bytes=4096)
    image = policy_image.pack_image(header, model, lambda data: signing.sign(signing_key, data))

    backend = TflmBackend(TflmPolicy)
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=backend, heartbeat_timeout_s=0.0)
    assert core.load_policy(image) == 0
    reference = TflmPolicy(model, arena_bytes=16 * 1024)
    assert core.command(fw.MODE_POLICY, 2.0) == 0
    currents = []
    for k in range(200):
        out = core.step(encoder_count=(37 * k) % 16384, dt_s=0.001, current_a=0.5)
        expected = float(reference(np.asarray(core.observation(), dtype=np.float32))[0]) * LIMIT_A
        assert out.current_cmd_a == pytest.approx(expected, abs=1e-6)
        currents.append(out.current_cmd_a)
    assert np.ptp(currents) > 0.1  # the policy really acted on the changing observation
