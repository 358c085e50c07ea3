"""The Gymnasium env: contract timing and observation, reward bookkeeping, episodes, bad input."""

import math
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from mm_sim.reference import StepReference

from mm_sim import ENV_ID, MmSimError, ServoEnv, build_observation


def test_passes_gymnasiums_env_checker() -> None:
    check_env(ServoEnv("arm", episode_s=0.05), skip_render_check=True)


def test_is_registered_with_gymnasium() -> None:
    env = gymnasium.make(ENV_ID, profile="flywheel", episode_s=0.01)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (8,)
    env.close()


def test_reward_is_the_sum_of_its_named_terms() -> None:
    env = ServoEnv("arm", episode_s=0.2)
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        assert set(info["reward_terms"]) == {"position", "precision", "effort", "smoothness"}
        assert reward == pytest.approx(sum(info["reward_terms"].values()))


def test_observation_is_the_contract_observation_of_the_sensed_state() -> None:
    env = ServoEnv("arm", task="track")
    observation, info = env.reset(seed=1)
    actions = [0.3, -0.7, 1.0, 0.0, 0.5]
    for action in actions:
        observation, _, _, _, info = env.step(np.array([action], dtype=np.float32))
        expected = build_observation(
            position_rad=info["position_rad"],
            velocity_rad_s=info["velocity_rad_s"],
            target_rad=info["target_rad"],
            target_velocity_rad_s=info["target_velocity_rad_s"],
            previous_action=action,
            current_a=info["current_a"],
            scales=env.profile.policy_scales,
        )
        np.testing.assert_array_equal(observation, expected)
        assert observation[6] == np.float32(action)


def test_a_command_acts_one_control_period_later() -> None:
    """Contract section 1: the command returned at tick k is applied from tick k+1 on."""
    trajectories = []
    for kick in (0.0, 1.0):
        env = ServoEnv("flywheel")
        env.reset(seed=7, options={"initial_angle_rad": 0.0})
        _, _, _, _, info_same_tick = env.step(np.array([kick], dtype=np.float32))
        _, _, _, _, info_next_tick = env.step(np.zeros(1, dtype=np.float32))
        trajectories.append((info_same_tick, info_next_tick))
    (still_0, next_0), (still_1, next_1) = trajectories
    assert still_1["true_angle_rad"] == still_0["true_angle_rad"]
    assert still_1["current_cmd_a"] == 0.0
    assert next_1["current_cmd_a"] == pytest.approx(env.profile.policy_scales.current_limit_a)
    assert next_1["true_velocity_rad_s"] > next_0["true_velocity_rad_s"] + 0.1


def test_out_of_range_actions_are_clipped_like_the_firmware_does() -> None:
    env = ServoEnv("flywheel")
    env.reset(seed=0)
    env.step(np.array([5.0], dtype=np.float32))
    observation, _, _, _, info = env.step(np.array([-5.0], dtype=np.float32))
    assert info["current_cmd_a"] == env.profile.policy_scales.current_limit_a
    assert observation[6] == -1.0


@pytest.mark.parametrize("action", [np.array([np.nan]), np.zeros(2), np.array([[0.1, 0.2]])])
def test_bad_actions_are_refused(action: np.ndarray) -> None:
    env = ServoEnv("arm")
    env.reset(seed=0)
    with pytest.raises(MmSimError, match=r"action must be one finite number"):
        env.step(action)


def test_episode_truncates_after_its_duration() -> None:
    env = ServoEnv("arm", episode_s=0.05)
    env.reset(seed=0)
    flags = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(50)]
    assert flags == [False] * 49 + [True]


def test_same_seed_same_episode_and_different_seed_different_episode() -> None:
    def run(seed: int) -> np.ndarray:
        env = ServoEnv("arm", randomize=0.2, episode_s=0.1)
        observations = [env.reset(seed=seed)[0]]
        for _ in range(100):
            observations.append(env.step(np.full(1, 0.4, dtype=np.float32))[0])
        return np.array(observations)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_randomisation_changes_the_plant_at_each_reset() -> None:
    env = ServoEnv("arm", randomize=0.2)
    masses = set()
    for seed in range(5):
        env.reset(seed=seed)
        masses.add(env.profile.load.mass_kg)
        assert abs(env.profile.load.mass_kg / env.nominal_profile.load.mass_kg - 1.0) <= 0.2
    assert len(masses) == 5


