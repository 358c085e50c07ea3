"""Joint trajectories for a group of servos, as joint_trajectory_controller runs them (ROS-free).

`Trajectory` checks a goal's waypoints against the group's joints and limits and samples the reference at any
time: quintic between waypoints that give positions, velocities and accelerations, cubic with positions and
velocities, linear with positions only, from the joints' state at the start when the first waypoint lies in the
future, and holding the last waypoint after the end. `Tracker` judges the execution the way
control_msgs/FollowJointTrajectory defines it: path tolerances while the trajectory runs, goal tolerances at its
end, within the goal time tolerance. The trajectory node (mm_driver.trajectory_node) wraps both.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import NDArray

from mm_driver.errors import DriverError

FloatArray = NDArray[np.float64]


class Outcome(Enum):
    """How a trajectory ended; the names are FollowJointTrajectory.Result's error codes."""

    SUCCESSFUL = "SUCCESSFUL"
    INVALID_GOAL = "INVALID_GOAL"
    INVALID_JOINTS = "INVALID_JOINTS"
    PATH_TOLERANCE_VIOLATED = "PATH_TOLERANCE_VIOLATED"
    GOAL_TOLERANCE_VIOLATED = "GOAL_TOLERANCE_VIOLATED"


class TrajectoryError(DriverError):
    """A goal that cannot run; `outcome` is INVALID_JOINTS or INVALID_GOAL and the message says why."""

    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass(frozen=True)
class Waypoint:
    """One trajectory point (trajectory_msgs/JointTrajectoryPoint), in the goal's joint order.

    Attributes:
        time_s: time from the start of the trajectory (s).
        positions: one per joint (rad).
        velocities: one per joint (rad/s), or empty.
        accelerations: one per joint (rad/s^2), or empty; only with velocities.
    """

    time_s: float
    positions: Sequence[float]
    velocities: Sequence[float] = ()
    accelerations: Sequence[float] = ()


@dataclass(frozen=True)
class Tolerance:
    """A joint's tolerance (control_msgs/JointTolerance): 0 means none is checked.

    Attributes:
        position_rad: largest |reference - measured| position (rad).
        velocity_rad_s: largest |reference - measured| velocity (rad/s).
    """

    position_rad: float = 0.0
    velocity_rad_s: float = 0.0


@dataclass(frozen=True)
class _Segment:
    start_s: float
    end_s: float
    coefficients: FloatArray  # (joints, 6): position polynomial in (t - start_s), lowest power first


State = tuple[FloatArray, FloatArray, FloatArray]
"""Positions (rad), velocities (rad/s) and accelerations (rad/s^2) of every group joint."""


def _polynomial(first: State, last: State, duration_s: float) -> FloatArray:
    """Quintic coefficients (joints, 6) from `first` at 0 to `last` at `duration_s` (s)."""
    (p0, v0, a0), (p1, v1, a1) = first, last
    t = duration_s
    c = np.zeros((len(p0), 6))
    c[:, 0], c[:, 1], c[:, 2] = p0, v0, a0 / 2.0
    h = p1 - p0
    c[:, 3] = (20.0 * h - (8.0 * v1 + 12.0 * v0) * t - (3.0 * a0 - a1) * t * t) / (2.0 * t**3)
    c[:, 4] = (-30.0 * h + (14.0 * v1 + 16.0 * v0) * t + (3.0 * a0 - 2.0 * a1) * t * t) / (2.0 * t**4)
    c[:, 5] = (12.0 * h - 6.0 * (v1 + v0) * t - (a0 - a1) * t * t) / (2.0 * t**5)
    return c


