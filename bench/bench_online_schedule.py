"""Online learning on the servo through DDS: a `Train` goal with `mode: online`, `algorithm: es`, per seed.

Issue "The servo learns", item 4 and its acceptance line: online (virtual servo through DDS), beat the classical
start on the servo within 10 minutes of servo time in 3 of 3 seeds, with no guard violation reaching the motor.

The servo is a virtual servo in fast mode whose plant differs from the profile the learner and the firmware are
configured from (`plant_factors`, default: the pendulum 1.4 times as heavy and twice the Coulomb friction — a
payload and a stiff bearing that no datasheet tells the learner about), so what the learner knows about this servo
it learns from the servo. Driver and learner run beside it in one namespace, every message over DDS. Per seed, the
learner (`mm_learning.calibration.CalibratedSession`): deploys the classical start (the speed-tuned PTOS as a zero
schedule), measures it on the seeded evaluation moves, calibrates the twin to those moves, retunes the PTOS gains
and trains the schedule on it, deploys them through the driver, measures them on the same moves and keeps one only
if it beats the start there.

Printed per seed: the servo-measured settle time of the classical start and of the kept policy, servo time used
(evaluation moves and the PID settling before each), wall time, and the samples the firmware's guard drove (flag
GUARD on `transitions`: the policy left its envelope and the classical law took over), and what each round found
(the result message: twin fit, "base law retuned" with the retuned law alone on the servo, "schedule learned", the
round's policy on the servo). Baseline: the classical start measured in the same run, on the same servo and moves.

Fleets (issue "Fleets", item 2: one learner, many servos): `--servos 1 2 4 8` runs the same goals with one
learner whose parameter `servos` names N servos (twin + driver each, namespaces /online1 ... /onlineN, the fleet
grown in place), one policy trained from all their moves and deployed to all; the evaluation moves are spread over
them. Per row: transitions per second of the servo phases (the evaluation moves, measured by the learner's own
feedback phases) and the time to beat the start (the goal's wall time; it stops at the first policy that beats
the start on the servos), split into servo phases and twin phases (calibration and training). A fleet's twins run
in real time (`--time-mode realtime`, the default with several servos: fast twins would share one /clock), so a
row is what an installation would see, on this machine's CPU.

Run it in a loopback-only namespace (tools/isolated.sh python bench/bench_online_schedule.py), as `make bench`
does. Usage: python bench/bench_online_schedule.py [--seeds 0 1 2] [--objective speed] [--plant-factors ...]
[--servos 1 2 4 8] [--time-mode fast|realtime]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from mm_contract.constants import SampleFlag

REPO = Path(__file__).resolve().parents[1]

DEFAULT_FACTORS = "load.mass_kg=1.4,friction.coulomb_nm=2"
LEARNER_YAML = REPO / "src/mm_learning/config/learner.yaml"
PREFIX = "/online"
SERVO_PHASES = ("deploying", "evaluating")  # feedback phases that wait on the servos; the others run the twin


def main() -> None:
    """Run one online goal per seed and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objective", default="speed")
    parser.add_argument("--plant-factors", default=DEFAULT_FACTORS)
    parser.add_argument("--load", default="pendulum")
    parser.add_argument("--goal-time-s", type=float, default=900.0, help="wall-time budget of each goal (s)")
    parser.add_argument("--servos", type=int, nargs="+", default=[1], help="fleet sizes, one learner each")
    parser.add_argument("--time-mode", choices=("fast", "realtime"), help="twins' clock (default: fast for 1 servo)")
    args = parser.parse_args()
    time_mode = args.time_mode or ("fast" if args.servos == [1] else "realtime")
    if time_mode == "fast" and max(args.servos) > 1:
        parser.error("--time-mode fast runs one servo only: every fast twin would publish its own /clock")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    from mm_contract.signing import generate_keypair, load_private_key, public_key_hex
    from mm_testing.ros_support import Client, driver_args, node_process, twin_args, write_params

    from mm_msgs.action import Train
    from mm_msgs.msg import TransitionBatch

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        key_path, _ = generate_keypair(root / "keys")
        registry = root / "policies"
        driver = write_params(
            root / "driver.yaml",
            "/**",
            {"autostart": True, "use_sim_time": time_mode == "fast", "load": args.load, "registry_dir": str(registry)},
        )
        learner = write_params(
            root / "learner.yaml",
            "/**",
            {
                "load": args.load,
                "registry_dir": str(registry),
                "runs_dir": str(root / "runs"),
                "signing_key": str(key_path),
                "online_wait_s": 30.0,
            },
        )
        public_key = public_key_hex(load_private_key(key_path))
        client = Client("bench_online_schedule")
        stack.callback(client.close)
        batches: list[Any] = []
        for count in sorted(set(args.servos)):
            while len(batches) < count:  # the fleet grows in place
                namespace = f"{PREFIX}{len(batches) + 1}"
                twin = twin_args(
                    namespace,
                    load=args.load,
                    time_mode=time_mode,
                    heartbeat_timeout_s=2.0,
                    plant_factors=args.plant_factors,
                    public_key=public_key,
                )
                stack.enter_context(node_process(twin, root / f"twin{len(batches) + 1}.log"))
                stack.enter_context(
                    node_process(driver_args(namespace, driver), root / f"driver{len(batches) + 1}.log")
                )
                batches.append(client.subscribe(TransitionBatch, f"{namespace}/transitions", 100))
            fleet = write_params(
                root / f"fleet{count}.yaml",
                "/**",
                {"servos": [f"{PREFIX}{i}" for i in range(1, count + 1)], "use_sim_time": time_mode == "fast"},
            )
            learner_ns = f"/learner{count}"
            learner_cmd = ["mm_learning.learner_node", "--ros-args", "-r", f"__ns:={learner_ns}"]
            for path in (LEARNER_YAML, learner, fleet):
                learner_cmd += ["--params-file", str(path)]
            with node_process(learner_cmd, root / f"learner{count}.log"):
                train = client.action(Train, f"{learner_ns}/train", timeout_s=180.0)
                for seed in args.seeds:
                    rows.append(_goal(client, train, batches[:count], seed, args))
    report = {
        "setup": {
            "objective": args.objective,
            "profile": "mm_v3",
            "load": args.load,
            "plant_factors": args.plant_factors,
            "time_mode": time_mode,
            "learner": {k: v for k, v in _learner_defaults().items() if k.startswith("online_es_")},
        },
        "seeds": rows,
    }
    _print_table(report)
    print(json.dumps(report, indent=2))


