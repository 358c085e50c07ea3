"""The learner on one host, the servo on another: a session across the veth pair of `mm_bringup.hosts`.

On this (the learner) host: the learner node in ``/servo1`` and the operator (a `ServoClient` of
``mm_bringup.session``, what ``ros2 action send_goal`` would be). On the servo host (`RemoteHost`): the
virtual servo (the firmware core on the MuJoCo twin, real time) and its driver in ``/servo1``. Nothing is shared
but the network: each host has its own registry, the driver takes the policy from the learner's ``policy`` topic
(transient local) and the servo gets only the signing key's public half, as on two machines. The operator sends
`Train` to the learner (sim mode: training is in-process on the learner host), `DeployPolicy` to the driver on
the other host, and POLICY commands with streaming to the driver, and counts the servo's transitions arriving on
this host. Used by ``launch/test/test_two_hosts.py`` and ``bench/two_hosts.py``; both run inside
``tools/isolated.sh``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from action_msgs.msg import GoalStatus
from mm_contract.signing import load_private_key, public_key_hex
from rclpy.qos import QoSProfile, ReliabilityPolicy

from mm_bringup.hosts import Link, RemoteHost
from mm_bringup.session import GoalRefusedError, ServoClient, SessionError, signing_key
from mm_msgs.action import DeployPolicy, Train
from mm_msgs.msg import ServoCommand, TransitionBatch

NAMESPACE = "/servo1"
NODES = frozenset({("virtual_servo", NAMESPACE), ("driver", NAMESPACE), ("learner", NAMESPACE)})
"""The nodes of the session, as (name, namespace): the learner on this host, the other two on the servo host."""
START_TIMEOUT_S = 240.0
"""Hang protection: nodes importing TensorFlow and torch on a busy 2-core machine, then discovery (s, wall)."""
ACTION_TIMEOUT_S = 300.0
"""Hang protection for a Train goal with a tiny budget, a deployment or a streamed move (s, wall)."""
DEPLOY_ATTEMPTS = 40
"""DeployPolicy goals sent, 0.5 s apart, while the driver has not yet received the learner's blob."""
_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SessionConfig:
    """What runs where.

    Attributes:
        out: folder of both hosts' files: `learner/` (keys, runs, registry), `servo/` (the driver's registry),
            the parameter files and one log per node.
        link: netem impairment of the veth pair (None: none).
        load: the twin's load on the servo host, also the learner's.
        learner_parameters: extra learner parameters (e.g. small evaluations for tests).
    """

    out: Path
    link: Link | None = None
    load: str = "pendulum"
    learner_parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """One DeployPolicy goal: the driver's result and the operator's wall time from goal sent to result (s)."""

    success: bool
    message: str
    active_policy_crc32: int
    driver_elapsed_s: float
    wall_s: float


@dataclass(frozen=True)
class Stream:
    """Transitions of a streamed move that arrived on the learner host.

    Attributes:
        samples: transition samples received (24 per TransitionBatch).
        wall_s: wall time from the POLICY command to the last arrival (s).
        ticks: control ticks the received batches span, from their first tick to the end of the last (the
            samples the servo produced: one per tick).
        servo_s: the servo time of those ticks (s).
    """

    samples: int
    wall_s: float
    ticks: int
    servo_s: float

    @property
    def per_s(self) -> float:
        """Samples received per second of wall time."""
        return self.samples / self.wall_s if self.wall_s > 0.0 else 0.0


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set `values` in this process's environment for the block (rcl reads discovery settings at init)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _write_params(path: Path, parameters: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps({"/**": {"ros__parameters": dict(parameters)}}, indent=2) + "\n", encoding="utf-8")
    return path  # JSON is YAML


