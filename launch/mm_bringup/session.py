"""A session with the sim bringup from another process: what `make demo` and the end-to-end test both do.

What a user does with ``ros2 launch mm_bringup sim.launch.py`` and ``ros2 action send_goal``, as code:

1. starts the sim bringup through the composed runner (`mm_bringup.run`: virtual servo, driver, learner and the
   recorder writing one MCAP bag), with a parameter file that gives the learner its signing key, run and
   registry folders, and the virtual servo the matching public key and the PID tuned for the objective;
2. sends the learner's ``train`` goal (sim mode) and passes its feedback on (phase, steps, evaluations);
3. deploys the policy the learner published on ``policy`` through the driver's ``deploy_policy`` action and
   waits until the servo's state reports its CRC;
4. runs each seeded move with ``move_to`` for the policy and then for the PID (each from the move's start, to
   which a PID move brings the servo first), then lets the policy run a few moves with the servo streaming
   transitions (``servo_command`` with ``stream_transitions``; ``move_to`` does not stream). When training
   ends without a policy (e.g. the export checks refused it), the moves run with the PID only. A move that a
   servo fault ended (the heartbeat watchdog trips when the machine stalls for half a second) is run once more
   after the faults are cleared;
4b. with `servo_ptos`, runs the same moves with PTOS tuned for the objective *on the servo*: the classical start
   (a schedule image whose policy outputs zero, so the servo runs PTOS bit for bit; `mm_learning.schedule`),
   exported with every check, signed, added to the registry and deployed by its id, so PTOS is measured as the
   policy and the PID are, not in the twin;
5. stops the bringup (every node with SIGINT, the recorder closes the bag), reads the bag back (messages per
   topic) and loads the recorded transitions as a dataset.

The servo runs in real time (its ``realtime`` mode), so moves and the bag are in wall-clock time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import rclpy
from action_msgs.msg import GoalStatus
from mm_contract.objectives import parse_objective
from mm_contract.registry import Registry
from mm_contract.signing import PRIVATE_KEY_NAME, generate_keypair, load_private_key, public_key_hex
from mm_learning.bags import load_transitions, read_messages
from mm_learning.errors import LearningError
from mm_sim.evaluate import Move
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data

from mm_bringup.bringup import SIM, describe
from mm_bringup.errors import BringupError
from mm_bringup.run import Runner
from mm_msgs.action import DeployPolicy, MoveTo, Train
from mm_msgs.msg import ServoCommand, ServoState

NAMESPACE = "/servo1"
BRINGUP_NODES = frozenset(
    {("virtual_servo", NAMESPACE), ("driver", NAMESPACE), ("learner", NAMESPACE), ("recorder", "/")}
)
"""The nodes of the demo's bringup, as (name, namespace)."""
TOLERANCE_RAD = 0.02
"""Settle band of every move (rad), the driver's default."""
MOVE_TIMEOUT_S = 3.0
"""Servo time a move may take (s), the driver's default."""
START_TIMEOUT_S = 300.0
"""Hang protection: the learner imports TensorFlow and torch on a busy 2-core machine (s, wall)."""
ACTION_TIMEOUT_S = 120.0
"""Hang protection for a deployment or a move (s, wall)."""
EXPORT_TIMEOUT_S = 1800.0
"""Hang protection for what follows training (export, checks, evaluation; s, wall)."""
DEPLOY_ATTEMPTS = 20
"""DeployPolicy goals sent, 0.5 s apart, while the driver has not yet taken the learner's blob from `policy`."""
MOVE_ATTEMPTS = 2
"""Runs of a move that a servo fault ended (e.g. HEARTBEAT_LOST after a stall of the machine), faults cleared."""
MOVE_CONTROLLER = {"policy": "policy", "pid": "pid", "ptos": "policy"}
"""The ``move_to`` controller of each measured controller: PTOS runs as the deployed classical-start image."""


class SessionError(LearningError):
    """The bringup did not come up, a node died, or a goal was refused or failed."""


class GoalRefusedError(SessionError):
    """An action server rejected a goal (its node logs why)."""


