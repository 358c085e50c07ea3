"""One way to judge every controller: the same seeded step moves on the twin, the same metrics.

A controller (the PID baseline, the time-optimal bound, a learned policy) implements `Controller`; `evaluate`
runs it over `Move`s in a `ServoEnv` and returns per-move `StepMetrics`, the objective's return and a summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from mm_contract.metrics import Response, StepMetrics, step_metrics
from numpy.typing import NDArray

from mm_sim.env import ServoEnv
from mm_sim.reference import Piecewise, StepReference


class Controller(Protocol):
    """Turns (observation, info) into an action; `reset` is called after each `env.reset`."""

    def reset(self, env: ServoEnv, info: dict[str, Any]) -> None:
        """Prepare for the episode that `env` has just started (`info` is what reset returned)."""

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """The action for this tick."""
        ...


class PolicyController:
    """Wraps a function of the observation alone (for example a trained policy's `predict`)."""

    def __init__(self, policy: Any) -> None:
        """`policy(observation) -> action`, both float32 arrays."""
        self._policy = policy

    def reset(self, env: ServoEnv, info: dict[str, Any]) -> None:
        """A stateless policy has nothing to prepare."""

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """The policy's action."""
        return np.asarray(self._policy(observation), dtype=np.float32).reshape(1)


@dataclass(frozen=True)
class Move:
    """A step move from rest: start and target (rad), and how long it is given (s)."""

    start_rad: float
    target_rad: float
    duration_s: float


def seeded_moves(
    count: int, *, seed: int, range_rad: float = math.pi, min_distance_rad: float = 0.2, duration_s: float = 1.0
) -> list[Move]:
    """`count` reproducible moves between points in [-range_rad, range_rad], at least `min_distance_rad` apart."""
    rng = np.random.default_rng(seed)
    moves: list[Move] = []
    while len(moves) < count:
        start, target = (float(x) for x in rng.uniform(-range_rad, range_rad, size=2))
        if abs(target - start) >= min_distance_rad:
            moves.append(Move(start, target, duration_s))
    return moves


@dataclass(frozen=True)
class Evaluation:
    """Results of a controller over a list of moves.

    Attributes:
        moves: the moves, in order.
        metrics: the step metrics of each move.
        returns: the objective's return (sum of rewards) of each move.
    """

    moves: list[Move]
    metrics: list[StepMetrics]
    returns: list[float]

    @property
    def mean_return(self) -> float:
        """Mean objective return per move."""
        return float(np.mean(self.returns))

    def summary(self) -> dict[str, float]:
        """Means over the moves.

        The settling time is averaged over the settled moves; the rest over all: overshoot, energy,
        steady-state error, peak current and the objective's return.
        """
        settled = [m.settling_time_s for m in self.metrics if m.settling_time_s is not None]
        return {
            "settled_fraction": len(settled) / len(self.metrics),
            "mean_settling_time_s": float(np.mean(settled)) if settled else math.nan,
            "max_settling_time_s": float(np.max(settled)) if settled else math.nan,
            "mean_overshoot_rad": float(np.mean([m.overshoot_rad for m in self.metrics])),
            "mean_energy_j": float(np.mean([m.energy_j for m in self.metrics])),
            "mean_steady_state_error_rad": float(np.mean([m.steady_state_error_rad for m in self.metrics])),
            "mean_peak_current_a": float(np.mean([m.peak_current_a for m in self.metrics])),
            "mean_return": self.mean_return,
        }


def run_move(env: ServoEnv, controller: Controller, move: Move, *, seed: int) -> tuple[Response, float]:
    """Run one move in `env` and return the response and the objective's return.

    The env's episode length (`max_steps`) is set to the move's duration.
    """
    env.max_steps = round(move.duration_s / env.dt_s)
    reference = StepReference(Piecewise((0.0,), (move.target_rad,)))
    observation, info = env.reset(seed=seed, options={"initial_angle_rad": move.start_rad, "reference": reference})
    controller.reset(env, info)
    columns: list[list[float]] = [[], [], [], [], [], []]
    total = 0.0
    truncated = False
    while not truncated:
        action = controller(observation, info)
        observation, reward, _, truncated, info = env.step(action)
        total += reward
        for column, value in zip(
            columns,
            (info["time_s"], info["position_rad"], info["target_rad"], info["current_a"], info["power_w"], action[0]),
            strict=True,
        ):
            column.append(float(value))
    response = Response(*(np.asarray(c) for c in columns))
    return response, total


def evaluate(env: ServoEnv, controller: Controller, moves: list[Move], *, seed: int = 0) -> Evaluation:
    """Run `controller` over `moves` in `env` (sensor noise seeded by `seed` + move index) and measure them."""
    metrics, returns = [], []
    for index, move in enumerate(moves):
        response, total = run_move(env, controller, move, seed=seed + index)
        metrics.append(step_metrics(response, start_rad=move.start_rad, tolerance_rad=env.tolerance_rad))
        returns.append(total)
    return Evaluation(moves, metrics, returns)
