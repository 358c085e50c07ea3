"""Helpers of the cross-process ROS tests: node processes, clients in their own rclpy context, waits, teardown.

Every wall-clock timeout here is hang protection: a test that asserts about the servo's timing reads the servo's
own ticks and stamps, never these waits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

# A process under watch: the process and the file its output goes to (shown when it dies).
Watched = tuple[subprocess.Popen[bytes], Path]


def start_node(
    args: list[str], log_path: Path, *, prefix: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `<prefix> python -m <args>` (env: this process's unless given) with stdout and stderr in log_path."""
    with log_path.open("wb") as log:
        return subprocess.Popen([*prefix, sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL when it has not exited after timeout_s (s); reaps it either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def node_process(
    args: list[str], log_path: Path, *, prefix: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `<prefix> python -m <args>` (output in log_path) for the duration of the block."""
    proc = start_node(args, log_path, prefix=prefix, env=env)
    try:
        yield proc
    finally:
        stop_process(proc)


def ros_args(module: str, namespace: str | None = None, **params: Any) -> list[str]:
    """Arguments of `python -m module --ros-args` in `namespace` with `-p name:=value` parameters."""
    args = [module, "--ros-args"]
    if namespace is not None:
        args += ["-r", f"__ns:={namespace}"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    return args


def twin_args(namespace: str, **params: Any) -> list[str]:
    """Arguments of a virtual servo (mm_sim.twin_node) in `namespace`."""
    return ros_args("mm_sim.twin_node", namespace, **params)


def driver_args(namespace: str, params_file: Path) -> list[str]:
    """Arguments of the driver node in `namespace` with a parameter file."""
    return [*ros_args("mm_driver.driver_node", namespace), "--params-file", str(params_file)]


def write_params(path: Path, node: str, params: dict[str, Any]) -> Path:
    """A ROS parameter file (JSON is YAML) for `node` ("/**" matches any node in any namespace)."""
    path.write_text(json.dumps({node: {"ros__parameters": params}}))
    return path


def check_alive(processes: Mapping[str, Watched]) -> None:
    """Fail with the process's log when one of them has exited."""
    for name, (proc, log) in processes.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{log.read_text(errors='replace')}"


def spin_until(
    executor: Executor,
    done: Callable[[], bool],
    what: str,
    timeout_s: float,
    processes: Mapping[str, Watched] | None = None,
) -> None:
    """Spin `executor` in this thread until done() holds; fail after timeout_s (s) or when a process died."""
    deadline = time.monotonic() + timeout_s
    while not done():
        check_alive(processes or {})
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        executor.spin_once(timeout_sec=0.05)


@contextmanager
def ros_context() -> Iterator[Context]:
    """An rclpy context of its own (Jazzy's rclpy.init() is not a context manager), shut down at the end."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def wait(future: Any, timeout_s: float) -> Any:
    """The result of an rclpy future completed by another thread's executor (a Client's)."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(timeout_s), f"no answer within {timeout_s} s"
    return future.result()


def stamp_s(stamp: Any) -> float:
    """builtin_interfaces/Time in seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class Client:
    """A node in its own context, spun in a background thread: collects topic messages and runs actions.

    Processes given to `watch` are checked while waiting, so a node that died fails the test with its log at
    once instead of after a timeout.
    """

    def __init__(self, name: str, namespace: str = "") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node(name, namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.cond = threading.Condition()
        self.messages: dict[str, list[Any]] = {}
        self._subscriptions: dict[str, list[Any]] = {}
        self.processes: dict[str, Watched] = {}
        self._stop = threading.Event()
        # Held around each spin_once and around sending a request: Jazzy's ActionClient registers a goal's future
        # only after sending it, so a fast server's answer taken in between was dropped ("Ignoring unexpected goal
        # response") and the call hung.
        self._spin_lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        # spin_once in a loop that close() ends first: shutting an executor down under spin() races its
        # guard conditions (rclpy raises from the spinning thread).
        while not self._stop.is_set():
            with self._spin_lock:
                self.executor.spin_once(timeout_sec=0.05)

    def watch(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        """Fail waits as soon as `proc` exits, showing `log`."""
        self.processes[name] = (proc, log)

    def subscribe(self, msg_type: Any, topic: str, qos: QoSProfile | int = 10, *, arrival: bool = False) -> list[Any]:
        """Start collecting messages on `topic`; returns the live list (of (monotonic arrival s, msg) with
        `arrival`).
        """
        box: list[Any] = self.messages.setdefault(topic, [])

        def on_msg(msg: Any) -> None:
            with self.cond:
                box.append((time.monotonic(), msg) if arrival else msg)
                self.cond.notify_all()

        subscription = self.node.create_subscription(msg_type, topic, on_msg, qos)
        self._subscriptions.setdefault(topic, []).append(subscription)
        return box

    def unsubscribe(self, topic: str) -> None:
        """Stop collecting messages on `topic` (its list stays as it is)."""
        # Between two spin_once calls: destroying a subscription while the executor builds its wait set from it
        # killed the spin thread ("cannot use Destroyable because destruction was requested").
        with self._spin_lock:
            for subscription in self._subscriptions.pop(topic, []):
                self.node.destroy_subscription(subscription)

    def poll(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Whether predicate() holds within timeout_s (s): checked when a message arrives, and every 0.2 s for
        dead processes (which fail the test).
        """
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                check_alive(self.processes)
                remaining = deadline - time.monotonic()
                if remaining <= 0.0:
                    return False
                self.cond.wait(min(remaining, 0.2))
        return True

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Block until predicate() holds; fail after timeout_s (s)."""
        assert self.poll(predicate, timeout_s), f"timed out after {timeout_s} s waiting for {what}"

    def action(self, action_type: Any, name: str, timeout_s: float = 60.0) -> ActionClient:
        """An action client, once its server is up."""
        client = ActionClient(self.node, action_type, name)
        deadline = time.monotonic() + timeout_s
        while not client.wait_for_server(timeout_sec=0.5):
            check_alive(self.processes)
            assert time.monotonic() < deadline, f"action server {name} did not come up within {timeout_s} s"
        return client

    def call(
        self,
        client: ActionClient,
        goal: Any,
        *,
        timeout_s: float = 120.0,
        feedback: list[Any] | None = None,
        on_accepted: Callable[[Any], None] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> tuple[bool, Any, int]:
        """Send a goal; returns (accepted, result, status) — result None when rejected. `on_send` runs right
        before the goal goes out (a bench times from there).
        """

        def on_feedback(msg: Any) -> None:
            if feedback is not None:
                feedback.append(msg.feedback)

        with self._spin_lock:
            if on_send is not None:
                on_send()
            sent = client.send_goal_async(goal, feedback_callback=on_feedback)
        handle = wait(sent, timeout_s)
        if not handle.accepted:
            return False, None, 0
        if on_accepted is not None:
            on_accepted(handle)
        with self._spin_lock:
            result = handle.get_result_async()
        response = wait(result, timeout_s)
        return True, response.result, response.status

    def stop(self) -> None:
        """Stop spinning, so that entities of the node can be destroyed (under a spinning executor they cannot)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.stop()
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
