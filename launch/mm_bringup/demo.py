"""The main job on a fresh machine (`make demo`): train, deploy and compare a policy through ROS 2.

What a user would do with `ros2 launch mm_bringup sim.launch.py` and `ros2 action send_goal`
(mm_bringup.session runs it, the end-to-end test runs the same code):

1. starts the sim bringup (virtual servo = the firmware's C core on the MuJoCo twin, driver, learner, recorder);
2. sends the learner's Train goal for an objective with a wall-time budget (by default the ES schedule of PTOS
   in the twin, export to an integer-only TFLite model, acceptance checks in TFLite Micro, signature) and draws
   its feedback;
3. deploys the published policy to the virtual servo through the driver's deploy_policy action;
4. runs the seeded step moves with move_to, the quantised policy on the servo and then the servo's PID tuned for
   the objective; then deploys PTOS tuned for the objective (the classical-start image) and runs the same moves
   with it on the servo, and computes mm_sim's time-optimal bound for the same moves;
5. stops the bringup, reads the bag back (messages per topic, the recorded transitions as a dataset), prints the
   table, writes the plots (training curve; step responses and a GIF of a move replayed from the bag; energy
   per move) and a JSON summary, and prints where everything is.

The virtual servo runs in real time: the bag, the step responses and the move metrics are in wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml
from matplotlib.figure import Figure
from mm_contract.errors import ContractError
from mm_contract.metrics import Response, step_metrics
from mm_contract.objectives import parse_objective
from mm_contract.profiles import load_profile
from mm_driver.supervisor import CONTROLLERS
from mm_learning.bags import make_typestore, read_messages
from mm_learning.errors import LearningError
from mm_learning.twin import TwinSpec
from mm_sim.baselines import TimeOptimalController
from mm_sim.evaluate import Move, run_move, seeded_moves
from mm_sim.model import Plant
from mm_sim.render import SceneRenderer, save_animation
from tqdm import tqdm  # type: ignore[import-untyped]

from mm_bringup.bringup import configured_parameter, package_share
from mm_bringup.session import (
    MOVE_CONTROLLER,
    MOVE_TIMEOUT_S,
    TOLERANCE_RAD,
    MoveOutcome,
    Reporter,
    SessionConfig,
    SessionResult,
    run_session,
    score,
)

DEFAULT_OUT = Path("out/demo")
ANIMATION_FPS = 25.0
SLOW_MOTION = 4.0  # a move settles in a few tenths of a second: the replay runs this many times slower
PLOTTED_MOVES = 3
COMPARISON_SEED = 9_000  # disjoint from the trainer's evaluation and export seeds
START_TOLERANCE_RAD = 0.05
"""How close the state before a recorded move must be to the move's measured start (rad) to be that move."""
STATE_TYPE = "mm_msgs/msg/ServoState"
ROWS = {
    "policy": "RL quantised (servo)",
    "pid": "PID tuned for objective (servo)",
    "ptos": "PTOS tuned for objective (servo)",
    "bound": "time-optimal bound (twin)",
}
COLORS = {"policy": "C0", "pid": "C1", "ptos": "C3", "bound": "C2"}  # the same colour for a controller in every plot


@dataclass(frozen=True)
class Row:
    """One move's measurements in the table's terms (s, rad, J; settle_time_s NaN if it did not settle)."""

    settle_time_s: float
    overshoot_rad: float
    final_error_rad: float
    energy_j: float


@dataclass(frozen=True)
class Trace:
    """A position trace of one move: time since the command (s) and position (rad)."""

    time_s: np.ndarray
    position_rad: np.ndarray


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--objective", default="speed", help="accuracy, speed, energy, smooth or a mix 'speed:0.7,energy:0.3'"
    )
    parser.add_argument(
        "--algo", default="es", help="es (a learned schedule for the classical controller, default) or an SB3 algorithm"
    )
    parser.add_argument("--time-s", type=float, default=150.0, help="training wall-time budget (s, default 150)")
    parser.add_argument("--steps", type=int, default=0, help="training step budget (0: only the time budget)")
    parser.add_argument("--profile", default="mm_v3", help="mm_sim servo profile (default mm_v3)")
    parser.add_argument("--load", default="pendulum", help="load of the profile (default pendulum)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--moves", type=int, default=20, help="seeded step moves in the comparison (default 20)")
    parser.add_argument(
        "--stream-moves", type=int, default=3, help="moves the policy runs with transitions streaming (default 3)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-animation", action="store_true", help="skip the rendered animation")
    parser.add_argument(
        "--velocity-scale",
        choices=("matched", "profile"),
        default="matched",
        help="velocity feature scale of the policy (learner parameter velocity_scale; default matched: the load's "
        "fastest move, which speed needs; accuracy and energy policies pass the export checks with profile)",
    )
    parser.add_argument(
        "--learner-param",
        action="append",
        default=[],
        type=_learner_parameter,
        metavar="NAME=VALUE",
        help="a learner node parameter (config/learner.yaml), e.g. eval_every_steps=5000; repeatable",
    )
    return parser


