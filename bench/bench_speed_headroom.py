"""What a schedule of the speed law could still add on the nominal twin, measured without hindsight.

The speed objective's classical law (PTOS, cached gains) against the same law with its position gain and braking
deceleration scaled by constants, on the same seeded moves (batched twin, 1 s each), each run twice with two
sensing-noise seeds A and B:

- *best constant*: the (kp_pos, decel) scaling with the shortest mean settle on seed A, scored on seed B (and the
  other way round): what a better tuner of the law's gains would find.
- *per-move oracle*: for each move the scaling that settled it soonest on seed A. Scored on seed A it is the
  hindsight number ("in-sample"); scored on seed B, the same choices, it is what knowing the move could give a
  policy that decides once per move ("cross-seed"). When the cross-seed oracle is no better than the best
  constant, what a per-move choice found on one run was that run's sensing noise.
- *noise-free*: PTOS, the best constant and the per-move oracle again with the sensing noise scaled to nothing
  (one run: the seed no longer matters). An oracle that still beats the best constant there is not only picking
  noise: a move's settle time is a rugged function of the gains.
- *aim past the target*: the law aimed `delta` past the target in the direction of the move, settled against the
  true target (the band-aware bound's strategy: stop inside the band, past the target).
- the time-optimal bound (`mm_sim.baselines.TimeOptimalController`): an open-loop bang-bang plan on the exact plant.

Prints a markdown table, then one JSON document. `python bench/bench_speed_headroom.py [--moves 200]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from typing import Any

import numpy as np
from mm_contract.profiles import ServoProfile, load_profile
from mm_sim.baselines import PidGains, TimeOptimalController, tuned_gains
from mm_sim.batch import BatchTwin, Schedule, rollout
from mm_sim.evaluate import evaluate, seeded_moves
from numpy.typing import NDArray

from mm_sim import ServoEnv

MOVES_SEED = 1_000_000
"""The moves: the schedule trainer's evaluation moves (`mm_learning.schedule.EVALUATION_SEED`)."""
NOISE_SEEDS = (11, 22)
KP_SCALES = tuple(float(x) for x in np.geomspace(0.8, 2.4, 9))
DECEL_SCALES = tuple(float(x) for x in np.linspace(0.86, 1.06, 9))
AIM_OFFSETS_RAD = (0.002, 0.004, 0.006, 0.008)
QUIET_SENSING = ("sensing.encoder_noise_counts", "sensing.current_noise_a")
NO_NOISE = 1e-9
"""Factor on the sensing noise for the noise-free rows (`ServoProfile.scaled` takes factors > 0)."""
UNSETTLED_S = 1.0
"""A move still outside the band at its end counts as settling at the move's end (1 s)."""


def _settle_s(
    profile: ServoProfile,
    load: str,
    gains: PidGains,
    moves: tuple[NDArray[np.float64], NDArray[np.float64]],
    seed: int,
    *,
    aim_rad: float = 0.0,
) -> NDArray[np.float64]:
    """Each move's settling time (s) under `gains` with sensing-noise `seed`, aiming `aim_rad` past the target."""
    start, target = moves
    twin = BatchTwin(profile, load, len(start), objective="speed")
    aim = target + aim_rad * np.sign(target - start)
    run = rollout(twin, Schedule(gains, 0.0, 1), start, aim, round(1.0 / profile.dt_s), seed=seed)
    settle = run.outcomes(target, profile.dt_s, twin.tolerance_rad)[1]
    return np.where(np.isnan(settle), UNSETTLED_S, settle)


