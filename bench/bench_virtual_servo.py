"""Virtual servo speed: real-time factor at 1 kHz control, in process and as a ROS node in fast mode; state rates.

1. In process (`mm_sim.virtual_servo.VirtualServo`, no ROS): simulated seconds per wall second in POSITION
   mode (firmware PID), POSITION while streaming transition samples, and POLICY mode running a [48, 48] tanh
   actor exported int16x8 (the project's default scheme) through TFLite Micro.
2. The `virtual_servo` node in its own process in fast mode, in POSITION mode: the real-time factor seen on
   /clock and the rate of `state` messages received by a subscriber in this process (wall clock; best effort,
   so a subscriber slower than the node drops some).
3. The node in real-time mode: the rate of `state` received (the firmware's 200 Hz at 1 kHz / 5).

Goal (issue 6): >= 20x real time in fast mode at 1 kHz. Timings on a shared 2-core VM vary between runs
(ml-stack-notes pitfall 9): every figure is the best of `--repeats` runs, the range is printed too.

Usage (ROS parts need the workspace sourced; run inside tools/run_tests.sh's namespace or with
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST): python bench/bench_virtual_servo.py [--seconds S] [--repeats N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _policy_image() -> tuple[bytes, str]:
    """A signed int16x8 image of a [48, 48] tanh actor and the public key hex (TensorFlow: ~10 s)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from mm_contract.observation import ObsScales
    from mm_contract.profiles import load_profile
    from mm_contract.tflm import Scheme, measure_arena_bytes
    from mm_learning.actor import ActorSpec, DenseLayer
    from mm_learning.tflite_convert import convert, to_keras

    from mm_contract import policy_image, signing

    rng = np.random.default_rng(0)
    sizes = [8, 48, 48, 1]
    layers = tuple(
        DenseLayer(
            rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)).astype(np.float32),
            np.zeros(n_out, np.float32),
            "linear" if n_out == 1 else "tanh",
        )
        for n_in, n_out in itertools.pairwise(sizes)
    )
    actor = ActorSpec(layers=layers, squash="clip", algorithm="PPO")
    model = convert(to_keras(actor), rng.uniform(-1, 1, (300, 8)).astype(np.float32), Scheme.INT16X8)
    scales = ObsScales.from_profile(load_profile("mm_v3"))
    header = policy_image.PolicyHeader(
        model_type=Scheme.INT16X8.model_type, scales=scales, arena_bytes=measure_arena_bytes(model)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    return policy_image.pack_image(header, model, lambda data: signing.sign(key, data)), signing.public_key_hex(key)


def in_process(seconds: float, repeats: int) -> dict[str, list[float]]:
    """Real-time factors of VirtualServo.step at 1 kHz per mode (each run: `seconds` of simulated time)."""
    import mm_firmware_core as fw
    from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig

    image, public_hex = _policy_image()
    setups: dict[str, Callable[[VirtualServo], int]] = {
        "position (PID)": lambda s: s.command(fw.MODE_POSITION, 1.0),
        "position + streaming": lambda s: s.command(fw.MODE_POSITION, 1.0, stream_transitions=True),
        "policy (int16x8 [48, 48] tanh, TFLite Micro)": lambda s: s.command(fw.MODE_POLICY, 1.0),
    }
    results: dict[str, list[float]] = {name: [] for name in setups}
    for name, setup in setups.items():
        for _ in range(repeats):
            servo = VirtualServo(VirtualServoConfig(public_key_hex=public_hex, heartbeat_timeout_s=0.0))
            if servo.core.load_policy(image) != 0:
                raise SystemExit("the bench policy was refused; see mm_sim.virtual_servo.TflmBackend")
            if setup(servo) != 0:
                raise SystemExit(f"the core refused the command of {name!r}")
            ticks = round(seconds / servo.dt_s)
            start = time.perf_counter()
            for _ in range(ticks // 5):  # the node steps one state period (5 ticks) at a time, then drains batches
                servo.step(5)
                servo.full_batches()
            results[name].append(ticks * servo.dt_s / (time.perf_counter() - start))
    return results


def _spin_until(executor: Any, done: Callable[[], bool], timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the node did not start or take the POSITION command; run it by hand to see why")
        executor.spin_once(timeout_sec=0.05)


def node_run(mode: str, seconds: float, *, count_states: bool = True) -> dict[str, float]:
    """Start the node (`mode`: fast | realtime), listen for `seconds`; /clock factor and state rate (Hz).

    With `count_states` False the `state` subscription is dropped once the command is taken, so only /clock is
    received (a Python subscriber of every state competes with the node for the CPU).
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock

    from mm_msgs.msg import ServoCommand, ServoState

    command = [sys.executable, "-m", "mm_sim.twin_node", "--ros-args", "-r", "__ns:=/bench"]
    command += ["-p", f"time_mode:={mode}", "-p", "heartbeat_timeout_s:=0.0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = Context()
    rclpy.init(context=context)
    node = Node("bench_virtual_servo", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clocks: list[tuple[float, float]] = []
    states: list[float] = []
    modes: list[int] = []

    def on_clock(msg: Any) -> None:
        clocks.append((time.monotonic(), msg.clock.sec + 1e-9 * msg.clock.nanosec))

    node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))

    def on_state(msg: Any) -> None:
        states.append(time.monotonic())
        modes.append(msg.mode)

    state_sub = node.create_subscription(ServoState, "/bench/state", on_state, qos_profile_sensor_data)
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    commands = node.create_publisher(ServoCommand, "/bench/command", reliable)
    try:

        def commanded() -> bool:
            if states:  # measured in POSITION mode (the firmware PID runs), as the in-process figures
                commands.publish(ServoCommand(seq=len(states), mode=ServoCommand.MODE_POSITION, target=1.0))
            return bool(modes) and modes[-1] == ServoCommand.MODE_POSITION

        _spin_until(executor, commanded, 60.0, process)
        if not count_states:
            node.destroy_subscription(state_sub)
        states.clear()
        clocks.clear()
        start = time.monotonic()
        _spin_until(executor, lambda: time.monotonic() - start >= seconds, seconds + 10.0, process)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        process.terminate()
        process.wait(timeout=10)
    out = {"state_hz": (len(states) - 1) / (states[-1] - states[0])} if count_states else {}
    if len(clocks) > 1:
        out["clock_factor"] = (clocks[-1][1] - clocks[0][1]) / (clocks[-1][0] - clocks[0][0])
    return out


def _best(values: list[float]) -> str:
    return f"{max(values):.1f}x (range {min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="simulated (in process) / wall (node) seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ros", action="store_true", help="only the in-process part")
    args = parser.parse_args()

    results: dict[str, Any] = {"control_rate_hz": 1000, "in_process_rtf": in_process(args.seconds, args.repeats)}
    if not args.no_ros:
        fast = [node_run("fast", args.seconds) for _ in range(args.repeats)]
        clock_only = [node_run("fast", args.seconds, count_states=False) for _ in range(args.repeats)]
        results["node_fast"] = fast
        results["node_fast_clock_only"] = clock_only
        results["node_realtime"] = node_run("realtime", args.seconds)

    print("| measurement | value |")
    print("|---|---|")
    for name, factors in results["in_process_rtf"].items():
        print(f"| in process, {name}: real-time factor | {_best(factors)} |")
    if not args.no_ros:
        with_states, clock_only_factors = [r["clock_factor"] for r in fast], [r["clock_factor"] for r in clock_only]
        print(f"| node, fast mode: /clock real-time factor, `state` subscribed too | {_best(with_states)} |")
        print(f"| node, fast mode: /clock real-time factor, only /clock subscribed | {_best(clock_only_factors)} |")
        print(f"| node, fast mode: `state` received | {max(r['state_hz'] for r in fast):.0f} Hz |")
        print(f"| node, real time: `state` received | {results['node_realtime']['state_hz']:.1f} Hz |")
    print()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
