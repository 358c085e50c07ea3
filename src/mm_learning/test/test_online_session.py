"""The online session core against a virtual servo in this process (firmware core + TFLite Micro + plant).

The schedule (targets, exploration decay, update-to-data ratio, redeploys, evaluations on fixed moves), the
budget and cancel, and that what is reported is what the servo ran and measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mm_firmware_core as fw
import numpy as np
import pytest
from mm_contract.observation import ObsScales
from mm_contract.policy_image import parse_image
from mm_contract.profiles import load_profile
from mm_contract.signing import generate_keypair, load_private_key, public_key_hex
from mm_contract.transitions import FLAG_GUARD
from mm_learning.errors import OnlineError
from mm_learning.online import OnlineSession
from mm_learning.online_session import ServoFleet, SessionConfig, SessionProgress
from mm_sim.virtual_servo import VirtualServo, VirtualServoConfig
from online_support import VirtualServoLink, lose_tails

pytestmark = pytest.mark.slow


def _session(
    tmp_path: Path, servos: int = 1, **overrides: Any
) -> tuple[OnlineSession, VirtualServoLink, list[SessionProgress]]:
    """A session on `servos` virtual servos (inertia disk); returns it, the first servo's link and its progress."""
    key = load_private_key(generate_keypair(tmp_path / "keys")[0])
    config = VirtualServoConfig(load="inertia_disk", heartbeat_timeout_s=0.0, public_key_hex=public_key_hex(key))
    links = [VirtualServoLink(VirtualServo(config)) for _ in range(servos)]
    settings: dict[str, Any] = {
        "objective": "accuracy",
        "max_steps": 5000,
        "episode_s": 0.5,
        "redeploy_every_s": 2.0,
        "eval_moves": 2,
        "settle_s": 0.3,
        "updates_per_transition": 0.5,
        "max_gradient_steps_per_cycle": 60,
        "learning_starts": 50,
        "exploration_std": 0.3,
        "exploration_std_final": 0.1,
        "target_limit_rad": 2.0,
        "stop_on_target": False,
        # The guard (servo contract section 4) hands most of an untrained policy's moves to the PID, which leaves
        # a few hundred decisions in this budget: small batches, so that training starts.
        "hyperparameters": {"batch_size": 64},
    }
    progress: list[SessionProgress] = []
    session = OnlineSession(
        SessionConfig(**(settings | overrides)),
        ServoFleet(links),
        scales=ObsScales.from_profile(load_profile("mm_v3")),
        private_key=key,
        out_dir=tmp_path / "out",
        on_progress=progress.append,
    )
    return session, links[0], progress


def test_a_session_follows_its_schedule_and_reports_what_the_servo_ran(tmp_path: Path) -> None:
    session, link, progress = _session(tmp_path)
    episodes: list[Any] = []
    run_episode = link.run_episode
    runs: list[Any] = []
    link.run_episode = lambda episode: (episodes.append(episode), runs.append(run_episode(episode)), runs[-1])[2]  # type: ignore[method-assign]
    crcs: list[int] = []
    deploy = link.deploy
    link.deploy = lambda image, metadata: (crcs.append(deploy(image, metadata)), crcs[-1])[1]  # type: ignore[method-assign]

    result = session.run()

    config = session.config
    assert result.stop_reason == "steps" and result.steps >= config.max_steps
    assert link.servo.state().mode == fw.MODE_HOLD, "the servo is left holding"
    # The start policy plus one per cycle; each deployment was evaluated on the same fixed moves.
    assert result.deploys == len(crcs) == len(result.history) >= 3
    assert len(set(crcs)) == len(crcs), "every deployment is a new policy image"
    evaluations = [e for e in episodes if e.exploration_std == 0.0]
    assert len(evaluations) == config.eval_moves * result.deploys
    first = [(e.start_rad, e.target_rad) for e in evaluations[: config.eval_moves]]
    for k in range(result.deploys):
        chunk = evaluations[k * config.eval_moves : (k + 1) * config.eval_moves]
        assert [(e.start_rad, e.target_rad) for e in chunk] == first
        assert all(e.start_rad is not None for e in chunk), "evaluation moves start from rest at their start"
    # Training moves: targets inside the limits, exploration decaying linearly over the budget.
    training = [e for e in episodes if e.exploration_std > 0.0]
    assert all(abs(e.target_rad) <= config.target_limit_rad for e in training)
    stds = [e.exploration_std for e in training]
    assert stds == sorted(stds, reverse=True) and stds[0] <= config.exploration_std
    assert config.exploration_std_final <= stds[-1] < stds[0]
    # Update-to-data ratio, bounded per cycle: at most 60 gradient steps per cycle of ~200 decisions.
    assert 0 < result.gradient_steps <= config.max_gradient_steps_per_cycle * (result.deploys - 1)
    # Every image carries the session's decimation; the learner stored one transition per decision of a move.
    assert {parse_image(record.image).header.policy_decimation for record in (result.start, result.best)} == {10}
    # (Decisions need their next one's first sample; none is the guard's: servo contract section 4.)
    guard_from = [int(np.argmax(r.flags & FLAG_GUARD)) if np.any(r.flags & FLAG_GUARD) else r.count for r in runs]
    decisions = [
        sum(1 for j in range(0, r.count, 10) if j + 10 < r.count and j + 10 <= g)
        for r, g in zip(runs, guard_from, strict=True)
    ]
    assert session.learner.transitions == sum(decisions) > 0
    # The best policy is the evaluated one with the highest servo-measured return; the start is the baseline.
    returns = [r for _, r in result.history]
    assert result.start.metrics["mean_return"] == returns[0]
    assert result.best.metrics["mean_return"] == max(returns)
    assert result.best.policy_crc32 in crcs
    assert math.isfinite(result.best.metrics["mean_rms_error_rad"])
    assert {p.phase for p in progress} == {"deploying", "exploring", "training", "evaluating"}
    assert all(p.baseline_metrics == result.start.metrics for p in progress if p.phase == "training")


