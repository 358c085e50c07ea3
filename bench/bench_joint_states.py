"""joint_states rate per servo with 1 and 4 servos (target: one per state sample, 200 Hz).

Each servo is a real-time twin (mm_sim twin node, inertia disk, 1 kHz control, a state every 5 ticks) and its own
driver process, each in its own namespace (/js1 ... /jsN), as `sim.launch.py servos:=N` starts them. One client
process subscribes every `/jsK/joint_states` (reliable, as rviz and robot_state_publisher do) and every `/jsK/state`
(best effort, the baseline: what the servo published, from its seq).

Run it in a loopback-only namespace (tools/isolated.sh python bench/bench_joint_states.py), as the tests do.

Usage: python bench/bench_joint_states.py [--servos 1 4] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

TARGET_HZ = 200.0  # the servo's state rate: 1 kHz control, a state every 5 ticks
GOAL_HZ = 195.0  # what a driver must deliver per servo


def measure(servos: int, seconds: float) -> dict[str, Any]:
    """Start `servos` twins and drivers; the joint_states and state rates per servo over `seconds` (s, wall)."""
    from mm_testing.ros_support import Client, driver_args, node_process, twin_args, write_params
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    from mm_msgs.msg import ServoState

    namespaces = [f"/js{k}" for k in range(1, servos + 1)]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        params = write_params(root / "driver.yaml", "/**", {"autostart": True, "load": "inertia_disk"})
        for ns in namespaces:
            name = ns.strip("/")
            stack.enter_context(node_process(twin_args(ns, load="inertia_disk"), root / f"{name}_twin.log"))
            stack.enter_context(node_process(driver_args(ns, params), root / f"{name}_driver.log"))
        client = Client("bench_joint_states_client")
        try:
            joints = {ns: client.subscribe(JointState, f"{ns}/joint_states") for ns in namespaces}
            states = {ns: client.subscribe(ServoState, f"{ns}/state", qos_profile_sensor_data) for ns in namespaces}
            client.wait_for(
                lambda: all(len(joints[ns]) > 50 and len(states[ns]) > 50 for ns in namespaces),
                60.0,
                "joint_states and state of every servo",
            )
            start = {ns: (len(joints[ns]), states[ns][-1].seq, len(states[ns])) for ns in namespaces}
            t0 = time.monotonic()
            time.sleep(seconds)  # the measurement window, not synchronisation
            window_s = time.monotonic() - t0
            per_servo = {
                ns: {
                    "joint_states_hz": (len(joints[ns]) - start[ns][0]) / window_s,
                    "state_published_hz": (states[ns][-1].seq - start[ns][1]) / window_s,
                    "state_received_by_client_hz": (len(states[ns]) - start[ns][2]) / window_s,
                    "joint_names": sorted({n for m in joints[ns][-20:] for n in m.name}),
                }
                for ns in namespaces
            }
        finally:
            client.close()
    rates = [r["joint_states_hz"] for r in per_servo.values()]
    return {
        "servos": servos,
        "window_s": window_s,
        "min_joint_states_hz": min(rates),
        "mean_joint_states_hz": sum(rates) / len(rates),
        "per_servo": per_servo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servos", type=int, nargs="+", default=[1, 4], help="servo counts to measure")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window (s)")
    options = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    results = [measure(n, options.seconds) for n in options.servos]
    print("### joint_states rate per servo (twin in real time + driver per servo, loopback DDS)\n")
    print(f"Target: {TARGET_HZ:.0f} Hz per servo (one per state sample); goal ≥ {GOAL_HZ:.0f} Hz.\n")
    print("| servos | joint_states per servo: min / mean | state published (baseline), mean | goal met |")
    print("|---|---|---|---|")
    for r in results:
        published = sum(s["state_published_hz"] for s in r["per_servo"].values()) / r["servos"]
        print(
            f"| {r['servos']} | {r['min_joint_states_hz']:.1f} / {r['mean_joint_states_hz']:.1f} Hz | "
            f"{published:.1f} Hz | {'yes' if r['min_joint_states_hz'] >= GOAL_HZ else 'no'} |"
        )
    print()
    print(json.dumps({"target_hz": TARGET_HZ, "goal_hz": GOAL_HZ, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
