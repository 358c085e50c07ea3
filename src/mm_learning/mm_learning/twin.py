"""The twin a policy trains and is judged in (ROS-free, torch-free).

- :class:`TwinSpec`: which twin (profile, load, objective, episode) and its PID baseline for the objective;
- :func:`evaluate_moves`, :func:`summarize`: a controller's mean metrics on the fixed seeded moves;
- :func:`beats_target`: whether a policy meets the objective's target against the baseline on the same moves;
- :func:`matched_velocity_scale`: a velocity scale matched to the load.

Imports neither torch nor Stable-Baselines3, so the learner node, the online session and the demo can judge
policies without loading them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from mm_contract.objectives import Objective, parse_objective
from mm_contract.observation import ObsScales
from mm_contract.profiles import ServoProfile, load_profile
from mm_sim.baselines import PidController, bang_bang_schedule, initial_gains, tune_pid, tuned_gains
from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Controller, Evaluation, Move, evaluate, seeded_moves
from mm_sim.model import Plant

DEFAULT_OBJECTIVE = parse_objective("accuracy")
EVAL_SEED = 1_000_000
"""Seed of the evaluation moves and their sensor noise; far from the training envs' seeds (the run's seed + n)."""
BASELINE_TUNING_EVALUATIONS = 12
"""Evaluations of mm_sim's PID tuner when no tuned gains are cached for the profile/load/objective."""


@functools.cache
def matched_velocity_scale(profile: str, load: str) -> float:
    """A velocity scale (rad/s) matched to ``load``: the peak speed of its fastest move across ±π, rounded up.

    Capped at the profile's own scale (the motor's no-load speed on mm_v3). The policy image carries the scale,
    so it may differ per load. Why: mm_v3's 160 rad/s suits its disc and spring (time-optimal moves reach
    ~160 rad/s) but the pendulum peaks at 39 rad/s and its tuned PIDs stay below ~27, so its velocity feature
    used only a tenth of [-1, 1]: the PID's velocity gain then is ~180 action units per feature unit, which the
    clone could not fit (speed PID cloned at 160 rad/s: 70 % of 20 moves settled; at 40 rad/s: all, in 0.260 s
    vs the PID's 0.265 s; docs/learning.md, "Observation scale").
    """
    servo = load_profile(profile)
    plant = Plant(servo, servo.load(load))
    actions = bang_bang_schedule(plant, start_rad=-math.pi, target_rad=math.pi)
    plant.reset(-math.pi)
    peak = 0.0
    for action in actions:
        plant.advance(action * servo.driver.current_limit_a)
        peak = max(peak, abs(plant.velocity_rad_s))
    return float(min(servo.observation.vel_scale_rad_s, math.ceil(peak)))


@dataclass(frozen=True)
class TwinSpec:
    """Which twin to train in.

    Attributes:
        profile: profile name or path (``mm_contract.profiles.list_profiles()``).
        load: the profile's load ("inertia_disk", "pendulum", "spring").
        objective: the objective (``mm_contract.objectives.parse_objective``).
        episode_s: episode length (s); one step move per episode.
        randomize: draw each training episode's plant from the profile's randomisation ranges (evaluation
            always runs the nominal plant).
        vel_scale_rad_s: velocity giving a velocity feature of 1 (rad/s), written into the exported policy's
            image; None: the profile's. :func:`matched_velocity_scale` gives one matched to the load.
    """

    profile: str = "mm_v3"
    load: str = "pendulum"
    objective: Objective = DEFAULT_OBJECTIVE
    episode_s: float = 1.0
    randomize: bool = False
    vel_scale_rad_s: float | None = None

    def servo_profile(self) -> ServoProfile:
        """The profile with this spec's velocity scale: what the env observes with and a policy image carries."""
        profile = load_profile(self.profile)
        scale = self.vel_scale_rad_s or profile.observation.vel_scale_rad_s
        return dataclasses.replace(profile, observation=dataclasses.replace(profile.observation, vel_scale_rad_s=scale))

    def scales(self) -> ObsScales:
        """The observation scales of this twin's env, which an exported policy's image carries."""
        return ObsScales.from_profile(self.servo_profile())

    def make_env(self, *, randomize: bool | None = None) -> ServoEnv:
        """A fresh twin env for this objective (``randomize`` overrides the spec's choice)."""
        return ServoEnv(
            self.servo_profile(),
            load=self.load,
            objective=self.objective,
            episode_s=self.episode_s,
            # One move per episode: the evaluation metrics describe a single step response.
            hold_s=self.episode_s,
            randomize=self.randomize if randomize is None else randomize,
        )

    def moves(self, count: int) -> list[Move]:
        """The fixed seeded step moves of evaluations (``mm_sim.evaluate.seeded_moves``), one per episode."""
        return seeded_moves(count, seed=EVAL_SEED, duration_s=self.episode_s)

    def make_baseline(self, env: ServoEnv, moves: list[Move]) -> PidController:
        """The PID baseline tuned for this objective.

        Gains come from mm_sim's cache of tuned gains for the objective (for a mix: its largest component);
        when nothing is cached for the profile/load, they are tuned here on ``moves`` for the objective itself.
        """
        try:
            gains = tuned_gains(env.profile, self.load, self.objective.base)
        except MmSimError:
            start = initial_gains(env.profile, env.plant.load)
            gains, _ = tune_pid(env, moves=moves, start=start, evaluations=BASELINE_TUNING_EVALUATIONS)
        return PidController(gains)


def evaluate_moves(env: ServoEnv, controller: Controller, moves: list[Move]) -> dict[str, float]:
    """Mean metrics of ``controller`` over ``moves`` (:func:`summarize` of ``mm_sim.evaluate.evaluate``)."""
    return summarize(evaluate(env, controller, moves, seed=EVAL_SEED))


def summarize(evaluation: Evaluation) -> dict[str, float]:
    """``Evaluation.summary`` plus the two it leaves out: ``mean_rms_error_rad`` and ``mean_command_smoothness``."""
    return evaluation.summary() | {
        "mean_rms_error_rad": float(np.mean([m.rms_error_rad for m in evaluation.metrics])),
        "mean_command_smoothness": float(np.mean([m.command_smoothness for m in evaluation.metrics])),
    }


def beats_target(objective: Objective, policy: Mapping[str, float], pid: Mapping[str, float]) -> bool:
    """Whether the policy meets the objective's target against the PID on the same moves (issue 4 goals).

    speed: settles every move, mean settling time >= 30 % shorter; energy: >= 25 % less energy, settling as
    often and as fast; accuracy: lower steady-state and RMS error; smooth, a mix or term weights: a higher mean return
    under the objective's own reward.
    """
    mix = objective.mix
    if len(mix) != 1 or "smooth" in mix:
        return policy["mean_return"] > pid["mean_return"]
    settles_all = policy["settled_fraction"] == 1.0
    # A PID that left some moves unsettled has a NaN or optimistic mean: settling them all is then the bar.
    pid_time = pid["mean_settling_time_s"] if pid["settled_fraction"] == 1.0 else math.inf
    name = next(iter(mix))
    if name == "speed":
        return settles_all and policy["mean_settling_time_s"] <= 0.7 * pid_time
    if name == "energy":
        return (
            policy["mean_energy_j"] <= 0.75 * pid["mean_energy_j"]
            and policy["settled_fraction"] >= pid["settled_fraction"]
            and (not settles_all or policy["mean_settling_time_s"] <= pid_time)
        )
    return (
        policy["mean_steady_state_error_rad"] < pid["mean_steady_state_error_rad"]
        and policy["mean_rms_error_rad"] < pid["mean_rms_error_rad"]
    )
