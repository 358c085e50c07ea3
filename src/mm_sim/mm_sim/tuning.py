"""Auto-tuning the classical controllers on the batched twin, and choosing "the classical controller".

Both laws are the firmware's cascaded law (servo contract, section 8): the PID (`decel_rad_s2` = 0) and PTOS
(a braking curve far from the target, linear near it). `tune_law` searches their gains for an objective with a
(1+4) evolution strategy in log space (`baselines.evolve`), every candidate measured on all training moves at
once with `batch.evaluate_batch` (~0.4 s for 100 one-second moves), and scored by `move_score`: the objective's
mean return, or for `energy` the least energy at matched settle (`objectives.EnergyBudget`, the budget set by the
energy-tuned PID, itself tuned on the return, on the same moves; a law is tuned to keep inside it by
`TUNING_CONFIDENCE_Z` standard errors, so that it keeps inside on other moves too). `classical` returns the
better of the two cached laws for an objective on the same moves by the same score: the baseline a learned policy
must beat, and the base law a scheduling policy starts from (`mm_sim.batch.Schedule`).

Gains tuned on the nominal plant alone sit where that plant is fastest, which for speed is next to a cliff
(braking a little later overshoots the band); a real unit is not the nominal plant. `units` (`draw_units`, the
command's `--spread N`) scores every candidate over the nominal plant and N units drawn from the profile's
`randomization` ranges instead: gains for a fleet of units (docs/sim.md, "Tuning for the unit spread").

`python -m mm_sim.tuning --out-dir src/mm_sim/mm_sim/data` rewrites `tuned_pid.yaml` and `tuned_ptos.yaml`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mm_contract.objectives import OBJECTIVES, EnergyBudget
from mm_contract.profiles import ServoProfile, list_profiles, load_profile
from numpy.typing import NDArray

from mm_sim.baselines import LAWS, PidGains, evolve, initial_gains, polish, tuned_gains
from mm_sim.batch import BatchTwin, Schedule, evaluate_batch
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Evaluation, Move, seeded_moves

TUNING_SEED = 1000
"""Seed of the training moves gains are tuned on (evaluations use other moves)."""
SPREAD_SEED = 7
"""Seed of the units `draw_units` draws for tuning (benches judge the gains on units of other seeds)."""
GLOBAL_STEP = 0.5
"""First step of a search from the physics (log space: gains ×e^±0.5)."""
LOCAL_STEP = 0.2
"""First step of a search around given gains (`--warm-start`): the (1+4) strategy halves its step after every
round without gain, so a global step from good gains mostly spends its evaluations shrinking back."""

_TUNED = {
    "pid": ("kp_pos", "v_max", "kp_vel", "ki_vel"),
    "ptos": ("kp_pos", "v_max", "kp_vel", "ki_vel", "decel_rad_s2"),
}


def initial_law_gains(profile: ServoProfile, load_name: str, law: str) -> PidGains:
    """Starting gains of `law` from the physics (`initial_gains`).

    PTOS starts with a braking curve at 70 % of the deceleration the motor has left after gravity, four times
    the PID's position gain, and the velocity limit at 80 % of the no-load speed.
    """
    load = profile.load(load_name)
    start = initial_gains(profile, load)
    if law == "pid":
        return start
    braking = 0.7 * (profile.peak_torque_nm - load.gravity_torque_nm) / profile.output_inertia_kg_m2(load)
    return dataclasses.replace(
        start, kp_pos=4.0 * start.kp_pos, v_max=0.8 * profile.no_load_speed_rad_s, decel_rad_s2=braking
    )


def run_law(profile: ServoProfile, load_name: str, objective: str, gains: PidGains, moves: list[Move]) -> Evaluation:
    """The classical law with `gains` on `moves` (all at once, sensing noise seeded)."""
    twin = BatchTwin(profile, load_name, len(moves), objective=objective, seed=TUNING_SEED)
    return evaluate_batch(twin, Schedule(gains, 0.0, 1), moves)


ENERGY = "energy"
"""The named objective judged by its move criterion (`objectives.EnergyBudget`) rather than its return."""
SPEED = "speed"
"""The named objective whose metric, the settling time, `PolishCheck` checks beside its return."""


TUNING_CONFIDENCE_Z = 2.0
"""Standard errors by which a law tuned for `energy` keeps inside its settle budget on the tuning moves.

