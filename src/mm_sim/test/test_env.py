"""The Gymnasium env: contract timing and observation, reward bookkeeping, tasks, seeds, bad input."""

import math
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from mm_contract.errors import ObjectiveError, ProfileError
from mm_contract.objectives import parse_objective
from mm_contract.observation import ObservationBuilder
from mm_sim.reference import Piecewise, StepReference

from mm_sim import ENV_ID, MmSimError, ServoEnv

ZERO = np.zeros(1, dtype=np.float32)


def _run(env: ServoEnv, actions: list[float], seed: int) -> list[dict]:
    env.reset(seed=seed)
    return [env.step(np.array([a], dtype=np.float32))[4] for a in actions]


@pytest.mark.parametrize("task", ["step", "track", "hold"])
def test_passes_gymnasiums_env_checker(task: str) -> None:
    check_env(ServoEnv(task=task, episode_s=0.05), skip_render_check=True)


def test_is_registered_and_vectorises() -> None:
    envs = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", profile="gimbal_bldc", episode_s=0.01)
    observations, _ = envs.reset(seed=0)
    assert observations.shape == (2, 8)
    observations, rewards, _, _, _ = envs.step(np.zeros((2, 1), dtype=np.float32))
    assert rewards.shape == (2,)
    assert not np.array_equal(observations[0], observations[1])  # each copy has its own seed
    envs.close()


@pytest.mark.parametrize("objective", ["accuracy", "speed", "energy", "smooth", {"accuracy": 1.0, "energy": 0.1}])
def test_reward_is_the_sum_of_its_named_terms(objective: str | dict[str, float]) -> None:
    env = ServoEnv(objective=objective, episode_s=0.1)
    env.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        assert reward == pytest.approx(sum(info["reward_terms"].values()))


def test_the_same_seed_reproduces_an_episode_exactly_also_when_randomised() -> None:
    env = ServoEnv(randomize=True, task="disturbance", episode_s=0.2)
    actions = [0.3 * math.sin(k / 10) for k in range(200)]
    first, again, other = _run(env, actions, 3), _run(env, actions, 3), _run(env, actions, 4)
    keys = ("position_rad", "current_a", "power_w", "true_angle_rad", "target_rad")
    assert [[i[k] for k in keys] for i in first] == [[i[k] for k in keys] for i in again]
    assert [i["position_rad"] for i in first] != [i["position_rad"] for i in other]


def test_randomisation_draws_a_new_plant_at_each_reset() -> None:
    env = ServoEnv(randomize=True)
    masses = set()
    for seed in range(5):
        env.reset(seed=seed)
        masses.add(env.plant.load.mass_kg)
    assert len(masses) == 5


def test_observation_is_what_the_firmware_pipeline_computes_from_the_measurements() -> None:
    env = ServoEnv(task="track")
    observation, info = env.reset(seed=1)
    builder = ObservationBuilder(env.scales, env.dt_s)
    builder.reset(info["position_rad"])
    previous = 0.0
    expected = builder.update(
        info["position_rad"], info["current_a"], info["target_rad"], info["target_velocity_rad_s"], previous
    )
    np.testing.assert_array_equal(observation, expected)
    for action in [0.3, -0.7, 1.0, 0.0, 0.5]:
        observation, _, _, _, info = env.step(np.array([action], dtype=np.float32))
        expected = builder.update(
            info["position_rad"], info["current_a"], info["target_rad"], info["target_velocity_rad_s"], action
        )
        np.testing.assert_array_equal(observation, expected)
        assert observation[6] == np.float32(action)


def test_a_command_acts_one_control_period_later() -> None:
    """Contract section 1: the command returned at tick k is applied from tick k+1 on."""
    env = ServoEnv(profile="gimbal_bldc", load="inertia_disk")
    results = []
    for kick in (0.0, 1.0):
        env.reset(seed=7, options={"initial_angle_rad": 0.0})
        same_tick = env.step(np.array([kick], dtype=np.float32))[4]
        next_tick = env.step(ZERO)[4]
        results.append((same_tick, next_tick))
    (still_0, next_0), (still_1, next_1) = results
    assert still_1["true_angle_rad"] == still_0["true_angle_rad"]
    assert still_1["current_cmd_a"] == 0.0
    assert next_1["current_cmd_a"] == env.profile.driver.current_limit_a
    assert next_1["true_angle_rad"] > next_0["true_angle_rad"]


