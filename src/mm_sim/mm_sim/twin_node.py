"""`virtual_servo`: the ROS 2 node that puts a `VirtualServo` behind the servo's own topics.

Same topics, types, QoS and rates as the micro-ROS firmware (firmware/esp32/main/uros_task.c), with relative
names so each servo lives in its own namespace (`--ros-args -r __ns:=/servo1`):

| topic | type | QoS (as rclc) | direction |
|---|---|---|---|
| `state` | ServoState | best effort (sensor data) | every `state_decimation` ticks |
| `transitions` | TransitionBatch | reliable | every complete batch of 24 samples while streaming |
| `policy_ack` | PolicyAck | reliable | after the last chunk of a transfer, a refusal, or an abandoned transfer |
| `command` | ServoCommand | reliable | subscribed |
| `heartbeat` | Heartbeat | best effort (sensor data) | subscribed |
| `policy_chunk` | PolicyChunk | reliable | subscribed |

`time_mode` "realtime" paces the control loop by the wall clock; "fast" runs as fast as it can (or at most
`fast_max_factor` times real time) and publishes the simulated time on `/clock` (nodes with `use_sim_time`
follow it); "follow" steps up to the latest `/clock` another node publishes, so several servos, each in its own
process and namespace, share one simulated time (one leader in "fast" mode, the others following; a follower
slower than the leader lags behind, so cap the leader with `fast_max_factor` when needed). In "fast" mode the
servo's time runs ahead of its host only as far as the host keeps up: once heartbeats have started, the loop does
not step past half the watchdog timeout (servo time) after the last heartbeat; it waits for the next one, at most
`heartbeat_timeout_s` of wall time, so a host that is merely slower than the twin (a driver on a loaded machine, 6x
behind) keeps its servo, and a host that is gone still trips HEARTBEAT_LOST. With `can_interface`
set (e.g. "virtual"), the servo also answers the DBC protocol on that python-can bus. Parameters: the fields of
`VirtualServoConfig` and `TwinParameters` (config/virtual_servo.yaml is generated from them).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import can
import rclpy
from builtin_interfaces.msg import Time
from mm_ros.parameters import ParameterFile, Section, declare, parameter, read, refusal
from mm_ros.process import rclpy_process, spin_until
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock

from mm_msgs.msg import Heartbeat, PolicyAck, PolicyChunk, ServoCommand, ServoState, TransitionBatch
from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig, VirtualServoError

TIME_MODES = ("realtime", "fast", "follow")
# rclc's "default" QoS: reliable, volatile, keep last 10.
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Reliable keep-last-1 serves both reliable and best-effort /clock subscribers (rclpy's time source is the latter).
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
# Real-time mode gives up catching up after this much lag (s) instead of running a burst.
_MAX_LAG_S = 0.1
# Fast mode: a host whose heartbeats stop for this long on the wall clock (s) is gone, not paused. A live Python
# driver on a loaded 2-core machine pauses for a few hundred milliseconds (a 0.2 s grace tripped a CI run).
_HOST_GRACE_S = 2.0


@dataclass(frozen=True)
class TwinParameters:
    """The node's own parameters: how the twin is paced and whether it sits on a CAN bus.

    The servo's are `VirtualServoConfig`'s; both declare the node's parameters and config/virtual_servo.yaml is
    generated from them (`python -m mm_ros.parameters mm_sim.twin_node:PARAMETER_FILE`).
    """

    time_mode: str = parameter(
        "realtime",
        "realtime (wall clock) | fast (simulated time on /clock) | follow (another's /clock)",
        choices=TIME_MODES,
    )
    publish_clock: bool = parameter(True, "fast mode: publish /clock (only one node of a simulation should)")
    fast_max_factor: float = parameter(0.0, "fast mode: at most this many times real time (0: as fast as possible)")
    can_interface: str = parameter("", "python-can interface (virtual, socketcan, slcan...); empty: no CAN side")
    can_channel: str = parameter("vcan0", "python-can channel")
    can_device_id: int = parameter(1, "the servo's CAN device id, 1..1022 (firmware/core/can/mm_servo.dbc)")
    can_bitrate: int = parameter(500000, "CAN bit rate (bit/s)")


PARAMETER_FILE = ParameterFile(
    source="mm_sim.twin_node:PARAMETER_FILE",
    node="/**",
    header=(
        "Parameters of the virtual servo node (`ros2 run mm_sim virtual_servo`). Run one node per servo, each in its\n"
        "own namespace: `ros2 run mm_sim virtual_servo --ros-args -r __ns:=/servo1 --params-file virtual_servo.yaml`."
    ),
    sections=(Section(VirtualServoConfig), Section(TwinParameters)),
)


def _time_msg(seconds: float) -> Time:
    nanoseconds = round(seconds * 1e9)
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def state_message(state: Any, seq: int, stamp: Time) -> ServoState:
    """A ServoState from the core's state, filled field by field as uros_task.c does."""
    return ServoState(
        stamp=stamp,
        seq=seq,
        tick=state.tick,
        mode=state.mode,
        fault_flags=state.fault_flags,
        position_rad=state.position_rad,
        velocity_rad_s=state.velocity_rad_s,
        current_a=state.current_a,
        current_cmd_a=state.current_cmd_a,
        effort_nm=state.effort_nm,
        bus_voltage_v=state.bus_voltage_v,
        power_w=state.power_w,
        temperature_c=state.temperature_c,
        target_rad=state.target_rad,
        policy_crc32=state.policy_crc32,
        dropped_samples=state.dropped_samples,
    )


