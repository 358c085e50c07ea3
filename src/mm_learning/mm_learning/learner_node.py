"""The learner node: the ``train`` action (mm_msgs/action/Train) and accepted policies on ``policy``.

A thin ROS wrapper around :mod:`mm_learning.trainer` and :mod:`mm_learning.export` (``mode: sim``) and
:mod:`mm_learning.online_session` (``mode: online``: the servos of parameter ``servos``, by default the one in this
node's namespace, through their drivers):

- every goal is accepted; one that cannot run is aborted at once with the reason in its result's ``message``
  (``ros2 action send_goal`` shows it; a rejection would show only "Goal was rejected."): an unknown objective or
  algorithm, an unknown mode, profile or load, a zero or invalid budget, NaN objective weights, no signing key
  ("invalid goal: ..."), or another goal running ("busy: goal <id> is running ..."; a goal sent while a
  cancelled one winds down waits for it to end instead);
- start-up imports no torch, Stable-Baselines3 or TensorFlow (tens of seconds on a loaded machine): the ``train``
  server is up in seconds and a goal imports what its trainer needs (:mod:`mm_learning.goals` checks goals);
- feedback: phase (training, evaluating, exporting, validating, publishing), steps, steps/s, mean reward, the
  policy's latest evaluation and the PID baseline's on the same moves;
- cancel stops training within one env step (SB3) or one generation (ES, 1 s of twin time) with a checkpoint;
  sending the same goal again resumes that run and trains the new goal's budget (its run directory is keyed by
  the objective, algorithm, profile, load, seed, ``velocity_scale`` and ``episode_s``: a changed setting starts
  a new run instead of resuming a model trained with another observation);
- Ctrl-C or SIGTERM: a running goal stops as on a cancel, and the process exits within ``SHUTDOWN_GRACE_S``;
- after training: export + acceptance checks, the quantised policy evaluated in the twin, signature, registry
  (SB3: :func:`mm_learning.pipeline.publish_run`, as ``mm export``; ES: ``schedule.publish``, as ``mm learn``),
  and an ``mm_msgs/PolicyBlob`` on ``policy`` (reliable, transient local: a late driver still gets the last one);
  with ``deploy``, the policy then goes to the servos through their drivers' ``deploy_policy``, as online mode
  deploys (a sim goal that deploys is refused at once when a driver does not answer);
- online: every policy goes into the registry the driver reads (same ``registry_dir``) and to the servo through
  the driver's ``deploy_policy``; moves through its ``servo_command`` (POLICY mode, streaming, exploration);
  ``transitions`` subscribed, the objective's ``reward`` with its terms published per move; the result is the
  best policy the servo measured, with the start policy's measurement as baseline; cancel leaves the servo in
  HOLD and keeps the best policy.

Parameters: ``LearnerParameters``, and ``SessionConfig``'s and ``CalibratedConfig``'s marked fields; see
``PARAMETER_FILE`` (``config/learner.yaml``, installed to the package share, is generated from it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from mm_contract.errors import ContractError
from mm_contract.objectives import parse_objective
from mm_contract.profiles import load_profile
from mm_contract.registry import IMAGE_NAME, Registry, RegistryEntry
from mm_contract.signing import load_private_key
from mm_ros.parameters import ParameterFile, Section, declare, parameter, values
from mm_ros.process import rclpy_process
from mm_ros.single_goal import SingleGoal
from mm_sim.errors import MmSimError
from rclpy._rclpy_pybind11 import RCLError
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mm_learning.errors import LearningError, OnlineError
from mm_learning.goals import OFF_POLICY, SB3_ALGORITHMS, SCHEDULE_ALGORITHM, Progress, run_key
from mm_learning.online_session import (
    CalibratedConfig,
    ServoFleet,
    SessionConfig,
    SessionProgress,
)
from mm_learning.ros_servo_link import ServoLinks
from mm_learning.twin import TwinSpec, matched_velocity_scale, summarize
from mm_msgs.action import Train
from mm_msgs.msg import MetricValue, PolicyBlob, Reward, RewardTerm

# The training modules (mm_learning.trainer, .pipeline, .schedule, .online, .calibration: they load torch,
# Stable-Baselines3 and TensorFlow) are imported by the goal that needs them, never at start-up; those imports are
# the only ones inside functions (marked "PLC0415 -- torch"). Everything the node checks goals and judges with
# (mm_learning.goals, .twin, .online_session) is torch-free and imported above.
HEAVY_MODULES = ("torch", "stable_baselines3", "tensorflow")
"""What start-up must not import; the node's ready line says which of them are loaded."""
SHUTDOWN_GRACE_S = 3.0
"""Wall time a running goal gets after Ctrl-C/SIGTERM to stop with its checkpoint before the process exits (s):
under the 5 s after which ``ros2 launch`` escalates to SIGTERM. Checkpoints are atomic: one cut short leaves the
previous one in force."""
STOPPING_WAIT_S = 60.0
"""Wall time a new goal waits for a cancelled goal to finish stopping before it is aborted as busy (s)."""