@dataclass(frozen=True)
class SessionConfig:
    """What to train and run.

    Attributes:
        out: output folder: the bag, `run/` (runs), `policies/` (registry), `keys/`, `params.yaml`, `bringup.log`.
        objective: objective text (``accuracy``, ``speed:0.7,energy:0.3``).
        algorithm: SB3 algorithm ("" for the learner's default).
        max_time_s, max_steps: training budget (s wall time, environment steps; 0 = no limit of that kind).
        profile, load: the twin's servo profile and load.
        seed: the training seed (the Train goal's).
        moves: measured moves, each run with the policy and with the PID.
        stream_moves: targets of the first moves the policy drives while the servo streams transitions.
        learner_parameters: extra learner parameters (e.g. small evaluations for tests).
        bag_name: the bag's directory in `out`; it must not exist yet.
        servo_ptos: also run the moves with PTOS tuned for the objective on the servo (step 4b).
    """

    out: Path
    objective: str
    algorithm: str = ""
    max_time_s: float = 0.0
    max_steps: int = 0
    profile: str = "mm_v3"
    load: str = "pendulum"
    seed: int = 0
    moves: Sequence[Move] = ()
    stream_moves: int = 2
    learner_parameters: Mapping[str, Any] = field(default_factory=dict)
    bag_name: str = "bag"
    servo_ptos: bool = True

    @property
    def bag(self) -> Path:
        """The recording (a new directory: bags are never overwritten)."""
        return self.out / self.bag_name

    @property
    def log(self) -> Path:
        """Output of the runner and every node."""
        return self.out / "bringup.log"


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation during training: the validation score of the policy and of its classical start.

    The score is what the trainer maximises: the mean return per move, or for the schedule trainer's `energy`
    the least-energy-at-matched-settle criterion (`mm_sim.tuning.move_score`).
    """

    steps: int
    policy_score: float
    start_score: float


@dataclass(frozen=True)
class MoveOutcome:
    """A measured ``move_to`` with its result (SI units as named; settle_time_s is NaN if it did not settle)."""

    index: int
    controller: str
    start_rad: float
    target_rad: float
    success: bool
    message: str
    settle_time_s: float
    overshoot_rad: float
    final_error_rad: float
    energy_j: float
    elapsed_s: float


@dataclass
class SessionResult:
    """What the session did and measured."""

    nodes: set[tuple[str, str]] = field(default_factory=set)
    train_success: bool = False
    train_message: str = ""
    train_beat_baseline: bool = False  # Train.Result.beat_baseline: the policy beat the controller it is judged on
    policy_id: str = ""
    policy_crc32: int = 0
    training_steps: int = 0
    curve: list[EvalPoint] = field(default_factory=list)
    deploy_message: str = ""
    deploy_elapsed_s: float = 0.0
    servo_policy_crc32: int = 0
    ptos_policy_crc32: int = 0
    moves: list[MoveOutcome] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)
    bag_counts: dict[str, int] = field(default_factory=dict)
    bag_complete: bool = False
    dataset_transitions: int = 0
    dataset_episodes: int = 0


class Reporter:
    """Progress of a session; this one reports nothing (the demo's draws progress bars)."""

    def phase(self, text: str) -> None:
        """A new phase starts."""

    def train_feedback(self, feedback: Any) -> None:
        """A Train feedback message arrived."""

    def deploy_feedback(self, feedback: Any) -> None:
        """A DeployPolicy feedback message arrived."""

    def move_done(self, done: int, total: int, outcome: MoveOutcome) -> None:
        """A measured move ended (`done` of `total`)."""


def metric(values: Sequence[Any], name: str) -> float:
    """The value of metric `name` in a list of mm_msgs/MetricValue (NaN when absent)."""
    return next((float(v.value) for v in values if v.name == name), math.nan)


def score(values: Sequence[Any]) -> float:
    """The trainer's validation score in a feedback's metrics: `score` where it sends one, else `mean_return`."""
    value = metric(values, "score")
    return metric(values, "mean_return") if math.isnan(value) else value


def pid_objective(objective: str) -> str:
    """The named objective whose tuned PID the servo boots with: the objective's largest component."""
    return parse_objective(objective).base


def signing_key(key_dir: Path) -> Path:
    """The policy signing key in `key_dir`, created on first use (`mm keygen`); returns its path."""
    path = key_dir / PRIVATE_KEY_NAME
    if not path.exists():
        path, _ = generate_keypair(key_dir)
    return path


def write_parameters(config: SessionConfig, key_path: Path) -> Path:
    """The bringup's `params_file`: the learner's key and folders, the virtual servo's public key and PID."""
    out = config.out.resolve()
    parameters = {
        "/**/learner": {
            "ros__parameters": {
                "runs_dir": str(out / "run"),
                "registry_dir": str(out / "policies"),
                "signing_key": str(key_path.resolve()),
                **config.learner_parameters,
            }
        },
        "/**/driver": {"ros__parameters": {"registry_dir": str(out / "policies")}},
        "/**/virtual_servo": {
            "ros__parameters": {
                "public_key": public_key_hex(load_private_key(key_path)),
                "pid_objective": pid_objective(config.objective),
            }
        },
    }
    path = config.out / "params.yaml"
    path.write_text(json.dumps(parameters, indent=2) + "\n", encoding="utf-8")  # JSON is YAML
    return path


class ServoClient:
    """An rclpy node in its own context with the action clients, `servo_command` and the servo's `state`."""

    def __init__(self, namespace: str, alive: Callable[[], None]) -> None:
        """Clients in `namespace`; `alive()` raises when the bringup died (checked while waiting)."""
        self._alive = alive
        self.context = Context()
        rclpy.init(context=self.context)  # Jazzy's rclpy.init() is not a context manager: close() shuts it down
        self.node = Node("mm_session_client", namespace=namespace, context=self.context)
        self.train_client = ActionClient(self.node, Train, "train")
        self.deploy_client = ActionClient(self.node, DeployPolicy, "deploy_policy")
        self.move_client = ActionClient(self.node, MoveTo, "move_to")
        self.command = self.node.create_publisher(ServoCommand, "servo_command", 10)
        self._cond = threading.Condition()
        self.latest: Any = None
        self.node.create_subscription(ServoState, "state", self._on_state, qos_profile_sensor_data)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, name="session_client", daemon=True)
        self._spinner.start()

    def _on_state(self, msg: Any) -> None:
        with self._cond:
            self.latest = msg
            self._cond.notify_all()

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
        """Until `predicate()` (checked on every state and every 0.2 s); raises `SessionError` after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                self._alive()
                if time.monotonic() > deadline:
                    msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
                    raise SessionError(msg)
                self._cond.wait(0.2)

    def wait_state(self, what: str, predicate: Callable[[Any], bool], timeout_s: float) -> Any:
        """Until the latest ServoState satisfies `predicate`; returns that state."""
        self.wait_for(what, lambda: predicate(self.latest), timeout_s)
        return self.latest

    def wait_ready(self, nodes: frozenset[tuple[str, str]], timeout_s: float) -> set[tuple[str, str]]:
        """Until `nodes` are up, the three action servers answer and the servo's state arrives; the nodes seen."""
        seen: set[tuple[str, str]] = set()

        def ready() -> bool:
            seen.clear()
            seen.update(self.node.get_node_names_and_namespaces())
            servers = (self.train_client, self.deploy_client, self.move_client)
            return nodes <= seen and all(c.server_is_ready() for c in servers) and self.latest is not None

        self.wait_for(f"the nodes {sorted(nodes)}, their actions and the servo's state", ready, timeout_s)
        return set(seen)

    def _done(self, future: Any, what: str, timeout_s: float) -> Any:
        self.wait_for(what, future.done, timeout_s)
        return future.result()

    def run_goal(
        self, client: Any, goal: Any, what: str, timeout_s: float, feedback: Callable[[Any], None] | None = None
    ) -> tuple[int, Any]:
        """Send `goal` and wait for its result: (GoalStatus status, result); `SessionError` if rejected."""
        callback = None if feedback is None else (lambda message: feedback(message.feedback))
        handle = self._done(client.send_goal_async(goal, feedback_callback=callback), f"{what}: goal response", 30.0)
        if not handle.accepted:
            msg = f"{what}: goal rejected (the node logs why: see the bringup log)"
            raise GoalRefusedError(msg)
        response = self._done(handle.get_result_async(), f"{what}: result", timeout_s)
        return response.status, response.result

    def clear_faults(self) -> None:
        """If the servo reports faults: HOLD with clear_faults through `servo_command`, until they are gone."""
        if self.latest.fault_flags:
            self.command.publish(ServoCommand(mode=ServoCommand.MODE_HOLD, clear_faults=True))
            self.wait_state("the servo's faults to clear", _no_faults, ACTION_TIMEOUT_S)

    def move_to(self, target_rad: float, controller: str) -> Any:
        """A MoveTo goal with the session's tolerance and timeout; the result (succeeded or not)."""
        goal = MoveTo.Goal(
            target_rad=target_rad, tolerance_rad=TOLERANCE_RAD, timeout_s=MOVE_TIMEOUT_S, controller=controller
        )
        _, result = self.run_goal(
            self.move_client, goal, f"move_to {target_rad:.3f} rad ({controller})", ACTION_TIMEOUT_S
        )
        return result

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self._executor.shutdown(timeout_sec=2.0)
        self._spinner.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _train(client: ServoClient, config: SessionConfig, reporter: Reporter, result: SessionResult) -> None:
    def on_feedback(feedback: Any) -> None:
        if feedback.phase == "evaluating" and feedback.eval_metrics:
            point = EvalPoint(int(feedback.steps), score(feedback.eval_metrics), score(feedback.baseline_metrics))
            if not result.curve or result.curve[-1].steps != point.steps:
                result.curve.append(point)
        reporter.train_feedback(feedback)

    goal = Train.Goal(
        objective=config.objective,
        algorithm=config.algorithm,
        mode="sim",
        max_steps=config.max_steps,
        max_time_s=config.max_time_s,
        profile=config.profile,
        load=config.load,
        seed=config.seed,
    )
    status, train = client.run_goal(
        client.train_client, goal, "train", config.max_time_s + EXPORT_TIMEOUT_S, on_feedback
    )
    result.train_success = status == GoalStatus.STATUS_SUCCEEDED and train.success
    result.train_message = train.message
    result.train_beat_baseline = bool(train.beat_baseline)
    result.policy_id, result.policy_crc32, result.training_steps = train.policy_id, train.policy_crc32, train.steps