def _goal(client: Any, train: Any, batches: list[list[Any]], seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One Train goal on the servos whose streamed transitions `batches` holds; its table row."""
    from action_msgs.msg import GoalStatus

    from mm_msgs.action import Train

    for servo in batches:
        servo.clear()
    feedback = _Stamped()
    started = time.monotonic()
    goal = Train.Goal(mode="online", algorithm="es", objective=args.objective, seed=seed, max_time_s=args.goal_time_s)
    accepted, result, status = client.call(train, goal, timeout_s=args.goal_time_s + 120.0, feedback=feedback)
    wall_s = time.monotonic() - started
    streamed = [b for servo in batches for b in servo]
    guarded = sum(sum(1 for f in b.flags[: b.count] if f & SampleFlag.GUARD) for b in streamed)
    succeeded = accepted and status == GoalStatus.STATUS_SUCCEEDED
    row = _row(seed, result, succeeded, wall_s, (guarded, sum(b.count for b in streamed)))
    row |= {"servos": len(batches), **_phase_times(feedback.stamps, started, time.monotonic())}
    if succeeded:
        row["transitions_per_servo_s"] = result.steps / max(row["servo_phases_s"], 1e-9)
    print(f"servos {len(batches)}, seed {seed}: {row}", file=sys.stderr, flush=True)
    return row


class _Stamped(list[Any]):
    """A feedback list that also keeps (wall time, phase) of every message (`ros_support.Client.call` appends)."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, str]] = []

    def append(self, item: Any) -> None:
        self.stamps.append((time.monotonic(), str(item.phase)))
        super().append(item)


def _phase_times(stamps: list[tuple[float, str]], started: float, ended: float) -> dict[str, float]:
    """Wall time of a goal in servo phases (deploying, evaluating) and in twin phases (the rest), from its feedback.

    A phase lasts from its message to the next one.
    """
    edges = [*stamps, (ended, "")]
    servo = sum(b[0] - a[0] for a, b in itertools.pairwise(edges) if a[1] in SERVO_PHASES)
    before = (stamps[0][0] if stamps else ended) - started  # the goal's start-up, before its first feedback
    return {"servo_phases_s": servo, "twin_phases_s": ended - started - servo - before}


def _learner_defaults() -> dict[str, Any]:
    import yaml

    (section,) = yaml.safe_load(LEARNER_YAML.read_text()).values()
    return dict(section["ros__parameters"])


def _row(seed: int, result: Any, succeeded: bool, wall_s: float, guard: tuple[int, int]) -> dict[str, Any]:
    """One seed's figures from its Train result (None: rejected); `guard`: guard-driven and all samples streamed."""
    if not succeeded:
        return {"seed": seed, "failed": result.message if result is not None else "rejected"}
    metrics = {m.name: m.value for m in result.metrics}
    start = {m.name: m.value for m in result.baseline_metrics}
    settings = _learner_defaults()
    moves = result.steps // 1000  # 1 s moves at 1 kHz
    return {
        "seed": seed,
        "start_settle_s": start["mean_settling_time_s"],
        "start_settled": start["settled_fraction"],
        "policy_settle_s": metrics["mean_settling_time_s"],
        "policy_settled": metrics["settled_fraction"],
        "start_return": start["mean_return"],
        "policy_return": metrics["mean_return"],
        "beat_start": metrics["mean_settling_time_s"] < start["mean_settling_time_s"]
        and metrics["mean_return"] > start["mean_return"],
        "servo_time_s": moves * (settings["episode_s"] + settings["online_settle_s"]),
        "wall_s": wall_s,
        "guarded_samples": guard[0],
        "streamed_samples": guard[1],
        "message": result.message,
        "rounds": result.message.partition("; ")[2],  # what each round found and measured on the servo
    }


def _print_table(report: dict[str, Any]) -> None:
    setup = report["setup"]
    print(
        f"### Online schedule learning through DDS: {setup['objective']}, mm_v3 + {setup['load']}, servo plant "
        f"{setup['plant_factors']} (learner: {setup['learner']})\n"
    )
    print(
        "| servos | seed | classical start: settle (s) | learned policy: settle (s) | change | beat the start "
        "| servo time (s) | wall (s): all / servo phases / twin phases | transitions per s of servo phases "
        "| guard-driven samples | rounds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in report["seeds"]:
        if "failed" in row:
            print(f"| {row['servos']} | {row['seed']} | failed: {row['failed']} ||||||||| ")
            continue
        change = 100.0 * (row["start_settle_s"] - row["policy_settle_s"]) / row["start_settle_s"]
        print(
            f"| {row['servos']} | {row['seed']} | {row['start_settle_s']:.3f} ({row['start_settled']:.0%} settled) "
            f"| {row['policy_settle_s']:.3f} ({row['policy_settled']:.0%}) | {change:+.1f} % faster | "
            f"{'yes' if row['beat_start'] else 'no'} | {row['servo_time_s']:.0f} | {row['wall_s']:.0f} / "
            f"{row['servo_phases_s']:.0f} / {row['twin_phases_s']:.0f} | {row['transitions_per_servo_s']:.0f} | "
            f"{row['guarded_samples']} of {row['streamed_samples']} | {row['rounds']} |"
        )
    print()


if __name__ == "__main__":
    main()
