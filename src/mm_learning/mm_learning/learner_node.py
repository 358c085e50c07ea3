"""The learner node: the ``train`` action (mm_msgs/action/Train) and accepted policies on ``policy``.

A thin ROS wrapper around :mod:`mm_learning.trainer` and :mod:`mm_learning.export` (sim mode; online mode
arrives with the bringup issue):

- goals with an unknown objective or algorithm, an unknown mode, profile or load, a zero or invalid budget, NaN
  objective weights, or no signing key are rejected in the goal callback, with the reason logged;
- one goal at a time (a goal arriving while one runs is rejected);
- feedback: phase (training, evaluating, exporting, validating, publishing), steps, steps/s, mean reward, the
  policy's latest evaluation and the PID baseline's on the same moves;
- cancel stops training cleanly with a checkpoint; sending the same goal again resumes that run (its run
  directory is named after the objective, algorithm, profile, load and seed);
- after training: export + acceptance checks, the quantised policy evaluated in the twin, signature, registry,
  and an ``mm_msgs/PolicyBlob`` on ``policy`` (reliable, transient local: a late driver still gets the last one).

Parameters (defaults in ``config/learner.yaml``, installed to the package share): see ``_PARAMETERS``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor  # type: ignore[import-untyped]
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mm_learning.errors import LearningError
from mm_learning.trainer import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    Progress,
    TrainConfig,
    Trainer,
    TwinSpec,
    evaluate_moves,
    export_trained,
    parse_objective,
)
from mm_msgs.action import Train
from mm_msgs.msg import MetricValue, PolicyBlob

_PARAMETERS: dict[str, tuple[Any, str]] = {
    "profile": ("mm_v3", "mm_sim servo profile used when a goal leaves `profile` empty"),
    "load": ("pendulum", "mm_sim load used when a goal leaves `load` empty"),
    "episode_s": (1.0, "length of one training/evaluation step move (s)"),
    "runs_dir": ("~/.ros/mm_learning/runs", "run directories (checkpoints, TensorBoard logs, exports)"),
    "registry_dir": ("~/.ros/mm_learning/policies", "registry of accepted policies"),
    "signing_key": ("~/.ros/mm_learning/keys/policy_signing_key.pem", "ECDSA P-256 private key (`mm keygen`)"),
    "eval_every_steps": (20000, "evaluate the policy against the PID every this many env steps"),
    "eval_moves": (10, "seeded step moves per evaluation"),
    "checkpoint_every_steps": (20000, "checkpoint every this many env steps"),
    "export_moves": (10, "seeded moves for the export's calibration, held-out and closed-loop checks"),
    "hyperparameters_json": ("{}", "JSON object overriding the algorithm preset's hyperparameters"),
}
_MODES = ("", "sim")
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


def _metric_dict(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics without NaNs (e.g. the settling time when no move settled), for JSON and the registry."""
    return {name: value for name, value in metrics.items() if math.isfinite(value)}


