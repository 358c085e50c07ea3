"""Sensing as the firmware sees it: encoder quantisation and unwrapping, velocity filter, observation."""

import math

import numpy as np
import pytest
from mm_sim.sensing import COUNTS_PER_REV, encoder_count

from mm_sim import MultiTurnEncoder, VelocityFilter, build_observation, list_profiles, load_profile

RAD_PER_COUNT = 2.0 * math.pi / COUNTS_PER_REV


@pytest.mark.parametrize(
    ("angle_rad", "count"),
    [
        (0.0, 0),
        (5.5 * RAD_PER_COUNT, 5),
        (math.pi, 8192),
        (-0.5 * RAD_PER_COUNT, 16383),
        (2.0 * math.pi + 3.5 * RAD_PER_COUNT, 3),
        (-2.0 * math.pi - 0.5 * RAD_PER_COUNT, 16383),
    ],
)
def test_encoder_count_is_the_14_bit_reading_of_the_angle(angle_rad: float, count: int) -> None:
    assert encoder_count(angle_rad) == count


def test_unwrapped_position_follows_the_shaft_over_several_turns_both_ways() -> None:
    sweep = np.concatenate([np.linspace(0.3, 20.0, 400), np.linspace(20.0, -19.0, 800)])
    encoder = MultiTurnEncoder(encoder_count(sweep[0]), math.floor(sweep[0] / (2 * math.pi)))
    for angle in sweep:
        position = encoder.update(encoder_count(float(angle)))
        assert position.dtype == np.float32
        # Quantisation floors to a count: the reading is at most one count below the angle.
        assert -RAD_PER_COUNT - 1e-5 <= position - angle <= 1e-5


def test_firmware_boot_position_is_within_the_first_turn() -> None:
    encoder = MultiTurnEncoder(encoder_count(-0.5))
    assert float(encoder.position_rad) == pytest.approx(2 * math.pi - 0.5, abs=RAD_PER_COUNT)


def test_velocity_filter_first_step_follows_the_contract_formula() -> None:
    dt_s, tau_s = 0.001, 0.002
    velocity = VelocityFilter(dt_s=dt_s, tau_s=tau_s, position_rad=1.0)
    assert velocity.update(1.0) == 0.0  # v_0 = 0 with θ_{-1} = θ_0
    alpha = np.float32(dt_s) / (np.float32(tau_s) + np.float32(dt_s))
    expected = alpha * ((np.float32(1.003) - np.float32(1.0)) / np.float32(dt_s))
    assert velocity.update(1.003) == pytest.approx(float(expected), rel=1e-6)


def test_velocity_filter_settles_on_a_constant_speed() -> None:
    dt_s = 0.001
    velocity = VelocityFilter(dt_s=dt_s, tau_s=0.002, position_rad=0.0)
    for k in range(1, 60):
        estimate = velocity.update(k * dt_s * 7.5)
    assert float(estimate) == pytest.approx(7.5, rel=1e-3)


def test_observation_features_follow_the_contract_table() -> None:
    scales = load_profile("arm").policy_scales
    obs = build_observation(
        position_rad=1.0,
        velocity_rad_s=-10.0,
        target_rad=1.02,
        target_velocity_rad_s=4.0,
        previous_action=-0.25,
        current_a=0.5,
        scales=scales,
    )
    assert obs.dtype == np.float32 and obs.shape == (8,)
    expected = [
        0.02 / scales.pos_scale_rad,
        0.02 * scales.fine_gain_per_rad,
        -10.0 / scales.vel_scale_rad_s,
        math.sin(1.0),
        math.cos(1.0),
        4.0 / scales.vel_scale_rad_s,
        -0.25,
        0.5 / scales.current_limit_a,
    ]
    np.testing.assert_allclose(obs, expected, rtol=2e-5, atol=1e-6)


def test_observation_clips_every_feature_to_one() -> None:
    scales = load_profile("arm").policy_scales
    obs = build_observation(
        position_rad=0.0,
        velocity_rad_s=1e4,
        target_rad=-100.0,
        target_velocity_rad_s=-1e4,
        previous_action=3.0,
        current_a=-50.0,
        scales=scales,
    )
    assert obs[0] == -1.0 and obs[1] == -1.0
    assert obs[2] == 1.0 and obs[5] == -1.0
    assert obs[6] == 1.0 and obs[7] == -1.0


def test_fine_error_keeps_resolution_near_the_target_where_coarse_does_not() -> None:
    scales = load_profile("arm").policy_scales
    one_count = build_observation(
        position_rad=0.0,
        velocity_rad_s=0.0,
        target_rad=RAD_PER_COUNT,
        target_velocity_rad_s=0.0,
        previous_action=0.0,
        current_a=0.0,
        scales=scales,
    )
    int8_step = 2.0 / 255.0
    assert one_count[0] < int8_step / 2  # lost in the coarse feature after int8 quantisation
    assert one_count[1] > int8_step  # still visible in the fine one


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_scales_let_int8_features_resolve_errors_from_coarse_to_one_count(name: str) -> None:
    scales = load_profile(name).policy_scales
    int8_step = 2.0 / 255.0
    coarse_step_rad = scales.pos_scale_rad * int8_step
    # The fine feature covers the errors the coarse feature cannot resolve ...
    assert 1.0 / scales.fine_gain_per_rad >= 0.95 * coarse_step_rad
    # ... and still sees one encoder count.
    assert RAD_PER_COUNT * scales.fine_gain_per_rad >= int8_step
