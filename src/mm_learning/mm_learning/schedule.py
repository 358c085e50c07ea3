"""Learning a deceleration schedule for the classical controller on the batched twin (docs/learning.md).

The servo's classical law for an objective is PTOS (`mm_sim.tuning.classical`): it brakes along a fixed curve,
which is too hard where gravity helps the load on and too soft where it holds it back. The policy, a small MLP of
the servo's 8 observation features, decides every `decimation` ticks an action a ∈ [-1, 1], and the servo's
PTOS brakes at `decel_rad_s2 · exp(schedule_range · a)` until the next decision (servo contract, section 4). Its
output layer starts at zero, so the untrained policy *is* the classical controller, and a policy is kept only
when it beats every earlier one on the validation moves, the classical start included.

Training is an evolution strategy (Salimans et al. 2017: antithetic Gaussian perturbations of the weights,
centred-rank returns, Adam): every generation runs all perturbed policies on the same random moves with the same
sensing noise in one `mm_sim.batch.rollout` (`pairs` × 2 × `moves` servos), so a pair's difference in return is
what the perturbation did. docs/learning.md gives the measurements behind choosing it over PPO and SAC here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.constants import OBS_DIM
from mm_contract.objectives import EnergyBudget, Objective, parse_objective
from mm_contract.profiles import ServoProfile, load_profile
from mm_contract.registry import Registry, RegistryEntry
from mm_contract.signing import public_key_hex, sign
from mm_contract.tflm import TflmPolicy
from mm_sim.baselines import LAWS, TimeOptimalController, gravity_feedforward_a, tuned_gains
from mm_sim.batch import BatchTwin, Rollout, Schedule, evaluate_batch, random_moves, rollout
from mm_sim.env import ServoEnv
from mm_sim.evaluate import Evaluation, Move, evaluate, seeded_moves
from mm_sim.tuning import (
    ENERGY,
    JUDGING_SET_MOVES,
    TUNING_SEED,
    Classical,
    classical,
    run_law,
    tune_law,
    tuning_budget,
)
from numpy.typing import NDArray

from mm_learning.actor import ActorSpec, DenseLayer
from mm_learning.errors import TrainingError
from mm_learning.export import ExportResult, ScheduleClosedLoop, export_policy
from mm_learning.goals import SCHEDULE_ALGORITHM
from mm_learning.twin import summarize

ALGORITHM = SCHEDULE_ALGORITHM
"""The Train goal's and `mm train`'s name for this trainer (sim mode; defined in mm_learning.goals)."""
VALIDATION_SEED = 2_000_000
"""Seed of the validation moves that choose the best policy (the benchmark evaluates on other moves)."""
CALIBRATION_SEED, HELD_OUT_SEED, CHECK_SEED = 3_000_000, 3_100_000, 3_200_000
"""Seeds of the export's calibration, held-out (check b) and closed-loop (check c) moves: disjoint from training."""
EXPORT_MOVES = 20
DEFAULT_OBJECTIVE = parse_objective("speed")
"""The objective a schedule learns when none is given."""
Weights = NDArray[np.float64]


