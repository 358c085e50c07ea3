"""Training bench (issue 4): wall time to a policy that beats the objective's PID, per objective, on 2 cores.

For each objective (default speed, accuracy, energy) PPO trains in the mm_sim twin (mm_v3 + pendulum, one step
move per 1 s episode) with mm_learning.trainer's preset, evaluated every ``--eval-every`` env steps on the same
100 seeded moves as the PID tuned for that objective, and stops as soon as it beats the objective's target
(twin.beats_target) or at the time budget. The trained policy is then exported (int16x8, TFLite Micro) and
the float policy, the quantised policy run by TFLite Micro, the PID and the time-optimal bound are measured on
the same moves, in this run.

Goals (issue 4): beat the PID on every objective's primary metric in <= 5 min each -- speed: settling time
>= 30 % shorter (and within 1.25x the bound); energy: >= 25 % less energy at equal or better settling;
accuracy: lower steady-state and RMS error.

The velocity feature's scale is matched to the pendulum (twin.matched_velocity_scale, 39 rad/s instead of
the profile's 160 rad/s; ``--vel-scale profile`` for the profile's): the exported image carries it.

Run: ``PYTHONPATH=src/mm_learning:src/mm_sim python bench/bench_training.py [--minutes 5] [--objectives ...]``.
Prints a markdown table and the JSON of the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.objectives import parse_objective
from mm_contract.tflm import TflmPolicy
from mm_learning.algorithms import policy_controller
from mm_learning.errors import LearningError
from mm_learning.goals import Progress
from mm_learning.pipeline import export_trained
from mm_learning.trainer import TrainConfig, Trainer
from mm_learning.twin import TwinSpec, beats_target, evaluate_moves, matched_velocity_scale
from mm_sim.baselines import TimeOptimalController
from mm_sim.evaluate import PolicyController
from stable_baselines3 import PPO

COLUMNS = (
    ("settled_fraction", "settled", "{:.2f}"),
    ("mean_settling_time_s", "settle s", "{:.3f}"),
    ("mean_steady_state_error_rad", "final err rad", "{:.2e}"),
    ("mean_rms_error_rad", "RMS err rad", "{:.3f}"),
    ("mean_energy_j", "energy J", "{:.3f}"),
    ("mean_overshoot_rad", "overshoot rad", "{:.3f}"),
    ("mean_return", "return", "{:.4g}"),
)


def bench_objective(
    objective: str, minutes: float, moves: int, eval_every: int, out_dir: Path, *, vel_scale_rad_s: float | None
) -> dict[str, Any]:
    """Train, export and measure one objective; returns its row of the JSON."""
    twin = TwinSpec(
        profile="mm_v3",
        load="pendulum",
        objective=parse_objective(objective),
        episode_s=1.0,
        vel_scale_rad_s=vel_scale_rad_s,
    )
    curve: list[dict[str, float]] = []

    def on_progress(progress: Progress) -> None:
        if progress.phase == "evaluating" and progress.eval_metrics:
            curve.append({"steps": progress.steps, **progress.eval_metrics})

    config = TrainConfig(
        out_dir=out_dir / objective,
        twin=twin,
        algorithm="ppo",
        max_steps=0,
        max_time_s=60.0 * minutes,
        eval_every_steps=eval_every,
        eval_moves=moves,
        checkpoint_every_steps=10 * eval_every,
        tensorboard=False,
    )
    started = time.monotonic()
    result = Trainer(config, on_progress=on_progress).run()
    wall_s = time.monotonic() - started
    row: dict[str, Any] = {
        "objective": objective,
        "vel_scale_rad_s": twin.scales().vel_scale_rad_s,
        "steps": result.steps,
        "train_wall_s": wall_s,
        "steps_per_s": result.steps / wall_s,
        "stop_reason": result.stop_reason,
        "beat_pid": result.target_beaten,
        "time_to_beat_pid_s": wall_s if result.stop_reason == "target" else None,
        "curve": curve,
    }
    # The best evaluated model is what the trainer hands to the export (RL can make the policy worse).
    model = PPO.load(result.best_model_path, device="cpu")
    row["best_steps"] = result.best_steps
    env = twin.make_env(randomize=False)
    seeded = twin.moves(moves)
    pid = twin.make_baseline(env, seeded)
    table = {
        "float": evaluate_moves(env, policy_controller(model), seeded),
        "pid": evaluate_moves(env, pid, seeded),
        "bound": evaluate_moves(env, TimeOptimalController(pid.gains), seeded),
    }
    try:
        export = export_trained(
            model, twin, private_key=ec.generate_private_key(ec.SECP256R1()), out_dir=out_dir / "export"
        )
        tflite = export.paths["tflite"].read_bytes()
        table["quantised"] = evaluate_moves(env, PolicyController(TflmPolicy(tflite)), seeded)
        row["model_bytes"] = export.metadata["model_bytes"]
        row["arena_bytes"] = export.metadata["arena_bytes"]
        row["export"] = "accepted"
    except LearningError as exc:
        row["export"] = f"refused: {exc}"
    env.close()
    row["table"] = table
    row["quantised_beats_pid"] = "quantised" in table and beats_target(twin.objective, table["quantised"], table["pid"])
    if objective == "speed":
        row["settle_vs_bound"] = table["float"]["mean_settling_time_s"] / table["bound"]["mean_settling_time_s"]
    return row


def markdown(rows: list[dict[str, Any]], moves: int, minutes: float) -> str:
    """The run as markdown: one summary table and one metrics table per objective."""
    lines = [
        f"PPO, mm_v3 + pendulum, {moves} seeded 1 s step moves, budget {minutes:g} min per objective, "
        f"velocity scale {rows[0]['vel_scale_rad_s']:g} rad/s",
        "",
        "| objective | steps | env steps/s | stop | time to beat PID | model B | arena B | export |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        beat = "-" if row["time_to_beat_pid_s"] is None else f"{row['time_to_beat_pid_s']:.0f} s"
        lines.append(
            f"| {row['objective']} | {row['steps']} | {row['steps_per_s']:.0f} | {row['stop_reason']} | {beat} | "
            f"{row.get('model_bytes', '-')} | {row.get('arena_bytes', '-')} | {row['export'][:60]} |"
        )
    for row in rows:
        lines += ["", f"**{row['objective']}**", "", "| controller | " + " | ".join(c[1] for c in COLUMNS) + " |"]
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for name, metrics in row["table"].items():
            cells = [fmt.format(metrics[key]) for key, _, fmt in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", default="speed,accuracy,energy", help="comma-separated objectives")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per objective (min)")
    parser.add_argument("--moves", type=int, default=100, help="seeded step moves of every evaluation")
    parser.add_argument("--eval-every", type=int, default=50_000, help="evaluate every N env steps")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument(
        "--vel-scale", default="matched", help="velocity feature scale: 'matched' to the load, 'profile', or rad/s"
    )
    args = parser.parse_args()
    scale = {"matched": matched_velocity_scale("mm_v3", "pendulum"), "profile": None}.get(args.vel_scale)
    if scale is None and args.vel_scale != "profile":
        scale = float(args.vel_scale)
    out_dir = Path(tempfile.mkdtemp(prefix="bench_training-"))
    try:
        rows = [
            bench_objective(objective, args.minutes, args.moves, args.eval_every, out_dir, vel_scale_rad_s=scale)
            for objective in args.objectives.split(",")
        ]
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    print(markdown(rows, args.moves, args.minutes))
    document = json.dumps({"minutes": args.minutes, "moves": args.moves, "objectives": rows}, indent=1)
    print(document)
    if args.json is not None:
        args.json.write_text(document)


if __name__ == "__main__":
    main()