def test_out_of_range_actions_are_clipped_like_the_firmware_does() -> None:
    env = ServoEnv()
    env.reset(seed=0)
    env.step(np.array([5.0], dtype=np.float32))
    observation, _, _, _, info = env.step(np.array([-5.0], dtype=np.float32))
    assert info["current_cmd_a"] == env.profile.driver.current_limit_a
    assert observation[6] == -1.0


@pytest.mark.parametrize("action", [np.array([np.nan]), np.zeros(2), np.array([[0.1, 0.2]])])
def test_bad_actions_are_refused(action: np.ndarray) -> None:
    env = ServoEnv()
    env.reset(seed=0)
    with pytest.raises(MmSimError, match=r"action must be one finite number"):
        env.step(action)


def test_energy_and_power_in_info_come_from_the_electrical_model() -> None:
    env = ServoEnv(load="inertia_disk")
    env.reset(seed=0)
    infos = [env.step(np.full(1, 0.5, dtype=np.float32))[4] for _ in range(100)]
    powers = np.array([i["power_w"] for i in infos])
    assert infos[-1]["energy_j"] == pytest.approx(np.sum(powers) * env.dt_s, rel=1e-9)
    assert np.all(powers[2:] > 0.0)


def test_episode_truncates_after_its_duration() -> None:
    env = ServoEnv(episode_s=0.05)
    env.reset(seed=0)
    assert [env.step(ZERO)[3] for _ in range(50)] == [False] * 49 + [True]


def test_step_task_changes_targets_every_hold_time() -> None:
    env = ServoEnv(task="step", episode_s=1.0, hold_s=0.25)
    _, info = env.reset(seed=2)
    targets = [info["target_rad"]] + [env.step(ZERO)[4]["target_rad"] for _ in range(1000)]
    assert len(set(targets)) == 4
    assert targets[249] == targets[0] != targets[250]


def test_track_task_starts_on_the_reference_whose_velocity_is_its_derivative() -> None:
    env = ServoEnv(profile="gimbal_bldc", load="inertia_disk", task="track")
    for seed in range(3):
        _, info = env.reset(seed=seed)
        assert info["true_angle_rad"] == info["target_rad"]
        infos = [info] + [env.step(ZERO)[4] for _ in range(400)]
        targets = np.array([i["target_rad"] for i in infos])
        velocities = np.array([i["target_velocity_rad_s"] for i in infos])
        central = (targets[2:] - targets[:-2]) / (2 * env.dt_s)
        np.testing.assert_allclose(velocities[1:-1], central, atol=2e-3 * max(1.0, np.max(np.abs(velocities))))
        assert np.max(np.abs(velocities)) <= 0.5 * env.scales.vel_scale_rad_s


def test_waypoint_task_holds_each_target_for_a_fraction_of_a_second() -> None:
    env = ServoEnv(task="waypoints", episode_s=2.0)
    _, info = env.reset(seed=1)
    targets = [info["target_rad"]] + [env.step(ZERO)[4]["target_rad"] for _ in range(2000)]
    changes = np.flatnonzero(np.diff(targets)) + 1
    holds_s = np.diff(np.concatenate([[0], changes])) * env.dt_s
    assert len(changes) >= 3
    assert np.all((holds_s >= 0.2 - 1e-9) & (holds_s <= 0.6 + 1e-9))