def headroom(profile_name: str, load: str, count: int) -> dict[str, Any]:
    """Every row of the table (mean settle over the moves, s), on `count` seeded moves."""
    started = time.perf_counter()
    profile = load_profile(profile_name)
    base = tuned_gains(profile, load, "speed", law="ptos")
    move_list = seeded_moves(count, seed=MOVES_SEED)
    moves = np.array([m.start_rad for m in move_list]), np.array([m.target_rad for m in move_list])
    grid = list(itertools.product(KP_SCALES, DECEL_SCALES))

    def scaled(kp: float, decel: float) -> PidGains:
        return dataclasses.replace(base, kp_pos=base.kp_pos * kp, decel_rad_s2=base.decel_rad_s2 * decel)

    # settle[seed][cell, move]
    settle = {
        seed: np.array([_settle_s(profile, load, scaled(*cell), moves, seed) for cell in grid]) for seed in NOISE_SEEDS
    }
    rows: dict[str, Any] = {
        "ptos": {str(seed): float(_settle_s(profile, load, base, moves, seed).mean()) for seed in NOISE_SEEDS}
    }
    columns = np.arange(count)
    for chosen_on, scored_on in itertools.permutations(NOISE_SEEDS):
        best = int(np.argmin(settle[chosen_on].mean(axis=1)))
        picks = settle[chosen_on].argmin(axis=0)
        rows.setdefault("best_constant", {})[str(scored_on)] = float(settle[scored_on][best].mean())
        rows["best_constant"][f"scaling_chosen_on_{chosen_on}"] = grid[best]
        rows.setdefault("oracle_in_sample", {})[str(chosen_on)] = float(settle[chosen_on].min(axis=0).mean())
        rows.setdefault("oracle_cross_seed", {})[str(scored_on)] = float(settle[scored_on][picks, columns].mean())
    best_cell = grid[int(np.argmin(np.mean(list(settle.values()), axis=(0, 2))))]
    # The same grid without sensing noise: is the in-sample oracle's gain the noise, or the law's own ruggedness?
    quiet = profile.scaled(load, dict.fromkeys(QUIET_SENSING, NO_NOISE))[0]
    settle_quiet = np.array([_settle_s(quiet, load, scaled(*cell), moves, NOISE_SEEDS[0]) for cell in grid])
    rows["noise_free_ptos"] = {"-": float(_settle_s(quiet, load, base, moves, NOISE_SEEDS[0]).mean())}
    rows["noise_free_best_constant"] = {"-": float(settle_quiet.mean(axis=1).min())}
    rows["noise_free_oracle"] = {"-": float(settle_quiet.min(axis=0).mean())}
    for label, gains in (("ptos", base), ("best_constant", scaled(*best_cell))):
        for aim in AIM_OFFSETS_RAD:
            rows[f"{label}_aim_{aim * 1e3:g}mrad"] = {
                str(seed): float(_settle_s(profile, load, gains, moves, seed, aim_rad=aim).mean())
                for seed in NOISE_SEEDS
            }
    env = ServoEnv(profile, load=load, objective="speed")
    bound = TimeOptimalController(tuned_gains(profile, load, "speed"))
    rows["bound"] = {
        str(seed): evaluate(env, bound, move_list, seed=seed).summary()["mean_settling_time_s"] for seed in NOISE_SEEDS
    }
    return {
        "profile": profile_name,
        "load": load,
        "moves": count,
        "noise_seeds": list(NOISE_SEEDS),
        "kp_scales": list(KP_SCALES),
        "decel_scales": list(DECEL_SCALES),
        "mean_settle_s": rows,
        "wall_s": time.perf_counter() - started,
    }


def _markdown(result: dict[str, Any]) -> str:
    seeds = [str(seed) for seed in result["noise_seeds"]]
    ptos = np.mean([result["mean_settle_s"]["ptos"][seed] for seed in seeds])
    lines = [
        f"{result['profile']} + {result['load']}, objective speed, {result['moves']} seeded moves, noise seeds "
        f"{' / '.join(seeds)} ({result['wall_s']:.0f} s)",
        "",
        f"| row | settle (s), seed {' | seed '.join(seeds)} | vs PTOS |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]
    for row, values in result["mean_settle_s"].items():
        means = [values.get(seed, values.get("-")) for seed in seeds]
        change = 100.0 * (ptos - np.mean(means)) / ptos
        lines.append(f"| {row} | " + " | ".join(f"{v:.4f}" for v in means) + f" | {change:+.1f} % |")
    return "\n".join(lines)


def main() -> None:
    """Run the bench on the command line's profile, load and move count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mm_v3")
    parser.add_argument("--load", default="pendulum")
    parser.add_argument("--moves", type=int, default=200)
    args = parser.parse_args()
    result = headroom(args.profile, args.load, args.moves)
    print(_markdown(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
