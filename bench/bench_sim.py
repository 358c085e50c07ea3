"""mm_sim bench: twin throughput, and the yardstick a learned policy must beat.

1. Throughput of the default twin (mm_v3 + pendulum, 1 kHz control): raw MuJoCo steps/s of the same model
   (the baseline, measured in the same run), the plant with its electrical model, the Gymnasium env, and the
   batched twin (`mm_sim.batch`, 64 servos in one model); the real-time factor is env steps/s × control period.
2. For each profile × load, on the same seeded step moves: the PID and PTOS tuned for each objective (cached
   gains, run on the batched twin) and the time-optimal bound: settled fraction, settling time, overshoot,
   electrical energy, steady-state error.

Prints markdown tables, then one JSON document. `python bench/bench_sim.py [--moves 100]`.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import mujoco
import numpy as np
from mm_contract.objectives import OBJECTIVES
from mm_contract.profiles import list_profiles, load_profile
from mm_sim.baselines import LAWS, TimeOptimalController, tuned_gains
from mm_sim.batch import BatchTwin
from mm_sim.evaluate import evaluate, seeded_moves
from mm_sim.model import Plant
from mm_sim.tuning import run_law

from mm_sim import ServoEnv

THROUGHPUT_STEPS = 20_000
BATCH_COPIES = 64


def _rate(run: Any, steps: int) -> float:
    """Steps per second of `run(steps)`, the best of three runs (this VM's timings vary up to 1.5x)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run(steps)
        best = min(best, time.perf_counter() - start)
    return steps / best


def throughput() -> dict[str, float]:
    """Steps per second of raw MuJoCo, the plant and the env on the default profile and load."""
    profile = load_profile("mm_v3")
    plant = Plant(profile, profile.load("pendulum"))
    plant.reset(0.3)
    model, data = plant.model, plant.data

    def raw_python_loop(n: int) -> None:
        for _ in range(n):
            data.ctrl[0] = 0.1
            mujoco.mj_step(model, data)

    def plant_loop(n: int) -> None:
        for _ in range(n):
            plant.advance(0.5)

    env = ServoEnv(profile, load="pendulum", episode_s=1e6)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(THROUGHPUT_STEPS, 1)).astype(np.float32)

    def env_loop(n: int) -> None:
        for k in range(n):
            env.step(actions[k])

    batch = BatchTwin(profile, "pendulum", BATCH_COPIES, objective="speed")
    batch.reset(np.linspace(-3.0, 3.0, BATCH_COPIES), np.zeros(BATCH_COPIES))
    commands = np.random.default_rng(0).uniform(-1, 1, size=(THROUGHPUT_STEPS // BATCH_COPIES, BATCH_COPIES))

    def batch_loop(n: int) -> None:
        for k in range(n // BATCH_COPIES):
            batch.tick(commands[k])
            batch.observe(commands[k])

    result = {
        "mujoco_python_loop_steps_s": _rate(raw_python_loop, THROUGHPUT_STEPS),
        "mujoco_nstep_steps_s": _rate(lambda n: mujoco.mj_step(model, data, nstep=n), THROUGHPUT_STEPS),
        "plant_steps_s": _rate(plant_loop, THROUGHPUT_STEPS),
        "env_steps_s": _rate(env_loop, THROUGHPUT_STEPS),
        "batch_ticks_s": _rate(batch_loop, THROUGHPUT_STEPS),
    }
    result["env_real_time_factor"] = result["env_steps_s"] * profile.dt_s
    return result


def baselines(moves_count: int) -> list[dict[str, Any]]:
    """PID and PTOS tuned per objective vs the time-optimal bound, per profile × load, on the same moves."""
    moves = seeded_moves(moves_count, seed=2026)
    rows = []
    for name in list_profiles():
        profile = load_profile(name)
        for load_name in profile.loads:
            for objective in OBJECTIVES:
                for law in LAWS:
                    gains = tuned_gains(profile, load_name, objective, law=law)
                    summary = run_law(profile, load_name, objective, gains, moves).summary()
                    controller = f"{law.upper()} ({objective})"
                    rows.append({"profile": name, "load": load_name, "controller": controller, **summary})
            env = ServoEnv(profile, load=load_name, objective="speed")
            bound = TimeOptimalController(tuned_gains(profile, load_name, "speed"))
            summary = evaluate(env, bound, moves).summary()
            rows.append({"profile": name, "load": load_name, "controller": "time-optimal bound", **summary})
    return rows


def main() -> None:
    """Run both parts and print the tables and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=100, help="seeded step moves per profile × load")
    options = parser.parse_args()
    start = time.monotonic()
    rates = throughput()
    print("### Twin throughput (mm_v3 + pendulum, 1 kHz control, one process)\n")
    print("| what | steps/s |\n|---|---|")
    print(f"| MuJoCo `mj_step`, Python loop (baseline) | {rates['mujoco_python_loop_steps_s']:,.0f} |")
    print(f"| MuJoCo `mj_step(nstep=N)` | {rates['mujoco_nstep_steps_s']:,.0f} |")
    print(f"| plant with electrical model | {rates['plant_steps_s']:,.0f} |")
    print(f"| `MuscleMemoryServo-v0` env steps | {rates['env_steps_s']:,.0f} |")
    print(f"| batched twin, {BATCH_COPIES} servos (`mm_sim.batch`), ticks | {rates['batch_ticks_s']:,.0f} |")
    print(f"\nReal-time factor of the env: {rates['env_real_time_factor']:.1f}x\n")

    rows = baselines(options.moves)
    print(f"### Baselines on {options.moves} seeded step moves (1 s each, targets in ±π, tolerance 0.01 rad)\n")
    print(
        "| profile | load | controller | settled | mean settle (s) | max settle (s) | overshoot (mrad) | energy (J) "
        "| steady-state error (mrad) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['profile']} | {row['load']} | {row['controller']} | {100 * row['settled_fraction']:.0f} % | "
            f"{row['mean_settling_time_s']:.3f} | {row['max_settling_time_s']:.3f} | "
            f"{1000 * row['mean_overshoot_rad']:.1f} | {row['mean_energy_j']:.2f} | "
            f"{1000 * row['mean_steady_state_error_rad']:.2f} |"
        )
    print(f"\nTotal bench time: {time.monotonic() - start:.0f} s\n")
    print(json.dumps({"throughput": rates, "baselines": rows}, indent=1))


if __name__ == "__main__":
    main()
