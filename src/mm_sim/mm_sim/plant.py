"""The physical twin: a MuJoCo model of the output shaft and its load, driven by the motor's electrical model.

MuJoCo integrates the mechanics (load inertia plus the rotor's inertia reflected through the gearbox, gravity,
viscous and dry friction). The motor is a current-regulated DC motor: its current follows the command with the
driver's time constant, but only as far as the supply voltage allows against the back-EMF, which is what limits
speed and torque at speed.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
from numpy.typing import NDArray

from mm_sim.errors import MmSimError
from mm_sim.servo_profile import ServoProfile


def build_mjcf(profile: ServoProfile) -> str:
    """MJCF of the servo's output shaft and load.

    A hinge about the horizontal y axis; at position 0 the load hangs straight down. The geoms and the target
    marker are only for rendering (no contacts).
    """
    load = profile.load
    # A disc with the load's own inertia (I = m r² / 2) makes the rotation visible even for a balanced load.
    disc_radius_m = math.sqrt(2.0 * load.inertia_kg_m2 / load.mass_kg)
    arm_length_m = max(load.com_distance_m, disc_radius_m)
    view_distance_m = 4.0 * arm_length_m + 0.05
    physics_dt_s = profile.dt_s / profile.physics_substeps
    inertia = f"{load.inertia_kg_m2:.9g}"
    return f"""
<mujoco model="mm_servo_{profile.name}">
  <option timestep="{physics_dt_s:.9g}" integrator="implicitfast"/>
  <visual><global offwidth="640" offheight="480"/></visual>
  <worldbody>
    <light pos="0 -1 1" dir="0 1 -1"/>
    <camera name="front" pos="0 -{view_distance_m:.6g} 0" xyaxes="1 0 0 0 0 1"/>
    <geom name="housing" type="cylinder" size="{0.3 * arm_length_m:.6g} 0.01" pos="0 0.02 0"
          euler="90 0 0" rgba="0.2 0.2 0.25 1" contype="0" conaffinity="0"/>
    <body name="load">
      <joint name="output" type="hinge" axis="0 1 0"
             armature="{profile.reflected_rotor_inertia_kg_m2:.9g}"
             damping="{profile.friction.viscous_nm_s_per_rad:.9g}"
             frictionloss="{profile.friction.coulomb_nm:.9g}"/>
      <inertial pos="0 0 -{load.com_distance_m:.9g}" mass="{load.mass_kg:.9g}"
                diaginertia="{inertia} {inertia} {inertia}"/>
      <geom name="disc" type="cylinder" size="{disc_radius_m:.6g} 0.004" euler="90 0 0"
            rgba="0.7 0.7 0.75 1" contype="0" conaffinity="0" mass="0"/>
      <geom name="arm" type="capsule" fromto="0 -0.006 0 0 -0.006 -{arm_length_m:.6g}"
            size="{0.06 * arm_length_m:.6g}" rgba="0.9 0.4 0.1 1" contype="0" conaffinity="0" mass="0"/>
    </body>
    <body name="target" mocap="true">
      <geom name="target" type="capsule" fromto="0 -0.012 0 0 -0.012 -{arm_length_m:.6g}"
            size="{0.03 * arm_length_m:.6g}" rgba="0.2 0.8 0.3 0.6" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="output_torque" joint="output" gear="1"/>
  </actuator>
</mujoco>
"""


class Plant:
    """MuJoCo mechanics plus the motor's electrical model, advanced one control period at a time."""

    def __init__(self, profile: ServoProfile) -> None:
        """Compile the MuJoCo model for `profile`."""
        self.profile = profile
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(profile))
        self.data = mujoco.MjData(self.model)
        self._substep_s = profile.dt_s / profile.physics_substeps
        self._current_decay = math.exp(-self._substep_s / profile.motor.current_tau_s)
        self._torque_per_a = profile.output_torque_per_a
        self._current_a = 0.0
        self._renderer: mujoco.Renderer | None = None

    @property
    def angle_rad(self) -> float:
        """True output shaft angle (rad), multi-turn, 0 with the load hanging down."""
        return float(self.data.qpos[0])

    @property
    def velocity_rad_s(self) -> float:
        """True output shaft velocity (rad/s)."""
        return float(self.data.qvel[0])

    @property
    def current_a(self) -> float:
        """True motor current (A)."""
        return self._current_a

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return float(self.data.time)

    def reset(self, angle_rad: float, velocity_rad_s: float = 0.0) -> None:
        """Put the shaft at `angle_rad` (rad) moving at `velocity_rad_s` (rad/s), with no current."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[0] = angle_rad
        self.data.qvel[0] = velocity_rad_s
        self._current_a = 0.0
        mujoco.mj_forward(self.model, self.data)

    def current_bounds_a(self) -> tuple[float, float]:
        """The currents (A) the supply voltage can drive against the present back-EMF: (lowest, highest)."""
        motor = self.profile.motor
        back_emf_v = motor.torque_constant_nm_per_a * self.profile.gear.ratio * self.velocity_rad_s
        return (
            (-motor.supply_voltage_v - back_emf_v) / motor.resistance_ohm,
            (motor.supply_voltage_v - back_emf_v) / motor.resistance_ohm,
        )

    def advance(self, current_cmd_a: float) -> None:
        """Apply the current command `current_cmd_a` (A) for one control period."""
        for _ in range(self.profile.physics_substeps):
            low_a, high_a = self.current_bounds_a()
            reachable_a = min(max(current_cmd_a, low_a), high_a)
            # Exact solution of the first-order current regulation over one substep.
            current = reachable_a + (self._current_a - reachable_a) * self._current_decay
            self._current_a = min(max(current, low_a), high_a)
            self.data.ctrl[0] = self._torque_per_a * self._current_a
            mujoco.mj_step(self.model, self.data)

    def render(self, target_rad: float, width: int = 320, height: int = 240) -> NDArray[np.uint8]:
        """An RGB image (height × width × 3) of the servo seen from the front, the target shown in green.

        Needs an OpenGL backend; on a machine without a display set `MUJOCO_GL=egl` before importing mujoco.
        """
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (width, height):
            self.close()
            try:
                self._renderer = mujoco.Renderer(self.model, height=height, width=width)
            except Exception as error:  # MuJoCo raises plain exceptions for a missing OpenGL context
                msg = f"cannot render ({error}); on a machine without a display set MUJOCO_GL=egl before starting"
                raise MmSimError(msg) from error
        # The target marker is a mocap body: turning it moves nothing in the simulation, and kinematics alone
        # (no time step) brings its pose up to date for the scene.
        self.data.mocap_quat[0] = (math.cos(target_rad / 2.0), 0.0, math.sin(target_rad / 2.0), 0.0)
        mujoco.mj_kinematics(self.model, self.data)
        self._renderer.update_scene(self.data, camera="front")
        return self._renderer.render()

    def close(self) -> None:
        """Release the renderer, if one was made."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