Tuned against the plain budget, the energy PTOS sat at its edge on the 30 tuning moves (mean settle 0.995-1.000
of the budget in six of nine cells) and overran it on the validation moves that choose the classical law in three
(mm_minimal + inertia disk by 1.9 %, + spring by 2.5 %, mm_v3 + inertia disk by 14 %), which then fell back to the
PID. The ratio's standard error on the tuning moves (0.020-0.066 of the budget) predicted its spread over twelve
other sets of 30 moves (0.015-0.074), so a bound of two of them keeps a tuned law inside on a new set about 98 %
of the time (`EnergyBudget`; docs/sim.md "The energy budget's edge")."""

JUDGING_SET_MOVES = 30
"""Moves in a set that judges a tuned law: the schedule's validation moves (which choose the classical law), the
polish's check moves (`PolishCheck`) and `bench/bench_energy_budget.py`'s sets. A law tuned for `energy` must keep
inside its budget on such a set, however many moves it was tuned on (`tuning_confidence_z`)."""


def tuning_confidence_z(moves: int) -> float:
    """The bound's z for tuning on `moves` moves: `TUNING_CONFIDENCE_Z` standard errors of a `JUDGING_SET_MOVES` set.

    The bound's margin is z standard errors of the mean over the moves scored, sd/sqrt(moves); the sets a law is
    judged on have `JUDGING_SET_MOVES` moves, whose mean spreads by sd/sqrt(`JUDGING_SET_MOVES`). Scoring on more
    moves narrows the error of the estimate, not the spread of the sets that judge it, so the margin stays
    `TUNING_CONFIDENCE_Z`·sd/sqrt(`JUDGING_SET_MOVES`): z = `TUNING_CONFIDENCE_Z`·sqrt(moves/`JUDGING_SET_MOVES`).
    """
    return TUNING_CONFIDENCE_Z * math.sqrt(moves / JUDGING_SET_MOVES)


def _per_move(evaluation: Evaluation) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each move's energy (J) and settling time (s, NaN where it did not settle): what `EnergyBudget` reads."""
    energy = np.array([m.energy_j for m in evaluation.metrics])
    settle = np.array([math.nan if m.settling_time_s is None else m.settling_time_s for m in evaluation.metrics])
    return energy, settle


def energy_budget(reference: Evaluation, *, confidence_z: float = 0.0) -> EnergyBudget:
    """The energy criterion's budget set by `reference` (the energy-tuned PID) on the moves it ran.

    `confidence_z` > 0: other controllers on the same moves are judged by the upper confidence bound of their mean
    settle (`EnergyBudget.of_moves`).
    """
    energy, settle = _per_move(reference)
    return EnergyBudget.of_moves(settle, energy, confidence_z=confidence_z)


def move_score(evaluation: Evaluation, budget: EnergyBudget | None = None) -> float:
    """What tuning and the schedule's ES maximise: the mean return, or with `budget` the energy criterion."""
    if budget is None:
        return evaluation.mean_return
    energy, settle = _per_move(evaluation)
    return float(budget.score_moves(energy[None], settle[None])[0])


def budget_for(
    profile: ServoProfile,
    load_name: str,
    objective: str,
    moves: list[Move],
    pid: PidGains | None = None,
    *,
    confidence_z: float = 0.0,
) -> EnergyBudget | None:
    """The move criterion's budget for `objective` on `moves` (None: judged by the return).

    Args:
        profile: the servo profile.
        load_name: one of its loads.
        objective: a named objective; only `energy` has a budget.
        moves: the moves the reference runs.
        pid: the energy objective's reference PID (default: the cached energy-tuned PID).
        confidence_z: judge by the upper confidence bound of the mean settle (`energy_budget`); for tuning,
            `TUNING_CONFIDENCE_Z`.
    """
    if objective != ENERGY:
        return None
    reference = pid or tuned_gains(profile, load_name, ENERGY, law="pid")
    return energy_budget(run_law(profile, load_name, objective, reference, moves), confidence_z=confidence_z)


def tuning_budget(
    profile: ServoProfile, load_name: str, objective: str, moves: list[Move], pid: PidGains | None = None
) -> EnergyBudget | None:
    """The budget a law is tuned against on `moves`: `budget_for` bounded by `tuning_confidence_z(len(moves))`."""
    return budget_for(profile, load_name, objective, moves, pid, confidence_z=tuning_confidence_z(len(moves)))


