"""Learner start-up bench (issue 18): wall time from process start until the ``train`` action server answers.

Two learner processes, one after the other, in this run: the node as it starts now (no torch, Stable-Baselines3
or TensorFlow at start-up) and the baseline, the same node with the training modules (mm_learning.trainer,
mm_learning.schedule) imported before it starts, as every start-up did before issue 18. Each is measured
``--repeats`` times; the client waits for the server with a fresh rclpy context.

Run inside the loopback-only namespace: ``tools/isolated.sh python bench/bench_learner_startup.py``.
Prints a markdown table and the JSON of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.node import Node

from mm_msgs.action import Train

NODE = "from mm_learning.learner_node import main; main()"
BASELINE = "import mm_learning.trainer, mm_learning.schedule\n" + NODE
TIMEOUT_S = 300.0


def _time_to_server(code: str, log_dir: Path) -> float:
    """Seconds from starting ``python -c code`` until its ``train`` action server is discovered."""
    context = Context()
    rclpy.init(context=context)
    node = Node("startup_bench", context=context)
    client = ActionClient(node, Train, "train")
    log = (log_dir / "learner.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    try:
        while not client.wait_for_server(timeout_sec=0.05):
            if process.poll() is not None or time.monotonic() - started > TIMEOUT_S:
                msg = f"the learner exited or did not serve `train` within {TIMEOUT_S} s; see {log.name}"
                raise RuntimeError(msg)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(timeout=60.0)
        log.close()
        client.destroy()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def main() -> None:
    """Measure both start-ups and print the table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"now": [], "baseline (training modules at start-up)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, code in zip(results, (NODE, BASELINE), strict=True):
                results[name].append(_time_to_server(code, Path(tmp)))
    print("| learner start-up | time to `train` server, median (s) | min (s) | max (s) |")
    print("|---|---|---|---|")
    for name, times in results.items():
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    print(json.dumps({"bench": "learner_startup", "repeats": args.repeats, "seconds": results}))


if __name__ == "__main__":
    main()
