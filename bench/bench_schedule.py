"""Learning bench: whether, and how fast, a learned deceleration schedule beats the classical controller.

For each objective and seed on mm_v3 + pendulum: train a scheduling policy on the objective's classical
controller (`mm_learning.schedule`, a budget in generations, not wall time), export it as the servo runs it
(int16x8 schedule image, every acceptance check), and compare on 100 seeded moves the tuned PID, the tuned PTOS,
the quantised policy under TFLite Micro, and the time-optimal bound (`schedule.publish`, the learner's own
pipeline). Also: the wall time until a validation first beat the classical start, and experience throughput.

Prints markdown tables (mean ± half the spread over seeds), then one JSON document.
`python bench/bench_schedule.py [--generations 60] [--seeds 0 1 2] [--objectives speed energy accuracy]`.

`--matrix`: every shipped profile × load × objective instead (first seed only), one table row per cell with the
objective's metric for PID, PTOS, the quantised policy and the bound, and for each cell where the policy does not
beat the better classical law, the reason (no braking curve to schedule, no validated improvement, the export
refused it, or it lost on the evaluation moves).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.objectives import SETTLE_BUDGET_FACTOR, parse_objective
from mm_contract.profiles import list_profiles, load_profile
from mm_contract.registry import Registry
from mm_learning.errors import LearningError
from mm_learning.schedule import OBJECTIVE_METRICS, ScheduleConfig, objective_metric, publish, train_schedule

ROWS = (("pid", "PID"), ("ptos", "PTOS"), ("policy", "RL schedule (quantised)"), ("bound", "time-optimal bound"))


def run(
    objective: str, seed: int, generations: int, moves: int, *, profile: str = "mm_v3", load: str = "pendulum"
) -> dict[str, Any]:
    """Train, publish into a scratch registry and compare one seed."""
    where: dict[str, Any] = {"profile": profile, "load": load, "objective": objective, "seed": seed}
    try:
        result = train_schedule(
            ScheduleConfig(
                profile=profile, load=load, objective=parse_objective(objective), seed=seed, generations=generations
            )
        )
    except LearningError as error:
        return where | {"not_trained": str(error)}
    outcome: dict[str, Any] = where | {
        "classical": result.classical.law,
        "improved": result.best is not None,
        "wall_to_beat_classical_s": result.beat_after_s,
        "ticks": result.ticks,
        "wall_s": result.wall_s,
        "ticks_per_s": result.ticks_per_s,
        "curve": result.curve,
    }
    with tempfile.TemporaryDirectory() as scratch:
        try:
            published = publish(
                result,
                private_key=ec.generate_private_key(ec.SECP256R1()),
                out_dir=Path(scratch, "export"),
                registry=Registry(Path(scratch, "registry")),
                evaluation_moves=moves,
            )
        except LearningError as error:
            return outcome | {"refused": str(error)}
    metadata = published.export.metadata
    return outcome | {
        "rows": published.comparison.rows,
        "verdict": published.comparison.verdict(result.config.objective),
        "model_bytes": metadata["model_bytes"],
        "arena_bytes": metadata["arena_bytes"],
    }


def _cell(values: list[float], scale: float, digits: int) -> str:
    x = np.asarray(values) * scale
    return f"{x.mean():.{digits}f} ± {(x.max() - x.min()) / 2:.{digits}f}"


def table(objective: str, runs: list[dict[str, Any]]) -> None:
    """One markdown table of an objective's seeds."""
    done = [r for r in runs if "rows" in r]
    print(f"### {objective}: mm_v3 + pendulum, {len(done)}/{len(runs)} seeds exported (mean ± half the spread)\n")
    print("| controller | settled | settle (s) | energy (J) | steady-state (mrad) | RMS error (mrad) | return |")
    print("|---|---|---|---|---|---|---|")
    for key, label in ROWS:
        rows = [r["rows"][key] for r in done]
        if not rows:
            continue
        print(
            f"| {label} | {_cell([r['settled_fraction'] for r in rows], 100, 0)} % "
            f"| {_cell([r['mean_settling_time_s'] for r in rows], 1, 3)} "
            f"| {_cell([r['mean_energy_j'] for r in rows], 1, 2)} "
            f"| {_cell([r['mean_steady_state_error_rad'] for r in rows], 1000, 2)} "
            f"| {_cell([r['mean_rms_error_rad'] for r in rows], 1000, 1)} "
            f"| {_cell([r['mean_return'] for r in rows], 1, 4)} |"
        )
    metric, _ = OBJECTIVE_METRICS[objective]
    print(f"\nObjective metric: {metric}. Per seed: " + "; ".join(r.get("verdict", r.get("refused", "")) for r in runs))
    beats = [r["wall_to_beat_classical_s"] for r in runs]
    after = [None if b is None else round(b, 1) for b in beats]
    rates = [round(r["ticks_per_s"]) for r in runs]
    print(
        f"\nBeat the classical start on validation: {sum(b is not None for b in beats)}/{len(runs)} seeds, after "
        f"{after} s; experience {rates} ticks/s; training wall time {[round(r['wall_s'], 1) for r in runs]} s\n"
    )


