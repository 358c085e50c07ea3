"""The main job on a fresh machine (`make demo`): train, export, check and compare a policy in the twin.

1. trains a policy in the MuJoCo twin for an objective with a wall-time budget (PPO, both cores);
2. exports it as an integer-only TFLite model, runs the acceptance checks in TFLite Micro and signs it;
3. runs the quantised policy (through TFLite Micro, as the servo would), the float policy, the PID tuned for the
   same objective and the time-optimal bound on the same seeded step moves, and prints the table;
4. writes plots (training curve, step responses, energy per move), an animation of the quantised policy and a
   JSON summary, and prints where they are.

The ROS parts (deployment to the virtual servo through the driver, bag recording) join this job once the twin
node and the driver exist; until then everything here is the twin and the export pipeline, for real.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mm_learning.errors import LearningError, PolicyRejected

DEFAULT_OUT = Path("out/demo")
ANIMATION_FPS = 25.0
PLOTTED_MOVES = 3
COMPARISON_SEED = 9_000  # disjoint from the trainer's evaluation and export seeds


@dataclass
class _History:
    """Evaluations seen during training, for the training curve."""

    steps: list[int] = field(default_factory=list)
    policy_return: list[float] = field(default_factory=list)
    pid_return: list[float] = field(default_factory=list)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objective", default="accuracy", help="accuracy, speed, energy, smooth or a mix 'speed:0.7,energy:0.3'"
    )
    parser.add_argument("--algo", default="ppo", help="SB3 algorithm (ppo, sac, td3, ddpg, a2c)")
    parser.add_argument("--time-s", type=float, default=240.0, help="training wall-time budget (s, default 240)")
    parser.add_argument("--steps", type=int, default=0, help="training step budget (0: only the time budget)")
    parser.add_argument("--profile", default="mm_v3", help="mm_sim servo profile (default mm_v3)")
    parser.add_argument("--load", default="pendulum", help="load of the profile (default pendulum)")
    parser.add_argument("--moves", type=int, default=20, help="seeded step moves in the comparison (default 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-animation", action="store_true", help="skip the rendered animation")
    return parser


def _train(options: argparse.Namespace, history: _History) -> Any:
    from mm_learning.trainer import Progress, TrainConfig, Trainer, TwinSpec

    def on_progress(progress: Progress) -> None:
        if progress.phase == "evaluating" and progress.eval_metrics:
            history.steps.append(progress.steps)
            history.policy_return.append(float(progress.eval_metrics["mean_return"]))
            history.pid_return.append(float(progress.baseline_metrics["mean_return"]))
            print(
                f"  {progress.steps:>8} steps ({progress.steps_per_s:5.0f}/s): return "
                f"{progress.eval_metrics['mean_return']:.4g} vs PID {progress.baseline_metrics['mean_return']:.4g}",
                flush=True,
            )

    twin = TwinSpec(profile=options.profile, load=options.load, objective=options.objective)
    config = TrainConfig(
        out_dir=options.out / "run",
        twin=twin,
        algorithm=options.algo,
        max_steps=options.steps,
        max_time_s=options.time_s,
        eval_every_steps=20_000,
        eval_moves=10,
        progress_bar=sys.stdout.isatty(),
    )
    result = Trainer(config, on_progress=on_progress).run()
    print(f"  stopped ({result.stop_reason}) after {result.steps} steps in {result.elapsed_s:.0f} s")
    return twin, result


def _export(twin: Any, result: Any, out: Path) -> tuple[bytes | None, str]:
    """Export and check; returns (model bytes or None, a one-line verdict)."""
    from mm_learning.signing import generate_keypair, load_private_key
    from mm_learning.trainer import export_trained

    key_dir = out / "keys"
    private_path = key_dir / "policy_signing_key.pem"
    if not private_path.exists():
        private_path, _ = generate_keypair(key_dir)
    try:
        exported = export_trained(
            result.model,
            twin,
            private_key=load_private_key(private_path),
            out_dir=out / "policy",
            metrics=dict(result.eval_metrics),
        )
    except PolicyRejected as refusal:
        return None, f"REFUSED (the quantised policy is left out of the comparison): {refusal}"
    model_path = exported.paths.get("tflite")
    model = model_path.read_bytes() if model_path else None
    return model, f"accepted, signed image {exported.paths.get('mmpl', '?')}"


def _controllers(twin: Any, result: Any, env: Any, model_bytes: bytes | None) -> dict[str, Any]:
    from mm_sim.baselines import TimeOptimalController
    from mm_sim.evaluate import PolicyController

    from mm_learning.tflm import TflmPolicy
    from mm_learning.trainer import policy_controller

    moves_for_tuning = twin.moves(10)
    pid = twin.make_baseline(env, moves_for_tuning)
    controllers: dict[str, Any] = {}
    if model_bytes is not None:
        controllers["RL quantised (TFLite Micro)"] = PolicyController(TflmPolicy(model_bytes))
    controllers["RL float"] = policy_controller(result.model)
    controllers["PID tuned for objective"] = pid
    controllers["time-optimal bound"] = TimeOptimalController(pid.gains)
    return controllers


def _compare(env: Any, controllers: dict[str, Any], moves: list[Any]) -> dict[str, Any]:
    from mm_sim.evaluate import evaluate

    return {name: evaluate(env, controller, moves, seed=COMPARISON_SEED) for name, controller in controllers.items()}


def _table(evaluations: dict[str, Any]) -> str:
    rows = [
        "| controller | settled | settle time (s) | overshoot (mrad) | final error (mrad) | energy (J) | return |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, evaluation in evaluations.items():
        s = evaluation.summary()
        rows.append(
            f"| {name} | {s['settled_fraction']:.0%} | {s['mean_settling_time_s']:.3f} | "
            f"{1e3 * s['mean_overshoot_rad']:.1f} | {1e3 * s['mean_steady_state_error_rad']:.2f} | "
            f"{s['mean_energy_j']:.3f} | {s['mean_return']:.4g} |"
        )
    return "\n".join(rows)


def _plots(
    out: Path, history: _History, env: Any, controllers: dict[str, Any], evaluations: dict[str, Any]
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mm_sim.evaluate import run_move

    written = []
    fig, ax = plt.subplots(figsize=(7, 4))
    if history.steps:
        ax.plot(history.steps, history.policy_return, "o-", label="policy (float)")
        ax.plot(history.steps, history.pid_return, "--", label="PID tuned for the objective")
    ax.set(xlabel="environment steps", ylabel="mean return per move", title="Training curve")
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(out / "training_curve.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    moves = next(iter(evaluations.values())).moves[:PLOTTED_MOVES]
    fig, axes = plt.subplots(len(moves), 1, figsize=(7, 2.6 * len(moves)), sharex=True, squeeze=False)
    for ax, (index, move) in zip(axes[:, 0], enumerate(moves), strict=True):
        for name, controller in controllers.items():
            response, _ = run_move(env, controller, move, seed=COMPARISON_SEED + index)
            ax.plot(response.time_s, response.position_rad, label=name)
        ax.axhline(move.target_rad, color="k", lw=0.8, ls=":")
        ax.set_ylabel("position (rad)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("Step responses on the same seeded moves")
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    written.append(out / "step_responses.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(evaluations)
    for offset, (name, evaluation) in enumerate(evaluations.items()):
        energies = [m.energy_j for m in evaluation.metrics]
        ax.bar(np.arange(len(energies)) + offset * width, energies, width=width, label=name)
    ax.set(xlabel="move", ylabel="electrical energy (J)", title="Energy per move")
    ax.legend(fontsize=8)
    written.append(out / "energy_per_move.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return written


def _record_move(env: Any, controller: Any, move: Any) -> list[float]:
    """Run one move and return the true shaft angle (rad) at every animation frame."""
    from mm_sim.reference import Piecewise, StepReference

    env.max_steps = round(move.duration_s / env.dt_s)
    reference = StepReference(Piecewise((0.0,), (move.target_rad,)))
    options = {"initial_angle_rad": move.start_rad, "reference": reference}
    observation, info = env.reset(seed=COMPARISON_SEED, options=options)
    controller.reset(env, info)
    every = max(1, round(1.0 / (ANIMATION_FPS * env.dt_s)))
    angles = [env.plant.angle_rad]
    truncated, tick = False, 0
    while not truncated:
        observation, _, _, truncated, info = env.step(controller(observation, info))
        tick += 1
        if tick % every == 0:
            angles.append(env.plant.angle_rad)
    return angles


def _render_frames(profile_name: str, load_name: str, angles: list[float], target_rad: float, path: Path) -> None:
    """Render the recorded angles to an animation (runs in a child process: see `_animation`)."""
    from mm_sim.model import Plant
    from mm_sim.profiles import load_profile
    from mm_sim.render import SceneRenderer, save_animation

    profile = load_profile(profile_name)
    plant = Plant(profile, profile.loads[load_name])
    renderer = SceneRenderer(plant, width=480, height=360)
    frames = []
    for angle in angles:
        plant.reset(angle)
        frames.append(renderer.frame(target_rad))
    renderer.close()
    save_animation(path, frames, ANIMATION_FPS)


def _animation(options: argparse.Namespace, env: Any, name: str, controller: Any, move: Any) -> Path:
    """Record a move in this process, then render it in a fresh child process.

    TensorFlow, loaded here by the export, crashes MuJoCo's EGL renderer in the same process, so the frames
    are drawn by a child that imports only MuJoCo and mm_sim.
    """
    import multiprocessing

    angles = _record_move(env, controller, move)
    path = options.out / f"move_{'quantised' if 'quantised' in name else 'float'}.gif"
    child = multiprocessing.get_context("spawn").Process(
        target=_render_frames, args=(options.profile, options.load, angles, move.target_rad, path)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        msg = f"rendering the animation failed (exit code {child.exitcode}); the other outputs are complete"
        raise LearningError(msg)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    options = _parser().parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        print(
            f"[1/4] training {options.algo.upper()} for '{options.objective}' on {options.profile}/{options.load}"
            f" (budget {options.time_s:.0f} s)",
            flush=True,
        )
        history = _History()
        twin, result = _train(options, history)

        print("[2/4] exporting to integer TFLite and checking it in TFLite Micro", flush=True)
        model_bytes, verdict = _export(twin, result, options.out)
        print(f"  {verdict}")

        print(f"[3/4] comparing on {options.moves} seeded step moves", flush=True)
        from mm_sim.evaluate import seeded_moves

        env = twin.make_env(randomize=False).unwrapped
        controllers = _controllers(twin, result, env, model_bytes)
        moves = seeded_moves(options.moves, seed=COMPARISON_SEED, duration_s=twin.episode_s)
        evaluations = _compare(env, controllers, moves)
        table = _table(evaluations)
        print(table)

        print("[4/4] writing plots" + ("" if options.no_animation else " and an animation"), flush=True)
        paths = _plots(options.out, history, env, controllers, evaluations)
        if not options.no_animation:
            name = next(iter(controllers))
            paths.append(_animation(options, env, name, controllers[name], moves[0]))
        summary = {
            "objective": options.objective,
            "algorithm": options.algo,
            "profile": options.profile,
            "load": options.load,
            "training_steps": int(result.steps),
            "stop_reason": result.stop_reason,
            "export": verdict,
            "comparison": {name: ev.summary() for name, ev in evaluations.items()},
            "elapsed_s": time.monotonic() - started,
        }
        summary_path = options.out / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n", encoding="utf-8")
        (options.out / "comparison.md").write_text(table + "\n", encoding="utf-8")
        env.close()
    except LearningError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print("\nwritten:")
    for path in [*paths, summary_path, options.out / "comparison.md", options.out / "policy"]:
        print(f"  {path}")
    print(f"demo finished in {math.ceil(time.monotonic() - started)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
