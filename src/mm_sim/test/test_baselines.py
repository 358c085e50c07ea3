"""The baselines: the contract's PID law tick by tick, tuning that improves its objective, a time-optimal
bound faster than any PID, and cached gains for every shipped combination.
"""

import math

import numpy as np
import pytest
from mm_contract.objectives import OBJECTIVES
from mm_contract.profiles import list_profiles, load_profile
from mm_sim.baselines import (
    LAWS,
    CascadedPid,
    PidController,
    PidGains,
    TimeOptimalController,
    bang_bang_schedule,
    initial_gains,
    tune_pid,
    tuned_gains,
)
from mm_sim.evaluate import Move, evaluate, seeded_moves
from mm_sim.model import Plant

from mm_sim import MmSimError, ServoEnv

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
    second_a = pid.step(position_rad=0.4, velocity_rad_s=1.0, target_rad=0.5, target_velocity_rad_s=0.5)
    assert second_a == pytest.approx(current_a + 4.0 * (v_cmd - 1.0) * DT_S, rel=1e-5)


def test_velocity_command_is_limited_to_v_max() -> None:
    # kp_pos * e = 20 rad/s, limited to v_max = 5 rad/s: i = kp_vel * 5.
    assert _pid(ki_vel=0.0).step(position_rad=0.0, velocity_rad_s=0.0, target_rad=2.0) == pytest.approx(1.0)


def test_output_is_clamped_and_the_integrator_does_not_wind_up_into_the_limit() -> None:
    pid = _pid(kp_vel=5.0, v_max=10.0)
    for _ in range(100):
        assert pid.step(position_rad=0.0, velocity_rad_s=0.0, target_rad=3.0) == 2.0
    assert pid.integrator_a == 0.0


def test_integrator_keeps_integrating_an_error_that_pulls_out_of_saturation() -> None:
    # Gravity feedforward saturates the output positive while the velocity error is negative.
    pid = _pid(kp_vel=1.0, ki_vel=100.0, gravity_ff_a=4.0)
    assert pid.step(position_rad=math.pi / 2, velocity_rad_s=1.0, target_rad=math.pi / 2) == 2.0
    assert pid.integrator_a == pytest.approx(-100.0 * DT_S, rel=1e-6)


def test_bad_gains_limit_or_period_are_refused() -> None:
    with pytest.raises(MmSimError, match=r"PID gain kp_vel=-1.0 must be a finite number >= 0"):
        _pid(kp_vel=-1.0)
    with pytest.raises(MmSimError, match=r"must both be > 0"):
        CascadedPid(PidGains(1.0, 1.0, 1.0, 1.0, 0.0), current_limit_a=0.0, dt_s=DT_S)


def test_gravity_feedforward_holds_the_pendulum_level() -> None:
    profile = load_profile("mm_v3")
    load = profile.load("pendulum")
    gains = initial_gains(profile, load)
    assert gains.gravity_ff_a * profile.output_torque_per_a == pytest.approx(load.gravity_torque_nm)
    assert initial_gains(profile, profile.load("inertia_disk")).gravity_ff_a == 0.0


def test_controller_must_be_reset_before_use() -> None:
    with pytest.raises(MmSimError, match=r"call reset\(env, info\)"):
        PidController(initial_gains(load_profile("mm_v3"), load_profile("mm_v3").load("pendulum")))(
            np.zeros(8, dtype=np.float32), {}
        )


@pytest.mark.slow
def test_tuning_improves_the_objective_on_moves_it_was_not_tuned_on() -> None:
    profile = load_profile("gimbal_bldc")
    env = ServoEnv(profile, load="pendulum", objective="speed")
    start = initial_gains(profile, profile.load("pendulum"))
    gains, _ = tune_pid(env, moves=seeded_moves(3, seed=50, duration_s=0.6), start=start, evaluations=12)
    held_out = seeded_moves(6, seed=60, duration_s=0.6)
    untuned = evaluate(env, PidController(start), held_out).mean_return
    tuned = evaluate(env, PidController(gains), held_out).mean_return
    assert tuned > untuned


