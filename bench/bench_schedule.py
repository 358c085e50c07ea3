"""Schedule learning bench: whether, and how fast, the learned residual beats the classical controller.

For each objective on mm_v3 + pendulum and each seed: train a residual on the objective's classical controller
(`mm_learning.schedule`, a tick budget, not a wall-time one), export it as the servo runs it (int16x8 residual
image, every acceptance check), and evaluate on 100 seeded moves the tuned PID, the tuned PTOS, the float and the
quantised (TFLite Micro) residual policies, and the time-optimal bound. Also: the wall time until a validation
first beat the classical start, and experience throughput (ticks/s through PPO).

Prints markdown tables (mean and spread over seeds), then one JSON document.
`python bench/bench_schedule.py [--ticks 4000000] [--seeds 0 1 2] [--objectives speed energy accuracy]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from mm_learning.schedule import ScheduleConfig, ScheduleResult, export_schedule, policy_function, train_schedule
from mm_learning.tflm import TflmPolicy
from mm_sim.baselines import TimeOptimalController, tuned_gains
from mm_sim.batch import BatchTwin, Schedule, evaluate_batch
from mm_sim.env import ServoEnv
from mm_sim.evaluate import Evaluation, evaluate, seeded_moves
from mm_sim.profiles import load_profile

EVAL_SEED = 1_000_000
METRICS = ("settled_fraction", "mean_settling_time_s", "mean_energy_j", "mean_steady_state_error_rad", "mean_return")


def _rms(evaluation: Evaluation) -> float:
    return float(np.mean([m.rms_error_rad for m in evaluation.metrics]))


def _row(evaluation: Evaluation) -> dict[str, float]:
    return {**{k: evaluation.summary()[k] for k in METRICS}, "mean_rms_error_rad": _rms(evaluation)}


def run(objective: str, seed: int, ticks: int, moves_count: int) -> dict[str, Any]:
    """Train, export and evaluate one seed."""
    config = ScheduleConfig(objective=objective, ticks=ticks, seed=seed)
    profile = load_profile(config.profile)
    moves = seeded_moves(moves_count, seed=EVAL_SEED)
    result = train_schedule(config)

    def twin() -> BatchTwin:
        return BatchTwin(profile, config.load, len(moves), objective=objective, seed=EVAL_SEED)

    rows: dict[str, dict[str, float]] = {
        "PID": _row(evaluate_batch(twin(), _law(result, "pid"), moves)),
        "PTOS": _row(evaluate_batch(twin(), _law(result, "ptos"), moves)),
    }
    rows["RL float"] = _row(evaluate_batch(twin(), result.residual, moves, policy_function(result.model)))
    with tempfile.TemporaryDirectory() as out:
        try:
            export = export_schedule(result, private_key=ec.generate_private_key(ec.SECP256R1()), out_dir=Path(out))
            quantized = TflmPolicy(Path(out, "policy.tflite").read_bytes())
            rows["RL quantised"] = _row(evaluate_batch(twin(), result.residual, moves, quantized))
            exported = {"model_bytes": export.metadata["model_bytes"], "arena_bytes": export.metadata["arena_bytes"]}
        except Exception as error:
            exported = {"refused": str(error)}
    env = ServoEnv(profile, load=config.load, objective=objective)
    bound = evaluate(env, TimeOptimalController(tuned_gains(profile, config.load, "speed")), moves)
    rows["bound"] = _row(bound)
    return {
        "objective": objective,
        "seed": seed,
        "classical": result.classical.law,
        "rows": rows,
        "export": exported,
        "improved": result.best is not None,
        "wall_to_beat_classical_s": result.beat_after_s,
        "ticks": result.ticks,
        "wall_s": result.wall_s,
        "ticks_per_s": result.ticks_per_s,
    }


def _law(result: ScheduleResult, law: str) -> Schedule:
    """The classical `law` alone (residual 0) with the gains the run compared against."""
    config = result.config
    return Schedule(tuned_gains(load_profile(config.profile), config.load, config.objective, law=law), 0.0, 1)


def main() -> None:
    """Run every objective × seed and print the tables and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=4_000_000, help="experience budget per run (control ticks)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objectives", nargs="+", default=["speed", "energy", "accuracy"])
    parser.add_argument("--moves", type=int, default=100)
    options = parser.parse_args()
    runs = [run(o, s, options.ticks, options.moves) for o in options.objectives for s in options.seeds]
    for objective in options.objectives:
        mine = [r for r in runs if r["objective"] == objective]
        print(f"### {objective}: mm_v3 + pendulum, {options.moves} moves, {len(mine)} seeds (mean ± spread)\n")
        print("| controller | settled | settle (s) | energy (J) | steady-state (mrad) | RMS (mrad) | return |")
        print("|---|---|---|---|---|---|---|")
        for name in ("PID", "PTOS", "RL float", "RL quantised", "bound"):
            values = [r["rows"][name] for r in mine if name in r["rows"]]
            if not values:
                print(f"| {name} | refused | | | | | |")
                continue

            def cell(key: str, scale: float = 1.0, digits: int = 3, values: list[Any] = values) -> str:
                x = np.array([v[key] for v in values]) * scale
                return f"{x.mean():.{digits}f} ± {(x.max() - x.min()) / 2:.{digits}f}"

            print(
                f"| {name} | {cell('settled_fraction', 100, 0)} % | {cell('mean_settling_time_s')} | "
                f"{cell('mean_energy_j', digits=2)} | {cell('mean_steady_state_error_rad', 1000, 2)} | "
                f"{cell('mean_rms_error_rad', 1000, 1)} | {cell('mean_return', digits=4)} |"
            )
        wins = [r["wall_to_beat_classical_s"] for r in mine]
        print(
            f"\nclassical start: {', '.join(r['classical'] for r in mine)}; beat it: "
            f"{sum(w is not None for w in wins)}/{len(mine)} seeds, wall time to beat: {wins}; "
            f"ticks/s: {[round(r['ticks_per_s']) for r in mine]}\n"
        )
    print(json.dumps(runs, indent=1, default=str))


if __name__ == "__main__":
    main()
