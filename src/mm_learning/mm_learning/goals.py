"""What a training request may ask for, checked without torch, Stable-Baselines3 or TensorFlow.

The learner node validates Train goals with this module before any training module is imported (those take
tens of seconds to import on a loaded 2-core machine); :mod:`mm_learning.trainer` and
:mod:`mm_learning.schedule` take their names from here (one source).

- :data:`SCHEDULE_ALGORITHM`, :data:`SB3_ALGORITHMS`, :data:`OFF_POLICY`: the algorithm names.
- :func:`parse_objective`: ``"speed"`` or a weighted mix ``"speed:0.7,energy:0.3"``.
- :func:`run_key`: the settings that give a run's observations and actions their meaning (its folder's key).
"""

from __future__ import annotations

import hashlib
import math
import re

from mm_contract.objectives import OBJECTIVES as NAMED_OBJECTIVES

from mm_learning.errors import TrainingError

SCHEDULE_ALGORITHM = "es"
"""The deceleration-schedule learner (:mod:`mm_learning.schedule`), the sim-mode default."""
SB3_ALGORITHMS = ("ppo", "sac", "td3", "ddpg", "a2c")
"""Stable-Baselines3 algorithms of :mod:`mm_learning.trainer` (``trainer.ALGORITHMS`` maps them to classes)."""
OFF_POLICY = frozenset({"sac", "td3", "ddpg"})
"""The SB3 algorithms that learn from stored transitions (online mode needs one)."""
OBJECTIVES = tuple(NAMED_OBJECTIVES)
"""The named objectives (mm_sim's); a mix weights several of them."""


def parse_objective(text: str) -> dict[str, float]:
    """Parse an objective: one of :data:`OBJECTIVES` or a weighted mix ``"speed:0.7,energy:0.3"``.

    Weights are normalised to sum to 1. Raises :class:`TrainingError` naming the bad part.
    """
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        name, _, weight_text = part.partition(":")
        name = name.strip()
        if name not in OBJECTIVES:
            choices = ", ".join(OBJECTIVES)
            msg = f"unknown objective {name!r} in {text!r}; use one of {choices} or a mix like 'speed:0.7,energy:0.3'"
            raise TrainingError(msg)
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            weight = math.nan
        if not (math.isfinite(weight) and weight > 0.0):
            msg = f"objective weight {weight_text.strip()!r} for {name!r} must be a finite number > 0"
            raise TrainingError(msg)
        if name in weights:
            msg = f"objective {name!r} appears twice in {text!r}; give each objective once"
            raise TrainingError(msg)
        weights[name] = weight
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def run_key(
    *,
    objective: str,
    algorithm: str,
    profile: str,
    load: str,
    seed: int,
    velocity_scale: str,
    episode_s: float,
) -> str:
    """A run folder's name: readable objective and algorithm, then a hash of every setting a resume must share.

    The velocity scale changes what the observation's velocity feature means, and the episode length what a
    return is: a model trained under other values must not be resumed, so they are part of the key (a changed
    setting starts a new run in its own folder).

    Args:
        objective: the objective text.
        algorithm: the algorithm name (with a mode prefix such as ``online-`` where the mode matters).
        profile: the mm_sim servo profile.
        load: the mm_sim load.
        seed: the run's seed.
        velocity_scale: the velocity feature's scale as configured ("profile" or "matched").
        episode_s: length of one training move (s).
    """
    key = f"{objective}|{algorithm}|{profile}|{load}|{seed}|vel={velocity_scale}|episode={episode_s!r}"
    readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{objective}-{algorithm}").strip("-")
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