def test_step_task_targets_hold_and_change_every_hold_time() -> None:
    env = ServoEnv("arm", task="step", episode_s=1.0, hold_s=0.25)
    _, info = env.reset(seed=2)
    targets = [info["target_rad"]]
    for _ in range(1000):
        info = env.step(np.zeros(1, dtype=np.float32))[4]
        targets.append(info["target_rad"])
        assert info["target_velocity_rad_s"] == 0.0
    assert len(set(targets)) == 4
    assert targets[249] == targets[0] != targets[250]
    assert all(abs(t) <= math.pi for t in targets)


def test_track_task_reference_velocity_is_the_targets_rate_of_change() -> None:
    env = ServoEnv("flywheel", task="track")
    _, info = env.reset(seed=5)
    assert info["true_angle_rad"] == info["target_rad"]  # tracking starts on the reference
    infos = [info] + [env.step(np.zeros(1, dtype=np.float32))[4] for _ in range(300)]
    targets_rad = np.array([i["target_rad"] for i in infos])
    velocities_rad_s = np.array([i["target_velocity_rad_s"] for i in infos])
    central_difference_rad_s = (targets_rad[2:] - targets_rad[:-2]) / (2.0 * env.dt_s)
    np.testing.assert_allclose(velocities_rad_s[1:-1], central_difference_rad_s, atol=1e-3)
    assert np.ptp(velocities_rad_s) > 1.0  # a real motion, not a constant
    assert np.max(np.abs(velocities_rad_s)) <= 0.5 * env.profile.policy_scales.vel_scale_rad_s


def test_reset_options_choose_the_start_and_the_move() -> None:
    env = ServoEnv("arm")
    _, info = env.reset(
        seed=0, options={"initial_angle_rad": -2.0, "reference": StepReference(targets_rad=(0.5,), hold_s=1.0)}
    )
    assert info["true_angle_rad"] == -2.0
    assert info["position_rad"] == pytest.approx(-2.0, abs=4e-4)
    assert info["target_rad"] == 0.5
    with pytest.raises(MmSimError, match=r"unknown reset options \['start'\]"):
        env.reset(options={"start": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "juggle"}, r"unknown task 'juggle'"),
        ({"render_mode": "human"}, r"render_mode 'human' is not supported"),
        ({"episode_s": 0.0}, r"episode_s=0.0.* must be > 0"),
        ({"randomize": -0.1}, r"randomisation fraction -0.1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(MmSimError, match=match):
        ServoEnv("arm", **kwargs)


def test_render_without_render_mode_says_how_to_enable_it() -> None:
    env = ServoEnv("arm")
    env.reset(seed=0)
    with pytest.raises(MmSimError, match="render_mode='rgb_array'"):
        env.render()


RENDER_SCRIPT = """
import numpy as np
from mm_sim import ServoEnv
from mm_sim.reference import StepReference
env = ServoEnv("arm", render_mode="rgb_array")
env.reset(seed=0, options={"initial_angle_rad": 0.0, "reference": StepReference((math.pi / 2,), 1.0)})
frame = env.render()
np.save(OUT, frame)
env.close()
"""


@pytest.mark.slow
def test_renders_the_arm_and_its_target(tmp_path: Path, egl_subprocess_env: dict[str, str]) -> None:
    # MUJOCO_GL is read when mujoco is imported, so rendering runs in a fresh interpreter.
    out = tmp_path / "frame.npy"
    script = "import math\nOUT = " + repr(str(out)) + RENDER_SCRIPT
    subprocess.run([sys.executable, "-c", script], env=egl_subprocess_env, check=True, timeout=120)
    frame = np.load(out)
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8
    height, width = frame.shape[:2]
    orange = (frame[..., 0] > 150) & (frame[..., 1] < 130) & (frame[..., 2] < 80)
    green = (frame[..., 1] > 120) & (frame[..., 0] < 120) & (frame[..., 2] < 120)
    # The arm hangs down (below the centre); the target at +π/2 points sideways.
    rows, _ = np.nonzero(orange)
    assert len(rows) > 50 and rows.mean() > height / 2 + 10
    _, cols = np.nonzero(green)
    assert len(cols) > 30 and abs(cols.mean() - width / 2) > 20