def test_disturbance_task_pushes_the_load_off_its_target() -> None:
    quiet, pushed = ServoEnv(task="step"), ServoEnv(task="disturbance")
    worst = []
    for env in (quiet, pushed):
        reference = StepReference(Piecewise((0.0,), (0.0,)))
        env.reset(seed=5, options={"initial_angle_rad": 0.0, "reference": reference})
        worst.append(max(abs(env.step(ZERO)[4]["true_angle_rad"]) for _ in range(2000)))
    assert any(v != 0.0 for v in pushed.disturbance.values)
    assert worst[1] > worst[0] + 0.1


def test_hold_task_changes_the_payload_and_needs_a_load_with_a_payload_range() -> None:
    env = ServoEnv(task="hold", hold_s=0.5)
    env.reset(seed=0)
    assert len(set(env.payload.values)) == 4
    assert max(env.payload.values) <= env.plant.load.payload_range_kg
    with pytest.raises(MmSimError, match=r"load 'inertia_disk' has payload_range_kg 0"):
        ServoEnv(task="hold", load="inertia_disk")


def test_reset_options_choose_the_start_and_the_move() -> None:
    env = ServoEnv()
    reference = StepReference(Piecewise((0.0,), (0.5,)))
    _, info = env.reset(seed=0, options={"initial_angle_rad": -2.0, "reference": reference})
    assert info["true_angle_rad"] == -2.0
    assert info["position_rad"] == pytest.approx(-2.0, abs=2e-3)
    assert info["target_rad"] == 0.5
    with pytest.raises(MmSimError, match=r"unknown reset options \['start'\]"):
        env.reset(options={"start": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"task": "juggle"}, MmSimError, r"unknown task 'juggle'"),
        ({"load": "anvil"}, ProfileError, r"has no load 'anvil'"),
        ({"render_mode": "human"}, MmSimError, r"render_mode 'human' is not supported"),
        ({"episode_s": 0.0}, MmSimError, r"episode_s=0.0.* must all be > 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ServoEnv(**kwargs)


def test_an_unknown_objective_is_refused_by_the_one_objective_parser() -> None:
    with pytest.raises(ObjectiveError, match=r"unknown objective 'fastest'"):
        ServoEnv(objective="fastest")


def test_a_mix_of_named_objectives_is_an_objective_the_env_takes() -> None:
    """`gym.make(..., objective="speed:0.7,energy:0.3")` (what `mm export` did) raised "unknown objective"."""
    env = ServoEnv(objective="speed:0.7,energy:0.3", episode_s=0.1)
    assert env.weights == parse_objective("speed:0.7,energy:0.3").weights


def test_render_without_render_mode_says_how_to_enable_it() -> None:
    env = ServoEnv()
    env.reset(seed=0)
    with pytest.raises(MmSimError, match="render_mode='rgb_array'"):
        env.render()


RENDER_SCRIPT = """
import math, sys
import numpy as np
from mm_sim import ServoEnv
from mm_sim.reference import Piecewise, StepReference
env = ServoEnv("mm_v3", load="pendulum", render_mode="rgb_array")
reference = StepReference(Piecewise((0.0,), (math.pi / 2,)))
env.reset(seed=0, options={"initial_angle_rad": 0.0, "reference": reference})
np.save(sys.argv[1], env.render())
env.close()
"""


@pytest.mark.slow
def test_renders_the_load_and_its_target(tmp_path: Path, egl_subprocess_env: dict[str, str]) -> None:
    out = tmp_path / "frame.npy"
    subprocess.run([sys.executable, "-c", RENDER_SCRIPT, str(out)], env=egl_subprocess_env, check=True, timeout=120)
    frame = np.load(out)
    assert frame.shape == (240, 320, 3)
    height, width = frame.shape[:2]
    orange = (frame[..., 0] > 150) & (frame[..., 1] < 130) & (frame[..., 2] < 80)
    green = (frame[..., 1] > 120) & (frame[..., 0] < 120) & (frame[..., 2] < 120)
    rows, _ = np.nonzero(orange)
    assert len(rows) > 50 and rows.mean() > height / 2 + 10  # the arm hangs down
    _, cols = np.nonzero(green)
    assert len(cols) > 30 and abs(cols.mean() - width / 2) > 20  # the target at +π/2 points sideways
