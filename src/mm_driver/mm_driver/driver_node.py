"""The driver node: a lifecycle node `driver` wrapping one servo (real or virtual) in its namespace.

- configure: opens the transport chosen by `transport` (`ros`: the servo's micro-ROS topics; `can`: python-can),
  publishes `robot_description` (URDF from mm_sim, transient local; not with `publish_description: false`, where a
  robot_state_publisher owns that topic), creates the `move_to` and
  `deploy_policy` action servers and subscribes `policy` (the learner's PolicyBlob, transient local);
  cleanup releases all of it.
- activate: heartbeat to the servo every `heartbeat_period_s`, `joint_states` on every state sample,
  `/diagnostics` every `diagnostics_period_s`; deactivate puts the servo in HOLD and stops them.
- `move_to` (mm_msgs/action/MoveTo): goals with NaN or out-of-limit targets, bad tolerances, timeouts or
  velocity limits, an unknown controller, or `policy` with no policy on the servo are rejected in the goal
  callback with the reason logged; a new goal preempts the running one; cancel puts the servo in HOLD; the
  result carries mm_sim's step metrics. `controller: pid` runs the servo's POSITION mode with the configured
  gains, so baselines go through the same path.
- `servo_command` (mm_msgs/ServoCommand, subscribed): direct commands (torque, hold, brake, idle, position
  with gains, policy with exploration noise, clear faults) checked and forwarded on either transport, so
  baselines and the online learner need no other path.
- `deploy_policy` (mm_msgs/action/DeployPolicy): the registry entry named by `policy_id`, or the latest blob
  on `policy`; chunks with progress feedback; the servo's verdict (and, on refusal, the policy it still runs).

Parameters: `DriverParameters` declares them; `config/driver.yaml` (installed to the package share) is generated
from it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from mm_contract.constants import Fault
from mm_contract.description import build_urdf, default_joint_name, rename_joint
from mm_contract.errors import ContractError
from mm_contract.profiles import load_profile
from mm_contract.registry import Registry
from mm_ros.diagnostics import ERROR, OK, Health, diagnostic_array
from mm_ros.entities import destroy_entity
from mm_ros.parameters import ParameterFile, Section, declare, parameter, refusal
from mm_ros.process import rclpy_process
from rcl_interfaces.msg import SetParametersResult  # type: ignore[import-untyped]
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from mm_driver.can_transport import CanTransport
from mm_driver.deploy import Deployer, DeployProgress
from mm_driver.errors import DriverError, GoalRejected
from mm_driver.ros_transport import RosTransport
from mm_driver.supervisor import (
    MoveEnd,
    MoveLimits,
    MoveMonitor,
    MoveRequest,
    MoveSupervisor,
    StallWatch,
    position_range,
    validate_command,
    validate_goal,
)
from mm_driver.transport import Ack, Command, Mode, ServoSample, Transport, fault_names
from mm_msgs.action import DeployPolicy, MoveTo
from mm_msgs.msg import PolicyBlob, PolicyChunk, ServoCommand

_POSITION_RANGE_RAD = 100.0  # float32 positions keep 1e-5 rad resolution up to here (~16 turns)


@dataclass(frozen=True)
class DriverParameters:
    """The driver's parameters: one field each, with its default, meaning, range and when a change takes effect.

    The declarations, descriptors and checks of the node and config/driver.yaml are derived from it
    (`mm_ros.parameters`); `python -m mm_ros.parameters mm_driver.driver_node:PARAMETER_FILE` writes the file.
    """

    autostart: bool = parameter(False, "configure and activate at start (no lifecycle manager needed)", applies="start")
    transport: str = parameter(
        "ros",
        "ros: the servo's micro-ROS topics (ESP32 via micro-ros-agent, or the twin); can",
        choices=("ros", "can"),
        applies="configure",
    )
    profile: str = parameter(
        "mm_v3", "mm_sim servo profile: URDF, power model for the energy metric", applies="configure"
    )
    load: str = parameter("pendulum", "mm_sim load of that profile (URDF)", applies="configure")
    joint_name: str = parameter(
        "",
        "joint name in joint_states and robot_description; empty: from the namespace (/servo1: servo1_joint)",
        applies="configure",
    )
    publish_description: bool = parameter(
        True,
        "publish robot_description (URDF); false where a robot_state_publisher publishes it (the bringup does)",
        applies="configure",
    )
    heartbeat_period_s: float = parameter(
        0.02,
        "heartbeat period (s, servo time); the servo holds/brakes when they stop (CAN watchdog 0.05 s)",
        low=0.005,
        high=1.0,
    )
    diagnostics_period_s: float = parameter(1.0, "/diagnostics publishing period (s)", low=0.05, high=60.0)
    state_timeout_s: float = parameter(0.5, "no state for this long (wall clock): link lost (s)", low=0.05, high=60.0)
    position_min_rad: float = parameter(
        -12.566,
        "lowest MoveTo target (rad); also clipped to the profile's end stops",
        low=-_POSITION_RANGE_RAD,
        high=_POSITION_RANGE_RAD,
    )
    position_max_rad: float = parameter(
        12.566,
        "highest MoveTo target (rad); also clipped to the profile's end stops",
        low=-_POSITION_RANGE_RAD,
        high=_POSITION_RANGE_RAD,
    )
    max_velocity_rad_s: float = parameter(
        160.0, "largest velocity limit a MoveTo goal may ask for (rad/s)", low=0.01, high=1000.0
    )
    max_timeout_s: float = parameter(60.0, "longest MoveTo timeout a goal may ask for (s)", low=0.01, high=3600.0)
    default_tolerance_rad: float = parameter(0.02, "MoveTo settle band when the goal gives 0 (rad)", low=1e-5, high=1.0)
    default_timeout_s: float = parameter(
        3.0, "MoveTo timeout when the goal gives 0 (s, servo time)", low=0.01, high=3600.0
    )
    default_controller: str = parameter(
        "pid", "pid | policy, when the goal leaves `controller` empty", choices=("pid", "policy")
    )
    settle_window_s: float = parameter(
        0.1, "in the band and at rest this long counts as settled (s)", low=0.0, high=10.0
    )
    settle_velocity_rad_s: float = parameter(0.5, "at rest below this |velocity| (rad/s)", low=1e-4, high=100.0)
    kp_pos: float = parameter(
        0.0, "PID kp_pos sent with pid moves (1/s); all four gains 0 keeps the servo's", low=0.0, high=1e4
    )
    kp_vel: float = parameter(0.0, "PID kp_vel (A*s/rad)", low=0.0, high=1e4)
    ki_vel: float = parameter(0.0, "PID ki_vel (A/rad)", low=0.0, high=1e4)
    gravity_ff_a: float = parameter(0.0, "PID gravity feed-forward (A)", low=0.0, high=100.0)
    current_limit_a: float = parameter(
        0.0, "current limit sent with every move (A); 0 keeps the servo's", low=0.0, high=100.0
    )
    chunk_size: int = parameter(
        448,
        "policy bytes per PolicyChunk (<= PolicyChunk.MAX_DATA)",
        low=16,
        high=PolicyChunk.MAX_DATA,
        applies="configure",
    )
    ack_timeout_s: float = parameter(
        0.5, "wait this long for the servo's ack before asking again (s)", low=0.01, high=60.0, applies="configure"
    )
    deploy_max_rounds: int = parameter(
        6, "rounds without progress before the driver stops sending a transfer", low=1, high=1000, applies="configure"
    )
    deploy_verdict_timeout_s: float = parameter(
        3.0,
        "then wait this long for the servo's TRUNCATED verdict (s); above its transfer_timeout_s (2 s by default)",
        low=0.0,
        high=600.0,
        applies="configure",
    )
    registry_dir: str = parameter(
        "~/.ros/mm_learning/policies", "mm_learning registry for DeployPolicy goals with a policy_id"
    )
    can_interface: str = parameter(
        "socketcan", "python-can interface (socketcan, slcan, virtual, ...)", applies="configure"
    )
    can_channel: str = parameter("can0", "python-can channel", applies="configure")
    can_bitrate: int = parameter(500000, "CAN bit rate (bit/s)", low=10000, high=1000000, applies="configure")
    can_device_id: int = parameter(1, "the servo's CAN device id, 1..1022", low=1, high=1022, applies="configure")
    can_chunk_size: int = parameter(
        1024,
        "policy bytes per ISO-TP message (the servo's buffer holds 1040 with the header)",
        low=8,
        high=1024,
        applies="configure",
    )


PARAMETER_FILE = ParameterFile(
    source="mm_driver.driver_node:PARAMETER_FILE",
    node="/**/driver",
    header=(
        "Parameters of the driver node, any namespace (/servo1/driver, /servo2/driver, ...); installed to the\n"
        "package share. `ros2 param describe` shows the same descriptions and ranges.\n"
        "python -m mm_driver.driver_node --ros-args -r __ns:=/servo1 --params-file <share>/mm_driver/config/driver.yaml"
    ),
    sections=(Section(DriverParameters),),
)
# Parameters MoveLimits is built from: a change rebuilds the limits at once.
_LIMIT_PARAMETERS = {
    "position_min_rad",
    "position_max_rad",
    "max_velocity_rad_s",
    "max_timeout_s",
    "default_tolerance_rad",
    "default_timeout_s",
    "default_controller",
    "settle_window_s",
    "settle_velocity_rad_s",
}


LATCHED_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
_HEARTBEAT_LOST = Fault.HEARTBEAT_LOST
_NO_BLOB = "no policy blob received on `policy` yet; give a registry policy_id"
# clear_faults is sent again this often (s, wall) until the servo shows the faults gone: the servo clears
# HEARTBEAT_LOST only once a heartbeat has arrived, and heartbeats and commands travel on different topics.
_CLEAR_RESEND_S = 0.1
# The driver counts itself stalled after this many heartbeat periods without one, and never less than this many
# seconds (wall clock): its fallback thread sends one every period, so such a gap is the whole process stopping.
_STALL_PERIODS = 5.0
_STALL_MIN_S = 0.1


class DriverNode(LifecycleNode):
    """Lifecycle node `driver`: one servo behind a transport, with move_to and deploy_policy."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("driver", **kwargs)
        declare(self, DriverParameters)
        self._configured = False
        self._end_stop_rad: float | None = None
        self._cond = threading.Condition()
        self._latest: ServoSample | None = None
        self._latest_wall_s = 0.0
        self._samples = 0
        self._supervisors: set[MoveSupervisor] = set()
        self._move_token = 0
        self._active = False
        self._transport: Transport | None = None
        self._deployer: Deployer | None = None
        self._blob: PolicyBlob | None = None
        self._deploy_lock = threading.Lock()
        self._resources: list[Any] = []
        self._timers: list[Any] = []
        self._heartbeat_seq = 0
        self._heartbeat_lock = threading.Lock()  # the receive thread and the executor's both send heartbeats
        self._heartbeat_wall_s = 0.0  # time.monotonic() of the last heartbeat
        self._heartbeat_servo_s: float | None = None  # the servo's stamp that triggered the last one (s)
        self._heartbeat_thread: tuple[threading.Thread, threading.Event] | None = None
        self._stalls = StallWatch(_STALL_MIN_S)  # the driver's own pauses, from its heartbeats (replaced on start)
        # Fault flags when the driver last deactivated (None: never, or no state then): activate clears a
        # HEARTBEAT_LOST that the stopped heartbeats caused, and nothing else.
        self._faults_at_deactivate: int | None = None
        self._last_ack: Ack | None = None
        self._sub_group = MutuallyExclusiveCallbackGroup()
        self._action_group = ReentrantCallbackGroup()
        # Registered after the declarations: values given at start are checked at configure, where a bad one
        # fails the transition with its reason.
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

    # -- parameters ------------------------------------------------------------------------------------------

    def _check_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Refuse a change that is invalid or cannot take effect now (ranges and read-only: the descriptors)."""
        new = {p.name: p.value for p in parameters}
        reason = refusal(DriverParameters, new, configured=self._configured)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        low = float(new.get("position_min_rad", self._p("position_min_rad")))
        high = float(new.get("position_max_rad", self._p("position_max_rad")))
        try:
            position_range(low, high, self._end_stop_rad)
        except DriverError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        """Make accepted run-time changes take effect: move limits at once, periods by restarting the timers."""
        names = {p.name for p in parameters}
        if self._configured and names & _LIMIT_PARAMETERS:
            self._limits = self._move_limits()
            self.get_logger().info(
                f"move limits now [{self._limits.position_min_rad:.4g}, {self._limits.position_max_rad:.4g}] rad"
            )
        if self._active and names & {"heartbeat_period_s", "diagnostics_period_s"}:
            self._start_timers()

    def _p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _log(self, ok: bool, message: str) -> None:
        # rclpy refuses one call site logging at two severities, so each severity has its own line.
        if ok:
            self.get_logger().info(message)
        else:
            self.get_logger().warning(message)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open the transport and create publishers and action servers."""
        try:
            self._configure()
        except (DriverError, ValueError, OSError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        try:
            profile = load_profile(str(self._p("profile")))
            urdf = build_urdf(profile, profile.load(str(self._p("load"))))
        except ContractError as exc:
            raise DriverError(f"profile/load parameters: {exc}") from exc
        self._joint = str(self._p("joint_name")) or default_joint_name(self.get_namespace())
        urdf = rename_joint(urdf, self._joint)
        self._end_stop_rad = profile.end_stop_rad
        self._limits = self._move_limits()
        self._transport = self._make_transport()
        self._deployer = Deployer(
            self._transport,
            chunk_size=int(self._p("chunk_size")),
            ack_timeout_s=float(self._p("ack_timeout_s")),
            max_rounds=int(self._p("deploy_max_rounds")),
            verdict_timeout_s=float(self._p("deploy_verdict_timeout_s")),
        )
        self._transport.open(self._on_state, self._on_ack)
        self._resources = []
        if self._p("publish_description"):
            description = self.create_publisher(String, "robot_description", LATCHED_QOS)
            description.publish(String(data=urdf))
            self._resources.append(description)
        self._joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._resources += [
            self._joint_pub,
            self._diag_pub,
            self.create_subscription(PolicyBlob, "policy", self._on_blob, LATCHED_QOS, callback_group=self._sub_group),
            self.create_subscription(
                ServoCommand, "servo_command", self._on_servo_command, 10, callback_group=self._sub_group
            ),
            ActionServer(
                self,
                MoveTo,
                "move_to",
                execute_callback=self._execute_move,
                goal_callback=self._on_move_goal,
                handle_accepted_callback=self._on_move_accepted,
                cancel_callback=lambda _: CancelResponse.ACCEPT,
                callback_group=self._action_group,
            ),
            ActionServer(
                self,
                DeployPolicy,
                "deploy_policy",
                execute_callback=self._execute_deploy,
                goal_callback=self._on_deploy_goal,
                cancel_callback=lambda _: CancelResponse.ACCEPT,
                callback_group=self._action_group,
            ),
            self.create_service(Trigger, "~/clear_faults", self._on_clear_faults, callback_group=self._action_group),
        ]
        self._configured = True
        self.get_logger().info(f"configured: transport {self._p('transport')}, joint {self._joint!r}")

    def _move_limits(self) -> MoveLimits:
        """MoveLimits from the parameters, the position range clipped to the profile's end stops."""
        low, high = position_range(
            float(self._p("position_min_rad")), float(self._p("position_max_rad")), self._end_stop_rad
        )
        return MoveLimits(
            position_min_rad=low,
            position_max_rad=high,
            max_velocity_rad_s=float(self._p("max_velocity_rad_s")),
            max_timeout_s=float(self._p("max_timeout_s")),
            default_tolerance_rad=float(self._p("default_tolerance_rad")),
            default_timeout_s=float(self._p("default_timeout_s")),
            default_controller=str(self._p("default_controller")),
            settle_window_s=float(self._p("settle_window_s")),
            settle_velocity_rad_s=float(self._p("settle_velocity_rad_s")),
        )

    def _make_transport(self) -> Transport:
        kind = str(self._p("transport"))
        if kind == "ros":
            return RosTransport(self, chunk_size=int(self._p("chunk_size")), callback_group=self._sub_group)
        if kind == "can":
            return CanTransport(
                interface=str(self._p("can_interface")),
                channel=str(self._p("can_channel")),
                device_id=int(self._p("can_device_id")),
                bitrate=int(self._p("can_bitrate")),
                chunk_size=int(self._p("can_chunk_size")),
            )
        raise DriverError(f"transport {kind!r} is unknown; use 'ros' or 'can'")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the heartbeat, joint_states and diagnostics."""
        self._heartbeat_servo_s = None
        self._active = True
        self._start_timers()
        self._heartbeat()
        self._clear_own_heartbeat_fault()
        return super().on_activate(state)

    def _clear_own_heartbeat_fault(self) -> None:
        """After a deactivation: clear HEARTBEAT_LOST if stopping the heartbeats caused it (and it is alone)."""
        before, self._faults_at_deactivate = self._faults_at_deactivate, None
        with self._cond:
            latest = self._latest
        if before is None or before & _HEARTBEAT_LOST or latest is None or not latest.fault_flags & _HEARTBEAT_LOST:
            return
        others = latest.fault_flags & ~_HEARTBEAT_LOST
        if others:
            self.get_logger().warning(
                f"servo faults {', '.join(fault_names(latest.fault_flags))} latched: not clearing them on activate; "
                f"check the servo, then call {self.get_fully_qualified_name()}/clear_faults"
            )
            return
        after = self._clear_faults_until(lambda flags: not flags & _HEARTBEAT_LOST, float(self._p("state_timeout_s")))
        if after is not None and not after.fault_flags & _HEARTBEAT_LOST:
            self.get_logger().info("cleared the HEARTBEAT_LOST fault of the deactivation; heartbeats resumed")
        else:
            self.get_logger().warning("HEARTBEAT_LOST did not clear on activate: call clear_faults")

    def _clear_faults_until(self, done: Any, timeout_s: float) -> ServoSample | None:
        """Send clear_faults (after a heartbeat) until a fresh sample's flags satisfy `done`; the latest sample.

        At most `timeout_s` (s, wall). The mode sent is HOLD, or IDLE/BRAKE when the servo is in one.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with self._cond:
                latest, seen = self._latest, self._samples
            passive = latest is not None and latest.mode in (Mode.IDLE, Mode.BRAKE)
            self._heartbeat()
            self._send(Command(Mode(latest.mode) if passive and latest is not None else Mode.HOLD, clear_faults=True))
            resend_at = min(deadline, time.monotonic() + _CLEAR_RESEND_S)
            with self._cond:
                cleared = self._cond.wait_for(
                    lambda seen=seen: (  # type: ignore[misc]
                        self._samples != seen and self._latest is not None and done(self._latest.fault_flags)
                    ),
                    max(0.0, resend_at - time.monotonic()),
                )
                latest = self._latest
            if cleared or time.monotonic() >= deadline:
                return latest

    def _on_clear_faults(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """`~/clear_faults`: ask the servo to clear its latched faults; say which cleared and which remain."""
        with self._cond:
            latest = self._latest
        if not self._active:
            response.success, response.message = False, "the driver is not active; configure and activate it"
        elif latest is None:
            response.success, response.message = False, "no state from the servo: is it running in this namespace?"
        elif not latest.fault_flags:
            response.success, response.message = True, "no faults latched"
        else:
            before = latest.fault_flags
            self._stop_moves()
            after = self._clear_faults_until(lambda flags: not flags, float(self._p("state_timeout_s")))
            remaining = before if after is None else after.fault_flags
            cleared = ", ".join(fault_names(before & ~remaining)) or "none"
            response.success = not remaining
            response.message = f"cleared: {cleared}" + (
                f"; still latched (their cause is present): {', '.join(fault_names(remaining))}" if remaining else ""
            )
        self._log(response.success, f"clear_faults: {response.message}")
        return response

    def _start_timers(self) -> None:
        self._stop_timers()
        self._stalls = StallWatch(max(_STALL_MIN_S, _STALL_PERIODS * float(self._p("heartbeat_period_s"))))
        stop = threading.Event()
        thread = threading.Thread(target=self._heartbeat_fallback, args=(stop,), name="driver_heartbeat", daemon=True)
        self._heartbeat_thread = (thread, stop)
        thread.start()
        self._timers = [self.create_timer(float(self._p("diagnostics_period_s")), self._diagnostics, self._sub_group)]

    def _stop_timers(self) -> None:
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers = []
        if self._heartbeat_thread is not None:
            thread, stop = self._heartbeat_thread
            stop.set()
            thread.join(timeout=2.0)
        self._heartbeat_thread = None

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Hold the servo where it is, then stop the heartbeat (its watchdog would brake later anyway)."""
        self._stop_moves()
        self._send(Command(Mode.HOLD))
        with self._cond:
            self._faults_at_deactivate = self._latest.fault_flags if self._latest is not None else None
        self._active = False
        self._stop_timers()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the transport, publishers and action servers."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Hold the servo if it was active, and release everything."""
        if self._active:
            self._send(Command(Mode.HOLD))
        self._active = False
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Release the transport and stop the heartbeat thread first: they publish through entities destroyed here.

        After Ctrl-C no lifecycle transition runs, so without this the heartbeat thread could publish through a
        destroyed publisher (InvalidHandle in that thread) while the process exits.
        """
        self._active = False
        self._release()
        super().destroy_node()

    def _release(self) -> None:
        self._configured = False
        self._stop_moves()
        self._stop_timers()
        for entity in self._resources:
            destroy_entity(self, entity)
        self._resources = []
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._deployer = None
        with self._cond:
            self._latest = None

    def _stop_moves(self) -> None:
        with self._cond:
            self._move_token += 1
            self._cond.notify_all()

    # -- servo link ------------------------------------------------------------------------------------------

    def _send(self, command: Command) -> None:
        if self._transport is not None:
            self._transport.send_command(command)

    def _heartbeat(self) -> None:
        with self._heartbeat_lock:
            if self._transport is not None:
                self._heartbeat_seq += 1
                self._heartbeat_wall_s = time.monotonic()
                self._stalls.beat(self._heartbeat_wall_s)
                self._transport.send_heartbeat(self._heartbeat_seq)

    def _heartbeat_on_sample(self, stamp_s: float) -> None:
        """A heartbeat every `heartbeat_period_s` of the servo's own time, read from its state stamps.

        The servo's watchdog counts in its own time: a fast twin runs several times real time, and a timer on
        the ROS clock (fed by /clock, late under load) or the wall clock would send too few per servo second.
        """
        period_s = float(self._p("heartbeat_period_s"))
        last = self._heartbeat_servo_s
        if last is None or stamp_s - last >= period_s or stamp_s < last:  # < : the servo restarted
            self._heartbeat_servo_s = stamp_s
            self._heartbeat()

    def _heartbeat_fallback(self, stop: threading.Event) -> None:
        """Steady-clock fallback: keeps heartbeats going while no state arrives (a servo starting, a lost link).

        A plain thread, not an executor timer: each wake-up of the driver's multi-threaded executor costs about a
        millisecond of CPU, and this one only sends when the state stream has not sent for a period.
        """
        while True:
            period_s = float(self._p("heartbeat_period_s"))
            if stop.wait(max(0.001, self._heartbeat_wall_s + period_s - time.monotonic())):
                return
            if time.monotonic() - self._heartbeat_wall_s >= 0.9 * period_s:
                self._heartbeat()

    def _on_state(self, sample: ServoSample) -> None:
        """Any thread (the transport's receive thread): a state sample from the servo."""
        if self._active:
            self._heartbeat_on_sample(sample.stamp_s)
        with self._cond:
            self._latest = sample
            self._latest_wall_s = time.monotonic()
            self._samples += 1
            for supervisor in self._supervisors:
                supervisor.update(sample)
            self._cond.notify_all()
        if self._active:
            msg = JointState(name=[self._joint])
            sec = math.floor(sample.stamp_s)
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(sec), int((sample.stamp_s - sec) * 1e9)
            msg.position, msg.velocity, msg.effort = [sample.position_rad], [sample.velocity_rad_s], [sample.effort_nm]
            self._joint_pub.publish(msg)

    def _on_ack(self, ack: Ack) -> None:
        self._last_ack = ack
        if self._deployer is not None:
            self._deployer.on_ack(ack)

    def _on_blob(self, blob: PolicyBlob) -> None:
        self._blob = blob
        self.get_logger().info(f"policy blob {blob.policy_id[:12]} ({len(blob.image)} B, {blob.objective!r}) ready")

    def _on_servo_command(self, msg: ServoCommand) -> None:
        """A direct command (PID, torque, hold, brake, idle, policy, clear faults): checked, then forwarded.

        It ends a running move (that move's result says it was preempted).
        """
        fields = {name: getattr(msg, name) for name in Command.__dataclass_fields__ if name != "mode"}
        try:
            if not self._active:
                raise DriverError("the driver is not active; configure and activate it")
            with self._cond:
                policy_crc32 = self._latest.policy_crc32 if self._latest is not None else 0
            command = validate_command(msg.mode, fields, self._limits, policy_crc32=policy_crc32)
        except DriverError as exc:
            self.get_logger().warning(f"ignored servo_command (mode {msg.mode}): {exc}")
            return
        self._stop_moves()
        self._send(command)

    def _diagnostics(self) -> None:
        with self._cond:
            sample, age_s, count = self._latest, time.monotonic() - self._latest_wall_s, self._samples
        if sample is None or age_s > float(self._p("state_timeout_s")):
            level, message = ERROR, "no state from the servo: check the link"
        elif sample.fault_flags:
            level, message = ERROR, f"faults latched: {', '.join(fault_names(sample.fault_flags))}"
        else:
            level, message = OK, f"mode {Mode(sample.mode).name}"
        values = {"state_samples": str(count), "state_age_s": f"{age_s:.3f}" if sample else "never"}
        if sample is not None:
            values |= {
                "mode": Mode(sample.mode).name,
                "faults": ",".join(fault_names(sample.fault_flags)) or "none",
                "policy_crc32": f"{sample.policy_crc32:08x}",
                "position_rad": f"{sample.position_rad:.4f}",
                "temperature_c": f"{sample.temperature_c:.1f}",
                "bus_voltage_v": f"{sample.bus_voltage_v:.2f}",
            }
        if self._last_ack is not None:
            values["last_policy_ack"] = (
                f"{self._last_ack.transfer_id}: {self._last_ack.status.name}/{self._last_ack.reason.name}"
            )
        stamp = self.get_clock().now().to_msg()
        hardware = f"{self.get_namespace()} ({self._p('transport')})"
        health = Health(level, message, values)
        self._diag_pub.publish(diagnostic_array(stamp, self.get_fully_qualified_name(), "servo", hardware, health))

    def _wait_sample(self, timeout_s: float) -> ServoSample | None:
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None, timeout_s)
            return self._latest

    # -- move_to ---------------------------------------------------------------------------------------------

    def _validate(self, goal: MoveTo.Goal) -> MoveRequest:
        if not self._active:
            raise GoalRejected("the driver is not active; configure and activate it")
        request = validate_goal(
            target_rad=goal.target_rad,
            tolerance_rad=goal.tolerance_rad,
            timeout_s=goal.timeout_s,
            max_velocity_rad_s=goal.max_velocity_rad_s,
            controller=goal.controller,
            limits=self._limits,
        )
        with self._cond:
            latest = self._latest
        if latest is None:
            raise GoalRejected("no state from the servo yet: is it running in this namespace?")
        if request.mode == Mode.POLICY and latest.policy_crc32 == 0:
            raise GoalRejected("controller 'policy' but the servo has no policy: deploy one first, or use 'pid'")
        return request

    def _on_move_goal(self, goal: MoveTo.Goal) -> GoalResponse:
        # Every goal is accepted: one the driver cannot run is aborted at once with the reason in the result's
        # `message`, which a client (`ros2 action send_goal` included) shows; a rejection would show no reason.
        # There is no "busy" case to reject: a new valid goal preempts the running one.
        return GoalResponse.ACCEPT

    def _on_move_accepted(self, goal_handle: ServerGoalHandle) -> None:
        # One goal at a time: the running move sees the token change and ends as preempted. An invalid goal
        # ends on its own and leaves the running move alone.
        try:
            self._validate(goal_handle.request)
        except GoalRejected:
            pass
        else:
            self._stop_moves()
        goal_handle.execute()

    def _move_command(self, request: MoveRequest) -> Command:
        gains: dict[str, Any] = {name: float(self._p(name)) for name in ("kp_pos", "kp_vel", "ki_vel", "gravity_ff_a")}
        return Command(
            mode=request.mode,
            target=request.target_rad,
            max_velocity_rad_s=request.max_velocity_rad_s,
            current_limit_a=float(self._p("current_limit_a")),
            **(gains if request.mode == Mode.POSITION else {}),
        )

    def _execute_move(self, goal_handle: ServerGoalHandle) -> MoveTo.Result:
        with self._cond:
            token = self._move_token
        # A goal that arrives right after activation may precede the servo's first state on this link: wait for it
        # as long as a state may be late before calling the link lost.
        start = self._wait_sample(float(self._p("state_timeout_s")))
        try:
            # Again at execution: the driver may have been deactivated since the goal was accepted.
            request = self._validate(goal_handle.request)
            if start is None:
                raise GoalRejected("no state from the servo: is it running in this namespace?")
        except GoalRejected as exc:
            self.get_logger().warning(f"aborted move_to goal (target {goal_handle.request.target_rad} rad): {exc}")
            goal_handle.abort()
            return MoveTo.Result(success=False, message=str(exc), final_error_rad=math.nan, settle_time_s=math.nan)
        supervisor = MoveSupervisor(request, start=start, limits=self._limits)
        with self._cond:
            self._supervisors.add(supervisor)
        try:
            if self._transport is None or not self._transport.wait_ready(float(self._p("state_timeout_s"))):
                result = supervisor.result(success=False, message="the servo does not listen to commands yet: retry")
                outcome = "abort"
            else:
                self._send(self._move_command(request))
                monitor = MoveMonitor(
                    supervisor, state_timeout_s=float(self._p("state_timeout_s")), commanded_wall_s=time.monotonic()
                )
                end = self._follow(goal_handle, monitor, token)
                result, outcome = end.result, end.outcome
        finally:
            with self._cond:
                self._supervisors.discard(supervisor)
        getattr(goal_handle, outcome)()
        self._log(result.success, f"move_to {request.target_rad:.3f} rad ({request.controller}): {result.message}")
        return MoveTo.Result(**vars(result))

    def _follow(self, goal_handle: ServerGoalHandle, monitor: MoveMonitor, token: int) -> MoveEnd:
        """Wait on state samples until the monitor ends the move; feedback on the way, HOLD where it says."""
        timeout_s = monitor.state_timeout_s
        while True:
            with self._cond:
                seen = self._samples
                waited_from_s = time.monotonic()
                self._cond.wait_for(
                    lambda seen=seen: self._samples != seen or self._move_token != token,  # type: ignore[misc]
                    timeout_s,
                )
                now_s = time.monotonic()
                latest, fresh, preempted = self._latest, self._samples != seen, self._move_token != token
            end = monitor.judge(
                latest,
                fresh=fresh,
                starved=now_s - waited_from_s > 1.5 * timeout_s or self._stalls.stalled_since(waited_from_s, now_s),
                preempted=preempted,
                cancel_requested=bool(goal_handle.is_cancel_requested),
                now_wall_s=now_s,
            )
            if end is not None:
                if end.hold:
                    self._send(Command(Mode.HOLD))
                return end
            if fresh and latest is not None and monitor.feedback_due(latest.stamp_s):
                sup = monitor.supervisor
                goal_handle.publish_feedback(
                    MoveTo.Feedback(position_rad=latest.position_rad, error_rad=sup.error_rad, elapsed_s=sup.elapsed_s)
                )

    # -- deploy_policy ---------------------------------------------------------------------------------------

    def _registry(self) -> Registry:
        return Registry(Path(str(self._p("registry_dir"))).expanduser())

    def _image_for(self, policy_id: str) -> bytes:
        """The image of a registry entry (read and checked against its hash), or of the latest blob on `policy`."""
        if not policy_id:
            if self._blob is None:
                raise DriverError(_NO_BLOB)
            return bytes(self._blob.image)
        try:
            return self._registry().show(policy_id).image()
        except ContractError as exc:
            raise DriverError(str(exc)) from exc

    def _deploy_problem(self, policy_id: str) -> str:
        """Why a deploy_policy goal cannot start, judged without reading an image (that is the execution's), or ""."""
        if not self._active:
            return "the driver is not active; configure and activate it"
        if not policy_id:
            return "" if self._blob is not None else _NO_BLOB
        try:
            self._registry().show(policy_id)
        except ContractError as exc:
            return str(exc)
        return ""

    def _on_deploy_goal(self, goal: DeployPolicy.Goal) -> GoalResponse:
        """Accept or reject at once: the image is read, checked and sent by the execute callback."""
        problem = self._deploy_problem(goal.policy_id)
        if not problem and not self._deploy_lock.acquire(blocking=False):
            problem = "another deployment is running; wait for its result"
        if problem:
            self.get_logger().warning(f"rejected deploy_policy goal {goal.policy_id!r}: {problem}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT  # the lock is held until the execute callback ends

    def _execute_deploy(self, goal_handle: ServerGoalHandle) -> DeployPolicy.Result:
        try:
            image = self._image_for(goal_handle.request.policy_id)
            latest = self._wait_sample(float(self._p("state_timeout_s")))
            previous = latest.policy_crc32 if latest is not None else 0
            if self._deployer is None:
                raise DriverError("the driver was cleaned up during the deployment")

            def progress(p: DeployProgress) -> None:
                goal_handle.publish_feedback(
                    DeployPolicy.Feedback(
                        phase=p.phase, chunks_acked=p.chunks_acked, total_chunks=p.total_chunks, bytes_sent=p.bytes_sent
                    )
                )

            outcome = self._deployer.deploy(
                image,
                previous_policy_crc32=previous,
                progress=progress,
                cancelled=lambda: bool(goal_handle.is_cancel_requested),
            )
        except DriverError as exc:
            goal_handle.abort()
            return DeployPolicy.Result(success=False, message=str(exc))
        finally:
            self._deploy_lock.release()
        if outcome.success:
            goal_handle.succeed()
        elif goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        self._log(outcome.success, f"deploy_policy: {outcome.message}")
        return DeployPolicy.Result(
            success=outcome.success,
            message=outcome.message,
            active_policy_crc32=outcome.active_policy_crc32,
            previous_policy_crc32=outcome.previous_policy_crc32,
            elapsed_s=outcome.elapsed_s,
            chunks_sent=outcome.chunks_sent,
            chunks_resent=outcome.chunks_resent,
        )


def main(args: list[str] | None = None) -> None:
    """Run the driver node (lifecycle: configure/activate through its services, or `autostart: true`)."""
    with rclpy_process(args):
        node = DriverNode()
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        try:
            if node.get_parameter("autostart").value and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            executor.spin()
        finally:
            node.destroy_node()


if __name__ == "__main__":
    main()
