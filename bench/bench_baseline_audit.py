"""Whether the shipped classical laws sit at their optimum: a coordinate search from them, on moves they never saw.

Every comparison of a learned policy is against the classical laws cached in `mm_sim/data/tuned_{pid,ptos}.yaml`;
a law left short of its optimum makes every win against it look larger than it is. For every shipped profile ×
load × objective and both laws, this bench starts a coordinate search (`mm_sim.baselines.polish`: one gain at a
time, steps of e^±0.2 halving, `--evaluations` gain sets) from the shipped gains by the tuner's own criterion
(`mm_sim.tuning.tune_law`: the mean return; for the energy PTOS the bounded energy criterion against the energy
PID) on 30 *audit* moves (a seed neither the tuner, the validation nor the evaluation uses), and judges the
shipped gains (the baseline) and the searched ones on the 100 evaluation moves by the same criterion and by the
objective's metric. A law is *short of its optimum* where the searched gains score more than `--margin` % better on
the evaluation moves (for energy, inside the PID's settle budget there) and are no worse on the objective's metric
(for speed the return only approximates the settling time: a search can buy return with a late hunt around the
band's edge).

Prints a markdown table, then one JSON document. `python bench/bench_baseline_audit.py [--objectives speed ...]`.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from mm_contract.objectives import OBJECTIVES, parse_objective
from mm_contract.profiles import list_profiles, load_profile
from mm_learning.schedule import EVALUATION_SEED, objective_metric
from mm_learning.twin import summarize
from mm_sim.baselines import LAWS, tuned_gains
from mm_sim.evaluate import seeded_moves
from mm_sim.tuning import ENERGY, energy_budget, move_score, run_law, tune_law, tuning_budget

AUDIT_SEED = 4242
"""Seed of the moves the search runs on (the tuner's are 1000, validation's and evaluation's others)."""
AUDIT_MOVES = 30
EVALUATION_MOVES = 100


def audit_cell(profile_name: str, load: str, objective: str, evaluations: int) -> list[dict[str, Any]]:
    """Both laws of one cell: shipped and searched gains on the evaluation moves."""
    profile = load_profile(profile_name)
    audit = seeded_moves(AUDIT_MOVES, seed=AUDIT_SEED)
    evaluation = seeded_moves(EVALUATION_MOVES, seed=EVALUATION_SEED)
    metric, lower = objective_metric(parse_objective(objective))
    pid = tuned_gains(profile, load, objective, law="pid")
    pid_run = run_law(profile, load, objective, pid, evaluation)  # the shipped PID's row, and the energy budget
    judge_budget = energy_budget(pid_run) if objective == ENERGY else None
    rows = []
    for law in LAWS:
        shipped = tuned_gains(profile, load, objective, law=law)
        # The tuner's criterion: the return, except the energy PTOS (the bounded budget set by the energy PID).
        energy_law = objective == ENERGY and law == "ptos"
        search_budget = tuning_budget(profile, load, objective, audit, pid) if energy_law else None
        searched, _ = tune_law(
            profile,
            load,
            objective,
            law,
            moves=audit,
            evaluations=1,
            start=shipped,
            budget=search_budget,
            polish_evaluations=evaluations,
        )
        judged = {}
        for name, gains in (("shipped", shipped), ("searched", searched)):
            run = pid_run if gains is pid else run_law(profile, load, objective, gains, evaluation)
            judged[name] = (move_score(run, judge_budget if energy_law else None), summarize(run)[metric])
        (score_0, metric_0), (score_1, metric_1) = judged["shipped"], judged["searched"]
        better_pct = 100.0 * (score_1 - score_0) / abs(score_0)
        metric_pct = 100.0 * ((metric_0 - metric_1) if lower else (metric_1 - metric_0)) / abs(metric_0)
        rows.append(
            {
                "profile": profile_name,
                "load": load,
                "objective": objective,
                "law": law,
                "metric": metric,
                "shipped_metric": metric_0,
                "searched_metric": metric_1,
                "metric_change_pct": metric_pct,
                "shipped_score": score_0,
                "searched_score": score_1,
                "score_change_pct": better_pct,
            }
        )
    return rows


def main() -> None:
    """Audit every shipped profile × load × objective and print the table and the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=list(OBJECTIVES))
    parser.add_argument("--evaluations", type=int, default=60, help="gain sets the coordinate search tries per law")
    parser.add_argument("--margin", type=float, default=1.0, help="%% by which the searched gains must score better")
    parser.add_argument("--workers", type=int, default=2, help="processes (the cells run in parallel)")
    options = parser.parse_args()
    started = time.perf_counter()
    cells = [
        (name, load, objective, options.evaluations)
        for name in list_profiles()
        for load in load_profile(name).loads
        for objective in options.objectives
    ]
    with ProcessPoolExecutor(max_workers=options.workers) as pool:
        rows = [row for cell in pool.map(audit_cell, *zip(*cells, strict=True)) for row in cell]
    short = [row for row in rows if row["score_change_pct"] > options.margin and row["metric_change_pct"] >= 0.0]
    print("| profile | load | objective | law | metric: shipped / searched (change) | criterion change | short |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['profile']} | {row['load']} | {row['objective']} | {row['law']} | "
            f"{row['shipped_metric']:.4g} / {row['searched_metric']:.4g} ({row['metric_change_pct']:+.1f} %) | "
            f"{row['score_change_pct']:+.2f} % | {'yes' if row in short else ''} |"
        )
    print(
        f"\n{len(short)} of {len(rows)} shipped laws short of their optimum by more than {options.margin:g} % "
        f"(coordinate search of {options.evaluations} gain sets on {AUDIT_MOVES} audit moves, judged on "
        f"{EVALUATION_MOVES} evaluation moves); {time.perf_counter() - started:.0f} s\n"
    )
    print(json.dumps({"rows": rows, "short": len(short), "laws": len(rows), "margin_pct": options.margin}))


if __name__ == "__main__":
    main()