def draw_units(profile: ServoProfile, load_name: str, count: int, *, seed: int = SPREAD_SEED) -> list[ServoProfile]:
    """`count` units of the servo with `load_name`, drawn from the profile's `randomization` ranges (seeded).

    Each is `ServoProfile.perturbed`: its servo and load parameters scaled within their tolerances, the load
    reachable under its own name.

    Raises:
        MmSimError: `count` is negative.
    """
    if count < 0:
        msg = f"the number of units to draw must be >= 0: {count}"
        raise MmSimError(msg)
    rng = np.random.default_rng(seed)
    return [profile.perturbed(rng, load_name)[0] for _ in range(count)]


def tune_law(
    profile: ServoProfile,
    load_name: str,
    objective: str,
    law: str,
    *,
    moves: list[Move],
    evaluations: int = 48,
    seed: int = 0,
    budget: EnergyBudget | None = None,
    start: PidGains | None = None,
    units: Sequence[ServoProfile] = (),
    polish_evaluations: int = 0,
    check: PolishCheck | None = None,
) -> tuple[PidGains, float]:
    """Tune `law`'s gains for `objective` on `moves`; gravity feed-forward is kept. Returns gains and score.

    `budget` None: the mean return is maximised; otherwise the energy criterion (`move_score`). `start` None: a
    global search from the physics (`initial_law_gains`, steps of e^±0.5); given: a local search around `start`
    (steps of e^±0.2), e.g. the cached gains after the law changed. `units`: more plants of the servo and load
    (`draw_units`); the score is then the mean of the scores on `profile` and on each of them, `budget` the same
    for all. `polish_evaluations` > 0: then a coordinate search from the result (`baselines.polish`, one gain
    at a time, steps of e^±`LOCAL_STEP` halving), with at most that many more evaluations; with `check`, its
    result is kept only when `check` finds it no worse on moves the search did not see (`PolishCheck.keeps`).
    The returned score is on `moves`.
    """
    if law not in LAWS:
        msg = f"unknown law {law!r}; use one of {LAWS}"
        raise MmSimError(msg)
    sigma = GLOBAL_STEP if start is None else LOCAL_STEP
    start = start or initial_law_gains(profile, load_name, law)
    names = _TUNED[law]
    base = np.log([getattr(start, name) for name in names])

    def gains_at(x: NDArray[np.float64]) -> PidGains:
        return dataclasses.replace(start, **dict(zip(names, np.exp(base + x).tolist(), strict=True)))

    plants = (profile, *units)

    def score(x: NDArray[np.float64]) -> float:
        gains = gains_at(x)
        value = float(np.mean([move_score(run_law(p, load_name, objective, gains, moves), budget) for p in plants]))
        return value if math.isfinite(value) else -math.inf

    best_x, best = evolve(score, len(names), evaluations=evaluations, seed=seed, sigma=sigma)
    if polish_evaluations > 0:
        polished_x, polished = polish(score, best_x, best, evaluations=polish_evaluations, step=LOCAL_STEP)
        before, after = gains_at(best_x), gains_at(polished_x)
        if check is None or check.keeps(profile, load_name, objective, before=before, after=after, units=units):
            best_x, best = polished_x, polished
    return gains_at(best_x), best


CHECK_SEED = 1001
"""Seed of the moves `PolishCheck` judges a coordinate search's result on (the tuner's own are `TUNING_SEED`)."""


