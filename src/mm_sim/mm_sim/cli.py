"""`rollout`: run a controller on the twin and print what it did.

rollout --profile arm --controller pid --episodes 5
MUJOCO_GL=egl rollout --profile flywheel --gif flywheel.gif
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from mm_sim.env import TASKS, ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Controller, ZeroController, pid_for, rollout
from mm_sim.servo_profile import list_profiles

GIF_FPS = 25


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollout", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile", default="arm", help=f"shipped profile ({', '.join(list_profiles())}) or path to a profile YAML"
    )
    parser.add_argument(
        "--controller",
        choices=("pid", "zero"),
        default="pid",
        help="pid: the profile's PID baseline; zero: no current (the plant on its own)",
    )
    parser.add_argument("--task", choices=TASKS, default="step", help="step targets or sine tracking")
    parser.add_argument("--episodes", type=int, default=3, help="episodes to run")
    parser.add_argument("--episode-s", type=float, default=2.0, help="episode length (s)")
    parser.add_argument("--hold-s", type=float, default=None, help="step task: time per target (s)")
    parser.add_argument("--randomize", type=float, default=0.0, help="domain randomisation fraction, e.g. 0.2")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per episode")
    parser.add_argument(
        "--gif",
        type=Path,
        default=None,
        help="also save the first episode as an animated GIF (needs OpenGL, e.g. MUJOCO_GL=egl)",
    )
    return parser


def _record_gif(env: ServoEnv, controller: Controller, seed: int, path: Path) -> int:
    """Run one episode, saving a frame every 1/GIF_FPS s; returns the number of frames."""
    import imageio.v3 as iio  # only this option needs it

    every = max(1, round(env.profile.control_rate_hz / GIF_FPS))
    controller.reset()
    observation, info = env.reset(seed=seed)
    frames = [env.render()]
    for tick in range(1, env.max_steps + 1):
        observation, _, _, _, info = env.step(controller(observation, info))
        if tick % every == 0:
            frames.append(env.render())
    iio.imwrite(path, frames, duration=1000 / GIF_FPS, loop=0)
    return len(frames)


def main(args: list[str] | None = None) -> int:
    """Entry point of the `rollout` command; returns the exit status."""
    options = _parser().parse_args(args)
    try:
        env = ServoEnv(
            options.profile,
            task=options.task,
            episode_s=options.episode_s,
            hold_s=options.hold_s,
            randomize=options.randomize,
            render_mode="rgb_array" if options.gif else None,
        )
        controller: Controller = pid_for(env) if options.controller == "pid" else ZeroController()
        for episode in range(options.episodes):
            metrics = rollout(env, controller, seed=options.seed + episode)
            if options.json:
                print(json.dumps({"episode": episode, **dataclasses.asdict(metrics)}))
            else:
                if metrics.overshoot_rad is None:  # not a step task: settling means nothing
                    settle = overshoot = "-"
                else:
                    settle = "not settled" if metrics.settle_time_s is None else f"{metrics.settle_time_s:.3f} s"
                    overshoot = f"{metrics.overshoot_rad:.4f} rad"
                print(
                    f"episode {episode}: return {metrics.episode_return:.1f}, rms error "
                    f"{metrics.rms_error_rad:.4f} rad, final error {metrics.final_error_rad:.5f} rad, "
                    f"settle {settle}, overshoot {overshoot}, mean |current| {metrics.mean_abs_current_a:.3f} A"
                )
        if options.gif:
            frames = _record_gif(env, controller, options.seed, options.gif)
            print(f"wrote {options.gif} ({frames} frames)")
        env.close()
    except MmSimError as error:
        print(f"rollout: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
