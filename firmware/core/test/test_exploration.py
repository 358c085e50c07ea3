"""POLICY-mode exploration noise through the Python binding (servo contract section 4): the transitions carry
the applied, noisy action with FLAG_POLICY clear; with std 0 they carry exactly the policy's output with
FLAG_POLICY set; the noise is reproducible from exploration_seed; bad fields are refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import HalfGainBackend, image, public_key_bytes

MODEL = bytes(range(200))
TICKS = 240  # ten TransitionBatch messages


def _core(key: ec.EllipticCurvePrivateKey, seed: int = 0) -> Any:
    import mm_firmware_core as fw

    core = fw.ServoCore(
        public_key=public_key_bytes(key), backend=HalfGainBackend(), heartbeat_timeout_s=0.0, exploration_seed=seed
    )
    assert core.load_policy(image(key, MODEL)) == 0
    return core


def _transitions(core: Any, std: float, tau_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run POLICY mode to 2 rad on a turning shaft; (observations, actions, flags) of the streamed samples."""
    import mm_firmware_core as fw

    status = core.command(fw.MODE_POLICY, 2.0, stream_transitions=True, exploration_std=std, exploration_tau_s=tau_s)
    assert status == 0
    obs, actions, flags = [], [], []
    for k in range(TICKS):
        core.step(encoder_count=(20 * k) % fw.ENCODER_COUNTS, dt_s=0.001)
        batch = core.pop_batch()
        obs += [batch.observations[i * 8 : (i + 1) * 8] for i in range(batch.count)]
        actions += batch.actions[: batch.count]
        flags += batch.flags[: batch.count]
    assert len(actions) == TICKS
    return np.array(obs, dtype=np.float32), np.array(actions, dtype=np.float32), np.array(flags)


def _policy_output(obs: np.ndarray) -> np.ndarray:
    """What the deterministic policy (HalfGainBackend) returns for each observation, as the core stores it."""
    return np.clip(np.float32(0.5) * obs[:, 0], -1.0, 1.0).astype(np.float32)


def test_noisy_transitions_carry_the_applied_action_without_the_policy_flag(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    import mm_firmware_core as fw

    policy_flag = fw.constant("MM_SAMPLE_POLICY")
    core = _core(signing_key, seed=11)
    obs, actions, flags = _transitions(core, std=0.3, tau_s=0.0)
    noise = actions - _policy_output(obs)
    assert np.all(noise != 0.0), "every applied action differs from the policy's output"
    assert np.all(np.abs(actions) <= 1.0)
    assert not np.any(flags & policy_flag)
    assert abs(float(np.std(noise)) - 0.3) < 0.3 * 4 / math.sqrt(2 * TICKS)  # ~4 standard errors
    assert core.state().exploration_std == pytest.approx(0.3)
    # The observation's previous action is the applied one.
    assert np.array_equal(obs[1:, 6], actions[:-1])


def test_zero_std_transitions_are_exactly_the_policy_output_with_the_policy_flag(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    import mm_firmware_core as fw

    policy_flag = fw.constant("MM_SAMPLE_POLICY")
    core = _core(signing_key, seed=11)
    obs, actions, flags = _transitions(core, std=0.0, tau_s=0.05)
    assert np.array_equal(actions, _policy_output(obs))
    assert np.ptp(actions) > 0.01, "the policy acted on a changing observation"
    assert np.all(flags & policy_flag)
    assert core.state().exploration_std == 0.0


def test_the_noise_is_reproducible_from_the_seed(signing_key: ec.EllipticCurvePrivateKey) -> None:
    def noise(seed: int) -> np.ndarray:
        obs, actions, _ = _transitions(_core(signing_key, seed), std=0.2, tau_s=0.02)
        return actions - _policy_output(obs)

    assert np.array_equal(noise(4), noise(4))
    assert not np.array_equal(noise(4), noise(5))


@pytest.mark.parametrize(
    ("std", "tau_s"), [(-0.1, 0.0), (1.5, 0.0), (math.nan, 0.0), (0.2, -0.01), (0.2, math.inf), (0.2, math.nan)]
)
def test_out_of_range_exploration_is_refused(signing_key: ec.EllipticCurvePrivateKey, std: float, tau_s: float) -> None:
    import mm_firmware_core as fw

    core = _core(signing_key)
    status = core.command(fw.MODE_POLICY, 1.0, exploration_std=std, exploration_tau_s=tau_s)
    assert status == 1  # MM_ERR_ARGUMENT
    assert core.state().mode == fw.MODE_IDLE