def _deploy(client: ServoClient, reporter: Reporter, policy_id: str, crc32: int) -> Any:
    """Deploy `policy_id` and wait until the servo's state reports `crc32`; returns the DeployPolicy result.

    An empty `policy_id` deploys the latest blob the learner published on `policy`.
    """
    for attempt in range(1, DEPLOY_ATTEMPTS + 1):
        try:
            status, deploy = client.run_goal(
                client.deploy_client,
                DeployPolicy.Goal(policy_id=policy_id),
                "deploy_policy",
                ACTION_TIMEOUT_S,
                reporter.deploy_feedback,
            )
            break
        except GoalRefusedError:
            # The learner published the blob before answering; the driver may take it a moment later.
            if attempt == DEPLOY_ATTEMPTS:
                raise
            time.sleep(0.5)
    if status != GoalStatus.STATUS_SUCCEEDED or not deploy.success:
        msg = f"deployment failed: {deploy.message}"
        raise SessionError(msg)
    if deploy.active_policy_crc32 != crc32:
        msg = f"the servo runs policy {deploy.active_policy_crc32:08x}, not {crc32:08x}"
        raise SessionError(msg)
    client.wait_for(
        "the servo's state to report the deployed policy", lambda: client.latest.policy_crc32 == crc32, ACTION_TIMEOUT_S
    )
    return deploy