@dataclass(frozen=True)
class ScheduleConfig:
    """One training run.

    Attributes:
        profile: shipped profile name.
        load: one of its loads.
        objective: a named objective or a mix ("speed:0.7,energy:0.3"), parsed; the classical laws are those
            tuned for its largest component (`Objective.base`), the reward is the mix's.
        generations: the budget, in ES generations (each `2 · pairs · moves` moves of `episode_s`): a measure of
            experience that does not depend on how busy the machine is.
        seed: seed of the perturbations, the training moves and their sensing noise.
        schedule_range: ρ, the log-range of the deceleration scale (the image's schedule_range).
        decimation: control ticks per policy decision (the image's policy_decimation).
        hidden: units of the policy's one tanh hidden layer.
        pairs: antithetic perturbation pairs per generation.
        moves: moves every perturbed policy runs per generation.
        sigma: perturbation std on the weights.
        learning_rate: Adam step size on the weights.
        episode_s: length of a training move (s); validation moves last 1 s. None: `default_episode_s`.
        validation_moves: moves that choose the best policy.
        validate_every: generations between two validations.
        plant_factors: train, validate and check on the profile's plant scaled by these factors ("load.mass_kg",
            1.4), e.g. a twin calibrated to a servo (`mm_learning.calibration`); the classical laws stay the
            profile's tuned ones, the laws the servo runs.
        base_law: the law to schedule: "ptos", or "" for the objective's classical controller (the better of PID
            and PTOS on the validation moves, which must be PTOS). A calibrated twin keeps the law the servo runs.
        retune_evaluations: 0: schedule the law with its cached gains. More: first retune its gains on this twin's
            plant (`mm_sim.tuning.tune_law`, a local search from the cached gains with this plant's gravity
            feed-forward, with this many evaluations on the tuner's moves) and schedule the retuned law when it
            scores better on the validation moves: on a twin calibrated to a unit, the law tuned for the unit's
            own plant (the image carries the base gains).
    """

    profile: str = "mm_v3"
    load: str = "pendulum"
    objective: Objective = DEFAULT_OBJECTIVE
    generations: int = 60
    seed: int = 0
    schedule_range: float = 0.7
    decimation: int = 2
    hidden: int = 16
    pairs: int = 16
    moves: int = 32
    sigma: float = 0.1
    learning_rate: float = 0.02
    episode_s: float | None = None
    validation_moves: int = JUDGING_SET_MOVES
    validate_every: int = 5
    plant_factors: tuple[tuple[str, float], ...] = ()
    base_law: str = ""
    retune_evaluations: int = 0

    def __post_init__(self) -> None:
        if min(self.generations, self.hidden, self.pairs, self.moves, self.validate_every, self.decimation) < 1:
            msg = f"generations, hidden, pairs, moves, validate_every and decimation must be >= 1: {self}"
            raise TrainingError(msg)
        if self.retune_evaluations < 0:
            msg = f"retune_evaluations must be >= 0 (0: the cached gains): {self.retune_evaluations}"
            raise TrainingError(msg)
        if self.base_law not in ("", "ptos"):
            msg = f"base_law {self.base_law!r} must be 'ptos' or '' (the objective's classical controller)"
            raise TrainingError(msg)
        if not (self.sigma > 0.0 and self.learning_rate > 0.0 and (self.episode_s is None or self.episode_s > 0.0)):
            msg = f"sigma, learning_rate and episode_s must be > 0: {self}"
            raise TrainingError(msg)

    def twin_profile(self) -> ServoProfile:
        """The profile the twin trains on: the shipped one, its load scaled by `plant_factors`."""
        return load_profile(self.profile).scaled(self.load, dict(self.plant_factors))[0]

    @property
    def move_s(self) -> float:
        """The length of a training move (s): `episode_s`, or the objective's default."""
        return self.episode_s if self.episode_s is not None else default_episode_s(self.objective)


def default_episode_s(objective: Objective) -> float:
    """Training move length (s): 0.5 s, where the fastest laws settle, or 1 s for `energy`.

    The energy criterion needs the slower moves it asks for (about 0.5 s on mm_v3 + pendulum) to settle inside
    the training move.
    """
    return 1.0 if objective.text == ENERGY else 0.5


UNBOUNDED_GENERATIONS = 1_000_000
"""A generation budget for runs bounded by wall time or a cancel instead."""


def ticks_per_generation(config: ScheduleConfig) -> int:
    """Control ticks of experience one generation collects (every perturbed policy on every training move)."""
    return 2 * config.pairs * config.moves * round(config.move_s * config.twin_profile().control.rate_hz)


