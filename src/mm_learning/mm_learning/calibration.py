"""Online learning of the deceleration schedule: calibrate the twin to the servo, train there, keep what wins.

The servo's moves are expensive and the schedule's evolution strategy needs millions of control ticks
(docs/learning.md: one generation is 2 × 16 × 32 half-second moves, 512 s of servo time), so on the servo the
learner does not explore; it **measures**. A session (:class:`CalibratedSession`, ROS-free; the learner node runs
it for ``Train`` goals with ``mode: online``, ``algorithm: es``):

1. deploys the classical start (the schedule image whose policy outputs zero: the tuned PTOS the servo runs) and
   runs the seeded evaluation moves on the servo: the baseline, and the first data;
2. **calibrates** the twin to the servo (:func:`fit_plant`): the factors on the profile's uncertain parameters (its
   ``randomization`` keys) whose twin, running the same law and policy from the same starts, tracks the servo's
   measured positions best, searched by the tuner's (1+4) evolution strategy in log space;
3. retunes the base law on the calibrated twin and trains the schedule on top of it (``schedule.train_schedule``
   with ``plant_factors`` and ``retune_evaluations``), exports it with every check, deploys it and runs the same
   evaluation moves on the servo (when the round retuned the law *and* learned a schedule, the retuned law alone
   first); the firmware's guard (servo contract section 4) bounds every one of those moves, and each is recorded
   with the base gains it ran under, for the next calibration;
4. keeps the policy only if it beats the best so far on the servo (the objective's own score, ``tuning.move_score``;
   energy: less energy within 1.05 × the classical start's settle), and otherwise calibrates again with every
   move measured so far, until it wins (``stop_on_target``), the rounds, the servo-time or the wall-time budget
   run out, or the caller cancels. The best policy is left running.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mm_contract.objectives import EnergyBudget, Objective, parse_objective
from mm_contract.profiles import load_profile
from mm_contract.tflm import TflmPolicy
from mm_sim.baselines import PidGains, evolve
from mm_sim.batch import BatchTwin, Schedule, SchedulePolicy, rollout
from mm_sim.evaluate import Evaluation, seeded_moves
from mm_sim.tuning import ENERGY, energy_budget, move_score
from numpy.typing import NDArray

from mm_learning.errors import PolicyRejected
from mm_learning.online_session import (
    CalibratedConfig,
    OnlineError,
    PolicyRecord,
    ServoFleet,
    SessionProgress,
    SessionResult,
    evaluation_episodes,
    move_attempts,
    servo_evaluation,
    whole_move,
)
from mm_learning.schedule import (
    EVALUATION_SEED,
    ScheduleConfig,
    ScheduleResult,
    classical_start,
    export_schedule,
    objective_metric,
    train_schedule,
)
from mm_learning.twin import summarize

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec


FACTOR_BOUND = 3.0
"""Every fitted factor stays within [1/3, 3] of the profile's value."""
MOVES_FILE = "servo_moves.npz"
"""The session's measured moves, in its out_dir (`load_moves`)."""
REST_SPEED_RAD_S = 2.0
"""A move whose first sample is faster than this (rad/s) did not start at rest (the PID had not settled at its
start, e.g. a heavy arm that swung over the top): the twin cannot replay it from rest, so the fit leaves it out."""
FIT_SEED = 4_000_000
"""Seed of the twin's sensing noise while fitting."""


_GAIN_COUNT = len(fields(PidGains))


@dataclass(frozen=True)
class RecordedMove:
    """One move the servo ran, with what drove it.

    Attributes:
        start_rad: measured position at the move's first sample (rad).
        target_rad: the move's target (rad).
        position_rad: measured position at each control tick from the first sample (rad).
        policy_model: the quantised schedule policy (.tflite) the servo ran; None: the classical law alone.
        start_velocity_rad_s: the servo's velocity estimate at the first sample (rad/s).
        base_gains: the gains of the base law the schedule ran on (an image carries them); None: those of the
            schedule `fit_plant` is given (the session's start).
    """

    start_rad: float
    target_rad: float
    position_rad: NDArray[np.float64]
    policy_model: bytes | None = None
    start_velocity_rad_s: float = 0.0
    base_gains: PidGains | None = None

    @property
    def from_rest(self) -> bool:
        """Whether the move started at rest, as the twin starts a move (`REST_SPEED_RAD_S`)."""
        return abs(self.start_velocity_rad_s) <= REST_SPEED_RAD_S


