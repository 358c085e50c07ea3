"""The PID baseline: the contract's law tick by tick, and a servo that actually settles on the twin."""

import math

import pytest
from mm_sim.reference import StepReference

from mm_sim import CascadedPid, MmSimError, PidGains, ServoEnv, list_profiles, pid_for, rollout

DT_S = 0.001


def _pid(**gains: float) -> CascadedPid:
    values = {"kp_pos": 10.0, "v_max": 5.0, "kp_vel": 0.2, "ki_vel": 4.0, "gravity_ff_a": 0.0} | gains
    return CascadedPid(PidGains(**values), current_limit_a=2.0, dt_s=DT_S)


def test_first_tick_is_the_cascaded_law_with_the_integrator_still_empty() -> None:
    pid = _pid(gravity_ff_a=0.5)
    current_a = pid.step(position_rad=0.4, velocity_rad_s=1.0, target_rad=0.5, target_velocity_rad_s=0.5)
    v_cmd = 10.0 * 0.1 + 0.5
    assert current_a == pytest.approx(0.2 * (v_cmd - 1.0) + 0.5 * math.sin(0.4), rel=1e-6)
    assert pid.integrator_a == pytest.approx(4.0 * (v_cmd - 1.0) * DT_S, rel=1e-6)
    # The next tick's output includes what was integrated.
    second_a = pid.step(position_rad=0.4, velocity_rad_s=1.0, target_rad=0.5, target_velocity_rad_s=0.5)
    assert second_a == pytest.approx(current_a + 4.0 * (v_cmd - 1.0) * DT_S, rel=1e-5)


def test_velocity_command_is_limited_to_v_max() -> None:
    pid = _pid(ki_vel=0.0)
    # kp_pos * e = 20 rad/s, limited to v_max = 5 rad/s: i = kp_vel * 5.
    current_a = pid.step(position_rad=0.0, velocity_rad_s=0.0, target_rad=2.0)
    assert current_a == pytest.approx(0.2 * 5.0)


def test_output_is_clamped_and_the_integrator_does_not_wind_up_into_the_limit() -> None:
    pid = _pid(kp_vel=5.0, v_max=10.0)
    for _ in range(100):
        current_a = pid.step(position_rad=0.0, velocity_rad_s=0.0, target_rad=3.0)
        assert current_a == 2.0
    assert pid.integrator_a == 0.0


def test_integrator_keeps_integrating_an_error_that_pulls_out_of_saturation() -> None:
    # Gravity feedforward saturates the output positive while the velocity error is negative.
    pid = _pid(kp_vel=1.0, ki_vel=100.0, gravity_ff_a=4.0)
    current_a = pid.step(position_rad=math.pi / 2, velocity_rad_s=1.0, target_rad=math.pi / 2)
    assert current_a == 2.0
    assert pid.integrator_a == pytest.approx(100.0 * -1.0 * DT_S, rel=1e-6)


def test_negative_gains_are_refused() -> None:
    with pytest.raises(MmSimError, match=r"PID gain kp_vel=-1.0 must be a finite number >= 0"):
        _pid(kp_vel=-1.0)


def test_bad_limit_or_period_is_refused() -> None:
    with pytest.raises(MmSimError, match=r"must both be > 0"):
        CascadedPid(PidGains(1.0, 1.0, 1.0, 1.0, 0.0), current_limit_a=0.0, dt_s=DT_S)


@pytest.mark.parametrize("name", list_profiles())
def test_profile_pid_settles_step_moves_on_the_twin(name: str) -> None:
    env = ServoEnv(name, episode_s=1.5)
    controller = pid_for(env)
    for seed in range(4):
        metrics = rollout(env, controller, seed=seed)
        assert metrics.settle_time_s is not None and metrics.settle_time_s < 1.0, (seed, metrics)
        assert metrics.final_error_rad < 0.002
        assert metrics.overshoot_rad is not None and metrics.overshoot_rad < 0.1


@pytest.mark.parametrize("name", list_profiles())
def test_profile_pid_tracks_sines_with_its_velocity_feedforward(name: str) -> None:
    env = ServoEnv(name, task="track", episode_s=1.0)
    controller = pid_for(env)
    rms_errors_rad = [rollout(env, controller, seed=seed).rms_error_rad for seed in range(4)]
    assert max(rms_errors_rad) < 0.1, rms_errors_rad


@pytest.mark.slow
@pytest.mark.parametrize("name", list_profiles())
def test_profile_pid_still_settles_with_randomised_plants(name: str) -> None:
    env = ServoEnv(name, episode_s=1.5, randomize=0.2)
    controller = pid_for(env)
    for seed in range(10):
        metrics = rollout(env, controller, seed=seed)
        assert metrics.settle_time_s is not None and metrics.settle_time_s < 1.2, (seed, metrics)


def test_arm_pid_holds_the_arm_horizontal_against_gravity() -> None:
    env = ServoEnv("arm", episode_s=1.0)
    options = {"initial_angle_rad": 0.0, "reference": StepReference((math.pi / 2,), 1.0)}
    metrics = rollout(env, pid_for(env), seed=0, options=options)
    assert metrics.final_error_rad < 0.002
