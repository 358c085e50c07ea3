"""`rollout`: run a controller over seeded step moves on the twin and print the metrics.

Examples:
    rollout --profile mm_v3 --load pendulum --controller pid --moves 5
    rollout --profile gimbal_bldc --load inertia_disk --controller bound --video gimbal.gif
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mm_contract.errors import ContractError
from mm_contract.objectives import OBJECTIVES
from mm_contract.profiles import list_profiles
from numpy.typing import NDArray

from mm_sim.baselines import PidController, TimeOptimalController, initial_gains, tuned_gains
from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Controller, evaluate, run_move, seeded_moves
from mm_sim.render import save_animation  # OpenGL only for this option

VIDEO_FPS = 25


class ZeroController:
    """Commands no current: shows how the load moves on its own."""

    def reset(self, env: ServoEnv, info: dict[str, Any]) -> None:
        """Nothing to prepare."""

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """Always 0."""
        return np.zeros(1, dtype=np.float32)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollout", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", default="mm_v3", help=f"shipped profile ({', '.join(list_profiles())}) or a profile YAML"
    )
    parser.add_argument("--load", default="pendulum", help="one of the profile's loads")
    parser.add_argument(
        "--controller",
        choices=("pid", "bound", "zero"),
        default="pid",
        help="pid: tuned PID; bound: time-optimal bang-bang; zero: no current",
    )
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="accuracy", help="reward and PID tune")
    parser.add_argument("--moves", type=int, default=3, help="seeded step moves to run")
    parser.add_argument("--move-s", type=float, default=1.0, help="time given to each move (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the moves")
    parser.add_argument("--json", action="store_true", help="print one JSON object per move")
    parser.add_argument("--video", type=Path, default=None, help="also save the first move as .gif or .mp4")
    return parser


def _controller(kind: str, env: ServoEnv, objective: str) -> Controller:
    if kind == "zero":
        return ZeroController()
    try:
        gains = tuned_gains(env.profile, env.load_name, objective)
    except MmSimError:
        gains = initial_gains(env.profile, env.nominal_load)  # a profile of the user's own: untuned gains
    return PidController(gains) if kind == "pid" else TimeOptimalController(gains)


def _record(env: ServoEnv, controller: Controller, move: Any, path: Path) -> int:
    """Run one move again, saving a frame every 1/VIDEO_FPS s; returns the number of frames."""
    every = max(1, round(env.profile.control.rate_hz / VIDEO_FPS))
    frames: list[NDArray[np.uint8]] = []

    class Filming:
        def reset(self, env_: ServoEnv, info: dict[str, Any]) -> None:
            controller.reset(env_, info)
            frames.append(env.render())

        def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
            if round(info["time_s"] / env.dt_s) % every == 0 and info["time_s"] > 0:
                frames.append(env.render())
            return controller(observation, info)

    run_move(env, Filming(), move, seed=0)
    save_animation(path, frames, VIDEO_FPS)
    return len(frames)


def main(args: list[str] | None = None) -> int:
    """Entry point of the `rollout` command; returns the exit status."""
    options = _parser().parse_args(args)
    try:
        env = ServoEnv(
            options.profile,
            load=options.load,
            objective=options.objective,
            render_mode="rgb_array" if options.video else None,
        )
        controller = _controller(options.controller, env, options.objective)
        moves = seeded_moves(options.moves, seed=options.seed, duration_s=options.move_s)
        result = evaluate(env, controller, moves, seed=options.seed)
        for index, (move, metrics, total) in enumerate(zip(result.moves, result.metrics, result.returns, strict=True)):
            if options.json:
                print(
                    json.dumps(
                        {"move": index, **dataclasses.asdict(move), **dataclasses.asdict(metrics), "return": total}
                    )
                )
            else:
                settle = "not settled" if metrics.settling_time_s is None else f"{metrics.settling_time_s:.3f} s"
                print(
                    f"move {index}: {move.start_rad:+.3f} -> {move.target_rad:+.3f} rad: settle {settle}, "
                    f"overshoot {metrics.overshoot_rad:.4f} rad, energy {metrics.energy_j:.3f} J, "
                    f"peak {metrics.peak_current_a:.2f} A, return {total:.4f}"
                )
        if options.video:
            frames = _record(env, controller, moves[0], options.video)
            print(f"wrote {options.video} ({frames} frames)")
        env.close()
    except (MmSimError, ContractError) as error:
        print(f"rollout: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