class Trajectory:
    """A checked trajectory of the group's joints, sampled with `sample`.

    Args:
        group: the group's joint names, in the order `sample` returns them.
        joints: the goal's joint names (a subset of `group`, any order); the other joints hold their start.
        waypoints: the goal's points, in the goal's joint order, times strictly increasing.
        start_positions: every group joint's measured position now (rad).
        start_velocities: every group joint's measured velocity now (rad/s).
        limits: (min, max) position of each group joint (rad).

    Raises:
        TrajectoryError: INVALID_JOINTS for unknown or repeated joints, INVALID_GOAL for no points, sizes that do
            not match, non-finite values, times not increasing, or positions outside the limits.
    """

    def __init__(
        self,
        group: Sequence[str],
        joints: Sequence[str],
        waypoints: Sequence[Waypoint],
        *,
        start_positions: Sequence[float],
        start_velocities: Sequence[float],
        limits: Mapping[str, tuple[float, float]],
    ) -> None:
        unknown = [joint for joint in joints if joint not in group]
        if unknown or len(set(joints)) != len(joints) or not joints:
            why = f"unknown joints {unknown}" if unknown else "no joints or a joint named twice"
            raise TrajectoryError(Outcome.INVALID_JOINTS, f"{why}; this group has {list(group)}")
        if not waypoints:
            raise TrajectoryError(Outcome.INVALID_GOAL, "the trajectory has no points")
        self.group = tuple(group)
        columns = [self.group.index(joint) for joint in joints]
        start_p = np.asarray(start_positions, dtype=float)
        start_v = np.asarray(start_velocities, dtype=float)
        times = [0.0]
        points = [(start_p, start_v, np.zeros_like(start_p))]
        for k, waypoint in enumerate(waypoints):
            times.append(waypoint.time_s)
            points.append(self._point(k, waypoint, columns, start_p))
        if not all(math.isfinite(t) for t in times) or any(b <= a for a, b in itertools.pairwise(times[1:])):
            raise TrajectoryError(Outcome.INVALID_GOAL, f"time_from_start must increase strictly: {times[1:]} s")
        if times[1] < 0.0:
            raise TrajectoryError(Outcome.INVALID_GOAL, f"the first point is {times[1]} s in the past")
        for joint, column in zip(joints, columns, strict=True):
            low, high = limits[joint]
            outside = [float(p[0][column]) for p in points[1:] if not low <= p[0][column] <= high]
            if outside:
                raise TrajectoryError(
                    Outcome.INVALID_GOAL, f"{joint}: positions {outside} outside its limits [{low}, {high}] rad"
                )
        given = {(len(w.velocities) > 0, len(w.accelerations) > 0) for w in waypoints}
        if len(given) > 1:
            raise TrajectoryError(Outcome.INVALID_GOAL, "every point must give the same fields (velocities, ...)")
        linear = not next(iter(given))[0]
        if times[1] == 0.0:  # the first point starts the trajectory: no segment from the measured state
            times, points = times[1:], points[1:]
        self._segments = [self._segment(times[k], times[k + 1], points[k], points[k + 1], linear)
                          for k in range(len(times) - 1)]  # fmt: skip
        self._end_p = points[-1][0]
        self._end_v = np.zeros_like(self._end_p) if linear else points[-1][1]
        self.duration_s = times[-1]
        """Time from the start to the last point (s)."""

    @staticmethod
    def _segment(
        start_s: float,
        end_s: float,
        first: State,
        last: State,
        linear: bool,
    ) -> _Segment:
        """Linear with positions only (joint_trajectory_controller's rule), else quintic (cubic with a = 0)."""
        duration_s = end_s - start_s
        if linear:
            coefficients = np.zeros((len(first[0]), 6))
            coefficients[:, 0], coefficients[:, 1] = first[0], (last[0] - first[0]) / duration_s
            return _Segment(start_s, end_s, coefficients)
        return _Segment(start_s, end_s, _polynomial(first, last, duration_s))

    def _point(self, k: int, waypoint: Waypoint, columns: list[int], start: FloatArray) -> State:
        """Positions, velocities, accelerations of every group joint at a waypoint (the others hold their start)."""
        n = len(columns)
        sizes = {"positions": len(waypoint.positions), "velocities": len(waypoint.velocities)}
        sizes["accelerations"] = len(waypoint.accelerations)
        if sizes["positions"] != n or sizes["velocities"] not in (0, n) or sizes["accelerations"] not in (0, n):
            msg = f"point {k}: {sizes} values for {n} joints (velocities and accelerations may be empty)"
            raise TrajectoryError(Outcome.INVALID_GOAL, msg)
        if sizes["accelerations"] and not sizes["velocities"]:
            raise TrajectoryError(Outcome.INVALID_GOAL, f"point {k}: accelerations need velocities")
        values = [*waypoint.positions, *waypoint.velocities, *waypoint.accelerations]
        if not all(math.isfinite(v) for v in values):
            raise TrajectoryError(Outcome.INVALID_GOAL, f"point {k}: a value is not finite")
        positions, velocities, accelerations = start.copy(), np.zeros_like(start), np.zeros_like(start)
        positions[columns] = waypoint.positions
        if sizes["velocities"]:
            velocities[columns] = waypoint.velocities
        if sizes["accelerations"]:
            accelerations[columns] = waypoint.accelerations
        return positions, velocities, accelerations

    def sample(self, t_s: float) -> tuple[FloatArray, FloatArray]:
        """The reference positions (rad) and velocities (rad/s) of every group joint at `t_s` after the start."""
        if not self._segments or t_s >= self.duration_s:
            return self._end_p.copy(), self._end_v.copy()
        segment = next(s for s in self._segments if t_s < s.end_s)
        tau = max(t_s, segment.start_s) - segment.start_s
        powers = tau ** np.arange(6)
        slopes = np.array([0.0, 1.0, 2.0 * tau, 3.0 * tau**2, 4.0 * tau**3, 5.0 * tau**4])
        return segment.coefficients @ powers, segment.coefficients @ slopes


