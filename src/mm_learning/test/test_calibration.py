"""Online learning of the schedule by a calibrated twin (mm_learning.calibration), against a virtual servo in-process.

The plant fit finds the factor a servo's load differs by; a session deploys the classical start, evaluates it on
the servo, calibrates, trains, deploys and evaluates on the same moves, and leaves the best policy running; bad
configurations and a cancel. Whether a round beats the classical start is a training outcome: the bench measures
it (bench/bench_online_schedule.py), these tests use step budgets too small to promise it.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path
from typing import Any

import mm_firmware_core as fw
import numpy as np
import pytest
from mm_contract.profiles import load_profile
from mm_contract.signing import generate_keypair, load_private_key, public_key_hex
from mm_learning.calibration import MOVES_FILE, CalibratedSession, RecordedMove, fit_plant, load_moves
from mm_learning.errors import OnlineError
from mm_learning.online_session import CalibratedConfig, ServoFleet, SessionProgress
from mm_learning.schedule import ScheduleConfig, ScheduleResult, classical_start
from mm_sim.batch import BatchTwin, rollout
from mm_sim.evaluate import seeded_moves
from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig
from online_support import VirtualServoLink, lose_tails

from mm_learning import calibration

HEAVY = {"load.mass_kg": 1.5}
"""The servo's pendulum is half as heavy again as the profile says."""


def test_the_plant_fit_finds_the_factor_a_servo_differs_by() -> None:
    """Moves of PTOS on a plant whose load is 1.5x as heavy: fitting the load's mass finds 1.5 and the twin then
    tracks the recorded positions far closer than the profile's plant does.
    """
    schedule = classical_start(ScheduleConfig(generations=1)).schedule
    profile = load_profile("mm_v3").scaled("pendulum", HEAVY)[0]
    moves = seeded_moves(4, seed=11)
    twin = BatchTwin(profile, "pendulum", len(moves), objective="speed")
    starts, targets = np.array([m.start_rad for m in moves]), np.array([m.target_rad for m in moves])
    run = rollout(twin, schedule, starts, targets, 600, seed=5)
    recorded = [
        RecordedMove(s, t, run.position_rad[:, i]) for i, (s, t) in enumerate(zip(starts, targets, strict=True))
    ]

    fit = fit_plant("mm_v3", "pendulum", schedule, recorded, keys=["load.mass_kg"], evaluations=41, seed=0)

    assert fit.factors["load.mass_kg"] == pytest.approx(1.5, abs=0.05)
    assert fit.rms_error_rad < 0.2 * fit.nominal_rms_error_rad
    assert fit.evaluations == 41
    with pytest.raises(OnlineError, match="recorded moves"):
        fit_plant("mm_v3", "pendulum", schedule, [], evaluations=5)


def test_moves_run_under_another_base_law_are_fitted_with_that_law() -> None:
    """Moves the servo ran on a base law retuned for it (kp_pos x1.5, decel x0.8) fit with those gains recorded;
    fitted as if the start's law had run them, the twin misses the load (what a retuning session must avoid).
    """
    schedule = classical_start(ScheduleConfig(generations=1)).schedule
    other = dataclasses.replace(
        schedule.base, kp_pos=schedule.base.kp_pos * 1.5, decel_rad_s2=schedule.base.decel_rad_s2 * 0.8
    )
    profile = load_profile("mm_v3").scaled("pendulum", HEAVY)[0]
    moves = seeded_moves(4, seed=11)
    twin = BatchTwin(profile, "pendulum", len(moves), objective="speed")
    starts, targets = np.array([m.start_rad for m in moves]), np.array([m.target_rad for m in moves])
    run = rollout(twin, dataclasses.replace(schedule, base=other), starts, targets, 600, seed=5)

    def fitted(gains: Any) -> Any:
        recorded = [
            RecordedMove(s, t, run.position_rad[:, i], base_gains=gains)
            for i, (s, t) in enumerate(zip(starts, targets, strict=True))
        ]
        return fit_plant("mm_v3", "pendulum", schedule, recorded, keys=["load.mass_kg"], evaluations=41, seed=0)

    right, wrong = fitted(other), fitted(None)
    assert right.factors["load.mass_kg"] == pytest.approx(1.5, abs=0.05)
    assert right.rms_error_rad < 0.5 * wrong.rms_error_rad