class TwoHostSession:
    """Learner here, virtual servo + driver on a `RemoteHost`, and an operator client here (a context manager)."""

    def __init__(self, config: SessionConfig) -> None:
        """The session of `config`; nothing starts before `with`."""
        self.config = config
        self.host = RemoteHost(config.link)
        self.processes: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.client: ServoClient | None = None
        self._batches: list[tuple[float, Any]] = []
        self._batches_lock = threading.Lock()

    def __enter__(self) -> TwoHostSession:
        """Make the servo host, start the three nodes and the operator's client."""
        self.host.__enter__()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        """Stop every node (SIGINT, then SIGKILL), the client and the servo host."""
        self.close()

    def _start(self) -> None:
        out = self.config.out
        (out / "learner").mkdir(parents=True, exist_ok=True)
        (out / "servo").mkdir(parents=True, exist_ok=True)
        key = signing_key(out / "learner" / "keys")
        learner = _write_params(
            out / "learner.yaml",
            {
                "load": self.config.load,
                "runs_dir": str(out / "learner" / "runs"),
                "registry_dir": str(out / "learner" / "policies"),
                "signing_key": str(key),
                **self.config.learner_parameters,
            },
        )
        driver = _write_params(
            out / "driver.yaml",
            {"autostart": True, "load": self.config.load, "registry_dir": str(out / "servo" / "policies")},
        )
        public_key = public_key_hex(load_private_key(key))
        twin = [
            "mm_sim.twin_node",
            "--ros-args",
            "-r",
            f"__ns:={NAMESPACE}",
            "-p",
            f"load:={self.config.load}",
            "-p",
            f"public_key:={public_key}",
        ]
        ros = ["--ros-args", "-r", f"__ns:={NAMESPACE}", "--params-file"]
        self._start_node("learner", ["mm_learning.learner_node", *ros, str(learner)], remote=False)
        self._start_node("virtual_servo", twin, remote=True)
        self._start_node("driver", ["mm_driver.driver_node", *ros, str(driver)], remote=True)
        with _environment(self.host.learner_environment({})):
            self.client = ServoClient(NAMESPACE, self.check_alive)
        self.client.node.create_subscription(
            TransitionBatch,
            "transitions",
            self._on_batch,
            QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
        )

    def _start_node(self, name: str, args: Sequence[str], *, remote: bool) -> None:
        log = self.config.out / f"{name}.log"
        argv = [sys.executable, "-m", *args]
        if remote:
            argv, env = self.host.command(argv), self.host.servo_environment()
        else:
            env = self.host.learner_environment()
        with log.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        self.processes[name] = (process, log)

    def _on_batch(self, msg: Any) -> None:
        with self._batches_lock:
            self._batches.append((time.monotonic(), msg))

    def check_alive(self) -> None:
        """Raise `SessionError` with the node's log when one of the nodes has exited."""
        for name, (process, log) in self.processes.items():
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-4000:]
                msg = f"{name} exited with {process.returncode}; the end of {log}:\n{tail}"
                raise SessionError(msg)

    def _client(self) -> ServoClient:
        if self.client is None:
            msg = "the session is not started: use TwoHostSession as a context manager"
            raise SessionError(msg)
        return self.client

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> set[tuple[str, str]]:
        """Until the three nodes, their actions and the servo's state are seen from this host; the nodes seen."""
        return self._client().wait_ready(NODES, timeout_s)

    def train(self, objective: str = "speed", max_steps: int = 1, seed: int = 0) -> tuple[int, Any]:
        """A sim-mode Train goal with the learner's default algorithm: (GoalStatus status, result)."""
        client = self._client()
        goal = Train.Goal(objective=objective, mode="sim", max_steps=max_steps, load=self.config.load, seed=seed)
        status, result = client.run_goal(client.train_client, goal, "train", ACTION_TIMEOUT_S)
        return int(status), result

    def deploy(self) -> Deployment:
        """DeployPolicy of the learner's latest blob (empty policy_id), sent again while the driver lacks it."""
        client = self._client()
        for attempt in range(1, DEPLOY_ATTEMPTS + 1):
            started = time.monotonic()
            try:
                status, result = client.run_goal(
                    client.deploy_client, DeployPolicy.Goal(), "deploy_policy", ACTION_TIMEOUT_S
                )
                break
            except GoalRefusedError:
                if attempt == DEPLOY_ATTEMPTS:
                    raise
                time.sleep(0.5)
        return Deployment(
            success=status == GoalStatus.STATUS_SUCCEEDED and bool(result.success),
            message=str(result.message),
            active_policy_crc32=int(result.active_policy_crc32),
            driver_elapsed_s=float(result.elapsed_s),
            wall_s=time.monotonic() - started,
        )

    def wait_policy_on_servo(self, crc32: int) -> None:
        """Until the servo's state (arriving from the servo host) reports the policy `crc32`."""
        client = self._client()
        client.wait_state(
            "the servo's state to report the deployed policy", lambda s: s.policy_crc32 == crc32, ACTION_TIMEOUT_S
        )

    def stream(self, target_rad: float, duration_s: float) -> Stream:
        """The policy drives to `target_rad` with streaming for `duration_s` of wall time, then HOLD."""
        client = self._client()
        with self._batches_lock:
            self._batches.clear()
        started = time.monotonic()
        client.command.publish(ServoCommand(mode=ServoCommand.MODE_POLICY, target=target_rad, stream_transitions=True))
        client.wait_for("the streamed move", lambda: time.monotonic() - started >= duration_s, duration_s + 10.0)
        client.command.publish(ServoCommand(mode=ServoCommand.MODE_HOLD))
        with self._batches_lock:
            batches = list(self._batches)
        if not batches:
            return Stream(0, duration_s, 0, 0.0)
        first, last = batches[0][1], batches[-1][1]
        ticks = int(last.first_tick) + int(last.count) - int(first.first_tick)
        return Stream(
            samples=sum(int(msg.count) for _, msg in batches),
            wall_s=batches[-1][0] - started,
            ticks=ticks,
            servo_s=ticks * float(first.dt_s),
        )

    def close(self) -> None:
        """Stop the client, every node (SIGINT, then SIGKILL after a grace period) and the servo host."""
        if self.client is not None:
            self.client.close()
            self.client = None
        for process, _ in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in self.processes.values():
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.host.close()