def batch_message(batch: Any, stamp: Time) -> TransitionBatch:
    """A TransitionBatch from the core's batch columns (count samples)."""
    n = int(batch.count)
    return TransitionBatch(
        stamp=stamp,
        first_tick=batch.first_tick,
        dt_s=batch.dt_s,
        policy_crc32=batch.policy_crc32,
        dropped_samples=batch.dropped_samples,
        count=n,
        observations=list(batch.observations[: n * TransitionBatch.OBS_DIM]),
        actions=list(batch.actions[:n]),
        position_rad=list(batch.position_rad[:n]),
        velocity_rad_s=list(batch.velocity_rad_s[:n]),
        current_a=list(batch.current_a[:n]),
        target_rad=list(batch.target_rad[:n]),
        power_w=list(batch.power_w[:n]),
        flags=bytes(batch.flags[:n]),
    )


def ack_message(ack: Any) -> PolicyAck:
    """A PolicyAck from the core's ack."""
    return PolicyAck(
        transfer_id=ack.transfer_id,
        status=ack.status,
        reason=ack.reason,
        received_chunks=ack.received_chunks,
        total_chunks=ack.total_chunks,
        missing=list(ack.missing[: ack.missing_count]),
        active_policy_crc32=ack.active_policy_crc32,
    )