def test_a_bad_configuration_is_refused_naming_the_fields() -> None:
    with pytest.raises(OnlineError, match="eval_moves, rounds, fit_evaluations and generations must be >= 1"):
        CalibratedConfig(rounds=0).validate()
    with pytest.raises(OnlineError, match=r"episode_s=nan must be > 0.*max_servo_s=-1.0 must be >= 0"):
        CalibratedConfig(episode_s=float("nan"), max_servo_s=-1.0).validate()
    with pytest.raises(OnlineError, match="leaves no move"):
        CalibratedConfig(min_move_rad=4.0).validate()
    with pytest.raises(OnlineError, match="retune_evaluations must be >= 0"):
        CalibratedConfig(retune_evaluations=-1).validate()


def _session(tmp_path: Path, **overrides: Any) -> tuple[CalibratedSession, VirtualServoLink, list[Any]]:
    key = load_private_key(generate_keypair(tmp_path / "keys")[0])
    servo = VirtualServo(
        VirtualServoConfig(heartbeat_timeout_s=0.0, public_key_hex=public_key_hex(key), plant_factors=HEAVY)
    )
    link = VirtualServoLink(servo)
    events: list[Any] = []
    deploy, run_episode = link.deploy, link.run_episode
    link.deploy = lambda image, metadata: (events.append(("deploy", zlib.crc32(image))), deploy(image, metadata))[1]  # type: ignore[method-assign]
    link.run_episode = lambda episode: (events.append(("move", episode)), run_episode(episode))[1]  # type: ignore[method-assign]
    settings: dict[str, Any] = {
        "generations": 2,
        "eval_moves": 3,
        "fit_evaluations": 5,
        "retune_evaluations": 8,
        "rounds": 1,
        "settle_s": 0.3,
        "stop_on_target": False,
    }
    session = CalibratedSession(
        CalibratedConfig(**(settings | overrides)),
        ServoFleet([link]),
        private_key=key,
        out_dir=tmp_path / "out",
        on_progress=lambda progress: events.append(("progress", progress)),
    )
    return session, link, events


@pytest.mark.slow
def test_a_session_measures_calibrates_trains_and_leaves_the_best_policy_running(tmp_path: Path) -> None:
    session, link, events = _session(tmp_path)

    result = session.run()

    (round_,) = session.rounds
    moves = [event[1] for event in events if event[0] == "move"]
    deploys = [event[1] for event in events if event[0] == "deploy"]
    # The classical start and each policy the round deployed ran the same seeded moves from rest.
    per_policy = session.config.eval_moves
    assert len(moves) == per_policy * len(result.history)
    assert moves == moves[:per_policy] * len(result.history)
    assert all(m.start_rad is not None and m.exploration_std == 0.0 for m in moves)
    assert result.steps == len(moves) * 1000 and len(session.recorded) == len(moves)
    assert result.servo_time_s == pytest.approx(len(moves) * (1.0 + 0.3))
    # The calibration explained the servo's moves better than the profile's plant.
    assert round_.fit.rms_error_rad < round_.fit.nominal_rms_error_rad
    assert round_.fit.factors.keys() == load_profile("mm_v3").randomization.keys()
    assert result.start.metrics["settled_fraction"] >= 0.0 and result.history[0][1] == pytest.approx(
        result.start.metrics["mean_return"]
    )
    # What runs at the end is the best policy: the start, or the round's if it beat the start on the servo.
    assert result.stop_reason == "rounds"
    assert link.servo.state().mode == fw.MODE_HOLD
    assert link.servo.state().policy_crc32 == result.best.policy_crc32 == zlib.crc32(result.best.image)
    if result.best is not result.start:
        assert round_.servo_score > result.history[0][1]
    else:
        assert deploys[-1] == zlib.crc32(result.start.image), "a losing policy is replaced by the best"
    phases = [event[1].phase for event in events if event[0] == "progress"]
    assert phases[:2] == ["deploying", "evaluating"] and {"calibrating", "training"} <= set(phases)
    # The saved moves keep the base law each ran on (a round's retuned law, or None: the start's).
    saved = load_moves(tmp_path / "out" / MOVES_FILE)
    assert [m.base_gains for m in saved] == [m.base_gains for m in session.recorded]
    assert all(m.base_gains is None for m in saved[:per_policy])
    assert all(m.base_gains == round_.retuned_base for m in saved[per_policy:])
    assert all(isinstance(event[1], SessionProgress) for event in events if event[0] == "progress")