@dataclass(frozen=True)
class Verdict:
    """The end of an execution: `outcome` and what happened (the result's error_string)."""

    outcome: Outcome
    message: str


class Tracker:
    """Judges a running trajectory against its path and goal tolerances, as FollowJointTrajectory defines them.

    Args:
        trajectory: what runs.
        path: tolerance per group joint while the trajectory runs (missing: none).
        goal: tolerance per group joint at the end (missing: none).
        goal_time_tolerance_s: how long after the end the goal tolerances may take to be met (s); 0: at once.
    """

    def __init__(
        self,
        trajectory: Trajectory,
        *,
        path: Mapping[str, Tolerance],
        goal: Mapping[str, Tolerance],
        goal_time_tolerance_s: float,
    ) -> None:
        self.trajectory = trajectory
        self._path = path
        self._goal = goal
        self._goal_time_tolerance_s = goal_time_tolerance_s

    def _violations(
        self, tolerances: Mapping[str, Tolerance], t_s: float, positions: FloatArray, velocities: FloatArray
    ) -> list[str]:
        want_p, want_v = self.trajectory.sample(t_s)
        found = []
        for k, joint in enumerate(self.trajectory.group):
            tolerance = tolerances.get(joint, Tolerance())
            error_p, error_v = abs(want_p[k] - positions[k]), abs(want_v[k] - velocities[k])
            if tolerance.position_rad > 0.0 and error_p > tolerance.position_rad:
                found.append(f"{joint} position error {error_p:.4f} rad > {tolerance.position_rad} rad")
            if tolerance.velocity_rad_s > 0.0 and error_v > tolerance.velocity_rad_s:
                found.append(f"{joint} velocity error {error_v:.4f} rad/s > {tolerance.velocity_rad_s} rad/s")
        return found

    def check(self, t_s: float, positions: Sequence[float], velocities: Sequence[float]) -> Verdict | None:
        """The verdict at `t_s` after the start for the measured state of every group joint; None while it runs."""
        p, v = np.asarray(positions, dtype=float), np.asarray(velocities, dtype=float)
        if t_s < self.trajectory.duration_s:
            violations = self._violations(self._path, t_s, p, v)
            if violations:
                return Verdict(Outcome.PATH_TOLERANCE_VIOLATED, f"at {t_s:.3f} s: {'; '.join(violations)}")
            return None
        violations = self._violations(self._goal, t_s, p, v)
        if not violations:
            return Verdict(Outcome.SUCCESSFUL, f"reached the last point {t_s - self.trajectory.duration_s:.3f} s late")
        if t_s - self.trajectory.duration_s > self._goal_time_tolerance_s:
            late = f"{self._goal_time_tolerance_s} s after the end"
            return Verdict(Outcome.GOAL_TOLERANCE_VIOLATED, f"{late}: {'; '.join(violations)}")
        return None