def _deploy_trained(client: ServoClient, reporter: Reporter, result: SessionResult) -> None:
    deploy = _deploy(client, reporter, "", result.policy_crc32)
    result.deploy_message, result.deploy_elapsed_s = deploy.message, deploy.elapsed_s
    result.servo_policy_crc32 = int(client.latest.policy_crc32)


def _deploy_classical(
    client: ServoClient, config: SessionConfig, key_path: Path, reporter: Reporter, result: SessionResult
) -> None:
    """Export PTOS tuned for the objective as the classical-start image, register it and deploy it by its id.

    With the Train goal's seed it is the image the schedule trainer starts from: when training kept that start,
    the registry returns the trained entry (the same policy content) and PTOS's moves run the same image.
    """
    # Imported here: the export pulls in TensorFlow, which must stay out of the demo's animation child (it imports
    # this module, and TensorFlow crashes MuJoCo's EGL renderer).
    from mm_learning.schedule import ScheduleConfig, classical_start, export_schedule, register  # noqa: PLC0415 -- TensorFlow

    start = classical_start(
        ScheduleConfig(
            profile=config.profile,
            load=config.load,
            objective=parse_objective(config.objective),
            seed=config.seed,
            base_law="ptos",
        )
    )
    key = load_private_key(key_path)
    export = export_schedule(start, private_key=key, out_dir=config.out / "ptos", name="ptos")
    entry = register(export.image, export.metadata, registry=Registry(config.out / "policies"), private_key=key)
    _deploy(client, reporter, entry.policy_id, entry.policy_crc32)
    result.ptos_policy_crc32 = entry.policy_crc32


def _moves(
    client: ServoClient, config: SessionConfig, controllers: Sequence[str], reporter: Reporter, result: SessionResult
) -> None:
    total = len(controllers) * len(config.moves)
    for index, move in enumerate(config.moves):
        for controller in controllers:
            for _ in range(MOVE_ATTEMPTS):
                client.clear_faults()
                client.move_to(move.start_rad, "pid")  # to the start; need not settle exactly: start_rad is measured
                start_rad = float(client.latest.position_rad)
                r = client.move_to(move.target_rad, MOVE_CONTROLLER[controller])
                if not client.latest.fault_flags:
                    break
            outcome = MoveOutcome(
                index,
                controller,
                start_rad,
                move.target_rad,
                bool(r.success),
                str(r.message),
                float(r.settle_time_s),
                float(r.overshoot_rad),
                float(r.final_error_rad),
                float(r.energy_j),
                float(r.elapsed_s),
            )
            result.moves.append(outcome)
            reporter.move_done(len(result.moves), total, outcome)