def _learner_parameter(text: str) -> tuple[str, Any]:
    """`name=value` with the value read as YAML when it is a scalar (numbers, booleans), else kept as text."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        msg = f"{text!r} is not NAME=VALUE"
        raise argparse.ArgumentTypeError(msg)
    value = yaml.safe_load(raw)
    return name, value if isinstance(value, bool | int | float | str) else raw


class _Progress(Reporter):
    """Progress bars (tqdm, on a terminal) and one line per phase and per evaluation."""

    def __init__(self, options: argparse.Namespace) -> None:
        self._options = options
        self._bar: Any = None
        self._bar_kind = ""
        self._started_s = 0.0
        self._last_eval_steps = -1

    def _open(self, kind: str, total: float, unit: str) -> Any:
        if self._bar_kind != kind:
            self.close()
            self._bar_kind = kind
            self._started_s = time.monotonic()
            self._bar = tqdm(total=total, unit=unit, disable=not sys.stderr.isatty(), leave=False)
        return self._bar

    def close(self) -> None:
        """End the running progress bar."""
        if self._bar is not None:
            self._bar.close()
        self._bar, self._bar_kind = None, ""

    def phase(self, text: str) -> None:
        self.close()
        print(f"  {text}", flush=True)

    def train_feedback(self, feedback: Any) -> None:
        if feedback.phase in ("exporting", "validating", "publishing"):
            self.phase(f"learner: {feedback.phase}")
            return
        budget_s = float(self._options.time_s)
        if budget_s > 0:
            bar = self._open("train", budget_s, "s")
            bar.n = min(budget_s, round(time.monotonic() - self._started_s))
        else:
            bar = self._open("train", float(self._options.steps), "step")
            bar.n = int(feedback.steps)
        bar.set_postfix_str(f"{feedback.steps} steps, {feedback.steps_per_s:.0f}/s")
        if feedback.phase == "evaluating" and feedback.eval_metrics and feedback.steps != self._last_eval_steps:
            self._last_eval_steps = int(feedback.steps)
            bar.write(
                f"  {feedback.steps:>8} steps ({feedback.steps_per_s:5.0f}/s): validation score "
                f"{score(feedback.eval_metrics):.4g} vs the classical start {score(feedback.baseline_metrics):.4g}"
            )
        bar.refresh()

    def deploy_feedback(self, feedback: Any) -> None:
        bar = self._open("deploy", float(max(1, feedback.total_chunks)), "chunk")
        bar.n = int(feedback.chunks_acked)
        bar.set_postfix_str(f"{feedback.phase}, {feedback.bytes_sent} B")
        bar.refresh()

    def move_done(self, done: int, total: int, outcome: MoveOutcome) -> None:
        bar = self._open("moves", float(total), "move")
        bar.n = done
        bar.set_postfix_str(f"{outcome.controller} to {outcome.target_rad:+.2f} rad: {outcome.message}")
        bar.refresh()


def _seeded_moves(options: argparse.Namespace) -> list[Move]:
    return seeded_moves(options.moves, seed=COMPARISON_SEED, duration_s=MOVE_TIMEOUT_S)


def _bound_rows(options: argparse.Namespace, session: SessionResult) -> tuple[list[Row], list[Trace]]:
    """mm_sim's time-optimal bound on each measured move, in the twin, from the start the servo really had.

    Measured as the driver measures a move: up to its settling plus the driver's settle window.
    """
    driver_file = package_share("mm_driver") / "config" / "driver.yaml"
    window_s = float(cast(float, configured_parameter(driver_file, "driver", "settle_window_s")))
    twin = TwinSpec(profile=options.profile, load=options.load, objective=parse_objective(options.objective))
    env = twin.make_env(randomize=False)
    controller = TimeOptimalController(twin.make_baseline(env, twin.moves(10)).gains)
    rows, traces = [], []
    first_runs = {m.index: m for m in reversed(session.moves)}  # each move's first run: its measured start
    try:
        for outcome in (first_runs[index] for index in sorted(first_runs)):
            move = Move(outcome.start_rad, outcome.target_rad, MOVE_TIMEOUT_S)
            response, _ = run_move(env, controller, move, seed=COMPARISON_SEED + outcome.index)
            full = step_metrics(response, start_rad=move.start_rad, tolerance_rad=TOLERANCE_RAD)
            end = len(response.time_s)
            if full.settling_time_s is not None:
                end = min(end, round((full.settling_time_s + window_s) / response.dt_s) + 1)
            cut = Response(*(np.asarray(column)[:end] for column in vars(response).values()))
            measured = step_metrics(cut, start_rad=move.start_rad, tolerance_rad=TOLERANCE_RAD)
            settle = math.nan if full.settling_time_s is None else full.settling_time_s
            error = abs(move.target_rad - float(cut.position_rad[-1]))
            rows.append(Row(settle, measured.overshoot_rad, error, measured.energy_j))
            time_s = np.concatenate([[0.0], cut.time_s])
            traces.append(Trace(time_s, np.concatenate([[move.start_rad], cut.position_rad])))
    finally:
        env.close()
    return rows, traces


def _servo_rows(session: SessionResult, controller: str) -> list[Row]:
    return [
        Row(m.settle_time_s, m.overshoot_rad, abs(m.final_error_rad), m.energy_j)
        for m in session.moves
        if m.controller == controller
    ]


def _summary(rows: list[Row]) -> dict[str, float]:
    settled = [r.settle_time_s for r in rows if math.isfinite(r.settle_time_s)]
    return {
        "moves": len(rows),
        "settled_fraction": len(settled) / len(rows) if rows else math.nan,
        "mean_settle_time_s": float(np.mean(settled)) if settled else math.nan,
        "mean_overshoot_rad": float(np.mean([r.overshoot_rad for r in rows])) if rows else math.nan,
        "mean_final_error_rad": float(np.mean([r.final_error_rad for r in rows])) if rows else math.nan,
        "mean_energy_j": float(np.mean([r.energy_j for r in rows])) if rows else math.nan,
    }


def _unlearned_note(options: argparse.Namespace, session: SessionResult) -> str:
    """The line under the table when the trained policy did not beat what it was judged on ("" otherwise)."""
    if not session.train_success or session.train_beat_baseline:
        return ""
    if options.algo == "es":
        return (
            "Nothing was learned: no policy beat the classical start on validation, so the RL row is the start "
            "itself (PTOS unscheduled, a = 0) and matches the PTOS row up to the servo's own noise."
        )
    return f"The {options.algo.upper()} policy did not beat the PID tuned for '{options.objective}' in training."


def _table(summaries: dict[str, dict[str, float]]) -> str:
    lines = [
        "| controller | settled | settle time (s) | overshoot (mrad) | final error (mrad) | energy (J) |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['settled_fraction']:.0%} | {s['mean_settle_time_s']:.3f} | "
            f"{1e3 * s['mean_overshoot_rad']:.1f} | {1e3 * s['mean_final_error_rad']:.2f} | {s['mean_energy_j']:.3f} |"
        )
    return "\n".join(lines)


def recorded_traces(bag: Path, moves: Sequence[MoveOutcome]) -> list[Trace]:
    """Each measured move's position trace, from the servo states recorded in the bag.

    A move is the run of states in which the servo is in the controller's mode with the move's target, beginning
    at the move's measured start; time 0 is the last state before it (the driver's convention). Raises
    `LearningError` when a move is not found.
    """
    store = make_typestore()
    states: list[Any] = [
        store.deserialize_cdr(m.data, STATE_TYPE) for m in read_messages(bag, msgtypes=[STATE_TYPE]).messages
    ]
    states.sort(key=lambda s: (s.stamp.sec, s.stamp.nanosec))
    stamp = np.array([s.stamp.sec + 1e-9 * s.stamp.nanosec for s in states])
    position = np.array([s.position_rad for s in states])
    mode = np.array([s.mode for s in states])
    target = np.array([s.target_rad for s in states])
    traces, cursor = [], 1
    for move in moves:
        match = (mode == CONTROLLERS[MOVE_CONTROLLER[move.controller]]) & (np.abs(target - move.target_rad) < 1e-5)
        # Runs of matching states that begin where the move began: the policy's streamed moves to the same targets
        # (between the policy's and PTOS's moves) begin wherever the last move left the load.
        begins = np.flatnonzero(match[cursor:] & ~match[cursor - 1 : -1]) + cursor
        found = begins[np.abs(position[begins - 1] - move.start_rad) < START_TOLERANCE_RAD]
        if not len(found):
            msg = f"{bag} has no recorded state of move {move.index} ({move.controller} to {move.target_rad} rad)"
            raise LearningError(msg)
        first = int(found[0])
        last = first + int(np.argmin(match[first:])) if not match[first:].all() else len(states)
        window = slice(first - 1, last)
        traces.append(Trace(stamp[window] - stamp[first - 1], position[window]))
        cursor = last
    return traces


def _plots(
    out: Path,
    session: SessionResult,
    traces: list[Trace],
    bound_traces: list[Trace],
    rows: dict[str, list[Row]],
) -> list[Path]:
    written = []
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    if session.curve:
        steps = [p.steps for p in session.curve]
        ax.plot(steps, [p.policy_score for p in session.curve], "o-", label="policy (float, twin)")
        ax.plot(steps, [p.start_score for p in session.curve], "--", label="classical controller, the start (twin)")
    ax.set(
        xlabel="environment steps (control ticks)",
        ylabel="validation score (mean return per move)",
        title="Training curve (learner feedback)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    written.append(out / "training_curve.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")

    shown = min(PLOTTED_MOVES, len(bound_traces))
    fig = Figure(figsize=(7, 2.6 * shown))
    axes = fig.subplots(shown, 1, sharex=True, squeeze=False)
    for k, ax in enumerate(axes[:, 0]):
        for move, trace in zip(session.moves, traces, strict=True):
            if move.index == k:
                ax.plot(trace.time_s, trace.position_rad, color=COLORS[move.controller], label=ROWS[move.controller])
                target_rad = move.target_rad
        ax.plot(bound_traces[k].time_s, bound_traces[k].position_rad, ":", color="grey", label=ROWS["bound"])
        ax.axhline(target_rad, color="k", lw=0.8, ls=":")
        ax.set_ylabel("position (rad)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title("Step responses on the virtual servo (recorded in the bag)")
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("time since the move_to command (s, wall clock)")
    written.append(out / "step_responses.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    width = 0.8 / len(rows)
    for offset, (key, values) in enumerate(rows.items()):
        energies = [r.energy_j for r in values]
        ax.bar(np.arange(len(energies)) + offset * width, energies, width=width, color=COLORS[key], label=ROWS[key])
    count = len(next(iter(rows.values())))
    ax.set_xticks(np.arange(count) + 0.4 - width / 2, [str(k + 1) for k in range(count)])
    ax.set(xlabel="move", ylabel="electrical energy until settled (J)", title="Energy per move")
    ax.legend(fontsize=8)
    written.append(out / "energy_per_move.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    return written


def _render_frames(profile_name: str, load_name: str, angles: list[float], target_rad: float, path: Path) -> None:
    """Render the recorded angles to an animation (runs in a child process: see `_animation`)."""
    profile = load_profile(profile_name)
    plant = Plant(profile, profile.loads[load_name])
    renderer = SceneRenderer(plant, width=480, height=360)
    frames = []
    for angle in angles:
        plant.reset(angle)
        frames.append(renderer.frame(target_rad))
    renderer.close()
    save_animation(path, frames, ANIMATION_FPS)


def _animation(options: argparse.Namespace, move: MoveOutcome, trace: Trace) -> Path:
    """Replay a recorded move in the MuJoCo model (in slow motion), rendered in a fresh child process.

    TensorFlow crashes MuJoCo's EGL renderer in the same process, so the frames are drawn by a fresh child that
    imports this module's dependencies only (none of them imports TensorFlow; a caller of this function may have).
    """
    frame_s = np.arange(-0.1, float(trace.time_s[-1]) + 0.1, 1.0 / (ANIMATION_FPS * SLOW_MOTION))
    angles = [float(a) for a in np.interp(frame_s, trace.time_s, trace.position_rad)]
    path = options.out / f"move_{move.controller}.gif"
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
    # DDS stays on this machine unless the user chose otherwise.
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    started = time.monotonic()
    config = SessionConfig(
        out=options.out,
        objective=options.objective,
        algorithm=options.algo,
        max_time_s=options.time_s,
        max_steps=options.steps,
        profile=options.profile,
        load=options.load,
        seed=options.seed,
        moves=_seeded_moves(options),
        stream_moves=options.stream_moves,
        learner_parameters={"velocity_scale": options.velocity_scale} | dict(options.learner_param),
        bag_name=time.strftime("bag_%Y%m%d_%H%M%S"),
    )
    progress = _Progress(options)
    try:
        print(
            f"[1/3] sim bringup; training {options.algo.upper()} for '{options.objective}' on "
            f"{options.profile}/{options.load} (budget {options.time_s:.0f} s), deploying, {options.moves} moves",
            flush=True,
        )
        session = run_session(config, progress)
        progress.close()
        if session.train_success:
            print(f"  trained: {session.train_message}")
            print(f"  deployed in {session.deploy_elapsed_s:.2f} s: the servo runs {session.servo_policy_crc32:08x}")
        else:
            print(f"  REFUSED (no policy on the servo, left out of the table): {session.train_message}")
        print(f"  bag {config.bag} ({'closed' if session.bag_complete else 'NOT closed'}):")
        for topic, count in sorted(session.bag_counts.items()):
            print(f"    {topic}: {count} messages")
        print(f"  dataset: {session.dataset_transitions} transitions in {session.dataset_episodes} runs")

        print("[2/3] the time-optimal bound (mm_sim) on the same moves; the table", flush=True)
        bound_rows, bound_traces = _bound_rows(options, session)
        rows = {key: servo for key in ("policy", "pid", "ptos") if (servo := _servo_rows(session, key))}
        rows["bound"] = bound_rows
        summaries = {ROWS[key]: _summary(values) for key, values in rows.items()}
        unlearned = _unlearned_note(options, session)
        table = _table(summaries) + (f"\n\n{unlearned}" if unlearned else "")
        print(table)

        print("[3/3] plots from the bag" + ("" if options.no_animation else " and a replay of a move"), flush=True)
        traces = recorded_traces(config.bag, session.moves)
        paths = _plots(options.out, session, traces, bound_traces, rows)
        if not options.no_animation:
            # The first move the policy ran (the PID's when there is no policy).
            first = min(range(len(session.moves)), key=lambda k: (session.moves[k].controller != "policy", k))
            paths.append(_animation(options, session.moves[first], traces[first]))
        (options.out / "comparison.md").write_text(table + "\n", encoding="utf-8")
        summary = {
            "objective": options.objective,
            "algorithm": options.algo,
            "profile": options.profile,
            "load": options.load,
            "policy_id": session.policy_id,
            "policy_crc32": f"{session.policy_crc32:08x}",
            "ptos_policy_crc32": f"{session.ptos_policy_crc32:08x}",
            "training_steps": session.training_steps,
            "train": session.train_message,
            "policy_beat_baseline": session.train_beat_baseline,
            "deploy": session.deploy_message,
            "comparison": summaries,
            "moves": [asdict(m) for m in session.moves],
            "bound": [asdict(r) for r in bound_rows],
            "bag": str(config.bag),
            "bag_counts": session.bag_counts,
            "dataset_transitions": session.dataset_transitions,
            "elapsed_s": time.monotonic() - started,
        }
        summary_path = options.out / "summary.json"
        summary_path.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    except (LearningError, ContractError) as error:
        progress.close()
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print("\nwritten:")
    extra = [summary_path, options.out / "comparison.md", config.bag, options.out / "run", options.out / "policies"]
    extra.append(config.log)
    for path in [*paths, *extra]:
        print(f"  {path}")
    print(f"demo finished in {math.ceil(time.monotonic() - started)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
