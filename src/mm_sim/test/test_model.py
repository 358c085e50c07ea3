"""The plant is the physics it claims: pendulum period, torque/inertia, spring, the bus-voltage limit,
energy, sensors, and an URDF that agrees with the MJCF.
"""

import dataclasses
import math
import xml.etree.ElementTree as ET

import mujoco
import numpy as np
import pytest
from mm_contract.description import JOINT_NAME, build_mjcf, build_urdf
from mm_contract.observation import COUNTS_PER_REV
from mm_contract.profiles import FrictionParams, LoadParams, ServoProfile, list_profiles, load_profile
from mm_sim.model import Plant, SensorModel

RAD_PER_COUNT = 2 * math.pi / COUNTS_PER_REV


def _frictionless(name: str) -> ServoProfile:
    return dataclasses.replace(load_profile(name), friction=FrictionParams(0.0, 0.0))


def _oscillation_period_s(plant: Plant, duration_s: float) -> float:
    crossings, previous = [], plant.angle_rad
    for _ in range(round(duration_s / plant.profile.dt_s)):
        plant.advance(0.0)
        if (previous < 0.0) != (plant.angle_rad < 0.0):
            crossings.append(plant.data.time)
        previous = plant.angle_rad
    return 2.0 * (crossings[-1] - crossings[0]) / (len(crossings) - 1)


@pytest.mark.parametrize(("name", "load_name"), [("mm_minimal", "pendulum"), ("mm_v3", "spring")])
def test_unpowered_load_oscillates_with_the_period_of_its_inertia(name: str, load_name: str) -> None:
    profile = _frictionless(name)
    load = profile.load(load_name)
    stiffness = load.gravity_torque_nm + load.stiffness_nm_per_rad  # small-angle restoring torque per rad
    expected_s = 2 * math.pi * math.sqrt(profile.output_inertia_kg_m2(load) / stiffness)
    plant = Plant(profile, load)
    plant.reset(0.05)
    assert _oscillation_period_s(plant, 3 * expected_s) == pytest.approx(expected_s, rel=0.01)


def test_constant_current_accelerates_at_torque_over_inertia() -> None:
    profile = _frictionless("mm_minimal")
    load = profile.load("inertia_disk")
    plant = Plant(profile, load)
    plant.reset(0.0)
    for _ in range(100):
        plant.advance(0.5)
    # The current needs about one current-loop time constant to build up; the speed lags by that much.
    expected = profile.output_torque_per_a * 0.5 / profile.output_inertia_kg_m2(load) * (0.1 - 0.0005)
    assert plant.current_a == pytest.approx(0.5, rel=1e-3)
    assert plant.velocity_rad_s == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("name", list_profiles())
def test_reachable_torque_falls_with_speed_at_the_bus_voltage_limit(name: str) -> None:
    profile = _frictionless(name)
    plant = Plant(profile, profile.load("inertia_disk"))
    plant.reset(0.0)
    speeds, currents = [], []
    for _ in range(round(3.0 / profile.dt_s)):
        plant.advance(profile.driver.current_limit_a)
        speeds.append(plant.velocity_rad_s)
        currents.append(plant.current_a)
    speeds_a, currents_a = np.array(speeds), np.array(currents)
    # Above the corner speed the current (so the torque) the bus can drive falls linearly to 0 at no-load
    # speed: each tick's current is bounded by the back-EMF at the speed the tick started with.
    motor, bus, limit_a = profile.motor, profile.driver.bus_voltage_v, profile.driver.current_limit_a
    corner_rad_s = (bus - motor.resistance_ohm * limit_a) / (motor.back_emf_v_s_per_rad * profile.gear.ratio)
    fast = speeds_a[:-1] > corner_rad_s
    assert np.count_nonzero(fast) > 100
    bound_a = (bus - motor.back_emf_v_s_per_rad * profile.gear.ratio * speeds_a[:-1][fast]) / motor.resistance_ohm
    assert np.all(currents_a[1:][fast] <= bound_a + 1e-9)
    assert np.all(currents_a[1:][fast] < limit_a)
    assert np.all(np.diff(currents_a[1:][fast]) <= 1e-9)
    assert speeds_a[-1] == pytest.approx(profile.no_load_speed_rad_s, rel=0.02)
    assert speeds_a[-1] < profile.no_load_speed_rad_s


def test_energy_is_the_integral_of_terminal_voltage_times_current() -> None:
    """E = ∫(R i + k_e N ω) i dt = R i² t + k_e N i Δθ once the current is constant."""
    profile = _frictionless("mm_minimal")
    plant = Plant(profile, profile.load("inertia_disk"))
    plant.reset(0.0)
    plant.advance(0.8)
    plant.advance(0.8)
    plant.advance(0.8)  # the current loop has settled (τ = 0.5 ms)
    energy_before, angle_before = plant.energy_j, plant.angle_rad
    ticks = 150
    for _ in range(ticks):
        plant.advance(0.8)
    motor = profile.motor
    expected_j = motor.resistance_ohm * 0.8**2 * ticks * profile.dt_s + (
        motor.back_emf_v_s_per_rad * profile.gear.ratio * 0.8 * (plant.angle_rad - angle_before)
    )
    assert plant.energy_j - energy_before == pytest.approx(expected_j, rel=0.01)