def _stream(client: ServoClient, config: SessionConfig) -> None:
    """The policy drives the first moves' targets with transitions streaming, each for its duration."""
    for move in config.moves[: config.stream_moves]:
        client.clear_faults()
        target = float(move.target_rad)
        client.command.publish(ServoCommand(mode=ServoCommand.MODE_POLICY, target=target, stream_transitions=True))
        state = client.wait_state(
            f"the servo to run the policy to {target:.3f} rad", partial(_runs_policy_to, target), ACTION_TIMEOUT_S
        )
        until_s = _stamp_s(state) + move.duration_s
        client.wait_state("the streamed move to run its duration", partial(_stamped_after, until_s), ACTION_TIMEOUT_S)
    client.command.publish(ServoCommand(mode=ServoCommand.MODE_HOLD))


def _runs_policy_to(target_rad: float, state: Any) -> bool:
    return bool(state.mode == ServoCommand.MODE_POLICY and abs(state.target_rad - target_rad) < 1e-5)


def _no_faults(state: Any) -> bool:
    return not state.fault_flags


def _stamped_after(time_s: float, state: Any) -> bool:
    return _stamp_s(state) >= time_s


def _stamp_s(state: Any) -> float:
    return float(state.stamp.sec) + 1e-9 * float(state.stamp.nanosec)


def _read_back(config: SessionConfig, result: SessionResult) -> None:
    contents = read_messages(config.bag)
    result.bag_counts = dict(Counter(m.topic for m in contents.messages))
    result.bag_complete = contents.complete
    if result.train_success and config.stream_moves:  # otherwise nothing streamed transitions
        dataset = load_transitions(config.bag, config.objective)
        result.dataset_transitions, result.dataset_episodes = len(dataset), len(dataset.episodes())


def run_session(config: SessionConfig, reporter: Reporter | None = None) -> SessionResult:
    """Bring up, train, deploy, move, stop, read the bag back (see the module docstring).

    Raises:
        SessionError: a node died, a goal was refused or failed, or a wait timed out; the bringup is stopped
            and `config.log` holds every node's output.
    """
    report = reporter or Reporter()
    config.out.mkdir(parents=True, exist_ok=True)
    key_path = signing_key(config.out / "keys")
    params = write_parameters(config, key_path)
    arguments = {
        "profile": config.profile,
        "load": config.load,
        "rviz": "false",
        "robot_state_publisher": "false",
        "bag": str(config.bag),
        "params_file": str(params),
    }
    result = SessionResult()
    with config.log.open("ab") as node_log, config.log.open("a", encoding="utf-8") as runner_log:
        try:
            runner = Runner(describe(SIM, arguments), out=runner_log, log=node_log)
            report.phase(f"starting the sim bringup (nodes' output: {config.log})")
            runner.start()
        except BringupError as exc:
            raise SessionError(str(exc)) from exc

        def alive() -> None:
            if dead := [f"{spec.full_name} ({p.returncode})" for spec, p in runner.processes if p.poll() is not None]:
                msg = f"bringup node(s) exited: {', '.join(dead)}; see {config.log}"
                raise SessionError(msg)

        client: ServoClient | None = None
        try:
            client = ServoClient(NAMESPACE, alive)
            result.nodes = client.wait_ready(BRINGUP_NODES, START_TIMEOUT_S)
            report.phase("training through the learner's train action")
            _train(client, config, report, result)
            if result.train_success:
                report.phase("deploying the published policy through the driver's deploy_policy action")
                _deploy_trained(client, report, result)
                report.phase(f"{len(config.moves)} moves with move_to: the policy, then the PID")
                _moves(client, config, ("policy", "pid"), report, result)
                _stream(client, config)
            else:
                report.phase(f"no policy ({result.train_message}); {len(config.moves)} moves with the PID only")
                _moves(client, config, ("pid",), report, result)
            if config.servo_ptos:
                report.phase("exporting PTOS tuned for the objective as a schedule image, deploying it by its id")
                _deploy_classical(client, config, key_path, report, result)
                report.phase(f"{len(config.moves)} moves with move_to: PTOS on the servo")
                _moves(client, config, ("ptos",), report, result)
        finally:
            if client is not None:
                client.close()
            report.phase("stopping the bringup (the recorder closes the bag)")
            result.exit_codes = runner.stop()
    report.phase(f"reading the bag back: {config.bag}")
    _read_back(config, result)
    return result