@pytest.mark.parametrize("law", LAWS)
def test_cached_tuned_gains_exist_for_every_profile_load_and_objective(law: str) -> None:
    for name in list_profiles():
        profile = load_profile(name)
        for load_name in profile.loads:
            for objective in OBJECTIVES:
                gains = tuned_gains(profile, load_name, objective, law=law)
                expected_ff_a = initial_gains(profile, profile.load(load_name)).gravity_ff_a
                assert gains.gravity_ff_a == pytest.approx(expected_ff_a, rel=1e-5)  # cached to 6 digits
                assert (gains.decel_rad_s2 > 0.0) == (law == "ptos")
    with pytest.raises(MmSimError, match=rf"no tuned {law} gains cached for mm_v3/pendulum/elegance"):
        tuned_gains(load_profile("mm_v3"), "pendulum", "elegance", law=law)
    with pytest.raises(MmSimError, match="unknown law"):
        tuned_gains(load_profile("mm_v3"), "pendulum", "speed", law="lqr")


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("name", list_profiles())
def test_tuned_laws_settle_every_move_on_every_load(name: str, law: str) -> None:
    profile = load_profile(name)
    moves = seeded_moves(4, seed=7)
    for load_name in profile.loads:
        env = ServoEnv(profile, load=load_name)
        gains = tuned_gains(profile, load_name, "accuracy", law=law)
        summary = evaluate(env, PidController(gains), moves).summary()
        assert summary["settled_fraction"] == 1.0, (load_name, summary)


@pytest.mark.parametrize("name", list_profiles())
def test_time_optimal_bound_is_faster_than_the_speed_tuned_pid(name: str) -> None:
    profile = load_profile(name)
    env = ServoEnv(profile, load="pendulum", objective="speed")
    gains = tuned_gains(profile, "pendulum", "speed")
    moves = seeded_moves(5, seed=11)
    pid = evaluate(env, PidController(gains), moves)
    bound = evaluate(env, TimeOptimalController(gains), moves)
    for pid_move, bound_move in zip(pid.metrics, bound.metrics, strict=True):
        assert pid_move.settling_time_s is not None and bound_move.settling_time_s is not None
        assert bound_move.settling_time_s < pid_move.settling_time_s


@pytest.mark.parametrize(
    ("name", "load_name"), [(name, load) for name in list_profiles() for load in load_profile(name).loads]
)
def test_time_optimal_bound_settles_no_later_than_the_tuned_classical_laws(name: str, load_name: str) -> None:
    """A bound on the mean settle time: no tuned law enters the band for good sooner on average.

    Not on every move: on the light loads the hold PID can ring after a short bang-bang move (a move of 0.24 rad
    on mm_v3 + inertia disk takes 13 ticks, then the speed PID's hold swings 49 mrad out and back).
    """
    profile = load_profile(name)
    env = ServoEnv(profile, load=load_name, objective="speed")
    moves = seeded_moves(8, seed=12)
    bound = evaluate(env, TimeOptimalController(tuned_gains(profile, load_name, "speed")), moves, seed=12)
    bound_s = [m.settling_time_s for m in bound.metrics]
    assert None not in bound_s
    for law in LAWS:
        laws_s = evaluate(env, PidController(tuned_gains(profile, load_name, "speed", law=law)), moves, seed=12)
        law_s = [m.settling_time_s for m in laws_s.metrics]
        settled = [(b, s) for b, s in zip(bound_s, law_s, strict=True) if s is not None]
        assert float(np.mean([b for b, _ in settled])) <= float(np.mean([s for _, s in settled])), (law, settled)


def test_bang_bang_schedule_drives_brakes_and_stops_the_shaft_on_the_target() -> None:
    profile = load_profile("mm_minimal")
    plant = Plant(profile, profile.load("inertia_disk"))
    schedule = bang_bang_schedule(plant, start_rad=0.0, target_rad=1.5)
    switch = next(k for k, a in enumerate(schedule) if a != 1.0)
    assert switch > 10
    assert -1.0 <= schedule[switch] < 1.0  # one tick between full drive and full braking
    assert all(a == -1.0 for a in schedule[switch + 1 :])
    plant.reset(0.0)
    for action in [0.0, *schedule]:  # one period of latency, as in the env
        plant.advance(action * profile.driver.current_limit_a)
    assert plant.angle_rad == pytest.approx(1.5, abs=0.002)
    assert abs(plant.velocity_rad_s) < 0.5


def test_bound_hands_over_to_the_pid_holding_a_spring_without_a_bump() -> None:
    profile = load_profile("mm_v3")
    env = ServoEnv(profile, load="spring", objective="speed")
    result = evaluate(env, TimeOptimalController(tuned_gains(profile, "spring", "speed")), [Move(0.0, 2.5, 0.6)])
    metrics = result.metrics[0]
    assert metrics.settling_time_s is not None and metrics.settling_time_s < 0.15
    assert metrics.steady_state_error_rad < 0.002
