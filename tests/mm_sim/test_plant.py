"""The plant behaves like the physics it models: pendulum period, torque per amp, top speed from back-EMF."""

import dataclasses
import math

import pytest
from mm_sim.plant import Plant
from mm_sim.servo_profile import FrictionParams

from mm_sim import ServoProfile, load_profile


def _frictionless(name: str) -> ServoProfile:
    return dataclasses.replace(load_profile(name), friction=FrictionParams(0.0, 0.0))


def _zero_crossing_times(plant: Plant, duration_s: float) -> list[float]:
    times, previous = [], plant.angle_rad
    for _ in range(round(duration_s / plant.profile.dt_s)):
        plant.advance(0.0)
        if previous < 0.0 <= plant.angle_rad or previous > 0.0 >= plant.angle_rad:
            times.append(plant.time_s)
        previous = plant.angle_rad
    return times


def test_unpowered_arm_swings_with_the_pendulum_period_of_its_inertia() -> None:
    profile = _frictionless("arm")
    load = profile.load
    inertia_kg_m2 = profile.reflected_rotor_inertia_kg_m2 + load.inertia_kg_m2 + load.mass_kg * load.com_distance_m**2
    expected_period_s = 2.0 * math.pi * math.sqrt(inertia_kg_m2 / profile.gravity_torque_nm)
    plant = Plant(profile)
    plant.reset(0.05)  # small angle: the linear pendulum formula holds
    crossings = _zero_crossing_times(plant, 3.0 * expected_period_s)
    measured_period_s = 2.0 * (crossings[-1] - crossings[0]) / (len(crossings) - 1)
    assert measured_period_s == pytest.approx(expected_period_s, rel=0.01)


def test_constant_current_accelerates_the_flywheel_at_torque_over_inertia() -> None:
    profile = _frictionless("flywheel")
    plant = Plant(profile)
    plant.reset(0.0)
    current_a, duration_s = 0.5, 0.1
    for _ in range(round(duration_s / profile.dt_s)):
        plant.advance(current_a)
    inertia_kg_m2 = profile.reflected_rotor_inertia_kg_m2 + profile.load.inertia_kg_m2
    # The current needs about one driver time constant to build up; the speed lags by that much.
    expected_rad_s = (
        profile.output_torque_per_a * current_a / inertia_kg_m2 * (duration_s - profile.motor.current_tau_s)
    )
    assert plant.current_a == pytest.approx(current_a, rel=1e-3)
    assert plant.velocity_rad_s == pytest.approx(expected_rad_s, rel=0.01)


def test_back_emf_limits_the_top_speed_to_the_no_load_speed() -> None:
    profile = _frictionless("flywheel")
    motor = profile.motor
    no_load_rad_s = motor.supply_voltage_v / (motor.torque_constant_nm_per_a * profile.gear.ratio)
    plant = Plant(profile)
    plant.reset(0.0)
    for _ in range(round(3.0 / profile.dt_s)):
        plant.advance(2.0)
    assert plant.velocity_rad_s == pytest.approx(no_load_rad_s, rel=0.02)
    assert plant.velocity_rad_s < no_load_rad_s
    # At that speed the supply can barely push current: the command is far from reached.
    assert plant.current_a < 0.2


def test_dry_friction_holds_a_balanced_load_against_a_small_current() -> None:
    profile = load_profile("flywheel")
    stiction_a = profile.friction.coulomb_nm / profile.output_torque_per_a
    plant = Plant(profile)
    plant.reset(1.0)
    for _ in range(200):
        plant.advance(0.5 * stiction_a)
    assert abs(plant.angle_rad - 1.0) < 1e-3
