"""The firmware's sensing: encoder quantisation and unwrapping, velocity filter, the 8 observation features."""

import math

import numpy as np
import pytest
from mm_contract.observation import (
    COUNTS_PER_REV,
    MultiTurnEncoder,
    ObservationBuilder,
    ObsScales,
    build_observation,
    encoder_count,
)
from mm_contract.profiles import list_profiles, load_profile

RAD_PER_COUNT = 2.0 * math.pi / COUNTS_PER_REV
SCALES = ObsScales.from_profile(load_profile("mm_v3"))


@pytest.mark.parametrize(
    ("angle_rad", "count"),
    [
        (0.0, 0),
        (5.5 * RAD_PER_COUNT, 5),
        (math.pi, 8192),
        (-0.5 * RAD_PER_COUNT, 16383),
        (2.0 * math.pi + 3.5 * RAD_PER_COUNT, 3),
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
        assert -RAD_PER_COUNT - 1e-5 <= position - angle <= 1e-5  # floors to a count


def test_firmware_boot_position_is_within_the_first_turn() -> None:
    assert float(MultiTurnEncoder(encoder_count(-0.5)).position_rad) == pytest.approx(
        2 * math.pi - 0.5, abs=RAD_PER_COUNT
    )


def test_builder_velocity_follows_the_contract_formula_in_float32() -> None:
    builder = ObservationBuilder(SCALES, 0.001)
    builder.reset(1.0)
    builder.update(1.0, 0.0, 1.0, 0.0, 0.0)
    assert builder.velocity_rad_s == 0.0  # v_0 = 0 with θ_{-1} = θ_0
    builder.update(1.003, 0.0, 1.0, 0.0, 0.0)
    f32 = np.float32
    alpha = f32(0.001) / (f32(SCALES.velocity_filter_tau_s) + f32(0.001))
    expected = f32(0.0) + alpha * ((f32(1.003) - f32(1.0)) / f32(0.001) - f32(0.0))
    assert builder.velocity_rad_s == float(expected)


def test_builder_velocity_settles_on_a_constant_speed() -> None:
    builder = ObservationBuilder(SCALES, 0.001)
    builder.reset(0.0)
    for k in range(60):
        builder.update(k * 0.001 * 7.5, 0.0, 0.0, 0.0, 0.0)
    assert builder.velocity_rad_s == pytest.approx(7.5, rel=1e-3)


def test_observation_features_follow_the_contract_table() -> None:
    builder = ObservationBuilder(SCALES, 0.001)
    builder.reset(1.0)
    obs = builder.update(1.0, 0.5, 1.02, 4.0, -0.25)
    assert obs.dtype == np.float32
    assert obs.shape == (8,)
    expected = [
        0.02 / SCALES.pos_scale_rad,
        0.02 * SCALES.fine_gain_per_rad,
        0.0,
        math.sin(1.0),
        math.cos(1.0),
        4.0 / SCALES.vel_scale_rad_s,
        -0.25,
        0.5 / SCALES.current_limit_a,
    ]
    np.testing.assert_allclose(obs, expected, rtol=2e-5, atol=1e-6)
    same = build_observation(
        position_rad=1.0,
        velocity_rad_s=0.0,
        target_rad=1.02,
        target_velocity_rad_s=4.0,
        prev_action=-0.25,
        current_a=0.5,
        scales=SCALES,
    )
    np.testing.assert_array_equal(obs, same)


def test_observation_clips_every_feature_to_one() -> None:
    obs = build_observation(
        position_rad=0.0,
        velocity_rad_s=1e4,
        target_rad=-100.0,
        target_velocity_rad_s=-1e4,
        prev_action=3.0,
        current_a=-50.0,
        scales=SCALES,
    )
    np.testing.assert_array_equal(obs[[0, 1, 2, 5, 6, 7]], [-1, -1, 1, -1, 1, -1])


@pytest.mark.parametrize("name", list_profiles())
def test_int8_features_resolve_errors_from_coarse_down_to_one_count(name: str) -> None:
    scales = ObsScales.from_profile(load_profile(name))
    int8_step = 2.0 / 255.0
    assert 1.0 / scales.fine_gain_per_rad >= 0.95 * scales.pos_scale_rad * int8_step  # fine covers coarse's step
    assert RAD_PER_COUNT * scales.fine_gain_per_rad >= int8_step  # and sees one encoder count
