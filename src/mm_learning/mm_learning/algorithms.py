"""Stable-Baselines3 models for the servo (ROS-free): presets, construction, behaviour cloning, evaluation.

- :func:`load_preset`: the per-algorithm SB3 hyperparameters in ``mm_learning/presets/<algo>.yaml``;
- :func:`build_model`: a new model from its preset;
- :func:`quiet_logger`: a logger that writes nothing, for runs without TensorBoard;
- :func:`clone_controller`: fit a model's actor to a classical controller (the start RL improves on);
- :func:`policy_controller`, :func:`evaluate_model`: a model's deterministic actor as a twin controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

import numpy as np
import torch
import yaml
from mm_sim.env import ServoEnv
from mm_sim.evaluate import Controller, PolicyController
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from torch.nn.utils import parametrize

from mm_learning.actor import actor_from_sb3
from mm_learning.errors import TrainingError
from mm_learning.goals import DEFAULT_DEVICE, SB3_ALGORITHMS
from mm_learning.twin import TwinSpec, evaluate_moves

ALGORITHMS: dict[str, type[BaseAlgorithm]] = dict(zip(SB3_ALGORITHMS, (PPO, SAC, TD3, DDPG, A2C), strict=True))

_ACTIVATIONS: dict[str, type[torch.nn.Module]] = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
CLONE_SEED = 5_000_000
"""Seed of the behaviour-cloning episodes: disjoint from the evaluation and export seeds."""
CLONE_GRADIENT_STEPS = 3000
"""Gradient steps of behaviour cloning (preset ``clone_baseline_episodes``)."""
CLONE_ACTION_LIMIT = 0.98
"""Label limit of behaviour cloning: keeps tanh-squashed actors (SAC, TD3, DDPG) out of their flat tails."""


def load_preset(algorithm: str) -> dict[str, Any]:
    """The preset of ``algorithm`` (``presets/<algorithm>.yaml``): n_envs, hyperparameters, policy_kwargs."""
    if algorithm not in ALGORITHMS:
        msg = f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        raise TrainingError(msg)
    text = resources.files("mm_learning").joinpath("presets", f"{algorithm}.yaml").read_text(encoding="utf-8")
    preset = yaml.safe_load(text)
    if not isinstance(preset, dict) or not isinstance(preset.get("hyperparameters"), dict):
        msg = f"preset {algorithm}.yaml must be a mapping with a 'hyperparameters' mapping"
        raise TrainingError(msg)
    return preset


def build_model(
    algorithm: str,
    env: Any,
    *,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
    leave_out: tuple[str, ...] = (),
    tensorboard_log: str | None = None,
    device: str = DEFAULT_DEVICE,
) -> BaseAlgorithm:
    """A new SB3 model from the algorithm's preset (hyperparameters, policy_kwargs, action noise).

    Args:
        algorithm: one of :data:`ALGORITHMS`.
        env: the env (or vectorised env) the model is built for; only its spaces matter to an online learner.
        seed: model seed.
        overrides: hyperparameters replacing the preset's.
        leave_out: preset hyperparameters to drop (e.g. the env-driven ones when the model never steps an env).
        tensorboard_log: TensorBoard directory, or None.
        device: torch device of the networks ("cpu", "cuda", "cuda:1" or "auto": CUDA when there is a GPU).
    """
    preset = load_preset(algorithm)
    hyperparameters = {k: v for k, v in preset["hyperparameters"].items() if k not in leave_out}
    hyperparameters |= dict(overrides or {})
    policy_kwargs = dict(preset.get("policy_kwargs", {}))
    activation = policy_kwargs.get("activation_fn", "tanh")
    if activation not in _ACTIVATIONS:
        msg = f"preset {algorithm}.yaml: activation_fn {activation!r} must be one of {list(_ACTIVATIONS)}"
        raise TrainingError(msg)
    policy_kwargs["activation_fn"] = _ACTIVATIONS[activation]
    if "action_noise_std" in preset:
        sigma = float(preset["action_noise_std"]) * np.ones(1)
        hyperparameters["action_noise"] = NormalActionNoise(mean=np.zeros(1), sigma=sigma)
    return ALGORITHMS[algorithm](
        "MlpPolicy",
        env,
        policy_kwargs=policy_kwargs,
        seed=seed,
        tensorboard_log=tensorboard_log,
        verbose=0,
        device=device,
        **hyperparameters,
    )


def quiet_logger() -> Logger:
    """A logger with no outputs and no folder, for a model that logs nowhere (`model.set_logger`).

    SB3's own (`stable_baselines3.common.logger.configure`, which `learn()` calls when no logger was set) creates
    an empty `SB3-<date-time>` folder in the temp directory even when it writes nothing: one per training run or
    online session, left behind.
    """
    return Logger(folder=None, output_formats=[])


def _actor_net(model: BaseAlgorithm) -> torch.nn.Module:
    """The torch modules of the deterministic actor, output squashed to [-1, 1] as the exported actor is."""
    policy: Any = model.policy  # SB3 types it as a generic Module
    if isinstance(model, PPO | A2C):
        return torch.nn.Sequential(*policy.mlp_extractor.policy_net, policy.action_net, torch.nn.Hardtanh())
    if isinstance(model, SAC):
        return torch.nn.Sequential(*policy.actor.latent_pi, policy.actor.mu, torch.nn.Tanh())
    return policy.actor.mu  # TD3/DDPG: ends in Tanh


class _OnInt8Grid(torch.nn.Module):
    """A dense layer's weights as the integer export stores them, with straight-through gradients.

    The converter quantises each FULLY_CONNECTED weight matrix symmetrically to int8 with one scale per output
    row (max |w| of the row / 127); a torch ``Linear`` weight is (out, in), so a row here is a row there.
    """

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight rounded to its row's int8 grid; the gradient passes as if unrounded."""
        scale = weight.detach().abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny) / 127.0
        return weight + (torch.round(weight / scale) * scale - weight).detach()