def test_dry_friction_holds_a_balanced_load_against_a_small_current() -> None:
    profile = load_profile("mm_minimal")
    plant = Plant(profile, profile.load("inertia_disk"))
    plant.reset(1.0)
    for _ in range(200):
        plant.advance(0.5 * profile.friction.coulomb_nm / profile.output_torque_per_a)
    assert abs(plant.angle_rad - 1.0) < 1e-4  # less than a third of an encoder count


def test_payload_and_disturbance_change_the_torque_needed_to_hold() -> None:
    profile = load_profile("mm_v3")
    load = profile.load("pendulum")
    plant = Plant(profile, load)
    plant.reset(math.pi / 2)
    hold_a = load.gravity_torque_nm / profile.output_torque_per_a
    for _ in range(50):
        plant.advance(hold_a)
    assert abs(plant.angle_rad - math.pi / 2) < 0.01
    plant.set_payload(0.2)  # heavier: the same current no longer holds it up
    for _ in range(100):
        plant.advance(hold_a)
    assert plant.angle_rad < math.pi / 2 - 0.05


def test_encoder_reading_is_quantised_to_counts_and_noisy() -> None:
    profile = load_profile("mm_v3")
    sensors = SensorModel(profile, np.random.default_rng(0))
    sensors.reset(0.3)
    readings = np.array([sensors.read(0.3, 1.0)[0] for _ in range(500)])
    counts = readings / RAD_PER_COUNT
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)  # whole counts only
    assert len(np.unique(np.round(counts))) >= 3  # noise of ~0.8 count dithers the reading
    assert abs(np.mean(readings) - 0.3) < 2 * RAD_PER_COUNT
    currents = np.array([sensors.read(0.3, 1.0)[1] for _ in range(500)])
    assert np.std(currents) == pytest.approx(profile.sensing.current_noise_a, rel=0.2)


@pytest.mark.parametrize("name", list_profiles())
def test_urdf_and_mjcf_describe_the_same_joint_and_link(name: str) -> None:
    profile = dataclasses.replace(load_profile(name), end_stop_rad=2.5)  # exercise the limits too
    for load in profile.loads.values():
        mjcf = mujoco.MjModel.from_xml_string(build_mjcf(profile, load))
        urdf_text = build_urdf(profile, load)
        urdf = mujoco.MjModel.from_xml_string(urdf_text)  # MuJoCo reads URDF too: compare compiled models
        for model in (mjcf, urdf):
            assert model.joint(JOINT_NAME).type == mujoco.mjtJoint.mjJNT_HINGE
        body_m, body_u = mjcf.body("output_link"), urdf.body("output_link")
        np.testing.assert_allclose(body_u.mass, body_m.mass, rtol=1e-6)
        np.testing.assert_allclose(body_u.ipos, body_m.ipos, atol=1e-9)
        np.testing.assert_allclose(np.sort(body_u.inertia), np.sort(body_m.inertia), rtol=1e-6)
        joint_m, joint_u = mjcf.joint(JOINT_NAME), urdf.joint(JOINT_NAME)
        np.testing.assert_allclose(joint_u.axis, joint_m.axis)
        np.testing.assert_allclose(joint_u.range, joint_m.range)
        np.testing.assert_allclose(urdf.dof_damping, mjcf.dof_damping)
        np.testing.assert_allclose(urdf.dof_frictionloss, mjcf.dof_frictionloss)
        limit = ET.fromstring(urdf_text).find("joint/limit")
        assert limit is not None
        assert float(limit.get("effort", 0)) == pytest.approx(mjcf.actuator("output_torque").forcerange[1])


def test_continuous_servo_has_a_continuous_urdf_joint() -> None:
    profile = load_profile("mm_v3")
    joint = ET.fromstring(build_urdf(profile, profile.load("pendulum"))).find("joint")
    assert joint is not None and joint.get("type") == "continuous"


def test_load_display_sizes_follow_the_load() -> None:
    profile = load_profile("mm_v3")
    model = mujoco.MjModel.from_xml_string(build_mjcf(profile, profile.load("inertia_disk")))
    assert model.geom("disc").size[0] == pytest.approx(0.05, rel=0.01)  # Ø100 mm disc from m and I
    assert LoadParams.__name__ == "LoadParams"


def test_end_stops_stop_the_shaft() -> None:
    profile = dataclasses.replace(load_profile("gimbal_bldc"), end_stop_rad=0.5)
    plant = Plant(profile, profile.load("inertia_disk"))
    plant.reset(0.0)
    for _ in range(500):
        plant.advance(profile.driver.current_limit_a)
    assert 0.49 < plant.angle_rad < 0.505  # pressed against the stop, which gives way by a few mrad
    assert abs(plant.velocity_rad_s) < 0.5