class LearnerNode(Node):
    """Serves the ``train`` action and publishes accepted policies on ``policy``."""

    def __init__(self) -> None:
        super().__init__("learner")
        for name, (default, description) in _PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        self._busy = threading.Lock()
        self._policy_pub = self.create_publisher(PolicyBlob, "policy", POLICY_QOS)
        self._server = ActionServer(
            self,
            Train,
            "train",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _path(self, name: str) -> Path:
        return Path(str(self._param(name))).expanduser()

    # -- goals -----------------------------------------------------------------------------------------------

    def _twin(self, goal: Train.Goal) -> TwinSpec:
        return TwinSpec(
            profile=goal.profile or str(self._param("profile")),
            load=goal.load or str(self._param("load")),
            objective=goal.objective,
            episode_s=float(self._param("episode_s")),
        )

    def _goal_problem(self, goal: Train.Goal) -> str:
        """Why the goal cannot run, or "" if it can."""
        if goal.mode not in _MODES:
            return f"mode {goal.mode!r} is not available (only 'sim' for now; 'online' arrives with bringup)"
        if goal.algorithm and goal.algorithm not in ALGORITHMS:
            return f"unknown algorithm {goal.algorithm!r}; use one of {', '.join(ALGORITHMS)}"
        if not (math.isfinite(goal.max_time_s) and goal.max_time_s >= 0.0):
            return f"max_time_s={goal.max_time_s} must be a finite number >= 0"
        if goal.max_steps == 0 and goal.max_time_s == 0.0:
            return "zero budget: give max_steps > 0 or max_time_s > 0"
        from mm_sim.errors import MmSimError
        from mm_sim.profiles import load_profile

        from mm_learning.signing import load_private_key

        try:
            parse_objective(goal.objective)
            twin = self._twin(goal)
            load_profile(twin.profile).load(twin.load)
            load_private_key(self._path("signing_key"))
        except (LearningError, MmSimError) as exc:
            return str(exc)
        return ""

    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        problem = self._goal_problem(goal)
        if not problem and not self._busy.acquire(blocking=False):
            problem = "another training goal is running; cancel it or wait for its result"
        if problem:
            self.get_logger().warning(f"rejected train goal (objective {goal.objective!r}): {problem}")
            return GoalResponse.REJECT
        # The lock stays held until the accepted goal's execute callback finishes.
        self.get_logger().info(f"accepted train goal: objective {goal.objective!r}, algorithm {goal.algorithm!r}")
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        self.get_logger().info("cancel requested: stopping at the next env step with a checkpoint")
        return CancelResponse.ACCEPT

    # -- running ---------------------------------------------------------------------------------------------

    def _run_dir(self, goal: Train.Goal, twin: TwinSpec, algorithm: str) -> Path:
        key = f"{twin.objective}|{algorithm}|{twin.profile}|{twin.load}|{goal.seed}"
        readable = re.sub(r"[^A-Za-z0-9]+", "-", f"{twin.objective}-{algorithm}").strip("-")
        return self._path("runs_dir") / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def _execute(self, goal_handle: ServerGoalHandle) -> Train.Result:
        try:
            return self._train(goal_handle)
        except LearningError as exc:
            self.get_logger().error(f"train goal failed: {exc}")
            goal_handle.abort()
            return Train.Result(success=False, message=str(exc))
        finally:
            self._busy.release()

    def _feedback(self, goal_handle: ServerGoalHandle, phase: str, progress: Progress | None = None) -> None:
        feedback = Train.Feedback(phase=phase)
        if progress is not None:
            feedback.steps = progress.steps
            feedback.steps_per_s = float(progress.steps_per_s)
            feedback.mean_reward = float(progress.mean_reward)
            feedback.eval_metrics = metric_values(dict(progress.eval_metrics))
            feedback.baseline_metrics = metric_values(dict(progress.baseline_metrics))
        goal_handle.publish_feedback(feedback)

    def _train(self, goal_handle: ServerGoalHandle) -> Train.Result:
        goal: Train.Goal = goal_handle.request
        algorithm = goal.algorithm or DEFAULT_ALGORITHM
        twin = self._twin(goal)
        out_dir = self._run_dir(goal, twin, algorithm)
        config = TrainConfig(
            out_dir=out_dir,
            twin=twin,
            algorithm=algorithm,
            max_steps=int(goal.max_steps),
            max_time_s=float(goal.max_time_s),
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

        result = Trainer(config, on_progress=on_progress, should_cancel=lambda: goal_handle.is_cancel_requested).run()
        common = {
            "steps": result.steps,
            "checkpoint_path": str(result.checkpoint_dir),
            "baseline_metrics": metric_values(dict(result.baseline_metrics)),
        }
        if result.stop_reason == "cancelled":
            goal_handle.canceled()
            message = (
                f"cancelled after {result.steps} steps; checkpoint {result.checkpoint_dir} "
                "(send the same goal again to resume)"
            )
            self.get_logger().info(message)
            return Train.Result(success=False, message=message, **common)

        self._feedback(goal_handle, "exporting", last[0] if last else None)
        from mm_learning.signing import load_private_key

        # Export the best evaluated model: RL can make the policy worse than an earlier evaluation of it.
        best = ALGORITHMS[algorithm].load(result.best_model_path, device="cpu")
        try:
            export = export_trained(
                best,
                twin,
                private_key=load_private_key(self._path("signing_key")),
                out_dir=out_dir / "export",
                moves=int(self._param("export_moves")),
                metrics=_metric_dict(dict(result.best_metrics)),
            )
        except LearningError as exc:
            # The training is kept: a retry with another budget resumes from the checkpoint.
            message = f"trained {result.steps} steps, but the export was refused: {exc}"
            self.get_logger().error(message)
            goal_handle.abort()
            return Train.Result(success=False, message=message, **common)
        self._feedback(goal_handle, "validating", last[0] if last else None)
        quantized_metrics = self._evaluate_quantized(export.paths["tflite"].read_bytes(), twin, config.eval_moves)

        self._feedback(goal_handle, "publishing", last[0] if last else None)
        from mm_learning.registry import Registry

        metadata = dict(export.metadata) | {"quantized_metrics": _metric_dict(quantized_metrics)}
        entry = Registry(self._path("registry_dir")).add(export.image, metadata)
        blob = PolicyBlob(
            policy_id=entry.policy_id,
            policy_crc32=entry.policy_crc32,
            image=list(export.image),
            objective=twin.objective,
            algorithm=algorithm,
            training_steps=result.best_steps,
            metrics=metric_values(quantized_metrics),
            metadata_json=json.dumps(metadata),
        )
        blob.header.stamp = self.get_clock().now().to_msg()
        self._policy_pub.publish(blob)
        goal_handle.succeed()
        verdict = "beats" if result.target_beaten else "does not beat"
        note = "; deploy: the driver takes it from `policy`" if goal.deploy else ""
        message = (
            f"{algorithm} policy {entry.policy_id[:12]} (best of {result.steps} steps: step {result.best_steps}) "
            f"{verdict} the PID on {twin.objective}; published on `policy`{note}"
        )
        self.get_logger().info(message)
        return Train.Result(
            success=True,
            message=message,
            policy_id=entry.policy_id,
            policy_crc32=entry.policy_crc32,
            metrics=metric_values(quantized_metrics),
            image_path=str(export.paths["mmpl"]),
            **common,
        )

    @staticmethod
    def _evaluate_quantized(model: bytes, twin: TwinSpec, moves: int) -> dict[str, float]:
        """The quantised policy, run by TFLite Micro, in the twin on the evaluation moves."""
        from mm_sim.evaluate import PolicyController

        from mm_learning.tflm import TflmPolicy

        env = twin.make_env(randomize=False)
        try:
            return evaluate_moves(env, PolicyController(TflmPolicy(model)), twin.moves(moves))
        finally:
            env.close()


def main(args: list[str] | None = None) -> None:
    """Run the learner node (``ros2 run mm_learning learner --ros-args --params-file config/learner.yaml``)."""
    rclpy.init(args=args)  # Jazzy's rclpy.init() is not a context manager
    try:
        node = LearnerNode()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
