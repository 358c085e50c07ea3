"""Whether a law tuned for `energy` keeps inside its settle budget on moves it was not tuned on.

The energy objective's criterion (`mm_contract.objectives.EnergyBudget`) asks for the least energy per move with
the mean settle at most `SETTLE_BUDGET_FACTOR` × the energy-tuned PID's on the same moves. For every shipped
profile × load, PTOS is tuned for it twice by the same search (`mm_sim.tuning.tune_law`, from the physics, the
tool's default evaluations, on the tuner's 30 moves):

- *plain* (the baseline): against the budget itself; the search spends it to the edge of those 30 moves.
- *bounded*: against the upper confidence bound of its mean settle, `TUNING_CONFIDENCE_Z` standard errors of the
  paired difference from the PID (`EnergyBudget.of_moves`), what `python -m mm_sim.tuning` does.

Each is judged against the PID, by the plain criterion, on the schedule trainer's validation moves (which choose
the classical law, `mm_sim.tuning.classical`), on `--sets` other sets of 30 moves (how often the law overruns the
budget, or leaves a move unsettled) and on the 100 evaluation moves (settle against the budget, energy against the
PID's). Prints a markdown table, then one JSON document. `python bench/bench_energy_budget.py [--sets 12]`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from mm_contract.profiles import ServoProfile, list_profiles, load_profile
from mm_learning.schedule import EVALUATION_SEED, VALIDATION_SEED
from mm_sim.baselines import PidGains, tuned_gains
from mm_sim.evaluate import Move, seeded_moves
from mm_sim.tuning import (
    ENERGY,
    JUDGING_SET_MOVES,
    TUNING_CONFIDENCE_Z,
    TUNING_SEED,
    budget_for,
    energy_budget,
    move_score,
    run_law,
    tune_law,
    tuning_budget,
)

SET_MOVES = JUDGING_SET_MOVES
"""Moves per judging set: as many as the validation's and the tuner's by default."""
EVALUATION_MOVES = 100


def _on(profile: ServoProfile, load: str, pid: PidGains, ptos: PidGains, moves: list[Move]) -> dict[str, Any]:
    """PTOS against the PID on `moves`: settle over the budget, energy over the PID's, and the law chosen."""
    reference = run_law(profile, load, ENERGY, pid, moves)
    evaluation = run_law(profile, load, ENERGY, ptos, moves)
    budget = energy_budget(reference)
    summary, pid_summary = evaluation.summary(), reference.summary()
    return {
        "settle_over_budget": summary["mean_settling_time_s"] / budget.settle_s,
        "settled_fraction": summary["settled_fraction"],
        "energy_over_pid": summary["mean_energy_j"] / pid_summary["mean_energy_j"],
        "chosen": "ptos" if move_score(evaluation, budget) > move_score(reference, budget) else "pid",
    }


def judge(profile: ServoProfile, load: str, pid: PidGains, ptos: PidGains, sets: int) -> dict[str, Any]:
    """`ptos` on the validation moves, `sets` other sets and the evaluation moves."""
    others = [_on(profile, load, pid, ptos, seeded_moves(SET_MOVES, seed=seed)) for seed in range(1, sets + 1)]
    return {
        "tuning": _on(profile, load, pid, ptos, seeded_moves(SET_MOVES, seed=TUNING_SEED)),
        "validation": _on(profile, load, pid, ptos, seeded_moves(SET_MOVES, seed=VALIDATION_SEED)),
        "evaluation": _on(profile, load, pid, ptos, seeded_moves(EVALUATION_MOVES, seed=EVALUATION_SEED)),
        "sets_over_budget": sum(row["settle_over_budget"] > 1.0 or row["settled_fraction"] < 1.0 for row in others),
        "worst_set_over_budget": max(row["settle_over_budget"] for row in others),
    }


def compare(sets: int, evaluations: int, loads: tuple[str, ...] = ()) -> dict[str, Any]:
    """Tune both ways in every profile × load and judge both."""
    started = time.perf_counter()
    tuning = seeded_moves(SET_MOVES, seed=TUNING_SEED)
    cells = []
    for name in list_profiles():
        profile = load_profile(name)
        for load in (load for load in profile.loads if not loads or load in loads):
            pid = tuned_gains(profile, load, ENERGY, law="pid")
            cell: dict[str, Any] = {"profile": name, "load": load}
            for row, budget_of in (("plain", budget_for), ("bounded", tuning_budget)):
                budget = budget_of(profile, load, ENERGY, tuning, pid)
                gains, _ = tune_law(profile, load, ENERGY, "ptos", moves=tuning, evaluations=evaluations, budget=budget)
                cell[row] = {"gains": vars(gains), **judge(profile, load, pid, gains, sets)}
            cells.append(cell)
            print(f"{name}/{load} done", flush=True)
    return {
        "sets": sets,
        "evaluations": evaluations,
        "confidence_z": TUNING_CONFIDENCE_Z,
        "cells": cells,
        "wall_s": time.perf_counter() - started,
    }


def _markdown(result: dict[str, Any]) -> str:
    sets = result["sets"]
    lines = [
        f"Energy PTOS tuned against the plain budget vs its {result['confidence_z']:g}-standard-error bound"
        f" ({result['evaluations']} evaluations each; {result['wall_s']:.0f} s). Settle as a fraction of the budget"
        f" (tuning / validation / evaluation moves), sets of {SET_MOVES} other moves over the budget, energy"
        " against the PID's on the evaluation moves, and the law chosen on validation.",
        "",
        "| profile | load | tuned | settle / budget (tune / val / eval) | sets over | worst set | energy / PID |"
        " chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals = {"plain": 0, "bounded": 0}
    chosen = {"plain": 0, "bounded": 0}
    for cell in result["cells"]:
        for row in ("plain", "bounded"):
            judged = cell[row]
            totals[row] += judged["sets_over_budget"]
            chosen[row] += judged["validation"]["chosen"] == "ptos"
            settle = " / ".join(
                f"{judged[key]['settle_over_budget']:.3f}" for key in ("tuning", "validation", "evaluation")
            )
            lines.append(
                f"| {cell['profile']} | {cell['load']} | {row} | {settle} | {judged['sets_over_budget']} of {sets} |"
                f" {judged['worst_set_over_budget']:.3f} | {judged['evaluation']['energy_over_pid']:.3f} |"
                f" {judged['validation']['chosen']} |"
            )
    count = len(result["cells"])
    lines += [
        "",
        f"Sets over the budget: plain {totals['plain']} of {count * sets}, bounded {totals['bounded']} of"
        f" {count * sets}. PTOS chosen on validation: plain {chosen['plain']} of {count}, bounded"
        f" {chosen['bounded']} of {count}.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the bench over every shipped profile and load (or the given loads)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=12, help="other sets of 30 moves to judge on")
    parser.add_argument("--evaluations", type=int, default=48, help="gain sets each tune tries (the tool's default)")
    parser.add_argument("--loads", nargs="+", default=[], help="only these loads (default: all)")
    args = parser.parse_args()
    if args.sets < 1:
        parser.error(f"--sets must be >= 1: {args.sets}")
    result = compare(args.sets, args.evaluations, tuple(args.loads))
    print(_markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
