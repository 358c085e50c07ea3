"""Group trajectories (mm_driver.trajectory): interpolation as joint_trajectory_controller does it, goal checks,
tolerances, and two virtual servos (firmware core on the twin) following one trajectory in POSITION mode.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mm_driver.trajectory import Outcome, Tolerance, Tracker, Trajectory, TrajectoryError, Waypoint

GROUP = ("servo1_joint", "servo2_joint")
LIMITS = dict.fromkeys(GROUP, (-3.0, 3.0))


def _trajectory(
    joints: tuple[str, ...], points: list[Waypoint], start: tuple[float, float] = (0.5, -0.2)
) -> Trajectory:
    return Trajectory(GROUP, joints, points, start_positions=start, start_velocities=(0.0, 0.0), limits=LIMITS)


def test_positions_only_are_linear_from_the_measured_start_and_the_other_joint_holds() -> None:
    trajectory = _trajectory(("servo2_joint",), [Waypoint(1.0, [0.8]), Waypoint(3.0, [-1.2])])
    p, v = trajectory.sample(0.5)
    np.testing.assert_allclose(p, [0.5, 0.3])  # -0.2 -> 0.8 over 1 s; servo1 holds its start
    np.testing.assert_allclose(v, [0.0, 1.0])
    p, v = trajectory.sample(2.0)
    np.testing.assert_allclose(p, [0.5, -0.2])
    np.testing.assert_allclose(v, [0.0, -1.0])
    assert trajectory.duration_s == 3.0
    p, v = trajectory.sample(10.0)
    np.testing.assert_allclose(p, [0.5, -1.2])
    np.testing.assert_allclose(v, [0.0, 0.0])


@pytest.mark.parametrize("with_accelerations", [False, True], ids=["cubic", "quintic"])
def test_velocities_give_smooth_segments_through_every_point(with_accelerations: bool) -> None:
    acc = {"accelerations": [2.0, -1.0]} if with_accelerations else {}
    points = [
        Waypoint(0.5, [1.0, 0.0], [1.0, -0.5], **({"accelerations": [0.0, 0.0]} if with_accelerations else {})),
        Waypoint(1.5, [2.0, -1.0], [0.0, 0.0], **acc),
    ]
    trajectory = _trajectory(GROUP, points)
    for point in points:
        p, v = trajectory.sample(point.time_s - 1e-9)
        np.testing.assert_allclose(p, point.positions, atol=1e-6)
        np.testing.assert_allclose(v, point.velocities, atol=1e-6)
    np.testing.assert_allclose(trajectory.sample(0.0)[0], [0.5, -0.2])  # from the measured start
    # Velocity is the derivative of position, also across the point at 0.5 s.
    for t in (0.2, 0.5, 1.0):
        h = 1e-6
        slope = (trajectory.sample(t + h)[0] - trajectory.sample(t - h)[0]) / (2 * h)
        np.testing.assert_allclose(trajectory.sample(t)[1], slope, atol=1e-4)
    if with_accelerations:
        h = 1e-4
        acceleration = (trajectory.sample(1.5 - h)[1] - trajectory.sample(1.5 - 2 * h)[1]) / h
        np.testing.assert_allclose(acceleration, [2.0, -1.0], atol=1e-2)


def test_a_first_point_at_zero_starts_there() -> None:
    trajectory = _trajectory(GROUP, [Waypoint(0.0, [1.0, 1.0]), Waypoint(1.0, [2.0, 0.0])])
    np.testing.assert_allclose(trajectory.sample(0.0)[0], [1.0, 1.0])
    np.testing.assert_allclose(trajectory.sample(0.5)[0], [1.5, 0.5])


@pytest.mark.parametrize(
    ("joints", "points", "outcome", "match"),
    [
        (("elbow",), [Waypoint(1.0, [0.0])], Outcome.INVALID_JOINTS, "unknown joints \\['elbow'\\]"),
        (("servo1_joint", "servo1_joint"), [Waypoint(1.0, [0.0, 0.0])], Outcome.INVALID_JOINTS, "twice"),
        (GROUP, [], Outcome.INVALID_GOAL, "no points"),
        (GROUP, [Waypoint(1.0, [0.0])], Outcome.INVALID_GOAL, "point 0: .* for 2 joints"),
        (GROUP, [Waypoint(1.0, [0.0, math.nan])], Outcome.INVALID_GOAL, "not finite"),
        (GROUP, [Waypoint(1.0, [0.0, 0.0]), Waypoint(1.0, [1.0, 1.0])], Outcome.INVALID_GOAL, "increase strictly"),
        (GROUP, [Waypoint(-0.5, [0.0, 0.0])], Outcome.INVALID_GOAL, "in the past"),
        (GROUP, [Waypoint(1.0, [0.0, 5.0])], Outcome.INVALID_GOAL, "servo2_joint: positions \\[5.0\\] outside"),
        (GROUP, [Waypoint(1.0, [0.0, 0.0], [], [1.0, 1.0])], Outcome.INVALID_GOAL, "accelerations need velocities"),
        (
            GROUP,
            [Waypoint(1.0, [0.0, 0.0], [0.0, 0.0]), Waypoint(2.0, [1.0, 1.0])],
            Outcome.INVALID_GOAL,
            "same fields",
        ),
    ],
)
def test_goals_that_cannot_run_say_why(
    joints: tuple[str, ...], points: list[Waypoint], outcome: Outcome, match: str
) -> None:
    with pytest.raises(TrajectoryError, match=match) as caught:
        _trajectory(joints, points)
    assert caught.value.outcome == outcome


def test_tracker_path_goal_and_goal_time_tolerances() -> None:
    trajectory = _trajectory(GROUP, [Waypoint(1.0, [1.0, 1.0])], start=(0.0, 0.0))
    tolerance = dict.fromkeys(GROUP, Tolerance(position_rad=0.1))
    tracker = Tracker(trajectory, path=tolerance, goal=tolerance, goal_time_tolerance_s=0.5)
    assert tracker.check(0.5, [0.45, 0.55], [1.0, 1.0]) is None  # 0.05 rad off the reference 0.5
    path = tracker.check(0.5, [0.45, 0.7], [1.0, 1.0])
    assert path is not None and path.outcome == Outcome.PATH_TOLERANCE_VIOLATED
    assert "servo2_joint position error 0.2000 rad > 0.1 rad" in path.message
    assert tracker.check(1.2, [0.8, 1.0], [0.0, 0.0]) is None  # late, within the goal time tolerance
    late = tracker.check(1.6, [0.8, 1.0], [0.0, 0.0])
    assert late is not None and late.outcome == Outcome.GOAL_TOLERANCE_VIOLATED and "servo1_joint" in late.message
    done = tracker.check(1.2, [0.95, 1.02], [0.0, 0.0])
    assert done is not None and done.outcome == Outcome.SUCCESSFUL
    # No tolerance given: nothing is checked on the way, and the end is reached at the end.
    free = Tracker(trajectory, path={}, goal={}, goal_time_tolerance_s=0.0)
    assert free.check(0.5, [3.0, -3.0], [0.0, 0.0]) is None
    end = free.check(1.0, [3.0, -3.0], [0.0, 0.0])
    assert end is not None and end.outcome == Outcome.SUCCESSFUL


def test_two_virtual_servos_follow_one_trajectory() -> None:
    """The firmware core on the twin, POSITION mode with the reference velocity, as the trajectory node sends it."""
    from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig

    servos = [VirtualServo(VirtualServoConfig(load="inertia_disk", heartbeat_timeout_s=0.0)) for _ in GROUP]
    for servo in servos:
        servo.step(50)
    start = [servo.state().position_rad for servo in servos]
    points = [Waypoint(0.6, [1.0, -0.8], [1.5, -1.0]), Waypoint(1.2, [1.5, -1.5], [0.0, 0.0])]
    trajectory = Trajectory(GROUP, GROUP, points, start_positions=start, start_velocities=[0.0, 0.0], limits=LIMITS)
    tracker = Tracker(
        trajectory,
        path=dict.fromkeys(GROUP, Tolerance(position_rad=0.15)),
        goal=dict.fromkeys(GROUP, Tolerance(position_rad=0.02)),
        goal_time_tolerance_s=0.5,
    )
    dt_s, period_ticks = servos[0].dt_s, 10  # a new reference every 10 ms, as the node's 100 Hz
    verdict = None
    t_s = 0.0
    worst = 0.0
    while verdict is None:
        want_p, want_v = trajectory.sample(t_s)
        for servo, p, v in zip(servos, want_p, want_v, strict=True):
            assert servo.command(3, float(p), target_velocity_rad_s=float(v)) == 0
            servo.step(period_ticks)
        t_s += period_ticks * dt_s
        states = [servo.state() for servo in servos]
        positions = [s.position_rad for s in states]
        worst = max(worst, *np.abs(np.asarray(positions) - trajectory.sample(t_s)[0]))
        verdict = tracker.check(t_s, positions, [s.velocity_rad_s for s in states])
    assert verdict.outcome == Outcome.SUCCESSFUL, verdict.message
    assert worst < 0.15