@pytest.mark.slow
def test_a_round_that_retuned_and_scheduled_measures_the_retuned_law_alone_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training is made to return a retuned base law (kp_pos x1.2) with a schedule on top (output layer nonzero)."""
    real = calibration.train_schedule

    def retuned_and_scheduled(config: ScheduleConfig, **kwargs: Any) -> ScheduleResult:
        result = real(config, **kwargs)
        base = dataclasses.replace(result.schedule.base, kp_pos=result.schedule.base.kp_pos * 1.2)
        weights = result.weights.copy()
        weights[-1] = 0.05  # the output bias: a constant schedule on top of the base law
        schedule = dataclasses.replace(result.schedule, base=base)
        return dataclasses.replace(result, schedule=schedule, weights=weights, best=result.classical.start)

    monkeypatch.setattr(calibration, "train_schedule", retuned_and_scheduled)
    session, link, events = _session(tmp_path, retune_evaluations=0)

    result = session.run()

    (round_,) = session.rounds
    per_policy = session.config.eval_moves
    deploys = [event[1] for event in events if event[0] == "deploy"]
    # Start, the retuned law alone, the schedule on top of it; then the best again if the schedule lost.
    assert round_.scheduled and round_.retuned_base is not None
    assert round_.retuned_metrics.keys() == round_.servo_metrics.keys()
    assert round_.retuned_metrics != round_.servo_metrics
    assert len(session.recorded) == 3 * per_policy and len(result.history) == 3
    assert all(m.base_gains == round_.retuned_base for m in session.recorded[per_policy:])
    models = [m.policy_model for m in session.recorded[per_policy:]]
    assert models[0] == models[per_policy - 1] != models[per_policy] == models[-1]
    assert link.servo.state().policy_crc32 == result.best.policy_crc32 == deploys[-1]
    assert len(deploys) == 3 + (result.best.policy_crc32 != deploys[2])
    assert result.history[-1][1] == pytest.approx(round_.servo_score)


@pytest.mark.slow
def test_a_cancel_after_the_start_runs_no_round_and_leaves_the_start_running(tmp_path: Path) -> None:
    session, link, _ = _session(tmp_path)
    session._should_cancel = lambda: len(session.recorded) > 0

    result = session.run()

    assert result.stop_reason == "cancelled" and not session.rounds
    assert result.best is result.start and len(result.history) == 1
    assert link.servo.state().mode == fw.MODE_HOLD
    assert link.servo.state().policy_crc32 == result.start.policy_crc32


@pytest.mark.slow
def test_an_evaluation_move_cut_short_by_lost_transitions_is_run_again_and_its_servo_time_counted(
    tmp_path: Path,
) -> None:
    """The start's evaluation: the first run of the first move loses its tail, so that move runs twice and only the
    whole run is recorded for the calibration; a link that always loses them stops the session with the reason.
    """
    session, link, _ = _session(tmp_path)
    session._should_cancel = lambda: len(session.recorded) > 0  # stop after the start's evaluation
    attempts = lose_tails(link, lambda attempt: attempt == 1)

    session.run()

    moves = session.config.eval_moves
    assert session.incomplete_moves == 1
    assert len(attempts) == moves + 1 and attempts[0] == attempts[1]
    assert len(session.recorded) == moves and all(len(m.position_rad) == 1000 for m in session.recorded)
    assert session.servo_time_s == pytest.approx(moves * (1.0 + 0.3) + (0.5 + 0.3))

    session, link, _ = _session(tmp_path / "always")
    lose_tails(link, lambda attempt: True)
    with pytest.raises(OnlineError, match="came back incomplete 3 times"):
        session.run()
