"""What a training request may ask for, checked without torch, Stable-Baselines3 or TensorFlow.

The learner node validates Train goals with this module (and ``mm_contract.objectives.parse_objective``) before
any training module is imported (those take tens of seconds to import on a loaded 2-core machine);
:mod:`mm_learning.trainer` and :mod:`mm_learning.schedule` take their names from here (one source).

- :data:`SCHEDULE_ALGORITHM`, :data:`SB3_ALGORITHMS`, :data:`OFF_POLICY`: the algorithm names.
- :func:`run_key`: the settings that give a run's observations and actions their meaning (its folder's key);
- :class:`Progress`: what a training run reports while it runs (the learner node's Train feedback).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from mm_contract.objectives import Objective

SCHEDULE_ALGORITHM = "es"
"""The deceleration-schedule learner (:mod:`mm_learning.schedule`), the sim-mode default."""
SB3_ALGORITHMS = ("ppo", "sac", "td3", "ddpg", "a2c")
"""Stable-Baselines3 algorithms of :mod:`mm_learning.trainer` (``algorithms.ALGORITHMS`` maps them to classes)."""
DEFAULT_ALGORITHM = "ppo"
"""The SB3 algorithm ``mm train`` uses unless told otherwise."""
DEFAULT_DEVICE = "cpu"
"""The torch device of training: servo-sized policies train faster on the CPU (``TrainConfig.device``)."""
OFF_POLICY = frozenset({"sac", "td3", "ddpg"})
"""The SB3 algorithms that learn from stored transitions (online mode needs one)."""


def run_key(
    *,
    objective: Objective,
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
        objective: the objective (its canonical text goes into the key).
        algorithm: the algorithm name (with a mode prefix such as ``online-`` where the mode matters).
        profile: the mm_sim servo profile.
        load: the mm_sim load.
        seed: the run's seed.
        velocity_scale: the velocity feature's scale as configured ("profile" or "matched").
        episode_s: length of one training move (s).
    """
    key = f"{objective.text}|{algorithm}|{profile}|{load}|{seed}|vel={velocity_scale}|episode={episode_s!r}"
    readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{objective.text}-{algorithm}").strip("-")
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Progress:
    """A progress report of a training run: what the learner node sends as Train feedback.

    Training in the twin reports these; online sessions a :class:`mm_learning.online_session.SessionProgress`.

    Attributes:
        phase: "evaluating", "cloning" or "training".
        steps: env steps so far (over resumes).
        steps_per_s: env steps per second of wall time since the last report.
        mean_reward: mean reward per env step since the last report.
        eval_metrics: the policy's latest evaluation (mean over the seeded moves), empty before the first.
        baseline_metrics: the PID baseline on the same moves.
    """

    phase: str
    steps: int
    steps_per_s: float
    mean_reward: float
    eval_metrics: Mapping[str, float]
    baseline_metrics: Mapping[str, float]
