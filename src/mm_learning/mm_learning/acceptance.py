"""The checks an exported policy must pass before the servo may run it (issue 4, checks a-d).

Each failed check raises :class:`mm_learning.errors.PolicyRejected` with a machine-readable cause. The firmware
budget and the fidelity thresholds have their defaults here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from mm_contract.constants import ENCODER_COUNTS
from mm_contract.errors import TflmError
from mm_contract.metrics import settling_time_s, steady_state_error_rad
from mm_contract.objectives import DEFAULT_TOLERANCE_RAD
from mm_contract.tflm import Scheme, TflmPolicy, clip_observations, model_ops, tensor_types
from mm_sim.batch import BatchTwin, Schedule, evaluate_batch
from mm_sim.evaluate import Move

from mm_learning.errors import ExportError, PolicyRejected, RejectionCause

ENCODER_COUNT_RAD = 2.0 * math.pi / ENCODER_COUNTS
"""One count of the 14-bit output-shaft encoder (contract section 2)."""

# The ops the firmware registers in its TFLite Micro op resolver: what an exported MLP actor compiles to (ReLU
# and the in-model clip fuse into FULLY_CONNECTED). Anything else (EXP from a log-std head, LOGISTIC, ...) is
# refused here rather than discovered on the servo.
FIRMWARE_OPS = frozenset({"FULLY_CONNECTED", "TANH", "RELU"})

DEFAULT_SCHEME = Scheme.INT16X8
"""Default quantisation scheme; docs/learning.md gives the measurements behind the choice."""

# Tensor types allowed per scheme: activations, int8 weights, and the bias type the scheme uses.
_ALLOWED_TENSOR_TYPES = {
    Scheme.INT8: frozenset({"INT8", "INT32"}),
    Scheme.INT16X8: frozenset({"INT16", "INT8", "INT64"}),
}

Controller = Callable[[np.ndarray], npt.ArrayLike]
"""Maps one float32 observation (8,) to an action array (1,) in [-1, 1]."""

SETTLED_BY = 0.9
"""Fraction of a move by which the float policy must have settled for the move to count in check (c)'s error
comparison: then the last 10 % of the move, over which the steady-state error is measured, is held in the band.
On a move the float policy has not settled by then, the error at the end is where an unsettled trajectory happens
to be, and a quantised policy is judged there by the return alone."""


@dataclass(frozen=True)
class Budget:
    """Firmware memory budget for one policy (the firmware's Kconfig defaults)."""

    model_bytes: int = 12 * 1024
    arena_bytes: int = 8 * 1024


@dataclass(frozen=True)
class Thresholds:
    """How close the quantised policy must stay to the float one.

    Attributes:
        action_rmse: RMS action difference on held-out observations (actions in [-1, 1]). A gross-error gate
            (wrong calibration, wrapped inputs), not the fidelity test: one int8 input step (2/255) times a
            policy gain of 8 per unit feature already moves the action by 0.06, and whether that matters is
            what the closed-loop check decides.
        action_max_abs: largest single action difference on held-out observations.
        return_rel: closed-loop mean return within this fraction of the float policy's.
        steady_state_error_rad: on the moves the float policy settled in time (:data:`SETTLED_BY`), the quantised
            policy's mean steady-state error at most this much above the float policy's (one encoder count).

    """

    action_rmse: float = 0.05
    action_max_abs: float = 0.25
    return_rel: float = 0.01
    steady_state_error_rad: float = ENCODER_COUNT_RAD


@dataclass(frozen=True)
class ActionErrorReport:
    """Quantised vs float actions on held-out observations."""

    samples: int
    rmse: float
    max_abs: float


@dataclass(frozen=True)
class EpisodeResult:
    """One seeded closed-loop move.

    Attributes:
        seed: the move's seed (its index for a list of moves).
        episode_return: the sum of the move's rewards.
        steady_state_error_rad: mean |error| over the last 10 % of the move (rad).
        settled_in_time: |error| entered the settle band for good within the first :data:`SETTLED_BY` of the move.
        steps: control ticks.

    """

    seed: int
    episode_return: float
    steady_state_error_rad: float
    settled_in_time: bool
    steps: int


@dataclass(frozen=True)
class ClosedLoopReport:
    """Float vs quantised policy on the same seeded moves."""

    float_episodes: tuple[EpisodeResult, ...]
    quantized_episodes: tuple[EpisodeResult, ...]

    @staticmethod
    def _mean_return(episodes: Sequence[EpisodeResult]) -> float:
        return float(np.mean([e.episode_return for e in episodes]))

    @property
    def float_return(self) -> float:
        """Mean return of the float policy."""
        return self._mean_return(self.float_episodes)

    @property
    def quantized_return(self) -> float:
        """Mean return of the quantised policy."""
        return self._mean_return(self.quantized_episodes)

    @property
    def return_rel_diff(self) -> float:
        """|quantised - float| / |float| mean return."""
        return abs(self.quantized_return - self.float_return) / max(abs(self.float_return), 1e-12)

    @property
    def settled_moves(self) -> tuple[int, ...]:
        """Indices of the moves the float policy settled in time: those the steady-state errors are compared on."""
        return tuple(i for i, e in enumerate(self.float_episodes) if e.settled_in_time)

    def _mean_steady_state_error(self, episodes: Sequence[EpisodeResult]) -> float:
        return float(np.mean([episodes[i].steady_state_error_rad for i in self.settled_moves]))

    @property
    def float_steady_state_error_rad(self) -> float:
        """Mean steady-state error of the float policy on :attr:`settled_moves` (rad; NaN when there are none)."""
        return self._mean_steady_state_error(self.float_episodes) if self.settled_moves else math.nan

    @property
    def quantized_steady_state_error_rad(self) -> float:
        """Mean steady-state error of the quantised policy on :attr:`settled_moves` (rad; NaN when there are none)."""
        return self._mean_steady_state_error(self.quantized_episodes) if self.settled_moves else math.nan

    def summary(self) -> dict[str, float]:
        """The numbers that go into the policy metadata (the steady-state errors only when a move counted)."""
        summary = {
            "moves": len(self.float_episodes),
            "float_settled_moves": len(self.settled_moves),
            "float_return": self.float_return,
            "quantized_return": self.quantized_return,
            "return_rel_diff": self.return_rel_diff,
        }
        if self.settled_moves:
            summary["float_steady_state_error_rad"] = self.float_steady_state_error_rad
            summary["quantized_steady_state_error_rad"] = self.quantized_steady_state_error_rad
        return summary


def check_ops(model: bytes, scheme: Scheme) -> list[str]:
    """(a) Check the model runs on the servo's TFLite Micro build with the scheme's integer types.

    Every op must be in :data:`FIRMWARE_OPS`, every tensor of the scheme's integer types, and the TFLite Micro
    runtime must load and run the model. Returns the op list.
    """
    ops = model_ops(model)
    unsupported = sorted(set(ops) - FIRMWARE_OPS)
    if unsupported:
        msg = (
            f"op(s) {', '.join(unsupported)} are not in the firmware's TFLite Micro resolver "
            f"({', '.join(sorted(FIRMWARE_OPS))}); export only the deterministic actor with Tanh/ReLU layers"
        )
        raise PolicyRejected(RejectionCause.UNSUPPORTED_OP, msg)
    bad_types = {name: t for name, t in tensor_types(model).items() if t not in _ALLOWED_TENSOR_TYPES[scheme]}
    if bad_types:
        msg = (
            f"tensors {bad_types} are not {scheme.value} integer types: the model is not integer-only; "
            "convert with mm_learning.quantize.convert"
        )
        raise PolicyRejected(RejectionCause.UNSUPPORTED_OP, msg)
    try:
        TflmPolicy(model)
    except TflmError as exc:
        raise PolicyRejected(RejectionCause.UNSUPPORTED_OP, str(exc)) from exc
    return ops


def check_budget(model_bytes: int, arena_bytes: int, budget: Budget) -> None:
    """(d) Model size and TFLite Micro arena within the firmware budget."""
    if model_bytes > budget.model_bytes:
        msg = (
            f"model is {model_bytes} B, above the firmware budget of {budget.model_bytes} B; "
            "use smaller hidden layers or the int8 scheme"
        )
        raise PolicyRejected(RejectionCause.MODEL_TOO_LARGE, msg)
    if arena_bytes > budget.arena_bytes:
        msg = (
            f"TFLite Micro needs a {arena_bytes} B arena, above the firmware budget of {budget.arena_bytes} B; "
            "use narrower hidden layers"
        )
        raise PolicyRejected(RejectionCause.ARENA_TOO_LARGE, msg)


def action_error(float_policy: Controller, quantized: TflmPolicy, held_out_obs: npt.ArrayLike) -> ActionErrorReport:
    """Quantised (TFLite Micro) vs float actions on held-out observations (clipped to [-1, 1] for both)."""
    obs = clip_observations(held_out_obs)
    diff = np.asarray(quantized(obs), dtype=np.float64) - np.asarray(float_policy(obs), dtype=np.float64)
    return ActionErrorReport(len(obs), float(np.sqrt(np.mean(diff**2))), float(np.max(np.abs(diff))))


def check_action_error(report: ActionErrorReport, thresholds: Thresholds) -> None:
    """(b) Refuse when the quantised actions stray too far from the float actions."""
    if report.rmse > thresholds.action_rmse or report.max_abs > thresholds.action_max_abs:
        msg = (
            f"quantised vs float action RMSE {report.rmse:.4f} (limit {thresholds.action_rmse}), max "
            f"{report.max_abs:.4f} (limit {thresholds.action_max_abs}) on {report.samples} held-out "
            "observations; calibrate on more representative rollouts, or export int16x8 if this was int8"
        )
        raise PolicyRejected(RejectionCause.ACTION_ERROR, msg)


def settled_in_time(settle_s: float | None, duration_s: float) -> bool:
    """Whether a move of ``duration_s`` (s) that settled after ``settle_s`` (s; None: never) did by SETTLED_BY."""
    return settle_s is not None and settle_s <= SETTLED_BY * duration_s


def _rollout(env: Any, controller: Controller, seed: int, record: list[np.ndarray] | None) -> tuple[float, np.ndarray]:
    """Run one seeded episode: its return and its error ``target_rad - position_rad`` per step (rad)."""
    obs, info = env.reset(seed=seed)
    total, errors, done = 0.0, [], False
    while not done:
        if record is not None:
            record.append(np.asarray(obs, dtype=np.float32))
        obs, reward, terminated, truncated, info = env.step(np.asarray(controller(obs), dtype=np.float32))
        try:
            errors.append(float(info["target_rad"]) - float(info["position_rad"]))
        except KeyError as exc:
            msg = f"env info lacks {exc}; closed-loop checks need target_rad and position_rad"
            raise ExportError(msg) from exc
        total, done = total + float(reward), terminated or truncated
    return total, np.asarray(errors)


def run_episode(
    env: Any, controller: Controller, seed: int, tolerance_rad: float = DEFAULT_TOLERANCE_RAD
) -> EpisodeResult:
    """Run one seeded episode and measure it.

    Args:
        env: a Gymnasium env whose ``info`` has ``target_rad`` and ``position_rad`` (MuscleMemoryServo-v0 does).
        controller: observation -> action.
        seed: reset seed; the same seed gives the same move.
        tolerance_rad: the settle band (rad), for :attr:`EpisodeResult.settled_in_time`.

    Raises:
        ExportError: if the env's ``info`` lacks ``target_rad`` or ``position_rad``.

    """
    total, error = _rollout(env, controller, seed, None)
    # In ticks: the move lasts len(error) ticks and is settled from the tick after its last one outside the band.
    settle = settling_time_s(error, 1.0, tolerance_rad)
    in_time = settled_in_time(None if settle is None else settle + 1.0, len(error))
    return EpisodeResult(seed, total, steady_state_error_rad(error), in_time, len(error))


def rollout_observations(make_env: Callable[[], Any], controller: Controller, seeds: Sequence[int]) -> np.ndarray:
    """Observations (N, 8) the controller meets on the seeded moves: representative or held-out export data."""
    record: list[np.ndarray] = []
    env = make_env()
    try:
        for seed in seeds:
            _rollout(env, controller, seed, record)
    finally:
        env.close()
    return np.stack(record)


def closed_loop(
    make_env: Callable[[], Any],
    float_policy: Controller,
    quantized: Controller,
    seeds: Sequence[int],
    tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
) -> ClosedLoopReport:
    """(c) Run the float and the quantised policy on the same seeded moves, each in a fresh env.

    ``tolerance_rad`` is the settle band (rad) that decides which moves the float policy settled in time.
    """
    if not seeds:
        raise ExportError("closed-loop check needs at least one seeded move")
    results = []
    for controller in (float_policy, quantized):
        env = make_env()
        try:
            results.append(tuple(run_episode(env, controller, seed, tolerance_rad) for seed in seeds))
        finally:
            env.close()
    return ClosedLoopReport(results[0], results[1])


def closed_loop_schedule(
    twin: BatchTwin, schedule: Schedule, moves: Sequence[Move], float_policy: Controller, quantized: Controller
) -> ClosedLoopReport:
    """(c) for a scheduling policy: float and quantised policy scheduling the servo's base law, all moves at once.

    Each move's steady-state error and settle time are its :func:`mm_contract.metrics.step_metrics`.
    """
    if not moves:
        raise ExportError("closed-loop check needs at least one seeded move")
    results = []
    for controller in (float_policy, quantized):
        evaluation = evaluate_batch(twin, schedule, moves, controller, seed=0)  # the same noise for both
        results.append(
            tuple(
                EpisodeResult(
                    index,
                    episode_return,
                    metrics.steady_state_error_rad,
                    settled_in_time(metrics.settling_time_s, move.duration_s),
                    round(move.duration_s / twin.dt_s),
                )
                for index, (move, episode_return, metrics) in enumerate(
                    zip(moves, evaluation.returns, evaluation.metrics, strict=True)
                )
            )
        )
    return ClosedLoopReport(results[0], results[1])


def check_closed_loop(report: ClosedLoopReport, thresholds: Thresholds) -> None:
    """(c) Refuse a quantised policy that drives the twin differently from the float one.

    Passes when the mean return is within ``return_rel`` of float's and, on the moves the float policy settled in
    time (:attr:`ClosedLoopReport.settled_moves`), the mean steady-state error is at most ``steady_state_error_rad``
    above float's. A quantised policy that does not settle such a move, or settles it off target, shows there.
    """
    problems = []
    if report.return_rel_diff > thresholds.return_rel:
        problems.append(
            f"mean return {report.quantized_return:.4g} vs float {report.float_return:.4g} "
            f"({100 * report.return_rel_diff:.2f} % apart, limit {100 * thresholds.return_rel:.2f} %)"
        )
    excess = report.quantized_steady_state_error_rad - report.float_steady_state_error_rad
    if report.settled_moves and excess > thresholds.steady_state_error_rad:
        problems.append(
            f"mean steady-state error {report.quantized_steady_state_error_rad:.5f} rad vs float "
            f"{report.float_steady_state_error_rad:.5f} rad on the {len(report.settled_moves)} moves the float "
            f"policy settled (more than {thresholds.steady_state_error_rad:.5f} rad worse)"
        )
    if problems:
        msg = (
            f"closed loop over {len(report.float_episodes)} seeded moves: {'; '.join(problems)}; "
            "export int16x8 if this was int8, calibrate on more representative rollouts, or train a policy "
            "that is less steep in features the integer inputs resolve coarsely"
        )
        raise PolicyRejected(RejectionCause.CLOSED_LOOP, msg)