@dataclass(frozen=True)
class PolishCheck:
    """Moves a coordinate search did not see, to judge its result before the tuner keeps it.

    A search that keeps any gain on its own moves follows their noise and, near an edge, the return's blind spots:
    for speed, the return counts the time outside the settle band, so gains whose moves leave the band again
    late (a slow hunt around its edge) can score better while settling later. Measured on gimbal_bldc + spring,
    speed PTOS: return −0.1183 → −0.1170 on the tuner's moves, mean settle 0.111 → 0.160 s on the evaluation moves.

    Attributes:
        moves: the check moves (`CHECK_SEED`; `tune_all` judges on `JUDGING_SET_MOVES` of them, one set's worth).
        budget: the energy criterion's budget on them (the PID's, as `budget_for`; `tune_all` bounds it by
            `TUNING_CONFIDENCE_Z`, the tuner's margin for one set), None when judged by the return.
    """

    moves: list[Move]
    budget: EnergyBudget | None = None

    def keeps(
        self,
        profile: ServoProfile,
        load_name: str,
        objective: str,
        *,
        before: PidGains,
        after: PidGains,
        units: Sequence[ServoProfile] = (),
    ) -> bool:
        """Whether `after` is no worse than `before` on the check moves (the mean over `profile` and `units`).

        No worse: `move_score` at least as high and, for `speed`, every move settled as often and the mean
        settling time no longer (the objective's own metric, which the return only approximates).
        """
        runs = {
            name: [run_law(plant, load_name, objective, gains, self.moves) for plant in (profile, *units)]
            for name, gains in (("before", before), ("after", after))
        }
        scores = {name: float(np.mean([move_score(run, self.budget) for run in rs])) for name, rs in runs.items()}
        if not scores["after"] >= scores["before"]:
            return False
        if objective != SPEED:
            return True
        summaries = {name: [run.summary() for run in rs] for name, rs in runs.items()}
        settled = {name: np.mean([s["settled_fraction"] for s in ss]) for name, ss in summaries.items()}
        settle_s = {name: np.mean([s["mean_settling_time_s"] for s in ss]) for name, ss in summaries.items()}
        return bool(settled["after"] >= settled["before"] and settle_s["after"] <= settle_s["before"])


@dataclass(frozen=True)
class Classical:
    """The classical controller of an objective: the better cached law on the same moves.

    Attributes:
        law: "pid" or "ptos".
        gains: its tuned gains.
        pid: the PID's evaluation on the moves.
        ptos: PTOS's evaluation on the moves.
        budget: the energy criterion's budget on the moves (set by the PID), None when judged by the return.
        pid_gains: the PID's gains (for `energy`: the reference that sets a budget on any moves).
    """

    law: str
    gains: PidGains
    pid: Evaluation
    ptos: Evaluation
    budget: EnergyBudget | None = None
    pid_gains: PidGains | None = None

    @property
    def start(self) -> Evaluation:
        """The chosen law's evaluation."""
        return self.ptos if self.law == "ptos" else self.pid

    def score(self, evaluation: Evaluation) -> float:
        """`move_score` of an evaluation on the same moves (higher is better)."""
        return move_score(evaluation, self.budget)


def classical(profile: ServoProfile, load_name: str, objective: str, moves: list[Move]) -> Classical:
    """Evaluate the cached PID and PTOS of a named objective on `moves` and pick the higher `move_score`."""
    pid_gains = tuned_gains(profile, load_name, objective, law="pid")
    ptos_gains = tuned_gains(profile, load_name, objective, law="ptos")
    pid = run_law(profile, load_name, objective, pid_gains, moves)
    ptos = run_law(profile, load_name, objective, ptos_gains, moves)
    budget = energy_budget(pid) if objective == ENERGY else None
    if move_score(ptos, budget) > move_score(pid, budget):
        return Classical("ptos", ptos_gains, pid, ptos, budget, pid_gains)
    return Classical("pid", pid_gains, pid, ptos, budget, pid_gains)