def load_moves(path: Path) -> list[RecordedMove]:
    """The moves a session saved (``servo_moves.npz``), as `fit_plant` takes them."""
    with np.load(path) as saved:
        models = {int(k.removeprefix("model_")): saved[k].tobytes() for k in saved.files if k.startswith("model_")}
        count = len(saved["start_rad"])
        gains = saved["base_gains"] if "base_gains" in saved.files else np.full((count, _GAIN_COUNT), np.nan)
        return [
            RecordedMove(
                float(start),
                float(target),
                row[~np.isnan(row)],
                models.get(int(policy)),
                float(velocity),
                None if np.isnan(base).any() else PidGains(*base.tolist()),
            )
            for start, target, row, policy, velocity, base in zip(
                saved["start_rad"],
                saved["target_rad"],
                saved["position_rad"],
                saved["policy"],
                saved["start_velocity_rad_s"],
                gains,
                strict=True,
            )
        ]


@dataclass(frozen=True)
class PlantFit:
    """A calibrated twin.

    Attributes:
        factors: factor per profile key ("load.mass_kg": 1.41, ...), the twin's plant relative to the profile.
        moves: the recorded moves fitted (those that started at rest).
        rms_error_rad: RMS of twin − servo position over every fitted tick with `factors`.
        nominal_rms_error_rad: the same with the profile's own plant (all factors 1).
        evaluations: candidate plants simulated.
        wall_s: wall time of the fit (s).
    """

    factors: dict[str, float]
    moves: int
    rms_error_rad: float
    nominal_rms_error_rad: float
    evaluations: int
    wall_s: float


def fit_plant(
    profile_name: str,
    load: str,
    schedule: Schedule,
    moves: Sequence[RecordedMove],
    *,
    keys: Sequence[str] | None = None,
    evaluations: int = 120,
    seed: int = 0,
) -> PlantFit:
    """Find the factors on `keys` whose twin runs the recorded moves most like the servo did.

    Each candidate twin runs every recorded move that started at rest (`RecordedMove.from_rest`) from its measured
    start with the law (`schedule`, the policy the servo ran, quantised, under TFLite Micro), and is scored by the
    RMS of its position minus the servo's over every tick. The search is `mm_sim.baselines.evolve` in log space
    from the profile (all factors 1), each factor kept within [1/`FACTOR_BOUND`, `FACTOR_BOUND`].

    Args:
        profile_name: the shipped profile the servo was configured from.
        load: its load.
        schedule: the base law and schedule range the servo ran.
        moves: the servo's moves (at least one).
        keys: the parameters to fit (default: the profile's `randomization` keys, its declared uncertainties).
        evaluations: candidate plants to simulate.
        seed: seed of the search.

    Raises:
        OnlineError: no move started at rest, or a move has fewer than 2 samples.
    """
    started = time.perf_counter()
    profile = load_profile(profile_name)
    names = sorted(profile.randomization) if keys is None else list(keys)
    moves = [move for move in moves if move.from_rest]
    if not moves or min(len(m.position_rad) for m in moves) < 2:
        msg = (
            "the plant fit needs recorded moves of at least 2 samples that start at rest "
            f"(|velocity| <= {REST_SPEED_RAD_S} rad/s); give the PID more settle_s before each move"
        )
        raise OnlineError(msg)
    # One batch per policy and base law the servo ran them with.
    groups: dict[tuple[bytes | None, PidGains | None], list[RecordedMove]] = {}
    for move in moves:
        groups.setdefault((move.policy_model, move.base_gains), []).append(move)
    policies: dict[bytes | None, SchedulePolicy | None] = {
        model: None if model is None else TflmPolicy(model) for model, _ in groups
    }
    total = sum(len(m.position_rad) for m in moves)
    bound = math.log(FACTOR_BOUND)

    def squared_error(factors: Mapping[str, float]) -> float:
        scaled = profile.scaled(load, factors)[0]
        error = 0.0
        for (model, gains), group in groups.items():
            ticks = min(len(m.position_rad) for m in group)
            twin = BatchTwin(scaled, load, len(group), objective={"accuracy": 1.0})
            run = rollout(
                twin,
                schedule if gains is None else replace(schedule, base=gains),
                np.array([m.start_rad for m in group]),
                np.array([m.target_rad for m in group]),
                ticks,
                policy=policies[model],
                seed=FIT_SEED,
            )
            measured = np.stack([m.position_rad[:ticks] for m in group], axis=1)
            error += float(np.sum((run.position_rad - measured) ** 2))
        return error

    def factors_at(x: NDArray[np.float64]) -> dict[str, float]:
        return dict(zip(names, np.exp(np.clip(x, -bound, bound)).tolist(), strict=True))

    def score(x: NDArray[np.float64]) -> float:
        value = squared_error(factors_at(x))
        return -value if math.isfinite(value) else -math.inf

    nominal = -score(np.zeros(len(names)))
    best_x, best = evolve(score, len(names), evaluations=evaluations, seed=seed, sigma=0.3)
    return PlantFit(
        factors_at(best_x),
        len(moves),
        math.sqrt(-best / total),
        math.sqrt(nominal / total),
        evaluations,
        time.perf_counter() - started,
    )