def check(config: SessionConfig, *, objective: str = "speed", seed: int = 3) -> dict[str, Any]:
    """One pass across the two hosts: the nodes seen, Train, DeployPolicy, the policy on the servo, a stream.

    What each step gave, for a test or a person checking a setup to judge (JSON-friendly).
    """
    with TwoHostSession(config) as session:
        nodes = session.wait_ready()
        status, result = session.train(objective=objective, max_steps=1, seed=seed)
        report: dict[str, Any] = {
            "nodes": sorted(f"{namespace}/{name}" for name, namespace in nodes),
            "train_status": status,
            "train_success": bool(result.success),
            "train_message": str(result.message),
            "policy_id": str(result.policy_id),
            "policy_crc32": int(result.policy_crc32),
            "servo_registry_files": [str(p) for p in (config.out / "servo").rglob("*") if p.is_file()],
        }
        if not report["train_success"]:
            return report
        deployment = session.deploy()
        report["deployment"] = vars(deployment)
        if deployment.success:
            session.wait_policy_on_servo(int(result.policy_crc32))
            stream = session.stream(target_rad=0.5, duration_s=2.0)
            report["stream"] = vars(stream) | {"per_s": stream.per_s}
        return report


def main(argv: Sequence[str] | None = None) -> int:
    """Print `check`'s report as JSON: ``python -m mm_bringup.two_hosts OUT [learner_parameter:=value ...]``.

    Run inside tools/isolated.sh, in a fresh process: rclpy starts after the veth pair exists.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(main.__doc__, file=sys.stderr)
        return 2
    parameters = {}
    for word in args[1:]:
        name, _, value = word.partition(":=")
        parameters[name] = json.loads(value)
    report = check(SessionConfig(out=Path(args[0]), learner_parameters=parameters))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
