"""MoveTo without ROS: goal validation, settle detection, and the result metrics from mm_contract.metrics.

A move is judged on the servo's own state samples, stamped with the servo's clock (sim time for the twin), so
the result does not depend on how busy the host is. It has settled when |error| < tolerance and
|velocity| < settle_velocity for `settle_window_s` in a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mm_contract.constants import BLOCKING_FAULTS
from mm_contract.metrics import Response, step_metrics

from mm_driver.errors import DriverError, GoalRejected
from mm_driver.transport import Command, Mode, ServoSample, fault_names

CONTROLLERS = {"pid": Mode.POSITION, "policy": Mode.POLICY}
"""MoveTo controller name → the servo mode that runs it (mm_bringup's demo reads its samples by it too)."""


@dataclass(frozen=True)
class MoveLimits:
    """What the driver allows and assumes for moves (parameters of the node).

    Attributes:
        position_min_rad, position_max_rad: reachable targets (rad), inside the servo's end stops.
        max_velocity_rad_s: largest velocity limit a goal may ask for (rad/s).
        max_timeout_s: longest timeout a goal may ask for (s).
        default_tolerance_rad: settle band when the goal gives 0 (rad).
        default_timeout_s: timeout when the goal gives 0 (s).
        default_controller: "pid" or "policy", when the goal leaves it empty.
        settle_window_s: how long the shaft must stay in the band, slow, to count as settled (s).
        settle_velocity_rad_s: largest |velocity| that counts as at rest (rad/s).
    """

    position_min_rad: float
    position_max_rad: float
    max_velocity_rad_s: float
    max_timeout_s: float
    default_tolerance_rad: float
    default_timeout_s: float
    default_controller: str
    settle_window_s: float
    settle_velocity_rad_s: float


@dataclass(frozen=True)
class MoveRequest:
    """A validated move: every default filled in."""

    target_rad: float
    tolerance_rad: float
    timeout_s: float
    max_velocity_rad_s: float
    controller: str

    @property
    def mode(self) -> Mode:
        """The servo mode that runs this move."""
        return CONTROLLERS[self.controller]


def validate_goal(
    *,
    target_rad: float,
    tolerance_rad: float,
    timeout_s: float,
    max_velocity_rad_s: float,
    controller: str,
    limits: MoveLimits,
) -> MoveRequest:
    """Check a MoveTo goal and fill in the defaults.

    Raises:
        GoalRejected: saying which field is wrong and what range it must be in.
    """
    for name, value in (
        ("target_rad", target_rad),
        ("tolerance_rad", tolerance_rad),
        ("timeout_s", timeout_s),
        ("max_velocity_rad_s", max_velocity_rad_s),
    ):
        if not math.isfinite(value):
            raise GoalRejected(f"{name} is {value}; give a finite number")
    if not limits.position_min_rad <= target_rad <= limits.position_max_rad:
        msg = (
            f"target_rad {target_rad:.4g} is outside the limits [{limits.position_min_rad:.4g}, "
            f"{limits.position_max_rad:.4g}] rad"
        )
        raise GoalRejected(msg)
    if tolerance_rad < 0.0 or tolerance_rad > 0.5 * (limits.position_max_rad - limits.position_min_rad):
        raise GoalRejected(f"tolerance_rad {tolerance_rad:.4g} must be 0 (default) or a positive band within reach")
    if not 0.0 <= timeout_s <= limits.max_timeout_s:
        raise GoalRejected(f"timeout_s {timeout_s:.4g} must be in [0, {limits.max_timeout_s:.4g}] s (0: default)")
    if not 0.0 <= max_velocity_rad_s <= limits.max_velocity_rad_s:
        msg = f"max_velocity_rad_s {max_velocity_rad_s:.4g} must be in [0, {limits.max_velocity_rad_s:.4g}] (0: none)"
        raise GoalRejected(msg)
    chosen = controller or limits.default_controller
    if chosen not in CONTROLLERS:
        raise GoalRejected(f"controller {controller!r} is unknown; use one of {sorted(CONTROLLERS)} or leave it empty")
    return MoveRequest(
        target_rad=target_rad,
        tolerance_rad=tolerance_rad or limits.default_tolerance_rad,
        timeout_s=timeout_s or limits.default_timeout_s,
        max_velocity_rad_s=max_velocity_rad_s,
        controller=chosen,
    )


def validate_command(mode: int, fields: dict[str, float | bool], limits: MoveLimits, *, policy_crc32: int) -> Command:
    """Check a direct servo command (PID, torque, hold, policy, ... modes: ServoCommand fields) and build it.

    `policy_crc32` is the active policy the servo last reported (0: none, or no state yet): POLICY mode needs one.
    The exploration fields are checked in every mode, as the servo checks them, and act in POLICY mode only.

    Raises:
        DriverError: an unknown mode, a non-finite field, a position target outside the limits, POLICY mode
            without a policy on the servo, exploration_std outside [0, 1] or a negative exploration_tau_s.
    """
    if mode not in Mode._value2member_map_:
        raise DriverError(f"mode {mode} is unknown; use ServoCommand.MODE_* (0..5)")
    for name, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise DriverError(f"{name} is {value}; give a finite number")
    command = Command(mode=Mode(mode), **fields)  # type: ignore[arg-type]
    if not 0.0 <= command.exploration_std <= 1.0:
        raise DriverError(f"exploration_std {command.exploration_std:.4g} must be in [0, 1] (0: no exploration)")
    if command.exploration_tau_s < 0.0:
        raise DriverError(f"exploration_tau_s {command.exploration_tau_s:.4g} s must be >= 0 (0: white noise)")
    if command.mode == Mode.POLICY and policy_crc32 == 0:
        raise DriverError("MODE_POLICY but the servo has no policy: deploy one first (deploy_policy)")
    positional = command.mode in {Mode.POSITION, Mode.POLICY}
    if positional and not limits.position_min_rad <= command.target <= limits.position_max_rad:
        msg = (
            f"target {command.target:.4g} rad is outside the limits [{limits.position_min_rad:.4g}, "
            f"{limits.position_max_rad:.4g}] rad"
        )
        raise DriverError(msg)
    return command


@dataclass(frozen=True)
class MoveResult:
    """The MoveTo result fields (SI units as named)."""

    success: bool
    message: str
    final_error_rad: float
    elapsed_s: float
    settle_time_s: float
    overshoot_rad: float
    energy_j: float
    peak_current_a: float


class MoveSupervisor:
    """Follows one move from the state samples that arrive after it was commanded."""

    def __init__(self, request: MoveRequest, *, start: ServoSample, limits: MoveLimits) -> None:
        """Start judging `request`; `start` is the last sample before the command (its stamp is time zero)."""
        self.request = request
        self._limits = limits
        self._start = start
        self._samples: list[ServoSample] = [start]
        self._in_band_since: float | None = None
        self.first_motion_s: float | None = None

    @property
    def elapsed_s(self) -> float:
        """Servo time since the move was commanded (s)."""
        return self._samples[-1].stamp_s - self._start.stamp_s

    @property
    def error_rad(self) -> float:
        """Target minus the latest position (rad)."""
        return self.request.target_rad - self._samples[-1].position_rad

    @property
    def settled(self) -> bool:
        """The shaft has stayed in the band, at rest, for the settle window."""
        return self._in_band_since is not None and (
            self._samples[-1].stamp_s - self._in_band_since >= self._limits.settle_window_s
        )

    @property
    def timed_out(self) -> bool:
        """The move's timeout has passed in servo time."""
        return self.elapsed_s >= self.request.timeout_s

    def update(self, sample: ServoSample) -> None:
        """Add a sample (samples with an old stamp, e.g. reordered best-effort ones, are ignored)."""
        if sample.stamp_s <= self._samples[-1].stamp_s:
            return
        self._samples.append(sample)
        if self.first_motion_s is None and abs(sample.position_rad - self._start.position_rad) > 2e-3:
            self.first_motion_s = sample.stamp_s - self._start.stamp_s
        at_rest = abs(sample.velocity_rad_s) < self._limits.settle_velocity_rad_s
        if abs(self.request.target_rad - sample.position_rad) < self.request.tolerance_rad and at_rest:
            if self._in_band_since is None:
                self._in_band_since = sample.stamp_s
        else:
            self._in_band_since = None

    def result(self, *, success: bool, message: str) -> MoveResult:
        """The result with mm_contract's step metrics over the samples so far (resampled onto an even grid).

        `energy_j` integrates the electrical power the servo measured and reported (`ServoSample.power_w`, W)
        over the resampled grid: ∫max(P, 0) dt (J), as `mm_contract.metrics` defines it.
        """
        samples = list(self._samples)  # a snapshot: the transport's thread may still be appending
        t = np.array([s.stamp_s - self._start.stamp_s for s in samples])
        if len(samples) < 3 or t[-1] <= 0.0:
            return MoveResult(success, message, self.error_rad, self.elapsed_s, math.nan, 0.0, 0.0, 0.0)
        # Best-effort state samples can be lost: metrics assume even ticks, so interpolate onto the median period.
        dt_s = float(np.median(np.diff(t)))
        grid = np.arange(0.0, t[-1] + 0.5 * dt_s, dt_s)

        def column(values: list[float]) -> np.ndarray:
            return np.interp(grid, t, np.array(values, dtype=np.float64))

        response = Response(
            time_s=grid,
            position_rad=column([s.position_rad for s in samples]),
            target_rad=np.full_like(grid, self.request.target_rad),
            current_a=column([s.current_a for s in samples]),
            power_w=column([s.power_w for s in samples]),
            action=column([s.current_cmd_a for s in samples]),
        )
        metrics = step_metrics(response, start_rad=self._start.position_rad, tolerance_rad=self.request.tolerance_rad)
        return MoveResult(
            success=success,
            message=message,
            final_error_rad=self.error_rad,
            elapsed_s=self.elapsed_s,
            settle_time_s=math.nan if metrics.settling_time_s is None else metrics.settling_time_s,
            overshoot_rad=metrics.overshoot_rad,
            energy_j=metrics.energy_j,
            peak_current_a=metrics.peak_current_a,
        )


FEEDBACK_PERIOD_S = 0.05
"""Servo time between two MoveTo feedback messages (s)."""


@dataclass(frozen=True)
class MoveEnd:
    """How a move ended.

    Attributes:
        outcome: the action's terminal state: "succeed", "abort" or "canceled".
        result: the MoveTo result fields.
        hold: the driver must put the servo in HOLD (a cancel, a lost link).
    """

    outcome: str
    result: MoveResult
    hold: bool = False


class StallWatch:
    """The driver's own stalls, seen from its heartbeats: a host that was not running cannot call the servo silent.

    The driver sends a heartbeat at least every heartbeat period (its fallback thread sends one whenever the state
    stream has not for 0.9 of a period), so a gap of `stall_s` between two heartbeats (or since the last one) means
    the whole process stopped: a loaded machine, a long pause of the interpreter. A fast twin waits for its host's
    heartbeats, so after such a stall its next state is still on the way when the driver resumes; a real servo's
    queued states are. Either way the silence was the driver's, not the link's.

    Thread-safe as far as its users need: `beat` runs under the driver's heartbeat lock, the readers only compare
    floats (a torn read is impossible in CPython).
    """

    def __init__(self, stall_s: float) -> None:
        """Count a heartbeat gap longer than `stall_s` (s, wall clock) as a stall of the driver."""
        self.stall_s = stall_s
        self._last_s: float | None = None
        self._stall_ended_s = -math.inf

    def beat(self, now_s: float) -> None:
        """A heartbeat went out at `now_s` (s, monotonic wall clock)."""
        if self._last_s is not None and now_s - self._last_s > self.stall_s:
            self._stall_ended_s = now_s
        self._last_s = now_s

    def stalled_since(self, since_s: float, now_s: float) -> bool:
        """Whether the driver stalled at some point between `since_s` and `now_s` (s, monotonic wall clock).

        A stall that has ended (a heartbeat came after the gap) or one still going on (no heartbeat for
        `stall_s` now: the heartbeat thread has not run yet since the process resumed).
        """
        still = self._last_s is not None and now_s - self._last_s > self.stall_s
        return still or self._stall_ended_s >= since_s


class MoveMonitor:
    """Decides when and how a commanded move ends, from what the driver saw after each wait for state.

    The link counts as lost only when the servo stayed silent for `state_timeout_s` while the driver was
    listening: a wait that overran its timeout by half, or one during which the driver's own heartbeats paused
    (`StallWatch`), means the driver itself was starved (a loaded or stalled host), and the samples queued or
    coming meanwhile are read before anything is judged.
    """

    def __init__(self, supervisor: MoveSupervisor, *, state_timeout_s: float, commanded_wall_s: float) -> None:
        """Judge `supervisor`'s move, commanded at `commanded_wall_s` (s, monotonic wall clock)."""
        self.supervisor = supervisor
        self.state_timeout_s = state_timeout_s
        self._commanded_wall_s = commanded_wall_s
        self._entered = False
        self._last_feedback_s = 0.0

    def _end(self, outcome: str, message: str, *, success: bool = False, hold: bool = False) -> MoveEnd:
        return MoveEnd(outcome, self.supervisor.result(success=success, message=message), hold)

    def judge(  # noqa: PLR0911 -- one return per way a move ends
        self,
        latest: ServoSample | None,
        *,
        fresh: bool,
        starved: bool,
        preempted: bool,
        cancel_requested: bool,
        now_wall_s: float,
    ) -> MoveEnd | None:
        """The end of the move after one wait for state, or None while it goes on.

        Args:
            latest: the latest sample (None: none since the link opened).
            fresh: a sample arrived during the wait.
            starved: the driver was not running for part of the wait (it overran its timeout by half, or the
                driver's heartbeats paused: `StallWatch`).
            preempted: a newer goal or command took over the servo.
            cancel_requested: the client asked to cancel.
            now_wall_s: the monotonic wall clock now (s).
        """
        sup = self.supervisor
        if preempted:
            return self._end("abort", "preempted by a newer goal")
        if cancel_requested:
            return self._end("canceled", "cancelled: holding position", hold=True)
        if not fresh and starved:
            return None
        if not fresh or latest is None:
            return self._end(
                "abort", f"no state from the servo for {self.state_timeout_s} s: link lost, HOLD sent", hold=True
            )
        if latest.fault_flags & BLOCKING_FAULTS:
            return self._end("abort", f"servo fault: {', '.join(fault_names(latest.fault_flags))}")
        # Judged on the mode actually entered, not on a grace time: with a fast twin 0.1 s of servo time can pass
        # before the command even arrives.
        if latest.mode == sup.request.mode:
            self._entered = True
        elif self._entered:
            return self._end("abort", f"servo left {sup.request.mode.name} for {Mode(latest.mode).name}")
        elif now_wall_s - self._commanded_wall_s > self.state_timeout_s and sup.elapsed_s > self.state_timeout_s:
            # Both clocks: the wall clock alone would count a stall of the driver against the servo, the servo's
            # alone a fast twin's simulated time that passed before the command arrived.
            mode = Mode(latest.mode).name
            msg = f"servo did not enter {sup.request.mode.name} within {self.state_timeout_s} s (it is in {mode})"
            return self._end("abort", msg)
        if sup.settled:
            return self._end("succeed", f"settled within {sup.request.tolerance_rad:.4g} rad", success=True)
        if sup.timed_out:
            return self._end("abort", f"timeout after {sup.request.timeout_s:.3g} s, error {sup.error_rad:.4g} rad")
        return None

    def feedback_due(self, stamp_s: float) -> bool:
        """Whether a feedback message is due for a sample stamped `stamp_s` (s, servo time); if so, it is sent."""
        if stamp_s - self._last_feedback_s < FEEDBACK_PERIOD_S:
            return False
        self._last_feedback_s = stamp_s
        return True


def position_range(low_rad: float, high_rad: float, end_stop_rad: float | None) -> tuple[float, float]:
    """The MoveTo target range: [low_rad, high_rad] (the parameters) clipped to the end stops (±end_stop_rad).

    Raises:
        DriverError: the range is empty, or empty inside the end stops; the message says which parameters to fix.
    """
    if not low_rad < high_rad:
        msg = f"position limits [{low_rad}, {high_rad}] rad are empty: position_min_rad must be below position_max_rad"
        raise DriverError(msg)
    if end_stop_rad is None:
        return low_rad, high_rad
    clipped = max(low_rad, -end_stop_rad), min(high_rad, end_stop_rad)
    if not clipped[0] < clipped[1]:
        msg = (
            f"position limits [{low_rad}, {high_rad}] rad leave no room inside the profile's end stops "
            f"(±{end_stop_rad} rad): fix position_min_rad/position_max_rad"
        )
        raise DriverError(msg)
    return clipped