def _metric_cells(run: dict[str, Any]) -> tuple[str, str]:
    """The policy's metric against PID, PTOS and the bound, and why it does not win (empty when it does)."""
    if "not_trained" in run:
        return "-", f"not trained: {run['not_trained']}"
    if "refused" in run:
        return "-", f"export refused: {run['refused']}"
    metric, lower = objective_metric(parse_objective(run["objective"]))
    rows = run["rows"]
    values = " / ".join(f"{rows[key][metric]:.4g}" for key in ("pid", "ptos", "policy", "bound"))
    classical = (
        min(rows["pid"][metric], rows["ptos"][metric]) if lower else max(rows["pid"][metric], rows["ptos"][metric])
    )
    better = rows["policy"][metric] < classical if lower else rows["policy"][metric] > classical
    slower = rows["policy"]["mean_settling_time_s"] / rows["pid"]["mean_settling_time_s"]
    reasons = (
        (not run["improved"], f"no validated improvement over the classical start in {run['ticks']:,} ticks"),
        (not better, "improved on validation but not on the evaluation moves"),
        (rows["policy"]["settled_fraction"] < 1.0, f"settles {rows['policy']['settled_fraction']:.0%} of the moves"),
        (
            run["objective"] == "energy" and slower > SETTLE_BUDGET_FACTOR,
            f"less energy, but settles in {slower:.3f}x the PID's time (the criterion: {SETTLE_BUDGET_FACTOR}x)",
        ),
    )
    return values, next((why for failed, why in reasons if failed), "")


def matrix_table(runs: list[dict[str, Any]]) -> None:
    """One markdown row per profile × load × objective: the objective's metric and where RL does not win."""
    print("### Every profile × load × objective (first seed)\n")
    print("| profile | load | objective | metric | PID / PTOS / RL / bound | RL beats the classical law | why not |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        values, why = _metric_cells(run)
        metric, _ = objective_metric(parse_objective(run["objective"]))
        print(
            f"| {run['profile']} | {run['load']} | {run['objective']} | {metric} | {values} "
            f"| {'no' if why else 'yes'} | {why} |"
        )
    wins = sum(not _metric_cells(run)[1] for run in runs)
    print(f"\nRL beats the better classical law in {wins} of {len(runs)} cells.\n")


def main() -> None:
    """Run every objective × seed (or the whole matrix) and print the tables and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=60, help="ES generations per run (the budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objectives", nargs="+", default=["speed", "energy", "accuracy"])
    parser.add_argument("--moves", type=int, default=100, help="evaluation moves per comparison")
    parser.add_argument("--matrix", action="store_true", help="every profile × load × objective, first seed")
    options = parser.parse_args()
    if options.matrix:
        cells = [(p, load) for p in list_profiles() for load in load_profile(p).loads]
        seed = options.seeds[0]
        runs = [
            run(o, seed, options.generations, options.moves, profile=p, load=load)
            for p, load in cells
            for o in options.objectives
        ]
        matrix_table(runs)
        print(json.dumps(runs, indent=1, default=str))
        return
    runs = [run(o, s, options.generations, options.moves) for o in options.objectives for s in options.seeds]
    for objective in options.objectives:
        table(objective, [r for r in runs if r["objective"] == objective])
    print(json.dumps(runs, indent=1, default=str))


if __name__ == "__main__":
    main()
