"""The deterministic actor of an SB3 model as plain weights, with a float forward pass and a Keras twin.

Only what the servo runs is kept: the policy MLP and the mean action (PPO/A2C: ``action_net`` output clipped to
[-1, 1], as SB3's ``predict`` clips it; SAC: ``tanh(mu)``; TD3/DDPG: the actor's final ``Tanh``). No value head,
no log-std, no log-prob and therefore no EXP op. Weights are copied into Keras instead of going through ONNX
(shared/docs/ml-stack-notes.md, pitfall 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from mm_contract.policy_image import ACTION_DIM, OBS_DIM
from stable_baselines3.common.torch_layers import FlattenExtractor

from mm_learning.errors import ExportError

Activation = Literal["linear", "tanh", "relu"]
OutputSquash = Literal["clip", "tanh"]
FloatArray = npt.NDArray[np.float32]

ON_POLICY_ALGORITHMS = ("PPO", "A2C")
OFF_POLICY_ALGORITHMS = ("SAC", "TD3", "DDPG")


@dataclass(frozen=True)
class DenseLayer:
    """One fully connected layer: ``activation(x @ weight + bias)``; ``weight`` is (inputs, outputs)."""

    weight: FloatArray
    bias: FloatArray
    activation: Activation


@dataclass(frozen=True)
class ActorSpec:
    """A deterministic MLP actor mapping the 8 contract observations to one action in [-1, 1].

    Attributes:
        layers: hidden layers and the final linear layer (whose activation must be ``linear``).
        squash: how the final layer's output becomes an action in [-1, 1]: ``clip`` or ``tanh``.
        algorithm: the SB3 algorithm name the weights came from (metadata only).
    """

    layers: tuple[DenseLayer, ...]
    squash: OutputSquash
    algorithm: str

    def __post_init__(self) -> None:
        if not self.layers or self.layers[-1].activation != "linear":
            raise ExportError("an actor needs at least one layer and a linear last layer before the squash")
        if self.layers[0].weight.shape[0] != OBS_DIM or self.layers[-1].weight.shape[1] != ACTION_DIM:
            shape = (self.layers[0].weight.shape[0], self.layers[-1].weight.shape[1])
            msg = f"actor maps {shape[0]} -> {shape[1]}; the servo needs {OBS_DIM} observations -> {ACTION_DIM} action"
            raise ExportError(msg)

    def __call__(self, obs: npt.ArrayLike) -> FloatArray:
        """Float actions for observations of shape (8,) or (N, 8); returns shape (1,) or (N, 1)."""
        x = np.asarray(obs, dtype=np.float32)
        for layer in self.layers:
            x = _ACTIVATIONS[layer.activation](x @ layer.weight + layer.bias)
        return np.clip(x, -1.0, 1.0) if self.squash == "clip" else np.tanh(x)

    @property
    def parameter_count(self) -> int:
        """Number of weights and biases."""
        return sum(layer.weight.size + layer.bias.size for layer in self.layers)


def _identity(x: FloatArray) -> FloatArray:
    return x


def _relu(x: FloatArray) -> FloatArray:
    return np.maximum(x, 0.0)


_ACTIVATIONS: dict[str, Callable[[FloatArray], FloatArray]] = {"linear": _identity, "tanh": np.tanh, "relu": _relu}


def actor_from_sb3(model: Any) -> ActorSpec:
    """Extract the deterministic actor of a trained SB3 PPO, A2C, SAC, TD3 or DDPG model (MLP policy).

    Raises:
        ExportError: for another algorithm, a non-MLP feature extractor, gSDE, an action space other than
            Box([-1], [1]) or an observation space other than 8 features, or an activation the exporter cannot
            map (supported: Tanh, ReLU).
    """
    algorithm = type(model).__name__
    _check_spaces(model, algorithm)
    policy = model.policy
    if algorithm in ON_POLICY_ALGORITHMS:
        if getattr(policy, "use_sde", False) or getattr(policy, "squash_output", False):
            raise ExportError(f"{algorithm} with gSDE/squashed output is not supported; train with use_sde=False")
        _check_flatten(policy.pi_features_extractor, algorithm)
        modules = [*policy.mlp_extractor.policy_net, policy.action_net]
        squash: OutputSquash = "clip"
    elif algorithm == "SAC":
        actor = policy.actor
        if getattr(actor, "use_sde", False):
            raise ExportError("SAC with gSDE is not supported; train with use_sde=False")
        _check_flatten(actor.features_extractor, algorithm)
        modules = [*actor.latent_pi, actor.mu]
        squash = "tanh"
    elif algorithm in ("TD3", "DDPG"):
        actor = policy.actor
        _check_flatten(actor.features_extractor, algorithm)
        modules = list(actor.mu)
        if not modules or not isinstance(modules[-1], torch.nn.Tanh):
            raise ExportError(f"{algorithm} actor does not end in Tanh; only SB3's standard actor is supported")
        modules = modules[:-1]
        squash = "tanh"
    else:
        supported = ", ".join(ON_POLICY_ALGORITHMS + OFF_POLICY_ALGORITHMS)
        raise ExportError(f"algorithm {algorithm} is not supported for export; use one of {supported}")
    return ActorSpec(layers=tuple(_dense_layers(modules)), squash=squash, algorithm=algorithm)


def _check_spaces(model: Any, algorithm: str) -> None:
    obs_shape = getattr(model.observation_space, "shape", None)
    if obs_shape != (OBS_DIM,):
        raise ExportError(f"{algorithm} model observes {obs_shape}; the servo policy needs ({OBS_DIM},)")
    space = model.action_space
    low, high = np.asarray(getattr(space, "low", np.nan)), np.asarray(getattr(space, "high", np.nan))
    if getattr(space, "shape", None) != (ACTION_DIM,) or not (np.all(low == -1.0) and np.all(high == 1.0)):
        msg = f"{algorithm} model acts in {space}; the servo action is one value in [-1, 1] (contract section 4)"
        raise ExportError(msg)


def _check_flatten(extractor: Any, algorithm: str) -> None:
    if not isinstance(extractor, FlattenExtractor):
        name = type(extractor).__name__
        raise ExportError(f"{algorithm} uses feature extractor {name}; only MlpPolicy (FlattenExtractor) exports")


def _dense_layers(modules: Iterable[Any]) -> list[DenseLayer]:
    """Fold a torch ``Linear``/activation sequence into dense layers with their activation."""
    activations: dict[type, Activation] = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu"}
    layers: list[DenseLayer] = []
    for module in modules:
        if isinstance(module, torch.nn.Linear):
            weight = module.weight.detach().cpu().numpy().astype(np.float32).T.copy()
            if module.bias is None:
                bias = np.zeros(weight.shape[1], dtype=np.float32)
            else:
                bias = module.bias.detach().cpu().numpy().astype(np.float32).copy()
            layers.append(DenseLayer(weight=weight, bias=bias, activation="linear"))
        elif type(module) in activations and layers and layers[-1].activation == "linear":
            last = layers.pop()
            layers.append(DenseLayer(last.weight, last.bias, activations[type(module)]))
        else:
            msg = (
                f"cannot export layer {module!r}: supported are Linear followed by Tanh or ReLU "
                "(set policy_kwargs activation_fn to torch.nn.Tanh or torch.nn.ReLU)"
            )
            raise ExportError(msg)
    return layers