def test_cancel_stops_at_the_next_move_with_the_servo_holding(tmp_path: Path) -> None:
    session, link, progress = _session(tmp_path, max_steps=0, max_time_s=600.0)
    session._should_cancel = lambda: any(p.phase == "exploring" for p in progress)
    result = session.run()
    assert result.stop_reason == "cancelled"
    assert result.deploys == 1 and result.best is result.start
    assert link.servo.state().mode == fw.MODE_HOLD


def test_a_configuration_that_cannot_run_is_refused_naming_the_field() -> None:
    with pytest.raises(OnlineError, match="budget is zero"):
        SessionConfig(objective="speed").validate()
    with pytest.raises(OnlineError, match=r"redeploy_every_s=0\.0 must be > 0"):
        SessionConfig(objective="speed", max_steps=10, redeploy_every_s=0.0).validate()


def test_an_evaluation_move_cut_short_by_lost_transitions_is_run_again(tmp_path: Path) -> None:
    """The start's evaluation: the first attempt of the first move loses its tail, so that move runs twice and
    the evaluation is of whole moves; a link that always loses them stops the session with the reason.
    """
    session, link, _ = _session(tmp_path, max_steps=1)
    attempts = lose_tails(link, lambda attempt: attempt == 1)
    result = session.run()
    assert session.incomplete_moves == 1
    assert len(attempts) == session.config.eval_moves + 1 and attempts[0] == attempts[1]
    assert result.start.metrics["mean_return"] == result.history[0][1]
    whole = round(session.config.episode_s / link.servo.dt_s)
    assert result.steps == whole * session.config.eval_moves + whole // 2, "every attempt is stored"

    session, link, _ = _session(tmp_path / "always", max_steps=1)
    lose_tails(link, lambda attempt: True)
    with pytest.raises(OnlineError, match="came back incomplete 3 times"):
        session.run()


def test_a_fleet_trains_one_policy_from_every_servo_and_runs_it_on_all(tmp_path: Path) -> None:
    """Two servos: each explores, all their transitions feed one learner, every deployment reaches both, and
    evaluation move i always runs on servo i % 2.
    """
    session, _, _ = _session(tmp_path, servos=2, max_steps=3000, eval_moves=3)
    links = session.fleet.links
    ran: list[list[Any]] = [[], []]
    counted: list[int] = []
    crcs: list[list[int]] = [[], []]
    for index, link in enumerate(links):
        run_episode, deploy = link.run_episode, link.deploy

        def recording(episode: Any, run: Any = run_episode, log: list[Any] = ran[index]) -> Any:
            columns = run(episode)
            log.append(episode)
            counted.append(columns.count)
            return columns

        link.run_episode = recording  # type: ignore[method-assign]
        link.deploy = lambda image, metadata, d=deploy, log=crcs[index]: (log.append(d(image, metadata)), log[-1])[1]  # type: ignore[method-assign]

    result = session.run()

    assert crcs[0] == crcs[1] and len(crcs[0]) == result.deploys >= 2, "every deployment reached both servos"
    evaluations = len(result.history)
    starts = [m.start_rad for m in session.eval_moves]
    explored = []
    for index in (0, 1):
        evaluation_moves = [e for e in ran[index] if e.exploration_std == 0.0]
        assert [e.start_rad for e in evaluation_moves] == starts[index::2] * evaluations
        explored.append(len(ran[index]) - len(evaluation_moves))
    assert explored[0] == explored[1] > 0, "the servos explore at once, one move each at a time"
    assert result.steps == sum(counted), "every move of both servos was consumed"