@dataclass(frozen=True)
class Round:
    """One calibrate → train → deploy → evaluate round.

    Attributes:
        fit: the calibrated twin.
        scheduled: whether training found a schedule better than its base law on the calibrated twin's
            validation moves.
        retuned_base: the base law's gains retuned on the calibrated twin, when they beat the start's there (the
            deployed image runs them); None: the start's law. A round with neither deploys nothing.
        servo_metrics: the round's policy (the schedule, else the retuned law) on the servo's evaluation moves
            (empty if it was not deployed).
        servo_score: its score there (`tuning.move_score`, higher is better; NaN if it was not deployed).
        retuned_metrics: the retuned law alone on the servo's evaluation moves, measured before the schedule on
            top of it (empty unless the round found both and deployed both).
        refusal: why the export refused a policy ("" if it did not).
        train_wall_s: wall time of the training (s).
    """

    fit: PlantFit
    scheduled: bool
    retuned_base: PidGains | None
    servo_metrics: dict[str, float]
    servo_score: float
    retuned_metrics: dict[str, float]
    refusal: str
    train_wall_s: float


class CalibratedSession:
    """Runs one session; see the module docstring.

    Args:
        config: the session.
        fleet: the servos (one or more of one load class: one calibration from all their moves, one policy).
        private_key: ECDSA P-256 key that signs the images.
        out_dir: export artifacts (``deploy-<n>/``).
        on_progress: progress hook (phases "deploying", "evaluating", "calibrating", "training").
        should_cancel: polled between moves and generations; True stops the session.
    """

    def __init__(
        self,
        config: CalibratedConfig,
        fleet: ServoFleet,
        *,
        private_key: ec.EllipticCurvePrivateKey,
        out_dir: Path,
        on_progress: Callable[[SessionProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.fleet = fleet
        self._key = private_key
        self._out_dir = out_dir
        self._on_progress = on_progress or (lambda _progress: None)
        self._should_cancel = should_cancel or (lambda: False)
        self.eval_moves = seeded_moves(
            config.eval_moves,
            seed=EVALUATION_SEED,
            range_rad=config.target_limit_rad,
            min_distance_rad=config.min_move_rad,
            duration_s=config.episode_s,
        )
        self.training = ScheduleConfig(
            profile=config.profile,
            load=config.load,
            objective=parse_objective(config.objective),
            generations=config.generations,
            seed=config.seed,
            base_law="ptos",  # the law the servo runs, even where a calibrated twin's PID would do better
        )
        self.terms = self.training.objective.weights
        self.recorded: list[RecordedMove] = []
        self.rounds: list[Round] = []
        self.steps = 0
        self.deploys = 0
        self.servo_time_s = 0.0
        self.incomplete_moves = 0
        """Evaluation moves run again because their transitions came back incomplete."""
        self._train_wall_s = 0.0
        self._start_wall = 0.0
        self._budget: EnergyBudget | None = None
        self._metrics: dict[str, float] = {}
        self._baseline: dict[str, float] = {}
        self._stop_reason = ""
        self._history: list[tuple[int, float]] = []
        """(transitions, score) after each evaluation on the servo."""

    def _report(self, phase: str) -> None:
        wall = time.monotonic() - self._start_wall
        self._on_progress(
            SessionProgress(
                phase=phase,
                steps=self.steps,
                steps_per_s=self.steps / wall if wall > 0.0 else 0.0,
                gradient_steps=0,
                deploys=self.deploys,
                mean_reward=math.nan,
                eval_metrics=dict(self._metrics),
                baseline_metrics=dict(self._baseline),
            )
        )

    def _should_stop(self) -> bool:
        if not self._stop_reason:
            config = self.config
            if self._should_cancel():
                self._stop_reason = "cancelled"
            elif config.max_time_s and time.monotonic() - self._start_wall >= config.max_time_s:
                self._stop_reason = "time"
            elif config.max_servo_s and self.servo_time_s >= config.max_servo_s:
                self._stop_reason = "servo_time"
        return bool(self._stop_reason)

    def _deploy(self, result: ScheduleResult) -> PolicyRecord:
        """Export `result`'s best policy with every check and deploy it (PolicyRejected: nothing deployed)."""
        self._report("deploying")
        export = export_schedule(result, private_key=self._key, out_dir=self._out_dir / f"deploy-{self.deploys:04d}")
        crc = self.fleet.deploy(export.image, export.metadata)
        self.deploys += 1
        metadata = export.metadata | {"paths": {kind: str(path) for kind, path in export.paths.items()}}
        return PolicyRecord(export.image, metadata, crc, self.steps)

    def _evaluate(self, model: bytes | None, base_gains: PidGains | None = None) -> tuple[dict[str, float], float]:
        """Run the evaluation moves on the servo with what it runs now; its metrics and score (higher: better).

        Every move is recorded for the next calibration, with `model`, the quantised policy the servo runs
        (None: the classical start), and `base_gains`, its base law's gains (None: the start's).
        """
        self._report("evaluating")
        episodes = evaluation_episodes(self.eval_moves, self.config.settle_s)
        runs = []
        for move, episode, attempts in zip(
            self.eval_moves, episodes, self.fleet.map(move_attempts, episodes), strict=True
        ):
            for columns in attempts:  # a run that came back incomplete cost its servo time too
                self.steps += columns.count
                self.servo_time_s += columns.count * columns.dt_s + self.config.settle_s
            self.incomplete_moves += len(attempts) - 1
            whole = whole_move(attempts, episode)
            runs.append(whole)
            positions = np.asarray(whole.position_rad, dtype=np.float64)
            velocity = float(whole.velocity_rad_s[0])
            self.recorded.append(
                RecordedMove(float(positions[0]), move.target_rad, positions, model, velocity, base_gains)
            )
        self._save_moves()
        evaluation = servo_evaluation(self.terms, runs, [m.start_rad for m in self.eval_moves])
        if self._budget is None and self.training.objective.text == ENERGY:
            self._budget = energy_budget(evaluation)  # the classical start's settle sets the energy budget
        score = _score(evaluation, self._budget)
        self._history.append((self.steps, score))
        return summarize(evaluation), score

    def _save_moves(self) -> None:
        """Write every move measured so far to ``<out_dir>/servo_moves.npz``, replaced atomically.

        What the calibrations fitted, to reproduce or inspect them (`load_moves`).
        """
        self._out_dir.mkdir(parents=True, exist_ok=True)
        models = [m for m in dict.fromkeys(move.policy_model for move in self.recorded) if m is not None]
        ticks = max(len(move.position_rad) for move in self.recorded)
        positions = np.full((len(self.recorded), ticks), np.nan)
        for row, move in enumerate(self.recorded):
            positions[row, : len(move.position_rad)] = move.position_rad
        path = self._out_dir / MOVES_FILE
        arrays: dict[str, Any] = {
            "start_rad": np.array([m.start_rad for m in self.recorded]),
            "target_rad": np.array([m.target_rad for m in self.recorded]),
            "position_rad": positions,
            "policy": np.array([-1 if m.policy_model is None else models.index(m.policy_model) for m in self.recorded]),
            "start_velocity_rad_s": np.array([m.start_velocity_rad_s for m in self.recorded]),
            "base_gains": np.array(
                [[np.nan] * _GAIN_COUNT if m.base_gains is None else astuple(m.base_gains) for m in self.recorded]
            ),
        }
        arrays |= {f"model_{i}": np.frombuffer(model, dtype=np.uint8) for i, model in enumerate(models)}
        with path.with_suffix(".tmp.npz").open("wb") as file:
            np.savez(file, **arrays)
        os.replace(path.with_suffix(".tmp.npz"), path)

    def _round(
        self, index: int, schedule: Schedule, best: PolicyRecord, best_score: float
    ) -> tuple[Round, tuple[PolicyRecord, float] | None, PolicyRecord | None]:
        """Calibrate, train, deploy and evaluate.

        Returns:
            The round; the best evaluated policy that beats `best` on the servo, with its score (None: none did);
            the policy the servo runs now (None: the round deployed nothing).
        """
        config = self.config
        self._report("calibrating")
        fit = fit_plant(
            config.profile,
            config.load,
            schedule,
            self.recorded,
            evaluations=config.fit_evaluations,
            seed=config.seed + index,
        )
        self._report("training")
        training = replace(
            self.training,
            plant_factors=tuple(sorted(fit.factors.items())),
            seed=config.seed + index,
            retune_evaluations=config.retune_evaluations,
        )
        result = train_schedule(training, should_cancel=self._should_stop)
        self._train_wall_s += result.wall_s
        retuned = None if result.schedule.base == schedule.base else result.schedule.base
        # Candidates: the law retuned for the calibrated twin, and a schedule that beat it there on top; when the
        # round found both, the retuned law alone goes first, so the servo says what the schedule adds.
        scheduled = result.best is not None
        candidates = [result.start(), result] if retuned and scheduled else [result] if retuned or scheduled else []
        measured: list[tuple[dict[str, float], float]] = []
        winner: tuple[PolicyRecord, float] | None = None
        running: PolicyRecord | None = None
        refusal = ""
        for candidate in candidates:
            if measured and self._should_stop():
                break
            try:
                record = self._deploy(candidate)
            except PolicyRejected as exc:
                refusal = str(exc)
                continue
            model = Path(record.metadata["paths"]["tflite"]).read_bytes()
            metrics, score = self._evaluate(model, retuned)
            self._metrics = metrics
            running = PolicyRecord(record.image, record.metadata, record.policy_crc32, record.steps, metrics)
            measured.append((metrics, score))
            if score > best_score and _metric_better(self.training.objective, metrics, best.metrics):
                winner, best, best_score = (running, score), running, score
        metrics, score = measured[-1] if measured else ({}, math.nan)
        retuned_metrics = measured[0][0] if len(measured) == len(candidates) == 2 else {}
        outcome = Round(fit, scheduled, retuned, metrics, score, retuned_metrics, refusal, result.wall_s)
        return outcome, winner, running

    def run(self) -> SessionResult:
        """Run until a policy wins on the servo, the rounds or a budget run out, or a cancel.

        The best policy is left running and the servo in HOLD.

        Raises:
            OnlineError: the servo refused the start policy or stopped answering.
        """
        self._start_wall = time.monotonic()
        self._history.clear()
        config = self.config
        try:
            untrained = classical_start(self.training)
            start_record = self._deploy(untrained)
            self._baseline, start_score = self._evaluate(None)
            start = replace(start_record, metrics=dict(self._baseline))
            best, best_score = start, start_score
            running = start
            for index in range(config.rounds):
                if self._should_stop():
                    break
                outcome, better, deployed = self._round(index, untrained.schedule, best, best_score)
                self.rounds.append(outcome)
                running = deployed or running
                if better is not None:
                    best, best_score = better
                    if config.stop_on_target:
                        self._stop_reason = "target"
                        break
            if not self._stop_reason:
                self._stop_reason = "rounds"
            if running is not best:  # a later policy lost: the best one runs again
                self._report("deploying")
                self.fleet.deploy(best.image, best.metadata)
        finally:
            self.fleet.hold()
        return SessionResult(
            stop_reason=self._stop_reason,
            steps=self.steps,
            gradient_steps=0,
            deploys=self.deploys,
            start=start,
            best=best,
            history=list(self._history),
            elapsed_s=time.monotonic() - self._start_wall,
            servo_time_s=self.servo_time_s,
            train_time_s=self._train_wall_s,
        )


def _metric_better(objective: Objective, metrics: Mapping[str, float], than: Mapping[str, float]) -> bool:
    """Whether `metrics` beat `than` on the objective's own metric (`schedule.objective_metric`) too."""
    name, lower = objective_metric(objective)
    return metrics[name] < than[name] if lower else metrics[name] > than[name]


def _score(evaluation: Evaluation, budget: EnergyBudget | None) -> float:
    """`tuning.move_score` of a servo evaluation (higher: better); -inf when not finite."""
    value = move_score(evaluation, budget)
    return value if math.isfinite(value) else -math.inf
