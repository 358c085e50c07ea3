"""Train -> export -> TFLite Micro round trip through the trainer, for PPO and SAC on a tiny budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.objectives import parse_objective
from mm_contract.policy_image import parse_image
from mm_contract.tflm import TflmPolicy
from mm_learning.algorithms import policy_controller
from mm_learning.pipeline import export_trained
from mm_learning.trainer import TrainConfig, Trainer
from mm_learning.twin import TwinSpec


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "hyperparameters"), [("ppo", {"n_steps": 256}), ("sac", {"learning_starts": 200})]
)
def test_trained_policy_exports_and_tflite_micro_follows_the_float_actor(
    algorithm: str, hyperparameters: dict[str, int], tmp_path: Path
) -> None:
    twin = TwinSpec(profile="mm_v3", load="pendulum", objective=parse_objective("accuracy"), episode_s=0.3)
    config = TrainConfig(
        out_dir=tmp_path / "run",
        twin=twin,
        algorithm=algorithm,
        max_steps=512,
        eval_every_steps=0,
        eval_moves=2,
        hyperparameters=hyperparameters,
        # A cloned PID makes the fidelity check meaningful: it compares two controllers that really move the load.
        clone_baseline_episodes=5,
        tensorboard=False,
    )
    result = Trainer(config).run()
    export = export_trained(
        result.model, twin, private_key=ec.generate_private_key(ec.SECP256R1()), out_dir=tmp_path / "export", moves=3
    )
    image = parse_image(export.image)
    assert export.metadata["algorithm"] == algorithm.upper() and export.metadata["training_steps"] == result.steps
    assert export.metadata["model_bytes"] <= 12 * 1024
    model = export.paths["tflite"].read_bytes()
    assert image.model == model
    # The servo's runtime and the float actor agree on observations of a real move.
    env = twin.make_env()
    observation, info = env.reset(seed=7)
    float_actor, quantized = policy_controller(result.model), TflmPolicy(model)
    rows = []
    for _ in range(300):
        rows.append(observation)
        observation, *_ = env.step(float_actor(observation, info))
    obs = np.asarray(rows)
    difference = np.abs(quantized(obs).reshape(-1) - np.array([float_actor(o, info)[0] for o in obs]))
    assert float(np.max(difference)) < 0.05
