"""Sweep bench: the same grid of schedule trainings one after another in one process, then as Ray tasks.

Baseline: every trial of the grid trained, exported with every check, compared and registered in this process,
one after another (`sweep.run_trial` + `schedule.register`: what `mm learn` does per trial; TensorFlow already
imported). Then the same trials with `mm sweep`'s `run_sweep` on a local Ray instance with `--workers` workers;
its start (until the instance answers) is timed on its own, and the sweep's wall time includes each worker's
first import of TensorFlow. Budgets are in ES generations, so both do the same work.

Prints a markdown table, then one JSON document.
`python bench/bench_sweep.py [--generations 10] [--seeds 0 1] [--objectives speed energy] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.registry import Registry
from mm_learning.schedule import ScheduleConfig, register
from mm_learning.sweep import grid, ray_session, run_sweep, run_trial


def main() -> None:
    """Run the grid serially and on Ray; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=["speed", "energy"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--moves", type=int, default=20, help="evaluation moves of each comparison")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    trials = grid(
        objectives=args.objectives,
        loads=["pendulum"],
        seeds=args.seeds,
        base=ScheduleConfig(generations=args.generations),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.TemporaryDirectory() as scratch:
        serial_registry = Registry(Path(scratch) / "serial")
        started = time.perf_counter()
        for trial in trials:
            outcome = run_trial(trial.config, args.moves)
            register(outcome.image, outcome.metadata, registry=serial_registry, private_key=key)
        serial_s = time.perf_counter() - started

        started = time.perf_counter()
        with ray_session(None, args.workers):
            ray_start_s = time.perf_counter() - started
            results = run_sweep(
                trials, registry=Registry(Path(scratch) / "ray"), private_key=key, evaluation_moves=args.moves
            )
        ray_s = time.perf_counter() - started
    failed = [r.trial.name for r in results if r.error]
    report: dict[str, Any] = {
        "trials": len(trials),
        "generations": args.generations,
        "workers": args.workers,
        "serial_s": serial_s,
        "ray_s": ray_s,
        "ray_start_s": ray_start_s,
        "speedup": serial_s / ray_s,
        "failed": failed,
    }
    print(f"## Sweep: {len(trials)} trials of {args.generations} generations (mm_v3 + pendulum)\n")
    print("| how | wall time (s) | per trial (s) |\n|---|---|---|")
    print(f"| one after another in one process (baseline) | {serial_s:.1f} | {serial_s / len(trials):.1f} |")
    print(
        f"| local Ray, {args.workers} workers (start {ray_start_s:.1f} s included) | {ray_s:.1f} | "
        f"{ray_s / len(trials):.1f} |"
    )
    print(f"\nspeed-up {serial_s / ray_s:.2f}x; failed trials: {failed or 'none'}\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