class MlpPolicy:
    """The policy's weights as one flat vector, and its forward pass for one or many weight vectors at once.

    Layout: W1 (8 × hidden), b1 (hidden), W2 (hidden × 1), b2 (1); a = tanh(W2ᵀ tanh(W1ᵀ o + b1) + b2).
    """

    def __init__(self, hidden: int) -> None:
        """A layout with `hidden` tanh units."""
        self.hidden = hidden
        self._shapes = ((OBS_DIM, hidden), (hidden,), (hidden, 1), (1,))
        self.size = sum(math.prod(shape) for shape in self._shapes)

    def initial(self, rng: np.random.Generator) -> Weights:
        """Random hidden layer, zero output layer: every observation maps to a = 0, the classical controller."""
        weights = np.zeros(self.size)
        hidden_part = OBS_DIM * self.hidden + self.hidden
        weights[:hidden_part] = rng.standard_normal(hidden_part) * 0.5
        return weights

    def _unpack(self, weights: NDArray[np.float64]) -> list[NDArray[np.float64]]:
        parts, start = [], 0
        for shape in self._shapes:
            size = math.prod(shape)
            parts.append(weights[:, start : start + size].reshape((len(weights), *shape)))
            start += size
        return parts

    def actions(self, weights: NDArray[np.float64], observations: NDArray[np.float32]) -> NDArray[np.float64]:
        """Actions (P × M) of P weight vectors (P × size), each on its own M observations (P × M × 8)."""
        w1, b1, w2, b2 = self._unpack(weights)
        hidden = np.tanh(np.einsum("pmi,pih->pmh", observations, w1) + b1[:, None, :])
        return np.tanh(np.einsum("pmh,pho->pmo", hidden, w2)[..., 0] + b2)

    def function(self, weights: Weights) -> Callable[[NDArray[np.float32]], NDArray[np.float64]]:
        """The policy of one weight vector, for a batch of observations (copies × 8)."""
        return lambda observations: self.actions(weights[None], observations[None])[0]

    def actor(self, weights: Weights) -> ActorSpec:
        """The exporter's view of one weight vector: tanh hidden layer, linear output, tanh squash."""
        w1, b1, w2, b2 = (part[0] for part in self._unpack(weights[None]))
        return ActorSpec(
            (
                DenseLayer(w1.astype(np.float32), b1.astype(np.float32), "tanh"),
                DenseLayer(w2.astype(np.float32), b2.astype(np.float32), "linear"),
            ),
            squash="tanh",
            algorithm="es",
        )


@dataclass(frozen=True)
class Progress:
    """A validation during training.

    Attributes:
        generation: generations done.
        ticks: control ticks of experience so far.
        elapsed_s: wall time since the run started (s).
        evaluation: the present policy on the validation moves.
        score: the present policy's validation score (`mm_sim.tuning.move_score`: the mean return, or for
            `energy` the least-energy-at-matched-settle criterion).
        best_score: the best validation score so far (the classical start's at first).
        start: the classical controller on the same validation moves.
        start_score: its score.
        tick_s: the control period (s).
    """

    generation: int
    ticks: int
    elapsed_s: float
    evaluation: Evaluation
    score: float
    best_score: float
    start: Evaluation
    start_score: float
    tick_s: float

    @property
    def mean_reward_per_tick(self) -> float:
        """The present policy's mean validation reward per control tick."""
        return self.evaluation.mean_return / (self.evaluation.moves[0].duration_s / self.tick_s)


@dataclass(frozen=True)
class ScheduleResult:
    """What a run produced.

    Attributes:
        config: the run's configuration.
        policy: the policy's layout.
        weights: the best validated weights (the zero-output start when nothing beat the classical controller).
        schedule: base law, range and decimation the policy was trained with.
        classical: the classical controllers on the validation moves.
        best: the best policy's validation, or None when no policy beat the classical start.
        curve: (ticks, validation score) after each validation, starting with the classical start at 0.
        ticks: experience used. wall_s: wall time of the run (s).
        beat_after_s: wall time (s, setup included) at the first validation that beat the classical start; None
            if none did.
    """

    config: ScheduleConfig
    policy: MlpPolicy
    weights: Weights
    schedule: Schedule
    classical: Classical
    best: Evaluation | None
    curve: list[tuple[int, float]]
    ticks: int
    wall_s: float
    beat_after_s: float | None

    @property
    def ticks_per_s(self) -> float:
        """Control ticks of experience per second of wall time."""
        return self.ticks / self.wall_s

    def start(self) -> ScheduleResult:
        """The run's classical start, to export: its base law (as retuned, if it was) under the zero-output policy."""
        weights = self.policy.initial(np.random.default_rng(self.config.seed))
        return dataclasses.replace(self, weights=weights, best=None, curve=self.curve[:1], beat_after_s=None)

    def unlearned(self) -> str:
        """What the exported image is when no policy beat the classical start on validation ("" when one did).

        The start itself (a = 0): the classical law bit for bit, however the row that runs it is labelled.
        """
        if self.best is not None:
            return ""
        validations = len(self.curve) - 1
        return (
            f"no policy beat the classical start in {validations} validation{'' if validations == 1 else 's'}, so "
            f"the image is the start: {self.classical.law.upper()} unscheduled (a = 0)"
        )


