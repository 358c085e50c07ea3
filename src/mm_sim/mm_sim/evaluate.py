"""Running a controller on the twin and measuring what a user would notice: error, settling, overshoot."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from mm_sim.baselines import PidController
from mm_sim.env import ServoEnv
from mm_sim.reference import StepReference


class Controller(Protocol):
    """Anything that turns (observation, info) into an action; `reset` is called at each episode start."""

    def reset(self) -> None:
        """Forget the previous episode."""

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """The action for this tick."""
        ...


class ZeroController:
    """Commands no current: shows how the plant moves on its own."""

    def reset(self) -> None:
        """Nothing to forget."""

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """Always 0."""
        return np.zeros(1, dtype=np.float32)


def pid_for(env: ServoEnv) -> PidController:
    """The PID baseline with the gains of the env's profile."""
    profile = env.profile
    return PidController(profile.pid, current_limit_a=profile.policy_scales.current_limit_a, dt_s=profile.dt_s)


@dataclass(frozen=True)
class EpisodeMetrics:
    """How one episode went (errors are measured: target minus encoder position).

    Attributes:
        episode_return: sum of rewards.
        rms_error_rad: root-mean-square position error over the episode (rad).
        final_error_rad: mean |error| over the last 10 % of the episode (rad).
        settle_time_s: for step targets, time from the last target change until |error| stays below the
            tolerance (s); None if it never settles or the reference is not a step.
        overshoot_rad: for step targets, the furthest the shaft went past the last target (rad); None otherwise.
        mean_abs_current_a: mean |measured current| (A).
        steps: control ticks run.
    """

    episode_return: float
    rms_error_rad: float
    final_error_rad: float
    settle_time_s: float | None
    overshoot_rad: float | None
    mean_abs_current_a: float
    steps: int


def rollout(
    env: ServoEnv,
    controller: Controller,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    tolerance_rad: float = 0.01,
) -> EpisodeMetrics:
    """Run one episode of `controller` on `env` and measure it.

    Args:
        env: the twin.
        controller: the controller under test.
        seed: seed for `env.reset`.
        options: options for `env.reset` (initial angle, reference).
        tolerance_rad: error band for the settling time (rad).
    """
    controller.reset()
    observation, info = env.reset(seed=seed, options=options)
    start_position_rad = info["position_rad"]
    errors, positions, currents, total_reward = [], [], [], 0.0
    while True:
        observation, reward, terminated, truncated, info = env.step(controller(observation, info))
        total_reward += reward
        errors.append(info["target_rad"] - info["position_rad"])
        positions.append(info["position_rad"])
        currents.append(abs(info["current_a"]))
        if terminated or truncated:
            break
    error = np.asarray(errors)
    tail = max(1, len(error) // 10)
    settle_time_s = overshoot_rad = None
    if isinstance(env.reference, StepReference):
        settle_time_s, overshoot_rad = _step_response(
            reference=env.reference,
            dt_s=env.dt_s,
            error=error,
            position=np.asarray(positions),
            start_rad=start_position_rad,
            tolerance_rad=tolerance_rad,
        )
    return EpisodeMetrics(
        episode_return=total_reward,
        rms_error_rad=float(np.sqrt(np.mean(error**2))),
        final_error_rad=float(np.mean(np.abs(error[-tail:]))),
        settle_time_s=settle_time_s,
        overshoot_rad=overshoot_rad,
        mean_abs_current_a=float(np.mean(currents)),
        steps=len(error),
    )


def _step_response(
    *,
    reference: StepReference,
    dt_s: float,
    error: NDArray[np.float64],
    position: NDArray[np.float64],
    start_rad: float,
    tolerance_rad: float,
) -> tuple[float | None, float]:
    """Settling time (s, None if not settled) and overshoot (rad) after the last target change."""
    end_s = len(error) * dt_s
    change_s = reference.last_change_s(end_s)
    # Sample i of the arrays is the state at time (i + 1) * dt.
    first = max(0, math.ceil(change_s / dt_s) - 1)
    before_rad = start_rad if first == 0 else float(position[first - 1])
    target_rad = reference.sample(end_s)[0]
    direction = 1.0 if target_rad >= before_rad else -1.0
    overshoot_rad = max(0.0, float(np.max(direction * (position[first:] - target_rad))))
    outside = np.flatnonzero(np.abs(error[first:]) >= tolerance_rad)
    if len(outside) == 0:
        return 0.0, overshoot_rad
    last_outside = int(outside[-1])
    if first + last_outside == len(error) - 1:
        return None, overshoot_rad
    return (first + last_outside + 2) * dt_s - change_s, overshoot_rad