def tune_all(
    evaluations: int,
    moves_per_tune: int,
    laws: tuple[str, ...],
    objectives: tuple[str, ...] = tuple(OBJECTIVES),
    caches: dict[str, dict[str, Any]] | None = None,
    *,
    loads: tuple[str, ...] = (),
    warm_start: bool = False,
    spread: int = 0,
    polish_evaluations: int = 0,
) -> dict[str, dict[str, Any]]:
    """Tune every shipped profile × load × objective for each law; returns {law: cache document}.

    `caches` (updated in place): the documents to write the new gains into, so objectives not retuned keep theirs.
    `loads`: only these loads (empty: all). `warm_start`: search around the cached gains (`tune_law`'s `start`).
    `spread`: score over the nominal plant and this many units drawn from the profile's spread (`draw_units`).
    `polish_evaluations`: a coordinate search after the evolution strategy (`tune_law`), kept only when no worse
    on `JUDGING_SET_MOVES` check moves (`PolishCheck`). Energy is tuned on the `moves_per_tune` moves against the
    PID's budget bounded by `tuning_confidence_z`: the same margin for a set of `JUDGING_SET_MOVES` whatever their
    number, so more tuning moves leave a long search less noise to select on (docs/sim.md, "The classical laws at
    their optimum").
    """
    caches = caches if caches is not None else {}
    for law in laws:
        caches.setdefault(law, {})
    moves = seeded_moves(moves_per_tune, seed=TUNING_SEED)
    check_moves = seeded_moves(JUDGING_SET_MOVES, seed=CHECK_SEED)
    for name in list_profiles():
        profile = load_profile(name)
        for load_name in (load for load in profile.loads if not loads or load in loads):
            units = draw_units(profile, load_name, spread)  # the same units for every objective and law
            for objective in objectives:
                pid: PidGains | None = None  # the PID just tuned (PID first), else the cached one
                for law in sorted(laws, key=lambda law: law != "pid"):
                    budget = None if law == "pid" else tuning_budget(profile, load_name, objective, moves, pid)
                    start = tuned_gains(profile, load_name, objective, law=law) if warm_start else None
                    check = (
                        PolishCheck(
                            check_moves,
                            None if budget is None else tuning_budget(profile, load_name, objective, check_moves, pid),
                        )
                        if polish_evaluations > 0
                        else None
                    )
                    gains, score = tune_law(
                        profile,
                        load_name,
                        objective,
                        law,
                        moves=moves,
                        evaluations=evaluations,
                        budget=budget,
                        start=start,
                        units=units,
                        polish_evaluations=polish_evaluations,
                        check=check,
                    )
                    pid = gains if law == "pid" else pid
                    entry = {k: float(f"{v:.6g}") for k, v in dataclasses.asdict(gains).items()}
                    caches[law].setdefault(name, {}).setdefault(load_name, {})[objective] = entry
                    print(f"{law} {name}/{load_name}/{objective}: score {score:.4f}, {gains}", flush=True)
    return caches


def main(args: list[str] | None = None) -> None:
    """Retune the classical laws of every shipped profile and write their caches."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out-dir", type=Path, required=True, help="where to write tuned_<law>.yaml")
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=LAWS, help="which laws to retune")
    parser.add_argument("--evaluations", type=int, default=48, help="most gain sets tried per profile/load/objective")
    parser.add_argument("--moves", type=int, default=30, help="training moves per evaluation")
    parser.add_argument(
        "--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES), help="which objectives to retune"
    )
    parser.add_argument("--loads", nargs="+", default=[], help="which loads to retune (default: all)")
    parser.add_argument(
        "--warm-start", action="store_true", help="search around the cached gains (after a change of the law)"
    )
    parser.add_argument(
        "--spread",
        type=int,
        default=0,
        metavar="N",
        help="score gains over the nominal plant and N units drawn from the profile's randomization (default 0)",
    )
    parser.add_argument(
        "--polish",
        type=int,
        default=0,
        metavar="N",
        help="then a coordinate search, one gain at a time, with at most N more evaluations (default 0)",
    )
    options = parser.parse_args(args)
    if options.polish < 0:
        parser.error(f"--polish must be >= 0 (evaluations of the coordinate search): {options.polish}")
    if options.spread < 0:
        parser.error(f"--spread must be >= 0 (units drawn besides the nominal plant): {options.spread}")
    shipped = {load for name in list_profiles() for load in load_profile(name).loads}
    if unknown := sorted(set(options.loads) - shipped):
        parser.error(f"unknown load(s) {', '.join(unknown)}; the shipped loads are {', '.join(sorted(shipped))}")
    existing = {
        law: yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for law in options.laws
        if (path := options.out_dir / f"tuned_{law}.yaml").exists()
    }
    tuned = tune_all(
        options.evaluations,
        options.moves,
        tuple(options.laws),
        tuple(options.objectives),
        existing,
        loads=tuple(options.loads),
        warm_start=options.warm_start,
        spread=options.spread,
        polish_evaluations=options.polish,
    )
    for law, cache in tuned.items():
        header = f"# Written by `python -m mm_sim.tuning`: {law} gains tuned on the twin per profile/load/objective.\n"
        (options.out_dir / f"tuned_{law}.yaml").write_text(
            header + yaml.safe_dump(cache, sort_keys=True), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