class _Adam:
    """Adam on a flat weight vector (ascending the ES gradient estimate)."""

    def __init__(self, size: int, learning_rate: float) -> None:
        self._m, self._v, self._t, self._lr = np.zeros(size), np.zeros(size), 0, learning_rate

    def step(self, gradient: Weights) -> Weights:
        self._t += 1
        self._m = 0.9 * self._m + 0.1 * gradient
        self._v = 0.999 * self._v + 0.001 * gradient**2
        m_hat, v_hat = self._m / (1 - 0.9**self._t), self._v / (1 - 0.999**self._t)
        return self._lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def _centred_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    ranks = np.empty(len(values))
    ranks[np.argsort(values)] = np.arange(len(values))
    return ranks / (len(values) - 1) - 0.5


class _GenerationScores:
    """Each perturbed policy's score on a generation's moves: its mean return, or for `energy` the criterion.

    The energy budget is set by the reference PID on the same moves (its own rollout, `moves` servos): with the
    budget of the validation moves the search drifted past it, validation settle 0.500 → 0.546 s in 60
    generations on mm_v3 + pendulum, since a generation's random moves settle sooner or later than those.
    """

    def __init__(self, base: Classical, population: int, reference_twin: BatchTwin) -> None:
        """Scores for `population` policies; `reference_twin` has one servo per move for the reference PID."""
        self._population = population
        self._reference: tuple[BatchTwin, Schedule] | None = None
        if base.budget is not None and base.pid_gains is not None:
            self._reference = (reference_twin, Schedule(base.pid_gains, 0.0, 1))

    def __call__(self, run: Rollout, starts: Weights, targets: Weights, ticks: int, seed: int) -> Weights:
        """Scores (population,) of `run`, whose servos ran `starts` → `targets` once per perturbed policy."""
        shape = (self._population, len(targets))
        if self._reference is None:
            return np.asarray(run.returns.reshape(shape).mean(axis=1))
        twin, law = self._reference
        reference = rollout(twin, law, starts, targets, ticks, seed=seed).outcomes(
            targets, twin.dt_s, twin.tolerance_rad
        )
        budget = EnergyBudget.matching(float(np.nanmean(reference[1])), float(reference[0].mean()))
        energy_j, settle_s = run.outcomes(np.tile(targets, self._population), twin.dt_s, twin.tolerance_rad)
        return budget.score_moves(energy_j.reshape(shape), settle_s.reshape(shape))


def _check_move_length(config: ScheduleConfig, base: Classical) -> None:
    """Refuse training moves that end before the energy settle budget (no move could score as settled).

    Raises:
        TrainingError: `config.move_s` is not longer than the budget's settling time.
    """
    if base.budget is not None and config.move_s <= base.budget.settle_s:
        msg = (
            f"{config.objective.text} moves of {config.move_s:g} s end before the settle budget "
            f"{base.budget.settle_s:.3f} s: give episode_s > {base.budget.settle_s:.3f} (default "
            f"{default_episode_s(config.objective):g})"
        )
        raise TrainingError(msg)


def _setup(config: ScheduleConfig) -> tuple[ServoProfile, list[Move], Classical, Schedule]:
    """The twin's profile, the validation moves, the classical law evaluated on them and the schedule of it.

    Raises:
        TrainingError: the classical law is the PID (nothing to schedule), or the moves are too short.
    """
    profile = config.twin_profile()
    validation = seeded_moves(config.validation_moves, seed=VALIDATION_SEED)
    base_name = config.objective.base
    base = classical(profile, config.load, base_name, validation)
    if config.base_law == "ptos" and base.law != "ptos":
        base = dataclasses.replace(base, law="ptos", gains=tuned_gains(profile, config.load, base_name, law="ptos"))
    if base.gains.decel_rad_s2 <= 0.0:
        msg = f"the classical controller of {config.objective.text!r} here is the PID; a schedule needs PTOS to scale"
        raise TrainingError(msg)
    if config.retune_evaluations > 0:
        base = _retuned(config, profile, base, validation)
    _check_move_length(config, base)
    return profile, validation, base, Schedule(base.gains, config.schedule_range, config.decimation)


