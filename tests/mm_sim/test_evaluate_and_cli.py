"""Measuring controllers on the twin, and the `rollout` command a user runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mm_sim.cli import main
from mm_sim.reference import StepReference

from mm_sim import ServoEnv, ZeroController, pid_for, rollout


def test_an_unpowered_flywheel_never_settles_and_keeps_its_error() -> None:
    env = ServoEnv("flywheel", episode_s=0.5)
    options = {"initial_angle_rad": 0.0, "reference": StepReference((1.0,), 0.5)}
    metrics = rollout(env, ZeroController(), seed=0, options=options)
    assert metrics.settle_time_s is None
    assert metrics.overshoot_rad == 0.0
    assert metrics.final_error_rad == pytest.approx(1.0, abs=1e-3)
    assert metrics.rms_error_rad == pytest.approx(1.0, abs=1e-3)
    assert metrics.steps == 500


def test_settle_time_and_overshoot_describe_the_last_step() -> None:
    env = ServoEnv("flywheel", episode_s=1.0)
    options = {"initial_angle_rad": 0.0, "reference": StepReference((2.0, 1.0), 0.5)}
    metrics = rollout(env, pid_for(env), seed=0, options=options, tolerance_rad=0.01)
    assert metrics.settle_time_s is not None and metrics.overshoot_rad is not None

    # Replay the same episode and check both numbers against the recorded motion after the change at 0.5 s.
    controller = pid_for(env)
    observation, info = env.reset(seed=0, options=options)
    times_s, errors_rad, positions_rad = [], [], []
    for _ in range(env.max_steps):
        observation, _, _, _, info = env.step(controller(observation, info))
        times_s.append(info["time_s"])
        errors_rad.append(info["target_rad"] - info["position_rad"])
        positions_rad.append(info["position_rad"])
    settled_from_s = 0.5 + metrics.settle_time_s
    after = [abs(e) for t, e in zip(times_s, errors_rad, strict=True) if t >= settled_from_s - 1e-9]
    just_before = [abs(e) for t, e in zip(times_s, errors_rad, strict=True) if t < settled_from_s - 1e-9][-1]
    assert max(after) < 0.01 <= just_before
    # The move goes down from 2 to 1 rad: overshoot is how far below 1 rad it went.
    lowest_rad = min(p for t, p in zip(times_s, positions_rad, strict=True) if t > 0.5)
    assert metrics.overshoot_rad == pytest.approx(max(0.0, 1.0 - lowest_rad))


def test_tracking_episodes_have_no_step_metrics() -> None:
    env = ServoEnv("arm", task="track", episode_s=0.3)
    metrics = rollout(env, pid_for(env), seed=1)
    assert metrics.settle_time_s is None and metrics.overshoot_rad is None
    assert metrics.rms_error_rad > 0.0


def test_rollout_command_prints_one_json_line_per_episode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "flywheel", "--episodes", "2", "--episode-s", "0.8", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    episodes = [json.loads(line) for line in lines]
    assert [e["episode"] for e in episodes] == [0, 1]
    assert all(e["steps"] == 800 and e["final_error_rad"] < 0.01 for e in episodes)


def test_rollout_command_reports_a_bad_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", "elbow", "--episodes", "1"]) == 2
    assert "no profile named 'elbow'" in capsys.readouterr().err


@pytest.mark.slow
def test_rollout_command_saves_an_animation(tmp_path: Path, egl_subprocess_env: dict[str, str]) -> None:
    gif = tmp_path / "arm.gif"
    result = subprocess.run(
        [sys.executable, "-m", "mm_sim.cli", "--episodes", "1", "--episode-s", "0.4", "--gif", str(gif)],
        env=egl_subprocess_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert f"wrote {gif} (11 frames)" in result.stdout
    assert gif.read_bytes()[:6] == b"GIF89a"