class VirtualServoNode(Node):
    """The twin behind the servo's topics; `run()` drives the control loop in the calling thread."""

    def __init__(self, **kwargs: Any) -> None:
        """Declare the parameters, build the servo (and its CAN port) and the publishers/subscriptions."""
        super().__init__("virtual_servo", **kwargs)
        declare(self, VirtualServoConfig)
        declare(self, TwinParameters)
        params: TwinParameters = read(self, TwinParameters)
        problem = refusal(TwinParameters, {"time_mode": params.time_mode}, configured=False)
        if problem:
            raise VirtualServoError(problem)
        self.time_mode = params.time_mode
        self.publish_clock = self.time_mode == "fast" and params.publish_clock
        self._max_factor = params.fast_max_factor
        if not self._max_factor >= 0.0:
            msg = f"fast_max_factor must be >= 0 (0: as fast as possible), got {self._max_factor}"
            raise VirtualServoError(msg)
        config: VirtualServoConfig = read(self, VirtualServoConfig)
        self.servo = VirtualServo(config)
        self.lock = threading.Lock()  # the core is not re-entrant: callbacks and the control loop share it
        self._bus: Any = None
        if params.can_interface:
            self._bus = can.Bus(interface=params.can_interface, channel=params.can_channel, bitrate=params.can_bitrate)
            self.servo.attach_can(self._bus, params.can_device_id)
        self._state_pub = self.create_publisher(ServoState, "state", qos_profile_sensor_data)
        self._batch_pub = self.create_publisher(TransitionBatch, "transitions", RELIABLE_QOS)
        self._ack_pub = self.create_publisher(PolicyAck, "policy_ack", RELIABLE_QOS)
        self._clock_pub = self.create_publisher(Clock, "/clock", CLOCK_QOS) if self.publish_clock else None
        self.create_subscription(ServoCommand, "command", self._on_command, RELIABLE_QOS)
        self.create_subscription(Heartbeat, "heartbeat", self._on_heartbeat, qos_profile_sensor_data)
        self.create_subscription(PolicyChunk, "policy_chunk", self._on_chunk, RELIABLE_QOS)
        self._seq = 0
        self._stop = threading.Event()
        # Host pacing in fast mode (servo time, s): the last heartbeat's arrival, None before the first one.
        self._heartbeat_cond = threading.Condition()
        self._last_heartbeat_s: float | None = None
        self._host_silent = False  # waited the wall-clock timeout once: run on until a heartbeat comes
        self._leader_time_s = 0.0
        self._leader_ticked = threading.Event()
        if self.time_mode == "follow":
            leader_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(Clock, "/clock", self._on_leader_clock, leader_qos)
        self.get_logger().info(
            f"virtual servo {config.profile}/{config.load} at {self.servo.profile.control.rate_hz} Hz, "
            f"{self.time_mode} mode, state every {config.state_decimation} ticks"
            + (f", CAN {params.can_interface}:{params.can_channel}" if self._bus else "")
        )

    def _on_command(self, msg: ServoCommand) -> None:
        with self.lock:
            status = self.servo.command(
                msg.mode,
                msg.target,
                seq=msg.seq,
                target_velocity_rad_s=msg.target_velocity_rad_s,
                max_velocity_rad_s=msg.max_velocity_rad_s,
                current_limit_a=msg.current_limit_a,
                kp_pos=msg.kp_pos,
                kp_vel=msg.kp_vel,
                ki_vel=msg.ki_vel,
                gravity_ff_a=msg.gravity_ff_a,
                clear_faults=msg.clear_faults,
                stream_transitions=msg.stream_transitions,
                exploration_std=msg.exploration_std,
                exploration_tau_s=msg.exploration_tau_s,
            )
        if status != 0:
            self.get_logger().warning(f"command {msg.seq} refused: status {status}")

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        with self.lock:
            self.servo.heartbeat(msg.seq)
            now_s = self.servo.time_s
        with self._heartbeat_cond:
            self._last_heartbeat_s = now_s
            self._host_silent = False
            self._heartbeat_cond.notify_all()

    def wait_for_host(self, period_s: float) -> None:
        """Fast mode: before stepping `period_s` (s), wait until the host's heartbeats keep up with servo time.

        The servo runs several times real time while its host (a Python driver, /clock, DDS) runs in real time; a
        pause of a few wall milliseconds on the host is a multiple of that in servo time. Stepping on regardless
        latched HEARTBEAT_LOST after the first move. The servo's watchdog still counts in servo time; this only
        keeps the twin from outrunning a host that is alive, judged on the wall clock: a host silent for
        `_HOST_GRACE_S` of wall time (or the watchdog's timeout, if longer) is gone, and the twin runs on so that its
        watchdog trips in servo time as the firmware's would.
        """
        timeout_s = self.servo.config.heartbeat_timeout_s
        if timeout_s <= 0.0:
            return
        with self._heartbeat_cond:
            self._heartbeat_cond.wait_for(
                lambda: (
                    self._host_silent
                    or self._last_heartbeat_s is None
                    or self.servo.time_s + period_s - self._last_heartbeat_s < 0.5 * timeout_s
                    or self._stop.is_set()
                ),
                timeout=max(timeout_s, _HOST_GRACE_S),
            )
            if self._last_heartbeat_s is not None and (
                self.servo.time_s + period_s - self._last_heartbeat_s >= 0.5 * timeout_s
            ):
                self._host_silent = True  # gone on the wall clock too: let the watchdog trip in servo time

    def _on_chunk(self, msg: PolicyChunk) -> None:
        with self.lock:
            due = self.servo.policy_chunk(
                transfer_id=msg.transfer_id,
                total_size=msg.total_size,
                image_crc32=msg.image_crc32,
                index=msg.index,
                chunk_size=msg.chunk_size,
                data=bytes(msg.data),
            )
            # A chunk of another transfer abandons the one in progress: its TRUNCATED ack goes out first.
            acks = [self.servo.truncated_ack(), self.servo.policy_ack() if due else None]
        self._publish_acks(acks)

    def _publish_acks(self, acks: list[Any]) -> None:
        for ack in acks:
            if ack is not None:
                self._ack_pub.publish(ack_message(ack))

    def _on_leader_clock(self, msg: Clock) -> None:
        self._leader_time_s = msg.clock.sec + 1e-9 * msg.clock.nanosec
        self._leader_ticked.set()

    def _stamp(self, sim_time_s: float) -> Time:
        # Fast/follow: simulated time. Real time: the wall clock (the firmware's agent-synchronised time).
        return self.get_clock().now().to_msg() if self.time_mode == "realtime" else _time_msg(sim_time_s)

    def run_period(self) -> None:
        """One state period: step the control ticks, then publish state, complete batches and the clock."""
        with self.lock:
            self.servo.step(self.servo.config.state_decimation)
            state = self.servo.state()
            batches = self.servo.full_batches()
            sim_time_s = self.servo.time_s
            truncated = self.servo.truncated_ack()  # a transfer silent for the core's transfer timeout
        self._publish_acks([truncated])
        stamp = self._stamp(sim_time_s)
        self._state_pub.publish(state_message(state, self._seq, stamp))
        self._seq += 1
        for batch in batches:
            self._batch_pub.publish(batch_message(batch, stamp))
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=stamp))

    def run(self) -> None:
        """Run the control loop until `stop()` or shutdown, paced as `time_mode` says."""
        period_s = self.servo.config.state_decimation * self.servo.dt_s
        if self.time_mode == "realtime":
            wall_period_s = period_s
        elif self.time_mode == "fast" and self._max_factor > 0.0:
            wall_period_s = period_s / self._max_factor
        else:
            wall_period_s = 0.0
        deadline = time.monotonic()
        while not self._stop.is_set() and rclpy.ok(context=self.context):
            if self.time_mode == "follow":
                self._leader_ticked.clear()  # before the check, so a clock arriving after it ends the wait
                if self.servo.time_s + period_s > self._leader_time_s + 1e-9:
                    self._leader_ticked.wait(timeout=0.1)
                    continue
            elif self.time_mode == "fast":
                self.wait_for_host(period_s)
            try:
                self.run_period()
            except RCLError:
                # Ctrl-C shuts the context down from the signal handler, possibly between the check above and a
                # publish: that publish fails and the loop ends as a shutdown, not as an error.
                if rclpy.ok(context=self.context):
                    raise
                return
            if wall_period_s == 0.0:
                continue
            deadline += wall_period_s
            lag_s = time.monotonic() - deadline
            if lag_s > _MAX_LAG_S:
                deadline = time.monotonic()  # fell behind (a loaded machine): resume from now, no burst
            elif lag_s < 0.0:
                time.sleep(-lag_s)

    def stop(self) -> None:
        """Make `run()` return after the current period."""
        self._stop.set()
        with self._heartbeat_cond:
            self._heartbeat_cond.notify_all()

    def destroy_node(self) -> None:
        """Release the CAN bus with the node."""
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Entry point of `ros2 run mm_sim virtual_servo`: callbacks in a background executor, the loop here."""
    with rclpy_process(args):
        node: VirtualServoNode | None = None
        executor = SingleThreadedExecutor()
        spinner: threading.Thread | None = None
        stop = threading.Event()
        try:
            node = VirtualServoNode()
            executor.add_node(node)
            spinner = threading.Thread(
                target=spin_until, args=(executor, stop), name="virtual_servo_callbacks", daemon=True
            )
            spinner.start()
            node.run()
        finally:
            # The callback thread calls into the firmware core: it must have stopped before the node and the core
            # go (destroying them under a running callback ended the process with SIGSEGV on Ctrl-C).
            stop.set()
            if spinner is not None:
                spinner.join(timeout=5.0)
            executor.shutdown(timeout_sec=5.0)
            if node is not None:
                node.destroy_node()


if __name__ == "__main__":
    main()