RETUNE_MOVES = 30
"""Moves of the base law's retune on the twin's plant (the tuner's seed: `mm_sim.tuning.TUNING_SEED`)."""


def _retuned(config: ScheduleConfig, profile: ServoProfile, base: Classical, validation: list[Move]) -> Classical:
    """`base` (PTOS) with its gains retuned on `profile`'s plant, when that scores better on `validation`.

    The search starts from the cached gains with the gravity feed-forward of `profile`'s plant
    (`baselines.gravity_feedforward_a`, the rule the cached gains follow on the nominal one), which the tuner keeps:
    on a calibrated twin, the gravity torque per ampere the fit found.
    """
    name = config.objective.base
    moves = seeded_moves(RETUNE_MOVES, seed=TUNING_SEED)
    start = dataclasses.replace(base.gains, gravity_ff_a=gravity_feedforward_a(profile, profile.load(config.load)))
    budget = tuning_budget(profile, config.load, name, moves, base.pid_gains)
    gains, _ = tune_law(
        profile,
        config.load,
        name,
        "ptos",
        moves=moves,
        evaluations=config.retune_evaluations,
        seed=config.seed,
        budget=budget,
        start=start,
    )
    ptos = run_law(profile, config.load, name, gains, validation)
    if base.score(ptos) <= base.score(base.ptos):
        return base
    return dataclasses.replace(base, gains=gains, ptos=ptos)


def classical_start(config: ScheduleConfig) -> ScheduleResult:
    """The untrained policy as a result to export: its output layer is zero, so the servo runs the classical law.

    Raises:
        TrainingError: as `train_schedule`.
    """
    started = time.perf_counter()
    _, _, base, schedule = _setup(config)
    policy = MlpPolicy(config.hidden)
    weights = policy.initial(np.random.default_rng(config.seed))
    curve = [(0, base.score(base.start))]
    return ScheduleResult(config, policy, weights, schedule, base, None, curve, 0, time.perf_counter() - started, None)