@dataclass(frozen=True)
class LearnerParameters:
    """The learner's own parameters.

    The online ones are `SessionConfig`'s (``online_<field>``) and `CalibratedConfig`'s (``online_es_<field>``);
    config/learner.yaml is generated from the three (`python -m mm_ros.parameters
    mm_learning.learner_node:PARAMETER_FILE`).
    """

    profile: str = parameter("mm_v3", "mm_sim servo profile used when a goal leaves `profile` empty")
    load: str = parameter("pendulum", "mm_sim load used when a goal leaves `load` empty")
    episode_s: float = parameter(1.0, "length of one training/evaluation step move (s)")
    velocity_scale: str = parameter(
        "profile",
        "velocity feature scale written into every exported policy: profile (the profile's vel_scale_rad_s) or "
        "matched (the load's fastest move, twin.matched_velocity_scale; finer velocity resolution)",
    )
    runs_dir: str = parameter("~/.ros/mm_learning/runs", "run directories (checkpoints, TensorBoard logs, exports)")
    registry_dir: str = parameter("~/.ros/mm_learning/policies", "registry of accepted policies")
    signing_key: str = parameter(
        "~/.ros/mm_learning/keys/policy_signing_key.pem", "ECDSA P-256 private key (`mm keygen`)"
    )
    eval_every_steps: int = parameter(20000, "evaluate the policy against the PID every this many env steps")
    eval_moves: int = parameter(10, "seeded step moves per evaluation")
    checkpoint_every_steps: int = parameter(20000, "checkpoint every this many env steps")
    export_moves: int = parameter(10, "seeded moves for the export's calibration, held-out and closed-loop checks")
    hyperparameters_json: str = parameter("{}", "JSON object overriding the algorithm preset's hyperparameters")
    online_start_policy: str = parameter(
        "untrained",
        "online start policy: untrained (a fresh actor), pid_clone (the objective's PID cloned in the twin of "
        "profile/load) or the path of an SB3 .zip of the same algorithm (e.g. trained in the twin)",
    )
    servos: tuple[str, ...] = parameter(
        ("",),
        "the servos an online goal trains at once, by namespace (absolute, relative to this node's, or '' for its "
        "own), each with its driver: one policy for all, trained from all their moves (one load class)",
    )
    online_wait_s: float = parameter(
        5.0, "wall time to wait for the driver's deploy_policy server and the servo's state (s)"
    )
    online_move_timeout_s: float = parameter(
        60.0, "wall time a move, a deployment or a PID settle may take before giving up (s)"
    )


# Online `es` goals (mm_learning.calibration): settle_s, target_limit_rad, min_move_rad and stop_on_target are the
# online_* ones of SessionConfig, episode_s the node's.
_SESSION_PREFIX, _CALIBRATED_PREFIX = "online_", "online_es_"
PARAMETER_FILE = ParameterFile(
    source="mm_learning.learner_node:PARAMETER_FILE",
    node="/**/learner",
    header=(
        "Parameters of the learner node, any namespace; installed to the package share.\n"
        "ros2 run mm_learning learner --ros-args --params-file "
        "$(ros2 pkg prefix mm_learning)/share/mm_learning/config/learner.yaml"
    ),
    sections=(
        Section(LearnerParameters),
        Section(
            SessionConfig,
            _SESSION_PREFIX,
            "Train goals with mode: online (mm_learning.online_session): the servos of `servos`, through their\n"
            "drivers; registry_dir must be the drivers' (policies are deployed by registry id).",
        ),
        Section(
            CalibratedConfig,
            _CALIBRATED_PREFIX,
            "Train goals with mode: online and algorithm: es (mm_learning.calibration): calibrate the twin to the\n"
            "servo, train the schedule there, keep it only if it beats the classical start on the servo.",
        ),
    ),
)
_MODES = ("", "sim", "online")
VELOCITY_SCALES = ("profile", "matched")
ONLINE_DEFAULT_ALGORITHM = "sac"
_UNITS = {"_s": "s", "_rad": "rad", "_j": "J", "_a": "A"}
# A policy blob is published once and kept for late subscribers.
POLICY_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


