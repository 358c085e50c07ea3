"""The learner on another host: deploy latency and transitions/s across two network namespaces.

With and without `tc netem` (25 ms each way = 50 ms RTT, 1 % loss) on both ends of the veth pair.

The learner node and the operator run in this namespace (the learner host), the virtual servo (real time, 1 kHz)
and its driver in a second one (`mm_bringup.hosts.RemoteHost`), DDS between them by subnet discovery + ROS_STATIC_PEERS
(`mm_bringup.two_hosts`). One run: the nodes start and find each other, a Train goal of one ES generation gives a
policy, the driver deploys it DEPLOYS times (DeployPolicy goal sent → result received on the learner host, wall
time; and the driver's own transfer time), then the policy drives a move with the servo streaming transitions for
STREAM_S and the samples arriving on the learner host are counted. Then the same servo topics over Zenoh
(tools/zenoh_bridge.py on both hosts, DDS kept on each; launch/test/zenoh_support.py): transitions/s through
the bridges, on a fresh pair with the same link. The servo produces one sample per control
tick (1000/s): the baseline of the transitions/s in the same run. The run without netem is the baseline of the
run with it.

A kernel without the `sch_netem` qdisc refuses the netem run; its result then says so (`available: false` and
the kernel's answer), and the same impairment runs on the user-space link emulator instead (`mm_bringup.linkemu`:
two TAP devices and a forwarding process that delays and drops frames), with the emulator unimpaired as that
run's baseline (its forwarding costs what a veth pair does not).

Usage (inside a loopback-only namespace): tools/isolated.sh python bench/two_hosts.py [--deploys N]
`main` is what bench/bench_fleet.py runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "launch" / "test"))  # the tests' helpers beside them

DEPLOYS = 5
"""DeployPolicy goals per run (the servo accepts a policy of the same version again)."""
STREAM_S = 5.0
"""Wall time of the streamed move (s)."""
LEARNER_PARAMETERS = {"episode_s": 1.0, "eval_moves": 2, "export_moves": 3}
"""Small evaluations: the Train goal only has to give a policy to deploy."""


def _link_text(link: Any) -> str:
    if link is None:
        return "veth, no impairment"
    kind = "user-space emulator (TAP)" if link.emulated else "veth + netem"
    if not (link.delay_ms or link.loss_percent):
        return f"{kind}, no impairment"
    return f"{kind} {link.delay_ms:g} ms each way ({2 * link.delay_ms:g} ms RTT), {link.loss_percent:g} % loss"


def run(link: Any, deploys: int = DEPLOYS, stream_s: float = STREAM_S) -> dict[str, Any]:
    """One two-host run over `link` (a `mm_bringup.hosts.Link`; None: a plain veth pair).

    Returns:
        link, netem, available (False when the kernel refused netem: reason says why), start_s (nodes up and
        seen across the pair), train_s, deploy_wall_s / deploy_driver_s (median, min, max over `deploys`),
        transitions_per_s (received on the learner host per wall second), servo_samples_per_s (the servo's
        production: samples per second of its own time), delivered (received / produced over the span),
        zenoh_transitions_per_s (the same stream through the Zenoh bridges).
    """
    # mm_bringup is installed with the workspace (or found in launch/), untyped for this mypy run.
    from mm_bringup.hosts import NetemUnavailableError  # type: ignore[import-untyped]
    from mm_bringup.two_hosts import SessionConfig, TwoHostSession  # type: ignore[import-untyped]

    netem = link is not None and not link.emulated and bool(link.delay_ms or link.loss_percent)
    result: dict[str, Any] = {"link": _link_text(link), "netem": netem, "available": True, "reason": ""}
    config = SessionConfig(
        out=Path(tempfile.mkdtemp(prefix="mm_two_hosts_")), link=link, learner_parameters=LEARNER_PARAMETERS
    )
    started = time.monotonic()
    try:
        session = TwoHostSession(config).__enter__()
    except NetemUnavailableError as exc:
        return result | {"available": False, "reason": str(exc), "netem_unavailable": True}
    try:
        session.wait_ready()
        result["start_s"] = time.monotonic() - started
        began = time.monotonic()
        status, train = session.train(objective="speed", max_steps=1, seed=0)
        result["train_s"] = time.monotonic() - began
        if not train.success:
            return result | {"available": False, "reason": f"training failed ({status}): {train.message}"}
        walls, drivers, failures = [], [], []
        for _ in range(deploys):
            deployment = session.deploy()
            if not deployment.success:
                failures.append(deployment.message)
                continue
            walls.append(deployment.wall_s)
            drivers.append(deployment.driver_elapsed_s)
        result["deploy_failures"] = failures
        result["policy_bytes"] = Path(train.image_path).stat().st_size
        if walls:
            result["deploy_wall_s"] = _summary(walls)
            result["deploy_driver_s"] = _summary(drivers)
            session.wait_policy_on_servo(train.policy_crc32)
        stream = session.stream(target_rad=0.5, duration_s=stream_s)
        result["transition_samples"] = stream.samples
        result["transitions_per_s"] = stream.per_s
        result["servo_samples_per_s"] = stream.ticks / stream.servo_s if stream.servo_s else 0.0
        result["delivered"] = stream.samples / stream.ticks if stream.ticks else 0.0
    finally:
        session.close()
    return result | _zenoh(config)


def _zenoh(config: Any) -> dict[str, Any]:
    """Transitions/s through the Zenoh bridges on a fresh pair with the same link (nothing when zenoh is missing)."""
    try:
        import zenoh  # noqa: F401 -- only whether it is installed
    except ImportError:
        return {"zenoh_transitions_per_s": None, "zenoh_reason": "eclipse-zenoh is not installed"}
    from mm_bringup.hosts import RemoteHost
    from zenoh_support import zenoh_stream  # type: ignore[import-not-found]

    with RemoteHost(config.link) as host:
        stream = zenoh_stream(host, config.out, batches_to_count=round(STREAM_S * 1000 / 24))
    return {"zenoh_transitions_per_s": stream.per_s, "zenoh_states_over_dds": stream.states_over_dds}


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def markdown(results: list[dict[str, Any]]) -> str:
    """The runs as a markdown table."""
    lines = [
        "| link | nodes up (s) | train (s) | deploy wall median [min, max] (s) | driver transfer (s) | "
        "transitions/s received (servo makes) | delivered | transitions/s over Zenoh |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["available"]:
            lines.append(f"| {r['link']} | not measured: {r['reason']} | | | | | | |")
            continue
        wall, driver = r.get("deploy_wall_s"), r.get("deploy_driver_s")
        deploy = f"{wall['median']:.3f} [{wall['min']:.3f}, {wall['max']:.3f}] (n={wall['n']})" if wall else "failed"
        lines.append(
            f"| {r['link']} | {r['start_s']:.1f} | {r['train_s']:.1f} | {deploy} | "
            f"{driver['median'] if driver else float('nan'):.3f} | "
            f"{r['transitions_per_s']:.0f} ({r['servo_samples_per_s']:.0f}) | {100 * r['delivered']:.1f} % | "
            f"{r['zenoh_transitions_per_s'] or float('nan'):.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=DEPLOYS)
    parser.add_argument("--stream-s", type=float, default=STREAM_S)
    args = parser.parse_args()
    from mm_bringup.hosts import NETEM_50MS_RTT_1PCT, Link

    results = [run(link, args.deploys, args.stream_s) for link in (None, NETEM_50MS_RTT_1PCT)]
    if results[-1].get("netem_unavailable"):
        emulated = (Link(emulated=True), replace(NETEM_50MS_RTT_1PCT, emulated=True))
        results += [run(link, args.deploys, args.stream_s) for link in emulated]
    print(json.dumps(results, indent=2))
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