def train_schedule(
    config: ScheduleConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ScheduleResult:
    """Train a scheduling policy on the batched twin and keep the best validated one."""
    started = time.perf_counter()
    profile, validation, base, schedule = _setup(config)
    rng = np.random.default_rng(config.seed)
    policy = MlpPolicy(config.hidden)
    weights = policy.initial(rng)
    best_weights = weights.copy()
    adam = _Adam(policy.size, config.learning_rate)
    population = 2 * config.pairs
    terms = config.objective.weights
    twin = BatchTwin(profile, config.load, population * config.moves, objective=terms)
    validation_twin = BatchTwin(profile, config.load, len(validation), objective=terms)
    scores = _GenerationScores(base, population, BatchTwin(profile, config.load, config.moves, objective=terms))
    episode_ticks = round(config.move_s / profile.dt_s)
    start_score = base.score(base.start)
    curve, best, best_score, beat_after_s, ticks = [(0, start_score)], None, start_score, None, 0
    for generation in range(1, config.generations + 1):
        if should_cancel is not None and should_cancel():
            break
        noise = rng.standard_normal((config.pairs, policy.size))
        candidates = np.concatenate([weights + config.sigma * noise, weights - config.sigma * noise])
        starts, targets = random_moves(rng, config.moves)

        def act(observations: NDArray[np.float32], candidates: Weights = candidates) -> NDArray[np.float64]:
            shaped = observations.reshape(population, config.moves, OBS_DIM)
            return policy.actions(candidates, shaped).reshape(-1)

        seed = int(rng.integers(2**31))
        tiled = np.tile(starts, population), np.tile(targets, population)
        run = rollout(twin, schedule, *tiled, episode_ticks, policy=act, seed=seed)
        ticks += episode_ticks * twin.copies
        ranks = _centred_ranks(scores(run, starts, targets, episode_ticks, seed))
        gradient = ((ranks[: config.pairs] - ranks[config.pairs :])[:, None] * noise).sum(axis=0)
        weights = weights + adam.step(gradient / (config.pairs * config.sigma))
        if generation % config.validate_every and generation != config.generations:
            continue
        evaluation = evaluate_batch(
            validation_twin, schedule, validation, policy.function(weights), seed=VALIDATION_SEED
        )
        score = base.score(evaluation)
        curve.append((ticks, score))
        if math.isfinite(score) and score > best_score:
            if best is None:
                beat_after_s = time.perf_counter() - started
            best, best_score, best_weights = evaluation, score, weights.copy()
        if on_progress is not None:
            elapsed_s = time.perf_counter() - started
            on_progress(
                Progress(
                    generation, ticks, elapsed_s, evaluation, score, best_score, base.start, start_score, profile.dt_s
                )
            )
    return ScheduleResult(
        config,
        policy,
        best_weights,
        schedule,
        base,
        best,
        curve,
        ticks,
        time.perf_counter() - started,
        beat_after_s,
    )


def export_schedule(
    result: ScheduleResult,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    out_dir: Path,
    name: str = "policy",
    metrics: Mapping[str, float] | None = None,
) -> ExportResult:
    """Export the best policy of `result` as a schedule image (`export.export_policy`, every check).

    Calibration and held-out observations are what the float policy decided on in the batched twin on disjoint
    seeded moves; check (c) runs the float and the quantised policy on the servo's base law on a third set.
    """
    config = result.config
    actor = result.policy.actor(result.weights)
    profile = config.twin_profile()

    def twin(copies: int) -> BatchTwin:
        return BatchTwin(profile, config.load, copies, objective=config.objective)

    def decided_on(seed: int) -> NDArray[np.float32]:
        observations: list[NDArray[np.float32]] = []
        moves = seeded_moves(EXPORT_MOVES, seed=seed)
        evaluate_batch(twin(len(moves)), result.schedule, moves, actor, seed=seed, record=observations)
        return np.concatenate(observations)

    check_moves = seeded_moves(EXPORT_MOVES, seed=CHECK_SEED)
    return export_policy(
        actor,
        scales=twin(1).scales,
        representative_obs=decided_on(CALIBRATION_SEED),
        held_out_obs=decided_on(HELD_OUT_SEED),
        closed_loop_setup=ScheduleClosedLoop(lambda: twin(len(check_moves)), check_moves),
        private_key=private_key,
        out_dir=out_dir,
        name=name,
        objective=config.objective.text,
        training_steps=result.ticks,
        metrics=metrics,
        schedule=result.schedule,
    )


EVALUATION_SEED = 1_000_000
"""Seed of the moves every controller is compared on after training (the trainer's evaluation moves)."""


OBJECTIVE_METRICS: dict[str, tuple[str, bool]] = {
    "speed": ("mean_settling_time_s", True),
    "energy": ("mean_energy_j", True),
    "accuracy": ("mean_rms_error_rad", True),
}
"""Each named objective's own metric and whether lower is better; others compare the objective's return."""


def objective_metric(objective: Objective) -> tuple[str, bool]:
    """The metric an objective's controllers are compared on (a `summarize` key) and whether lower is better."""
    return OBJECTIVE_METRICS.get(objective.text, ("mean_return", False))


@dataclass(frozen=True)
class Comparison:
    """Every controller on the same evaluation moves: `summarize` metrics per row.

    Attributes:
        rows: "pid", "ptos", "policy" (the quantised policy as the servo runs it, TFLite Micro) and "bound"
            (the time-optimal bound), each `twin.summarize` of its evaluation.
    """

    rows: dict[str, dict[str, float]]

    def verdict(self, objective: Objective) -> str:
        """One line: the policy against the better classical law and the PID on the objective's own metric."""
        metric, _ = objective_metric(objective)
        parts = [
            f"{row.upper()} {self.rows[row][metric]:.4g} ({self.change_pct(objective, row):+.1f} %)"
            for row in ("ptos", "pid", "bound")
        ]
        return f"{metric} {self.rows['policy'][metric]:.4g} vs " + ", ".join(parts) + " (+: the policy is better)"

    def change_pct(self, objective: Objective, row: str) -> float:
        """How much better (%, + better) the policy is than `row` on the objective's own metric."""
        metric, lower = objective_metric(objective)
        policy, other = self.rows["policy"][metric], self.rows[row][metric]
        return 100.0 * (other - policy) / abs(other) if lower else 100.0 * (policy - other) / abs(other)

    def flat(self) -> dict[str, float]:
        """The policy's metrics by name, the others prefixed with their row ("pid_mean_settling_time_s", ...)."""
        flat = {name: value for name, value in self.rows["policy"].items() if math.isfinite(value)}
        for row in ("pid", "ptos", "bound"):
            flat |= {f"{row}_{name}": value for name, value in self.rows[row].items() if math.isfinite(value)}
        return flat


def compare(result: ScheduleResult, model: bytes, moves: int) -> Comparison:
    """PID, PTOS, the exported policy under TFLite Micro and the bound on `moves` seeded evaluation moves."""
    config = result.config
    profile = config.twin_profile()
    evaluation_moves = seeded_moves(moves, seed=EVALUATION_SEED)

    def on_twin(schedule: Schedule, policy: TflmPolicy | None = None) -> dict[str, float]:
        twin = BatchTwin(profile, config.load, moves, objective=config.objective)
        return summarize(evaluate_batch(twin, schedule, evaluation_moves, policy, seed=EVALUATION_SEED))

    laws = {law: tuned_gains(profile, config.load, config.objective.base, law=law) for law in LAWS}
    env = ServoEnv(profile, load=config.load, objective=config.objective)
    bound = TimeOptimalController(tuned_gains(profile, config.load, "speed"))
    return Comparison(
        {
            "pid": on_twin(Schedule(laws["pid"], 0.0, 1)),
            "ptos": on_twin(Schedule(laws["ptos"], 0.0, 1)),
            "policy": on_twin(result.schedule, TflmPolicy(model)),
            "bound": summarize(evaluate(env, bound, evaluation_moves, seed=EVALUATION_SEED)),
        }
    )


@dataclass(frozen=True)
class Checked:
    """A trained policy exported with every check and compared, not yet registered.

    Attributes:
        export: the accepted export (metadata, files; its image is unversioned).
        comparison: every controller on the evaluation moves.
        metadata: the export's metadata with the comparison, the validation curve and the training time: what
            the registry stores with the policy.
    """

    export: ExportResult
    comparison: Comparison
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Published:
    """A trained, exported, checked and registered scheduling policy.

    Attributes:
        result: the training run.
        export: the accepted export (metadata, files; its image is unversioned).
        entry: its registry entry, whose `image()` is the versioned image to deploy.
        comparison: every controller on the evaluation moves.
    """

    result: ScheduleResult
    export: ExportResult
    entry: RegistryEntry
    comparison: Comparison


def check(
    result: ScheduleResult, *, private_key: ec.EllipticCurvePrivateKey, out_dir: Path, evaluation_moves: int = 20
) -> Checked:
    """After `train_schedule`: the best validated policy → export with every check → compare.

    Raises:
        PolicyRejected: the export refused the policy.
    """
    export = export_schedule(result, private_key=private_key, out_dir=out_dir)
    comparison = compare(result, export.paths["tflite"].read_bytes(), evaluation_moves)
    metadata = dict(export.metadata) | {
        "quantized_metrics": comparison.flat(),
        "comparison": comparison.rows,
        "classical_law": result.classical.law,
        "validation_curve": result.curve,
        "training_wall_s": result.wall_s,
    }
    return Checked(export, comparison, metadata)


def register(
    image: bytes, metadata: Mapping[str, Any], *, registry: Registry, private_key: ec.EllipticCurvePrivateKey
) -> RegistryEntry:
    """Store a checked policy: the registry versions the image and signs it with `private_key`.

    The image may have been exported (and signed) elsewhere with another key, e.g. by a sweep's worker: the
    stored image is re-signed here, and its metadata names this key.
    """
    # The registry versions the image (anti-rollback, servo contract section 5) and signs it again.
    stored = dict(metadata) | {"public_key_hex": public_key_hex(private_key)}
    return registry.add(image, stored, sign=functools.partial(sign, private_key))


def publish(
    result: ScheduleResult,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    out_dir: Path,
    registry: Registry,
    evaluation_moves: int = 20,
) -> Published:
    """After `train_schedule`: `check` (export with every check, compare), then `register`.

    The learner node, `mm learn` and the bench all go through this one function.

    Raises:
        PolicyRejected: the export refused the policy (nothing is registered).
    """
    checked = check(result, private_key=private_key, out_dir=out_dir, evaluation_moves=evaluation_moves)
    entry = register(checked.export.image, checked.metadata, registry=registry, private_key=private_key)
    return Published(result, checked.export, entry, checked.comparison)