def metric_values(metrics: dict[str, float]) -> list[MetricValue]:
    """Metrics as ``MetricValue`` messages, the unit taken from the name's suffix (``_s``, ``_rad``, ...)."""
    values = []
    for name, value in metrics.items():
        unit = next((u for suffix, u in _UNITS.items() if name.endswith(suffix)), "")
        values.append(MetricValue(name=name, value=float(value), unit=unit))
    return values


def _algorithm_problem(goal: Train.Goal) -> str:
    """Why the goal's algorithm cannot run in its mode, or ""."""
    if goal.algorithm == SCHEDULE_ALGORITHM:
        return ""
    if goal.algorithm and goal.algorithm not in SB3_ALGORITHMS:
        return f"unknown algorithm {goal.algorithm!r}; use one of {SCHEDULE_ALGORITHM}, {', '.join(SB3_ALGORITHMS)}"
    if goal.mode == "online" and goal.algorithm and goal.algorithm not in OFF_POLICY:
        return (
            f"online mode needs an off-policy algorithm ({', '.join(sorted(OFF_POLICY))}), not "
            f"{goal.algorithm!r}: the servo's transitions come from exploration noise and earlier deployments, "
            "which an on-policy algorithm cannot learn from"
        )
    return ""


class LearnerNode(Node):
    """Serves the ``train`` action and publishes accepted policies on ``policy``."""

    def __init__(self) -> None:
        super().__init__("learner")
        for section in PARAMETER_FILE.sections:
            declare(self, section.cls, section.prefix)
        # One goal at a time, tracked by its handle (mm_ros.single_goal); a goal sent while a cancelled one winds
        # down waits for it.
        self._goal: SingleGoal[ServerGoalHandle] = SingleGoal(STOPPING_WAIT_S, lambda h: f"goal {_goal_id(h)}")
        self._policy_pub = self.create_publisher(PolicyBlob, "policy", POLICY_QOS)
        self._reward_pub = self.create_publisher(Reward, "reward", 10)
        self._servo_links = ServoLinks(self, list(dict.fromkeys(self._param("servos"))))
        self._server = ActionServer(
            self,
            Train,
            "train",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )
        loaded = [name for name in HEAVY_MODULES if name in sys.modules]
        self.get_logger().info(
            f"ready: train action server up; training modules loaded at start-up: {', '.join(loaded) or 'none'}"
        )

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _path(self, name: str) -> Path:
        return Path(str(self._param(name))).expanduser()

    def is_busy(self) -> bool:
        """Whether a goal is running (its execute callback has not returned)."""
        return self._goal.running is not None

    def destroy_node(self) -> None:
        """Destroy the servo links' node (stopping its thread), then this one."""
        self._servo_links.destroy()
        super().destroy_node()

    # -- goals -----------------------------------------------------------------------------------------------

    def _velocity_scale(self) -> str:
        """The ``velocity_scale`` parameter, checked.

        Raises:
            LearningError: neither "profile" nor "matched".
        """
        scale = str(self._param("velocity_scale"))
        if scale not in VELOCITY_SCALES:
            msg = f"parameter velocity_scale={scale!r}: use one of {', '.join(VELOCITY_SCALES)}"
            raise LearningError(msg)
        return scale

    def _profile_load(self, goal: Train.Goal) -> tuple[str, str]:
        """The goal's profile and load, or the node's defaults for empty ones."""
        return goal.profile or str(self._param("profile")), goal.load or str(self._param("load"))

    def _twin(self, goal: Train.Goal) -> TwinSpec:
        """The twin of a goal (profile, load, objective and the velocity scale the node is configured for).

        Raises:
            LearningError: `velocity_scale` is neither "profile" nor "matched".
            MmSimError: unknown profile or load.
        """
        profile, load = self._profile_load(goal)
        scale = self._velocity_scale()
        return TwinSpec(
            profile=profile,
            load=load,
            objective=parse_objective(goal.objective),
            episode_s=float(self._param("episode_s")),
            vel_scale_rad_s=matched_velocity_scale(profile, load) if scale == "matched" else None,
        )

    def _goal_problem(self, goal: Train.Goal) -> str:
        """Why the goal cannot run, or "" if it can (no training module is imported to find out)."""
        if goal.mode not in _MODES:
            return f"mode {goal.mode!r} is unknown; use 'sim' or 'online'"
        algorithm_problem = _algorithm_problem(goal)
        if algorithm_problem:
            return algorithm_problem
        if not (math.isfinite(goal.max_time_s) and goal.max_time_s >= 0.0):
            return f"max_time_s={goal.max_time_s} must be a finite number >= 0"
        if goal.max_steps == 0 and goal.max_time_s == 0.0:
            return "zero budget: give max_steps > 0 or max_time_s > 0"
        try:
            parse_objective(goal.objective)
            self._velocity_scale()
            profile, load = self._profile_load(goal)
            load_profile(profile).load(load)
            load_private_key(self._path("signing_key"))
        except (LearningError, ContractError, MmSimError) as exc:
            return str(exc)
        # A sim goal that deploys needs the drivers as much as an online one: found out before training, not after.
        return self._servo_problem() if goal.mode == "online" or goal.deploy else ""

    def _servo_problem(self) -> str:
        """Why this node cannot reach each of its servos through a driver (online mode), or ""."""
        wait_s = float(self._param("online_wait_s"))
        for link in self._servo_links.links:
            if not link.deploy_client.wait_for_server(timeout_sec=wait_s):
                name = link.resolved("deploy_policy")
                return (
                    f"no driver: the deploy_policy action server {name!r} did not answer within {wait_s} s; start the "
                    "driver (active) of that servo"
                )
            if link.wait_state(wait_s) is None:
                name = link.resolved("state")
                return f"no servo state on {name!r} within {wait_s} s; is the servo running?"
        return ""

    def _fleet(self) -> ServoFleet:
        """The servos of an online goal (parameter ``servos``), configured for it."""
        for link in self._servo_links.links:
            link.configure(
                registry_dir=self._path("registry_dir"), timeout_s=float(self._param("online_move_timeout_s"))
            )
        return ServoFleet(self._servo_links.links, [link.namespace for link in self._servo_links.links])

    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        # Accept-and-abort: the execute callback checks the goal and puts the reason into the result's message.
        self.get_logger().info(f"train goal received: objective {goal.objective!r}, algorithm {goal.algorithm!r}")
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        self.get_logger().info(f"cancel of goal {_goal_id(goal_handle)} requested: stopping with a checkpoint")
        return CancelResponse.ACCEPT

    def _abort(self, goal_handle: ServerGoalHandle, message: str) -> Train.Result:
        self.get_logger().warning(f"aborted train goal {_goal_id(goal_handle)}: {message}")
        goal_handle.abort()
        return Train.Result(success=False, message=message)

    # -- running ---------------------------------------------------------------------------------------------

    def _run_dir(self, goal: Train.Goal, twin: TwinSpec, algorithm: str) -> Path:
        key = run_key(
            objective=twin.objective,
            algorithm=algorithm,
            profile=twin.profile,
            load=twin.load,
            seed=int(goal.seed),
            velocity_scale=self._velocity_scale(),
            episode_s=twin.episode_s,
        )
        return self._path("runs_dir") / key

    def _execute(self, goal_handle: ServerGoalHandle) -> Train.Result:
        problem = self._goal_problem(goal_handle.request)
        if problem:
            return self._abort(goal_handle, f"invalid goal: {problem}")
        busy = self._goal.acquire(goal_handle)
        if busy:
            return self._abort(goal_handle, busy)
        self.get_logger().info(f"running train goal {_goal_id(goal_handle)}")
        try:
            return self._run_goal(goal_handle)
        except (LearningError, ContractError) as exc:
            self.get_logger().error(f"train goal failed: {exc}")
            goal_handle.abort()
            return Train.Result(success=False, message=str(exc))
        except RCLError:
            # Ctrl-C shut the context down between a check and a feedback or state publish: a shutdown, not an error
            # (training stopped at the shutdown with a checkpoint; nobody is left to receive a result).
            if not self._shutting_down():
                raise
            return Train.Result(success=False, message="the learner shut down during the goal")
        finally:
            self._goal.release(goal_handle)

    def _run_goal(self, goal_handle: ServerGoalHandle) -> Train.Result:
        """The goal's trainer: in the twin (sim), or against the servo (online: the schedule or SB3)."""
        if goal_handle.request.mode != "online":
            return self._train(goal_handle)
        if goal_handle.request.algorithm == SCHEDULE_ALGORITHM:
            return self._train_online_schedule(goal_handle)
        return self._train_online(goal_handle)

    def _shutting_down(self) -> bool:
        """Whether Ctrl-C (or rclpy.shutdown) has shut this node's context down."""
        return not rclpy.ok(context=self.context)

    @staticmethod
    def _end_stopped(goal_handle: ServerGoalHandle) -> None:
        """End a goal whose training stopped early: CANCELED when cancelled, left as it is after a shutdown."""
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()

    def _stop_requested(self, goal_handle: ServerGoalHandle) -> bool:
        """A cancel of the goal, or a shutdown of the node: training stops at the next check with a checkpoint."""
        return bool(goal_handle.is_cancel_requested) or self._shutting_down()

    def _feedback(self, goal_handle: ServerGoalHandle, phase: str, progress: Progress | None = None) -> None:
        """Publish Train feedback (sim or online progress have the same fields); nothing after a shutdown."""
        if self._shutting_down():
            return
        feedback = Train.Feedback(phase=phase)
        if progress is not None:
            feedback.steps = progress.steps
            feedback.steps_per_s = float(progress.steps_per_s)
            feedback.mean_reward = float(progress.mean_reward)
            feedback.eval_metrics = metric_values(dict(progress.eval_metrics))
            feedback.baseline_metrics = metric_values(dict(progress.baseline_metrics))
        goal_handle.publish_feedback(feedback)

    def _train_schedule(self, goal_handle: ServerGoalHandle) -> Train.Result:
        """Sim mode with the default trainer: a deceleration schedule for the classical controller (ES)."""
        from mm_learning import schedule  # noqa: PLC0415 -- torch
        from mm_learning.pipeline import finite_metrics  # noqa: PLC0415 -- torch

        goal: Train.Goal = goal_handle.request
        twin = self._twin(goal)
        out_dir = self._run_dir(goal, twin, SCHEDULE_ALGORITHM)
        config = schedule.ScheduleConfig(
            profile=twin.profile, load=twin.load, objective=twin.objective, seed=int(goal.seed)
        )
        per_generation = schedule.ticks_per_generation(config)
        generations = -(-int(goal.max_steps) // per_generation) if goal.max_steps else schedule.UNBOUNDED_GENERATIONS
        config = dataclasses.replace(config, generations=generations)
        deadline = time.monotonic() + float(goal.max_time_s) if goal.max_time_s > 0.0 else math.inf
        last: list[Progress] = []

        def on_progress(progress: schedule.Progress) -> None:
            last[:] = [
                Progress(
                    phase="evaluating",
                    steps=progress.ticks,
                    steps_per_s=progress.ticks / max(progress.elapsed_s, 1e-9),
                    mean_reward=progress.mean_reward_per_tick,
                    eval_metrics=finite_metrics(summarize(progress.evaluation) | {"score": progress.score}),
                    baseline_metrics=finite_metrics(summarize(progress.start) | {"score": progress.start_score}),
                )
            ]
            self._feedback(goal_handle, "evaluating", last[0])

        result = schedule.train_schedule(
            config,
            on_progress=on_progress,
            should_cancel=lambda: self._stop_requested(goal_handle) or time.monotonic() > deadline,
        )
        if self._stop_requested(goal_handle):
            self._end_stopped(goal_handle)
            message = f"cancelled after {result.ticks} ticks of training; nothing was exported"
            self.get_logger().info(message)
            return Train.Result(success=False, message=message, steps=result.ticks)
        self._feedback(goal_handle, "exporting", last[0] if last else None)
        published = schedule.publish(
            result,
            private_key=load_private_key(self._path("signing_key")),
            out_dir=out_dir / "export",
            registry=Registry(self._path("registry_dir")),
            evaluation_moves=int(self._param("eval_moves")),
        )
        comparison = published.comparison
        common = {
            "steps": result.ticks,
            "checkpoint_path": str(published.export.paths["mmpl"].parent),
            "baseline_metrics": metric_values(finite_metrics(comparison.rows[result.classical.law])),
        }
        metrics = comparison.flat()
        blob = PolicyBlob(
            policy_id=published.entry.policy_id,
            policy_crc32=published.entry.policy_crc32,
            image=list(published.entry.image()),
            objective=twin.objective.text,
            algorithm=SCHEDULE_ALGORITHM,
            training_steps=result.ticks,
            metrics=metric_values(metrics),
            metadata_json=json.dumps(published.entry.metadata),
        )
        blob.header.stamp = self.get_clock().now().to_msg()
        self._policy_pub.publish(blob)
        deployed = self._deploy(goal_handle, published.entry)
        goal_handle.succeed()
        verdict = "; ".join(filter(None, (comparison.verdict(twin.objective), result.unlearned())))
        message = (
            f"{SCHEDULE_ALGORITHM} policy {published.entry.policy_id[:12]}: {verdict}; published on `policy`{deployed}"
        )
        self.get_logger().info(message)
        return Train.Result(
            success=True,
            message=message,
            policy_id=published.entry.policy_id,
            policy_crc32=published.entry.policy_crc32,
            metrics=metric_values(metrics),
            image_path=str(published.entry.path / IMAGE_NAME),
            beat_baseline=result.best is not None,
            **common,
        )

    def _train(self, goal_handle: ServerGoalHandle) -> Train.Result:
        goal: Train.Goal = goal_handle.request
        algorithm = goal.algorithm or SCHEDULE_ALGORITHM
        if algorithm == SCHEDULE_ALGORITHM:
            return self._train_schedule(goal_handle)
        from mm_learning.trainer import TrainConfig, Trainer  # noqa: PLC0415 -- torch

        twin = self._twin(goal)
        out_dir = self._run_dir(goal, twin, algorithm)
        config = TrainConfig(
            out_dir=out_dir,
            twin=twin,
            algorithm=algorithm,
            max_steps=int(goal.max_steps),
            max_time_s=float(goal.max_time_s),
            budget_per_part=True,  # a goal trains its own budget, also when it resumes the run
            seed=int(goal.seed),
            eval_every_steps=int(self._param("eval_every_steps")),
            eval_moves=int(self._param("eval_moves")),
            checkpoint_every_steps=int(self._param("checkpoint_every_steps")),
            hyperparameters=json.loads(str(self._param("hyperparameters_json"))),
        )
        last: list[Progress] = []

        def on_progress(progress: Progress) -> None:
            last[:] = [progress]
            self._feedback(goal_handle, progress.phase, progress)

        result = Trainer(config, on_progress=on_progress, should_cancel=lambda: self._stop_requested(goal_handle)).run()
        common = {
            "steps": result.steps,
            "checkpoint_path": str(result.checkpoint_dir),
            "baseline_metrics": metric_values(dict(result.baseline_metrics)),
        }
        if result.stop_reason == "cancelled":
            self._end_stopped(goal_handle)
            message = (
                f"cancelled after {result.steps} steps; checkpoint {result.checkpoint_dir} "
                "(send the same goal again to resume: it trains its own budget)"
            )
            self.get_logger().info(message)
            return Train.Result(success=False, message=message, **common)

        from mm_learning.pipeline import publish_run  # noqa: PLC0415 -- torch

        try:
            published = publish_run(
                out_dir,
                private_key=load_private_key(self._path("signing_key")),
                registry=Registry(self._path("registry_dir")),
                export_moves=int(self._param("export_moves")),
                on_phase=lambda phase: self._feedback(goal_handle, phase, last[0] if last else None),
            )
        except (LearningError, ContractError) as exc:
            # The training is kept: a retry with another budget resumes from the checkpoint.
            clone = ", the PID clone before any RL update" if result.best_steps == 0 else ""
            message = (
                f"trained {result.steps} steps, but the export refused the best evaluated model (step "
                f"{result.best_steps}{clone}): {exc}. The run is kept: send the goal again with a larger max_time_s "
                f"or max_steps to train it on, or leave algorithm empty for the default {SCHEDULE_ALGORITHM!r} "
                "learner (a schedule for the classical controller)"
            )
            self.get_logger().error(message)
            goal_handle.abort()
            return Train.Result(success=False, message=message, **common)
        entry = published.entry
        assert entry is not None  # publish_run registers when given a registry
        blob = PolicyBlob(
            policy_id=entry.policy_id,
            policy_crc32=entry.policy_crc32,
            image=list(entry.image()),
            objective=twin.objective.text,
            algorithm=algorithm,
            training_steps=published.best_steps,
            metrics=metric_values(published.quantized_metrics),
            metadata_json=json.dumps(entry.metadata),
        )
        blob.header.stamp = self.get_clock().now().to_msg()
        self._policy_pub.publish(blob)
        deployed = self._deploy(goal_handle, entry)
        goal_handle.succeed()
        verdict = "beats" if result.target_beaten else "does not beat"
        message = (
            f"{algorithm} policy {entry.policy_id[:12]} (best of {result.steps} steps: step {published.best_steps}) "
            f"{verdict} the PID on {twin.objective.text}; published on `policy`{deployed}"
        )
        self.get_logger().info(message)
        return Train.Result(
            success=True,
            message=message,
            policy_id=entry.policy_id,
            policy_crc32=entry.policy_crc32,
            metrics=metric_values(published.quantized_metrics),
            image_path=str(entry.path / IMAGE_NAME),
            beat_baseline=bool(result.target_beaten),
            **common,
        )

    def _deploy(self, goal_handle: ServerGoalHandle, entry: RegistryEntry) -> str:
        """Deploy a registered sim-mode policy when the goal asks (``deploy``); the result message's note.

        Through each servo's driver (parameter ``servos``) as online mode deploys: its ``deploy_policy`` action
        with the policy's registry id (``registry_dir``, where the driver looks).

        Raises:
            OnlineError: a driver is gone or a servo refused the policy; the policy stays registered and published.
        """
        if not goal_handle.request.deploy:
            return ""
        self._feedback(goal_handle, "deploying")
        try:
            crc = self._fleet().deploy(entry.image(), entry.metadata)
        except OnlineError as exc:
            msg = (
                f"policy {entry.policy_id[:12]} is registered and published on `policy`, but deploying it failed: "
                f"{exc}; deploy it by id with the driver's deploy_policy action"
            )
            raise OnlineError(msg) from exc
        return f"; deployed: the servo runs policy_crc32 0x{crc:08x}"

    # -- online mode -----------------------------------------------------------------------------------------

    def _online_config(self, goal: Train.Goal, algorithm: str) -> SessionConfig:
        p = self._param
        return SessionConfig(
            objective=goal.objective,
            algorithm=algorithm,
            seed=int(goal.seed),
            max_steps=int(goal.max_steps),
            max_time_s=float(goal.max_time_s),
            episode_s=float(p("episode_s")),
            **values(self, SessionConfig, _SESSION_PREFIX),
            hyperparameters=json.loads(str(p("hyperparameters_json"))),
        )

    def _publish_reward(self, objective: str, report: Any) -> None:
        msg = Reward(
            objective=objective,
            first_tick=report.first_tick,
            samples=report.samples,
            reward=report.reward,
            terms=[RewardTerm(name=name, value=value) for name, value in report.terms.items()],
        )
        msg.stamp = self.get_clock().now().to_msg()
        self._reward_pub.publish(msg)

    def _end_online(self, goal_handle: ServerGoalHandle, *, cancelled: bool, fields: dict[str, Any]) -> Train.Result:
        """End an online goal: canceled (with the best policy so far) or succeeded, with the result's `fields`."""
        if cancelled:
            self._end_stopped(goal_handle)
            return Train.Result(success=False, **fields)
        goal_handle.succeed()
        return Train.Result(success=True, **fields)

    def _train_online(self, goal_handle: ServerGoalHandle) -> Train.Result:
        """Train against the servos (mm_learning.online_session), through their drivers."""
        from mm_learning.online import OnlineSession, start_model  # noqa: PLC0415 -- torch

        goal: Train.Goal = goal_handle.request
        algorithm = goal.algorithm or ONLINE_DEFAULT_ALGORITHM
        twin = self._twin(goal)
        out_dir = self._run_dir(goal, twin, f"online-{algorithm}") / f"session-{int(time.time())}"
        config = self._online_config(goal, algorithm)
        fleet = self._fleet()
        self._feedback(goal_handle, "deploying")
        model = start_model(
            str(self._param("online_start_policy")), algorithm=algorithm, twin=twin, seed=int(goal.seed)
        )

        def on_progress(progress: SessionProgress) -> None:
            self._feedback(goal_handle, progress.phase, progress)

        session = OnlineSession(
            config,
            fleet,
            scales=twin.scales(),
            private_key=load_private_key(self._path("signing_key")),
            out_dir=out_dir,
            model=model,
            on_progress=on_progress,
            on_reward=lambda report: self._publish_reward(goal.objective, report),
            should_cancel=lambda: self._stop_requested(goal_handle),
        )
        result = session.run()
        session.learner.model.save(out_dir / "model.zip")
        best, start = result.best, result.start
        if goal.deploy and result.stop_reason != "cancelled":
            fleet.deploy(best.image, best.metadata)
        policy_id = hashlib.sha256(best.image).hexdigest()
        summary = (
            f"online {algorithm}: {result.steps} transitions ({result.transitions_per_s:.0f}/s), "
            f"{result.gradient_steps} gradient steps ({result.gradient_steps_per_s:.0f}/s), {result.deploys} deploys, "
            f"stopped by {result.stop_reason}; best policy {policy_id[:12]} (at {best.steps} transitions) return "
            f"{best.metrics['mean_return']:.4g} vs start {start.metrics['mean_return']:.4g} on "
            f"{config.eval_moves} servo moves"
            + (f"; {len(session.refusals)} exports refused, last: {session.refusals[-1]}" if session.refusals else "")
            + _reruns(session.incomplete_moves)
        )
        self.get_logger().info(summary)
        evaluations = ", ".join(f"{steps}: {value:.4g}" for steps, value in result.history)
        self.get_logger().info(f"servo-measured return at each evaluation (transitions: return): {evaluations}")
        fields = {
            "message": summary,
            "policy_id": policy_id,
            "policy_crc32": best.policy_crc32,
            "steps": result.steps,
            "metrics": metric_values(best.metrics),
            "baseline_metrics": metric_values(start.metrics),
            "checkpoint_path": str(out_dir / "model.zip"),
            "image_path": str(best.metadata["paths"]["mmpl"]),
            "beat_baseline": best.image != start.image,
        }
        return self._end_online(goal_handle, cancelled=result.stop_reason == "cancelled", fields=fields)

    def _train_online_schedule(self, goal_handle: ServerGoalHandle) -> Train.Result:
        """Learn the schedule for the servos (mm_learning.calibration), through their drivers."""
        from mm_learning.calibration import CalibratedSession  # noqa: PLC0415 -- torch
        from mm_learning.schedule import objective_metric  # noqa: PLC0415 -- torch

        goal: Train.Goal = goal_handle.request
        twin = self._twin(goal)
        p = self._param
        config = CalibratedConfig(
            objective=goal.objective,
            profile=twin.profile,
            load=twin.load,
            seed=int(goal.seed),
            episode_s=float(p("episode_s")),
            settle_s=float(p("online_settle_s")),
            target_limit_rad=float(p("online_target_limit_rad")),
            min_move_rad=float(p("online_min_move_rad")),
            stop_on_target=bool(p("online_stop_on_target")),
            max_time_s=float(goal.max_time_s),
            **values(self, CalibratedConfig, _CALIBRATED_PREFIX),
        )
        out_dir = self._run_dir(goal, twin, f"online-{SCHEDULE_ALGORITHM}") / f"session-{int(time.time())}"
        fleet = self._fleet()

        def on_progress(progress: SessionProgress) -> None:
            self._feedback(goal_handle, progress.phase, progress)

        session = CalibratedSession(
            config,
            fleet,
            private_key=load_private_key(self._path("signing_key")),
            out_dir=out_dir,
            on_progress=on_progress,
            should_cancel=lambda: self._stop_requested(goal_handle),
        )
        result = session.run()
        best, start = result.best, result.start
        metric, _ = objective_metric(parse_objective(goal.objective))
        rounds = "; ".join(
            f"round {i + 1}: twin fit rms {r.fit.nominal_rms_error_rad * 1e3:.0f} -> "
            f"{r.fit.rms_error_rad * 1e3:.0f} mrad"
            + (", base law retuned" if r.retuned_base else "")
            + (f" (servo {metric} {r.retuned_metrics[metric]:.4g})" if r.retuned_metrics else "")
            + (", schedule learned" if r.scheduled else "")
            + (f", servo {metric} {r.servo_metrics[metric]:.4g}" if r.servo_metrics else ", nothing deployed")
            + (f" (export refused: {r.refusal})" if r.refusal else "")
            for i, r in enumerate(session.rounds)
        )
        summary = (
            f"online {SCHEDULE_ALGORITHM}: {metric} {best.metrics[metric]:.4g} vs classical start "
            f"{start.metrics[metric]:.4g} on {config.eval_moves} servo moves, {result.servo_time_s:.0f} s of servo "
            f"time, {result.deploys} deploys, stopped by {result.stop_reason}; {rounds}"
            + _reruns(session.incomplete_moves)
        )
        self.get_logger().info(summary)
        fields = {
            "message": summary,
            "policy_id": hashlib.sha256(best.image).hexdigest(),
            "policy_crc32": best.policy_crc32,
            "steps": result.steps,
            "metrics": metric_values(best.metrics),
            "baseline_metrics": metric_values(start.metrics),
            "image_path": str(best.metadata["paths"]["mmpl"]),
            "beat_baseline": best.image != start.image,
        }
        return self._end_online(goal_handle, cancelled=result.stop_reason == "cancelled", fields=fields)


def _goal_id(goal_handle: ServerGoalHandle) -> str:
    """A goal's id as ros2cli prints it (hex), shortened."""
    return bytes(goal_handle.goal_id.uuid).hex()[:8]


def _reruns(incomplete_moves: int) -> str:
    """The online summary's note of evaluation moves run again (their transitions came back incomplete)."""
    return f"; {incomplete_moves} evaluation moves rerun (transitions lost)" if incomplete_moves else ""


def main(args: list[str] | None = None) -> None:
    """Run the learner node (``ros2 run mm_learning learner --ros-args --params-file config/learner.yaml``).

    After Ctrl-C or SIGTERM a running goal gets ``SHUTDOWN_GRACE_S`` to stop with its checkpoint; then the process
    exits 0 at once, without waiting for its threads or the training libraries' teardown: a goal still running
    (importing a training module, exporting), or one whose execution was about to start when the signal came,
    would otherwise keep the interpreter's exit waiting for its executor thread.
    """
    node: LearnerNode | None = None
    with rclpy_process(args):
        executor = MultiThreadedExecutor()
        node = LearnerNode()
        executor.add_node(node)
        executor.spin()
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    while node is not None and node.is_busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    if node is not None and node.is_busy():
        print("learner: a goal was still running at shutdown; exiting without waiting for it", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
