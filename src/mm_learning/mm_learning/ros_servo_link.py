"""A servo reached through its ROS driver, as the learner node drives it: a ``ServoLink`` of mm_learning.online_session.

Deploys through the driver's ``deploy_policy`` action (the image registered where the driver looks), moves through
its ``servo_command``, the move's samples from its ``transitions``. Used by the learner node for online goals and
for sim goals that deploy; ROS-side only (the session logic is in :mod:`mm_learning.online_session`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mm_contract.constants import OBS_DIM
from mm_contract.registry import Registry
from mm_contract.transitions import FLAG_EPISODE_START, PHYSICAL_COLUMNS, TransitionColumns
from mm_ros.process import SideNode
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.task import Future

from mm_learning.errors import OnlineError
from mm_learning.online_session import Episode
from mm_msgs.action import DeployPolicy
from mm_msgs.msg import ServoCommand, ServoState, TransitionBatch


class RosServoLink:
    """A servo reached through its driver in `namespace` (absolute, relative, "": the node's): a ``ServoLink``.

    deploy: the image into the registry the driver reads, then a ``deploy_policy`` goal with its id. Moves:
    ``servo_command`` (POSITION to the start and ``settle_s`` of servo time on ``state``, then POLICY with
    streaming and the exploration fields), the move's samples gathered from ``transitions`` from its first
    sample (``FLAG_EPISODE_START`` with the move's target), then HOLD without streaming. Move commands clear
    latched faults whose cause is gone (a heartbeat lost while this machine stalled, an exploring policy's over-
    current): the transitions carry FLAG_FAULT, which the learner never stores.

    `node` is spun by one thread (:class:`ServoLinks`), so the callbacks run one at a time and the batches are
    appended in the order they arrive.
    """

    def __init__(self, node: Node, namespace: str = "") -> None:
        self._node = node
        self._namespace = namespace.rstrip("/")
        self._cond = threading.Condition()
        self._batches: list[TransitionBatch] = []
        self._state: ServoState | None = None
        self._state_wall_s = -math.inf
        self._seq = 0
        self._registry_dir = Path()
        self._timeout_s = 60.0
        self.deploy_client = ActionClient(node, DeployPolicy, self.topic("deploy_policy"))
        self._command_pub = node.create_publisher(ServoCommand, self.topic("servo_command"), 10)
        node.create_subscription(TransitionBatch, self.topic("transitions"), self._on_batch, 1000)
        node.create_subscription(ServoState, self.topic("state"), self._on_state, qos_profile_sensor_data)

    @property
    def namespace(self) -> str:
        """The servo's namespace as the node resolves it (absolute)."""
        return self.resolved("state").rsplit("/", 1)[0] or "/"

    def resolved(self, name: str) -> str:
        """The servo's topic or action `name`, resolved by the node (absolute)."""
        return self._node.resolve_topic_name(self.topic(name))

    def topic(self, name: str) -> str:
        """The servo's topic or action `name`, as the node resolves it."""
        return f"{self._namespace}/{name}" if self._namespace else name

    def configure(self, *, registry_dir: Path, timeout_s: float) -> None:
        """Registry shared with the driver, wall-time limit of each wait (s)."""
        self._registry_dir, self._timeout_s = registry_dir, timeout_s

    def _on_batch(self, msg: TransitionBatch) -> None:
        with self._cond:
            self._batches.append(msg)
            self._cond.notify_all()

    def _on_state(self, msg: ServoState) -> None:
        with self._cond:
            self._state = msg
            self._state_wall_s = time.monotonic()
            self._cond.notify_all()

    def wait_state(self, timeout_s: float) -> ServoState | None:
        """A state received within the last ``timeout_s`` of wall time (waiting up to that long), or None."""
        with self._cond:
            self._cond.wait_for(lambda: time.monotonic() - self._state_wall_s < timeout_s, timeout_s)
            return self._state if time.monotonic() - self._state_wall_s < timeout_s else None

    def _command(self, mode: int, target: float = 0.0, **fields: Any) -> None:
        self._seq += 1
        msg = ServoCommand(seq=self._seq, mode=mode, target=float(target), **fields)
        msg.stamp = self._node.get_clock().now().to_msg()
        self._command_pub.publish(msg)

    def _wait(self, predicate: Callable[[], bool], what: str, arrived: Callable[[], str] | None = None) -> None:
        """Wait (lock held) until `predicate()`.

        Raises:
            OnlineError: not within the timeout; names `what`, the servo's last state and `arrived()` (what came).
        """
        with self._cond:
            if not self._cond.wait_for(predicate, self._timeout_s):
                state = self._state
                seen = (
                    "no state"
                    if state is None
                    else f"mode {state.mode}, faults 0x{state.fault_flags:x}, {state.dropped_samples} samples dropped "
                    f"since boot, in its last state, {time.monotonic() - self._state_wall_s:.1f} s ago"
                )
                msg = f"timed out after {self._timeout_s} s (wall) waiting for {what}; the servo reports {seen}"
                raise OnlineError(msg + (f"; {arrived()}" if arrived is not None else ""))

    def deploy(self, image: bytes, metadata: Any) -> int:
        """Register the image where the driver looks, deploy it by id; the CRC the servo reports running."""
        entry = Registry(self._registry_dir).add(image, metadata)
        if not self.deploy_client.wait_for_server(timeout_sec=self._timeout_s):
            raise OnlineError("the driver's deploy_policy server is gone")
        goal = DeployPolicy.Goal(policy_id=entry.policy_id)
        handle = self._request(lambda: self.deploy_client.send_goal_async(goal), "answer to the deploy_policy goal")
        if not handle.accepted:
            raise OnlineError(f"the driver did not accept deploying {entry.policy_id[:12]} (see its log)")
        result = self._request(handle.get_result_async, "deploy_policy result").result
        if not result.success:
            raise OnlineError(f"the servo refused policy {entry.policy_id[:12]}: {result.message}")
        return int(result.active_policy_crc32)

    def _request(self, send: Callable[[], Future], what: str) -> Any:
        """The result of the future `send()` returns, `send` run on the thread that spins this link's node.

        rclpy (Jazzy)'s ActionClient stores a request's future only after sending the request, so a response the
        spinning thread takes in between is dropped ("Ignoring unexpected goal response") and the future never
        completes; sent from that thread, the response waits until the future is stored. Should `send()` itself
        raise, the caller gets that error at once (as an OnlineError), not a time-out.
        """
        executor = self._node.executor
        if executor is None:
            raise OnlineError("the servo link's node is not spun by an executor")
        done = threading.Event()
        futures: list[Future] = []
        errors: list[Exception] = []

        def on_spinning_thread() -> None:
            try:
                futures.append(send())
            except Exception as exc:  # handed to the caller's thread and raised there
                errors.append(exc)
                done.set()
                return
            futures[0].add_done_callback(lambda _: done.set())

        executor.create_task(on_spinning_thread)
        if not done.wait(self._timeout_s):
            raise OnlineError(f"no {what} within {self._timeout_s} s")
        if errors:
            raise OnlineError(f"asking for the {what} failed: {errors[0]}") from errors[0]
        return futures[0].result()

    def run_episode(self, episode: Episode) -> TransitionColumns:
        """One move; see the class docstring."""
        if episode.start_rad is not None:
            state = self.wait_state(self._timeout_s)
            if state is None:
                raise OnlineError("no servo state: cannot time the PID's move to the start")
            since = _stamp_s(state.stamp)
            self._command(ServoCommand.MODE_POSITION, episode.start_rad, clear_faults=True)
            self._wait(
                lambda: self._state is not None and _stamp_s(self._state.stamp) - since >= episode.settle_s,
                f"the PID to reach {episode.start_rad:.3f} rad",
            )
        target = float(np.float32(episode.target_rad))
        with self._cond:
            self._batches = []
            command_tick = None if self._state is None else int(self._state.tick)
        self._command(
            ServoCommand.MODE_POLICY,
            target,
            stream_transitions=True,
            clear_faults=True,
            exploration_std=episode.exploration_std,
            exploration_tau_s=episode.exploration_tau_s,
        )
        gatherer = MoveGatherer(target, episode.duration_s, command_tick)

        def gathered() -> bool:
            while self._batches:
                if gatherer.feed(self._batches.pop(0)):
                    return True
            return False

        try:
            self._wait(gathered, f"the transitions of a move to {target:.3f} rad", gatherer.arrived)
        finally:
            self._command(ServoCommand.MODE_HOLD)
        return gatherer.columns()

    def hold(self) -> None:
        """HOLD without streaming."""
        self._command(ServoCommand.MODE_HOLD)


class ServoLinks:
    """The learner's links to its servos, on a node of their own spun by one thread (a single-threaded executor).

    Not on the learner's multi-threaded executor: a goal's execute callback holds one of its workers for the whole
    goal, and rclpy (Jazzy) yields a subscription's handler again on every pass of its loop while the handler waits
    in the thread pool's queue. With a servo's ``transitions`` (about 42 batches/s) and ``state`` (100/s) on it, the
    queue grew by thousands of duplicate handlers and the executor's thread spun at a whole core: against a servo in
    real time the batches arrived 10-26 s late, the reader's history (1000 batches) overflowed and evaluation moves
    lost their first batch, three times in a row. A single-threaded executor runs each handler as it takes it.

    The node is ``<owner>_servo_links`` (``mm_ros.process.SideNode``, as the driver's transport receives), with the
    owner's ``use_sim_time``.
    """

    def __init__(self, owner: Node, namespaces: Sequence[str]) -> None:
        """Links to the servos in `namespaces` (absolute, relative to the owner's namespace, or "": the owner's)."""
        self._side = SideNode(owner, "servo_links", parameter_overrides=[owner.get_parameter("use_sim_time")])
        self.node = self._side.node
        self.links = [RosServoLink(self.node, namespace) for namespace in namespaces]

    def destroy(self) -> None:
        """Stop the links' thread and destroy their node."""
        self._side.destroy()


def _stamp_s(stamp: Any) -> float:
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


class MoveGatherer:
    """The batches of one move, taken from the stream in the order they arrive.

    The move starts with the batch holding its first sample (FLAG_EPISODE_START, to its target) and goes on while
    the batches follow tick by tick, until a whole batch more than the move's duration has arrived: its first
    sample may sit anywhere in the first batch. A gap in the ticks ends it early (a batch was lost; the sessions
    run incomplete moves again). So does a batch to the target at or after `command_tick` (the servo's tick in its
    last state before the move's command) while the first sample has not come: the move started after that tick,
    so the batch holding its first sample was lost and will not come; without this the move waited for it until
    the link's time-out.
    """

    def __init__(self, target: float, duration_s: float, command_tick: int | None) -> None:
        """Gather the move to `target` (rad, as float32 holds it) lasting `duration_s` (s)."""
        self.target = target
        self.duration_s = duration_s
        self.command_tick = command_tick
        self.move: list[TransitionBatch] = []
        self.before: list[TransitionBatch] = []  # batches that arrived before the one with the move's first sample
        self._dt_s = 0.0

    def feed(self, batch: TransitionBatch) -> bool:
        """Take the next batch that arrived; True when the move is over (whole, or cut short by a lost batch)."""
        self._dt_s = float(batch.dt_s)
        if not self.move:
            flags = np.frombuffer(bytes(batch.flags), dtype=np.uint8)
            to_target = np.asarray(batch.target_rad) == self.target
            if np.any((flags & FLAG_EPISODE_START) & to_target):
                self.move.append(batch)
            elif self.command_tick is not None and batch.first_tick >= self.command_tick and np.any(to_target):
                return True
            else:
                self.before.append(batch)
        elif batch.first_tick == self.move[-1].first_tick + self.move[-1].count:
            self.move.append(batch)
        else:
            return True
        return bool(self.move) and _samples(self.move) >= round(self.duration_s / self.move[0].dt_s) + len(
            self.move[0].actions
        )

    def columns(self) -> TransitionColumns:
        """The move's samples from its first on, at most its duration of them; none when its first batch was lost."""
        if not self.move:
            empty = np.zeros(0)
            return TransitionColumns.from_arrays(
                first_tick=0,
                dt_s=self._dt_s,
                observations=empty,
                flags=empty,
                **dict.fromkeys(("actions", *PHYSICAL_COLUMNS), empty),
            )
        return _move_columns(self.move, self.target, self.duration_s)

    def arrived(self) -> str:
        """What arrived for a move that did not complete: the batches before its first sample, then the move's own."""
        if self.before:
            flags = np.concatenate([np.frombuffer(bytes(b.flags), dtype=np.uint8) for b in self.before])
            targets = np.concatenate([np.asarray(b.target_rad) for b in self.before])
            text = (
                f"{len(self.before)} batches without the move's first sample (ticks {self.before[0].first_tick} to "
                f"{self.before[-1].first_tick + self.before[-1].count}; {np.count_nonzero(targets == self.target)} "
                f"samples to this target, {np.count_nonzero(flags & FLAG_EPISODE_START)} episode starts)"
            )
        else:
            text = "no batch before the move's first sample"
        return f"{text}, {_samples(self.move)} samples of the move"


def _samples(batches: list[TransitionBatch]) -> int:
    return sum(int(b.count) for b in batches)


def _move_columns(batches: list[TransitionBatch], target: float, duration_s: float) -> TransitionColumns:
    """The samples of a move's batches from its first sample (to ``target``) on, at most ``duration_s`` of them."""
    names = ("actions", *PHYSICAL_COLUMNS)
    columns = {name: np.concatenate([np.asarray(getattr(b, name)) for b in batches]) for name in names}
    columns["flags"] = np.concatenate([np.frombuffer(bytes(b.flags), dtype=np.uint8) for b in batches])
    observations = np.concatenate([np.asarray(b.observations, dtype=np.float32).reshape(-1, OBS_DIM) for b in batches])
    first = int(np.flatnonzero((columns["flags"] & FLAG_EPISODE_START) & (columns["target_rad"] == target))[0])
    part = slice(first, first + round(duration_s / batches[0].dt_s))
    return TransitionColumns.from_arrays(
        first_tick=int(batches[0].first_tick) + first,
        dt_s=float(batches[0].dt_s),
        observations=observations[part],
        **{name: values[part] for name, values in columns.items()},
    )
