"""Online learning on the servo through DDS: a `Train` goal with `mode: online`, `algorithm: es`, per seed.

Issue "The servo learns", item 4 and its acceptance line: online (virtual servo through DDS), beat the classical
start on the servo within 10 minutes of servo time in 3 of 3 seeds, with no guard violation reaching the motor.

The servo is a virtual servo in fast mode whose plant differs from the profile the learner and the firmware are
configured from (`plant_factors`, default: the pendulum 1.4 times as heavy and twice the Coulomb friction — a
payload and a stiff bearing that no datasheet tells the learner about), so what the learner knows about this servo
it learns from the servo. Driver and learner run beside it in one namespace, every message over DDS. Per seed, the
learner (`mm_learning.calibration.CalibratedSession`): deploys the classical start (the speed-tuned PTOS as a zero
schedule), measures it on the seeded evaluation moves, calibrates the twin to those moves, trains the schedule on
it, deploys it through the driver, measures it on the same moves and keeps it only if it beats the start there.

Printed per seed: the servo-measured settle time of the classical start and of the kept policy, servo time used
(evaluation moves and the PID settling before each), wall time, and the samples the firmware's guard drove (flag
GUARD on `transitions`: the policy left its envelope and the classical law took over). Baseline: the classical
start measured in the same run, on the same servo and moves.

Run it in a loopback-only namespace (tools/isolated.sh python bench/bench_online_schedule.py), as `make bench`
does. Usage: python bench/bench_online_schedule.py [--seeds 0 1 2] [--objective speed] [--plant-factors ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests")]  # ros_support.py: the tests' process helpers

DEFAULT_FACTORS = "load.mass_kg=1.4,friction.coulomb_nm=2"
LEARNER_YAML = REPO / "src/mm_learning/config/learner.yaml"
NAMESPACE = "/online"
FLAG_GUARD = 8  # mm_msgs/TransitionBatch.FLAG_GUARD


def main() -> None:
    """Run one online goal per seed and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--objective", default="speed")
    parser.add_argument("--plant-factors", default=DEFAULT_FACTORS)
    parser.add_argument("--load", default="pendulum")
    parser.add_argument("--goal-time-s", type=float, default=900.0, help="wall-time budget of each goal (s)")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    from action_msgs.msg import GoalStatus
    from mm_learning.signing import generate_keypair, load_private_key, public_key_hex
    from ros_support import Client, driver_args, node_process, twin_args, write_params  # type: ignore[import-not-found]

    from mm_msgs.action import Train
    from mm_msgs.msg import TransitionBatch

    rows = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        key_path, _ = generate_keypair(root / "keys")
        registry = root / "policies"
        driver = write_params(
            root / "driver.yaml",
            "/**",
            {"autostart": True, "use_sim_time": True, "load": args.load, "registry_dir": str(registry)},
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
        twin = twin_args(
            NAMESPACE,
            load=args.load,
            time_mode="fast",
            heartbeat_timeout_s=2.0,
            plant_factors=args.plant_factors,
            public_key=public_key_hex(load_private_key(key_path)),
        )
        learner_cmd = [
            "mm_learning.learner_node",
            "--ros-args",
            "-r",
            f"__ns:={NAMESPACE}",
            "--params-file",
            str(LEARNER_YAML),
            "--params-file",
            str(learner),
        ]
        stack.enter_context(node_process(twin, root / "twin.log"))
        stack.enter_context(node_process(driver_args(NAMESPACE, driver), root / "driver.log"))
        stack.enter_context(node_process(learner_cmd, root / "learner.log"))
        client = Client("bench_online_schedule")
        stack.callback(client.close)
        train = client.action(Train, f"{NAMESPACE}/train", timeout_s=180.0)
        batches = client.subscribe(TransitionBatch, f"{NAMESPACE}/transitions", 100)
        for seed in args.seeds:
            batches.clear()
            feedback: list[Any] = []
            started = time.monotonic()
            goal = Train.Goal(
                mode="online", algorithm="es", objective=args.objective, seed=seed, max_time_s=args.goal_time_s
            )
            accepted, result, status = client.call(train, goal, timeout_s=args.goal_time_s + 120.0, feedback=feedback)
            wall_s = time.monotonic() - started
            guarded = sum(sum(1 for f in b.flags[: b.count] if f & FLAG_GUARD) for b in batches)
            samples = sum(b.count for b in batches)
            succeeded = accepted and status == GoalStatus.STATUS_SUCCEEDED
            row = _row(seed, result, succeeded, wall_s, (guarded, samples))
            rows.append(row)
            print(f"seed {seed}: {row}", file=sys.stderr, flush=True)
    report = {
        "setup": {
            "objective": args.objective,
            "profile": "mm_v3",
            "load": args.load,
            "plant_factors": args.plant_factors,
            "learner": {k: v for k, v in _learner_defaults().items() if k.startswith("online_es_")},
        },
        "seeds": rows,
    }
    _print_table(report)
    print(json.dumps(report, indent=2))


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
    }


def _print_table(report: dict[str, Any]) -> None:
    setup = report["setup"]
    print(
        f"### Online schedule learning through DDS: {setup['objective']}, mm_v3 + {setup['load']}, servo plant "
        f"{setup['plant_factors']} (learner: {setup['learner']})\n"
    )
    print(
        "| seed | classical start: settle (s) | learned policy: settle (s) | change | beat the start | servo time (s) "
        "| wall (s) | guard-driven samples |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in report["seeds"]:
        if "failed" in row:
            print(f"| {row['seed']} | failed: {row['failed']} ||||||| ")
            continue
        change = 100.0 * (row["start_settle_s"] - row["policy_settle_s"]) / row["start_settle_s"]
        print(
            f"| {row['seed']} | {row['start_settle_s']:.3f} ({row['start_settled']:.0%} settled) | "
            f"{row['policy_settle_s']:.3f} ({row['policy_settled']:.0%}) | {change:+.1f} % faster | "
            f"{'yes' if row['beat_start'] else 'no'} | {row['servo_time_s']:.0f} | {row['wall_s']:.0f} | "
            f"{row['guarded_samples']} of {row['streamed_samples']} |"
        )
    print()


if __name__ == "__main__":
    main()