def clone_controller(
    model: BaseAlgorithm, env: ServoEnv, controller: Controller, *, episodes: int, seed: int, noise: float = 0.1
) -> float:
    """Fit the actor of ``model`` to ``controller`` by behaviour cloning (supervised, in place).

    The controller drives ``episodes`` seeded episodes of ``env`` with Gaussian noise (std ``noise``) added to
    its actions, so the data also covers states just off its own trajectories; the labels are its noiseless
    actions. The actor is fitted with its weights on the int8 grid the export rounds them to (quantisation-aware:
    a stiff controller's clone reached by cancellation between float weights loses it in rounding) and keeps
    them there. Returns the final mean squared action error.
    """
    rng = np.random.default_rng(seed)
    observations, labels = [], []
    for episode in range(episodes):
        observation, info = env.reset(seed=seed + episode)
        controller.reset(env, info)
        truncated = False
        while not truncated:
            action = np.asarray(controller(observation, info), dtype=np.float32).reshape(1)
            observations.append(observation)
            labels.append(action)
            noisy = np.clip(action + rng.normal(0.0, noise, 1), -1.0, 1.0).astype(np.float32)
            observation, _, _, truncated, info = env.step(noisy)
    obs = torch.as_tensor(np.asarray(observations))
    target = torch.as_tensor(np.clip(np.asarray(labels), -CLONE_ACTION_LIMIT, CLONE_ACTION_LIMIT))
    net = _actor_net(model)
    dense = [layer for layer in net.modules() if isinstance(layer, torch.nn.Linear)]
    for layer in dense:
        parametrize.register_parametrization(layer, "weight", _OnInt8Grid())
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(CLONE_GRADIENT_STEPS):
        batch = torch.randint(0, len(obs), (512,), generator=generator)
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(obs[batch]), target[batch])
        loss.backward()
        optimizer.step()
    for layer in dense:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    if isinstance(model, TD3):  # DDPG is a TD3: its target actor must start from the cloned actor
        model.actor_target.load_state_dict(model.actor.state_dict())
    return float(loss.detach())


def policy_controller(model: BaseAlgorithm) -> PolicyController:
    """The deterministic actor of ``model`` as an mm_sim controller (the exact network the exporter exports)."""
    return PolicyController(actor_from_sb3(model))


def evaluate_model(model: BaseAlgorithm, twin: TwinSpec, moves: int) -> dict[str, dict[str, float]]:
    """The deterministic actor of ``model`` and the PID tuned for the objective on the same seeded moves."""
    env = twin.make_env(randomize=False)
    try:
        seeded = twin.moves(moves)
        return {
            "policy": evaluate_moves(env, policy_controller(model), seeded),
            "pid": evaluate_moves(env, twin.make_baseline(env, seeded), seeded),
        }
    finally:
        env.close()
