"""Classical gains for one plant or for a fleet: tuning on the nominal twin against tuning over the unit spread.

The objective's PTOS, three ways, judged on the nominal plant and on units held out from tuning (drawn from the
profile's `randomization` ranges with seeds the tuner never used):

- *shipped*: the cached gains (`tuned_ptos.yaml`), the baseline.
- *nominal retune*: a local search from them on the nominal plant alone (`mm_sim.tuning.tune_law`).
- *spread retune*: the same search scoring every candidate over the nominal plant and `--spread` drawn units
  (`tune_law(units=draw_units(...))`, `python -m mm_sim.tuning --spread N`).

Prints a markdown table, then one JSON document.
`python bench/bench_tuning_spread.py [--objective speed] [--spread 8] [--held-out 20]`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from mm_contract.objectives import OBJECTIVES, EnergyBudget
from mm_contract.profiles import ServoProfile, load_profile
from mm_sim.baselines import PidGains, tuned_gains
from mm_sim.evaluate import Move, seeded_moves
from mm_sim.tuning import TUNING_SEED, budget_for, draw_units, move_score, run_law, tune_law, tuning_budget

EVALUATION_SEED = 1_000_000
"""Seed of the judging moves (the schedule trainer's evaluation moves), disjoint from the tuning moves."""
HELD_OUT_SEED = 8
"""Seed of the held-out units (`draw_units` tunes on `mm_sim.tuning.SPREAD_SEED`)."""
TUNING_MOVES = 30


def _judge(
    plants: tuple[ServoProfile, ...],
    load: str,
    objective: str,
    gains: PidGains,
    *,
    judging: list[Move],
    budget: EnergyBudget | None,
) -> dict[str, float]:
    """`gains` on the nominal plant (`plants[0]`) and the held-out units: mean settle (s), energy (J) and score."""
    evaluations = [run_law(plant, load, objective, gains, judging) for plant in plants]
    summaries = [evaluation.summary() for evaluation in evaluations]
    settle = np.array([summary["mean_settling_time_s"] for summary in summaries])
    return {
        "nominal_settle_s": float(settle[0]),
        "nominal_energy_j": summaries[0]["mean_energy_j"],
        "nominal_score": move_score(evaluations[0], budget),
        "units_mean_settle_s": float(settle[1:].mean()),
        "units_worst_settle_s": float(settle[1:].max()),
        "units_mean_energy_j": float(np.mean([summary["mean_energy_j"] for summary in summaries[1:]])),
        "units_mean_score": float(np.mean([move_score(evaluation, budget) for evaluation in evaluations[1:]])),
        "units_least_settled_fraction": float(min(summary["settled_fraction"] for summary in summaries[1:])),
    }


def compare(
    profile_name: str, load: str, objective: str, *, spread: int, held_out: int, evaluations: int, moves: int
) -> dict[str, Any]:
    """Tune both ways and judge the three gain sets."""
    started = time.perf_counter()
    profile = load_profile(profile_name)
    shipped = tuned_gains(profile, load, objective, law="ptos")
    tuning = seeded_moves(TUNING_MOVES, seed=TUNING_SEED)
    budget = tuning_budget(profile, load, objective, tuning)  # as the tool tunes
    gains = {"shipped": shipped}
    tune_s = {}
    for row, units in (("nominal_retune", ()), ("spread_retune", draw_units(profile, load, spread))):
        tick = time.perf_counter()
        gains[row], _ = tune_law(
            profile,
            load,
            objective,
            "ptos",
            moves=tuning,
            evaluations=evaluations,
            budget=budget,
            start=shipped,
            units=units,
        )
        tune_s[row] = time.perf_counter() - tick
    judging = seeded_moves(moves, seed=EVALUATION_SEED)
    judging_budget = budget_for(profile, load, objective, judging)
    plants = (profile, *draw_units(profile, load, held_out, seed=HELD_OUT_SEED))
    rows = {row: _judge(plants, load, objective, g, judging=judging, budget=judging_budget) for row, g in gains.items()}
    for row, seconds in tune_s.items():
        rows[row]["tune_s"] = seconds
    return {
        "profile": profile_name,
        "load": load,
        "objective": objective,
        "spread_units": spread,
        "held_out_units": held_out,
        "evaluations": evaluations,
        "moves": moves,
        "gains": {row: vars(g) for row, g in gains.items()},
        "rows": rows,
        "wall_s": time.perf_counter() - started,
    }


def _markdown(result: dict[str, Any]) -> str:
    shipped = result["rows"]["shipped"]

    def change(row: dict[str, float], key: str) -> str:
        return f"{100.0 * (shipped[key] - row[key]) / shipped[key]:+.1f} %"

    lines = [
        f"{result['profile']} + {result['load']}, objective {result['objective']}: PTOS tuned on the nominal plant vs"
        f" over it and {result['spread_units']} drawn units ({result['evaluations']} evaluations each), judged on"
        f" {result['moves']} moves on the nominal plant and {result['held_out_units']} held-out units"
        f" ({result['wall_s']:.0f} s; change: + is shorter than the shipped gains)",
        "",
        "| gains | nominal settle (s) | units: mean settle (s) | units: worst settle (s) | nominal / units score |"
        " nominal / units energy (J) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        lines.append(
            f"| {name} | {row['nominal_settle_s']:.4f} ({change(row, 'nominal_settle_s')}) | "
            f"{row['units_mean_settle_s']:.4f} ({change(row, 'units_mean_settle_s')}) | "
            f"{row['units_worst_settle_s']:.4f} ({change(row, 'units_worst_settle_s')}) | "
            f"{row['nominal_score']:.4f} / {row['units_mean_score']:.4f} | "
            f"{row['nominal_energy_j']:.3f} / {row['units_mean_energy_j']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run the bench for the command line's profile, load and objective."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mm_v3")
    parser.add_argument("--load", default="pendulum")
    parser.add_argument("--objective", default="speed", choices=list(OBJECTIVES))
    parser.add_argument("--spread", type=int, default=8, help="units drawn for the spread retune")
    parser.add_argument("--held-out", type=int, default=20, help="units drawn to judge on")
    parser.add_argument("--evaluations", type=int, default=120, help="gain sets each retune tries")
    parser.add_argument("--moves", type=int, default=100, help="judging moves per plant")
    args = parser.parse_args()
    result = compare(
        args.profile,
        args.load,
        args.objective,
        spread=args.spread,
        held_out=args.held_out,
        evaluations=args.evaluations,
        moves=args.moves,
    )
    print(_markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
