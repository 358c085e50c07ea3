"""Atomic checkpoints of a training run (ROS-free).

A checkpoint is ``<run>/checkpoints/step-<n>/`` with ``model.zip``, ``replay_buffer.pkl`` (off-policy),
``reward_normalizer.pkl`` (when rewards are normalised), ``rng.pkl`` (Python, NumPy and torch RNG states) and
``state.json`` (the run's step count, wall time, best model and evaluations); ``checkpoints/latest`` names the
newest complete one and is replaced atomically, so a run killed at any moment resumes from a whole checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from mm_learning.errors import TrainingError

_LATEST = "latest"
_REWARD_NORMALIZER = "reward_normalizer.pkl"
_STEP_DIR_DIGITS = 12


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = out_dir / "checkpoints" / _LATEST
    if not pointer.is_file():
        return None
    path = out_dir / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    if not (path / "state.json").is_file():
        msg = f"{pointer} names {path.name}, which is incomplete; delete {out_dir / 'checkpoints'} to start over"
        raise TrainingError(msg)
    return path


def read_state(checkpoint: Path) -> dict[str, Any]:
    """The run state a checkpoint was written with (``state.json``)."""
    state: dict[str, Any] = json.loads((checkpoint / "state.json").read_text(encoding="utf-8"))
    return state


def _fsync_tree(path: Path) -> None:
    for item in [*path.iterdir(), path]:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(out_dir: Path, model: BaseAlgorithm, state: Mapping[str, Any]) -> Path:
    """Write a checkpoint atomically and make it the latest; returns its directory.

    Everything is written into a temporary directory, synced, renamed to ``step-<n>``, and only then the
    ``latest`` pointer is replaced (os.replace is atomic), so a kill at any moment leaves the previous
    checkpoint or the new one in force, never a partial one. Older checkpoints are removed afterwards.
    """
    root = out_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    model.save(tmp / "model.zip")
    if isinstance(model, OffPolicyAlgorithm):
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    reward_normalizer = model.get_vec_normalize_env()
    if reward_normalizer is not None:
        reward_normalizer.save(str(tmp / _REWARD_NORMALIZER))
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    (tmp / "rng.pkl").write_bytes(pickle.dumps(rng))
    (tmp / "state.json").write_text(json.dumps(dict(state), indent=1), encoding="utf-8")
    _fsync_tree(tmp)
    final = root / f"step-{int(state['steps']):0{_STEP_DIR_DIGITS}d}"
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    pointer_tmp = root / f".{_LATEST}.tmp"
    with pointer_tmp.open("w", encoding="utf-8") as handle:
        handle.write(final.name)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(pointer_tmp, root / _LATEST)
    _fsync_tree(root)
    for stale in root.iterdir():
        if stale.is_dir() and stale != final:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def reward_normalizer(checkpoint: Path | None, env: VecEnv, *, gamma: float) -> VecNormalize:
    """``env`` with normalised rewards: the checkpoint's running statistics when it has them, else fresh ones.

    Rewards only: the observation is the contract's, already in [-1, 1], and is what the servo computes.
    """
    if checkpoint is not None and (checkpoint / _REWARD_NORMALIZER).is_file():
        return VecNormalize.load(str(checkpoint / _REWARD_NORMALIZER), env)
    return VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)


def load_checkpoint(
    checkpoint: Path, algorithm: type[BaseAlgorithm], env: VecEnv, *, tensorboard_log: str | None, device: str
) -> BaseAlgorithm:
    """The checkpoint's model on ``env`` with its replay buffer (off-policy), and the RNGs as they were."""
    model = algorithm.load(checkpoint / "model.zip", env=env, tensorboard_log=tensorboard_log, device=device)
    if isinstance(model, OffPolicyAlgorithm):
        model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    rng = pickle.loads((checkpoint / "rng.pkl").read_bytes())
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    return model
