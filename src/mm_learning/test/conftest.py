"""Shared fixtures for the mm_learning tests: tiny SB3 models that really control a toy servo, keys, exports.

TensorFlow and training are slow to start, so models and exports are built once per session.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric import ec
from mm_learning.algorithms import quiet_logger
from mm_testing.toy_servo import ToyServoEnv, pd_law
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

NET = {"net_arch": [32, 32], "activation_fn": torch.nn.Tanh}


def _pd_observations(n_moves: int) -> np.ndarray:
    """Observations met by the PD law on the toy servo, with noise so the fit covers the neighbourhood."""
    env, record = ToyServoEnv(), []
    for seed in range(n_moves):
        obs, _ = env.reset(seed=1000 + seed)
        for _ in range(env.episode_steps):
            record.append(obs)
            obs, *_ = env.step(pd_law(obs)[0])
    rows = np.array(record, dtype=np.float32)
    noisy = rows + np.random.default_rng(0).normal(0.0, 0.05, rows.shape).astype(np.float32)
    return np.clip(np.concatenate([rows, noisy]), -1.0, 1.0)


def distill_pd(model: BaseAlgorithm, steps: int = 400) -> None:
    """Fit the SB3 actor to the PD law (supervised, in place) so closed-loop checks see a real servo move.

    A few hundred SB3 steps do not yet make a controller, and the fidelity check is only meaningful on one.
    """
    policy = model.policy
    if isinstance(model, PPO):
        net = torch.nn.Sequential(*policy.mlp_extractor.policy_net, policy.action_net, torch.nn.Hardtanh())
    else:
        net = torch.nn.Sequential(*policy.actor.latent_pi, policy.actor.mu, torch.nn.Tanh())
    obs = torch.as_tensor(_pd_observations(8))
    target = torch.as_tensor(pd_law(obs.numpy()), dtype=torch.float32)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(obs), target)
        loss.backward()
        optimizer.step()


@pytest.fixture(scope="session")
def trained_models() -> dict[str, BaseAlgorithm]:
    """PPO and SAC trained a few hundred steps on the toy servo, then fitted to the PD law."""
    torch.manual_seed(0)
    ppo = PPO("MlpPolicy", ToyServoEnv(), n_steps=128, batch_size=64, n_epochs=2, policy_kwargs=NET, seed=0)
    ppo.set_logger(quiet_logger())
    ppo.learn(256)
    sac = SAC("MlpPolicy", ToyServoEnv(), learning_starts=100, batch_size=64, policy_kwargs=NET, seed=0)
    sac.set_logger(quiet_logger())
    sac.learn(200)
    for model in (ppo, sac):
        distill_pd(model)
    return {"PPO": ppo, "SAC": sac}


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
