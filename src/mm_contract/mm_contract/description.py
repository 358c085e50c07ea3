"""The servo's descriptions as text: the MJCF the twin simulates, the URDF rviz draws, and per-servo joint names.

No MuJoCo here: a robot host publishes the URDF without the simulator installed.

Every URDF built here names its joint `servo_joint`; several servos publishing that name on one `/joint_states`
could not be told apart, so each driver renames it (parameter `joint_name`, by default from its namespace).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from mm_contract.errors import ContractError
from mm_contract.profiles import LoadParams, ServoProfile

JOINT_NAME = "servo_joint"
LOAD_BODY = "output_link"


def _geometry(load: LoadParams) -> tuple[float, float]:
    """Display sizes (m): the radius of a disc with the load's own inertia (I = m r²/2) and an arm length."""
    disc_radius_m = math.sqrt(2.0 * load.inertia_kg_m2 / load.mass_kg)
    return disc_radius_m, max(load.com_distance_m, disc_radius_m)


def build_mjcf(profile: ServoProfile, load: LoadParams, *, copies: int = 1) -> str:
    """MJCF of the servo's output shaft with `load`.

    A hinge `servo_joint` about the horizontal y axis; at position 0 the load hangs straight down. Geoms and
    the target marker are for rendering only (no contacts).

    `copies` > 1 puts that many independent servos into one model (bodies, joints and motors prefixed `c<i>_`),
    so one `mj_step` advances a whole batch (`PlantBatch`); each copy moves exactly as the single model does.
    """
    disc_radius_m, arm_length_m = _geometry(load)
    view_distance_m = 4.0 * arm_length_m + 0.05
    inertia = f"{load.inertia_kg_m2:.9g}"
    visual = 'contype="0" conaffinity="0"'
    physics_dt_s = profile.dt_s / profile.control.physics_substeps
    # MuJoCo's dry friction is a soft constraint; its default softness lets a load held by friction creep
    # (1.4 mrad in 0.2 s at half the friction torque). The stiffest stable setting makes it stick (14 µrad).
    stiction = f'solreffriction="{2 * physics_dt_s:.9g} 1" solimpfriction="0.99 0.999 0.001"'
    extras = ""
    if load.kind == "pendulum":
        extras = (
            f'<geom name="bob" type="sphere" size="{0.15 * arm_length_m:.6g}" pos="0 -0.006 -{arm_length_m:.6g}" '
            f'rgba="0.9 0.4 0.1 1" {visual} mass="0"/>'
        )
    spring = ""
    if load.kind == "spring":
        # The torsion spring drawn as a blue ring behind the disc, anchored to the frame above it.
        spring = (
            f'<geom name="spring" type="cylinder" size="{1.25 * disc_radius_m:.6g} 0.002" pos="0 0.008 0" '
            f'euler="1.5707963 0 0" rgba="0.2 0.4 0.9 1" {visual}/>'
            f'<geom name="spring_anchor" type="box" size="{0.05 * disc_radius_m:.6g} 0.002 {0.4 * disc_radius_m:.6g}" '
            f'pos="0 0.008 {1.6 * disc_radius_m:.6g}" rgba="0.2 0.4 0.9 1" {visual}/>'
        )
    limit = (
        # As stiff as the time step allows: MuJoCo's default end stop gives way by several degrees.
        f'limited="true" range="{-profile.end_stop_rad:.9g} {profile.end_stop_rad:.9g}" '
        f'solreflimit="{2 * physics_dt_s:.9g} 1"'
        if profile.end_stop_rad is not None
        else 'limited="false"'
    )
    body = f"""
    <body name="{LOAD_BODY}">
      <joint name="{JOINT_NAME}" type="hinge" axis="0 1 0" {limit}
             armature="{profile.reflected_rotor_inertia_kg_m2:.9g}"
             damping="{profile.friction.viscous_nm_s_per_rad:.9g}"
             frictionloss="{profile.friction.coulomb_nm:.9g}" {stiction}
             stiffness="{load.stiffness_nm_per_rad:.9g}"/>
      <inertial pos="0 0 -{load.com_distance_m:.9g}" mass="{load.mass_kg:.9g}"
                diaginertia="{inertia} {inertia} {inertia}"/>
      <geom name="disc" type="cylinder" size="{disc_radius_m:.6g} 0.004" euler="1.5707963 0 0"
            rgba="0.7 0.7 0.75 1" contype="0" conaffinity="0" mass="0"/>
      <geom name="arm" type="capsule" fromto="0 -0.006 0 0 -0.006 -{arm_length_m:.6g}"
            size="{0.06 * arm_length_m:.6g}" rgba="0.9 0.4 0.1 1" contype="0" conaffinity="0" mass="0"/>
      {extras}
    </body>"""
    motor = f"""
    <motor name="output_torque" joint="{JOINT_NAME}" forcelimited="true"
           forcerange="{-profile.peak_torque_nm:.9g} {profile.peak_torque_nm:.9g}"/>"""
    bodies = body if copies == 1 else "".join(_prefixed(body, i) for i in range(copies))
    motors = motor if copies == 1 else "".join(_prefixed(motor, i) for i in range(copies))
    return f"""
<mujoco model="mm_servo_{profile.name}_{load.kind}">
  <compiler angle="radian"/>
  <option timestep="{physics_dt_s:.9g}" integrator="implicitfast"/>
  <visual><global offwidth="640" offheight="480"/></visual>
  <worldbody>
    <light pos="0 -1 1" dir="0 1 -1"/>
    <camera name="front" pos="0 -{view_distance_m:.6g} 0" xyaxes="1 0 0 0 0 1"/>
    <geom name="motor" type="cylinder" size="{0.35 * arm_length_m:.6g} 0.01" pos="0 0.03 0" euler="1.5707963 0 0"
          rgba="0.25 0.25 0.3 1" {visual}/>
    {spring}
    {bodies}
    <body name="target" mocap="true">
      <geom name="target" type="capsule" fromto="0 -0.012 0 0 -0.012 -{arm_length_m:.6g}"
            size="{0.03 * arm_length_m:.6g}" rgba="0.2 0.8 0.3 0.6" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    {motors}
  </actuator>
</mujoco>
"""


def _prefixed(element: str, index: int) -> str:
    """`element` with every name and joint reference prefixed by `c<index>_` (one copy of a batched model)."""
    return element.replace('name="', f'name="c{index}_').replace('joint="', f'joint="c{index}_')


def build_urdf(profile: ServoProfile, load: LoadParams) -> str:
    """URDF of the same servo and load for rviz (`robot_description`).

    The same joint name, axis, limits, friction and link inertia as the MJCF. URDF cannot express the reflected
    rotor inertia (MuJoCo armature) or the torsion spring; both stay in the MJCF only.
    """
    disc_radius_m, arm_length_m = _geometry(load)
    inertia = f"{load.inertia_kg_m2:.9g}"
    if profile.end_stop_rad is None:
        joint_type, bounds = "continuous", ""
    else:
        joint_type, bounds = "revolute", f' lower="{-profile.end_stop_rad:.9g}" upper="{profile.end_stop_rad:.9g}"'
    return f"""<?xml version="1.0"?>
<robot name="mm_servo_{profile.name}_{load.kind}">
  <link name="base_link"/>
  <link name="{LOAD_BODY}">
    <inertial>
      <origin xyz="0 0 -{load.com_distance_m:.9g}" rpy="0 0 0"/>
      <mass value="{load.mass_kg:.9g}"/>
      <inertia ixx="{inertia}" ixy="0" ixz="0" iyy="{inertia}" iyz="0" izz="{inertia}"/>
    </inertial>
    <visual>
      <origin xyz="0 0 0" rpy="1.5707963 0 0"/>
      <geometry><cylinder radius="{disc_radius_m:.6g}" length="0.008"/></geometry>
    </visual>
    <visual>
      <origin xyz="0 -0.006 -{arm_length_m / 2:.6g}" rpy="0 0 0"/>
      <geometry><box size="{0.12 * arm_length_m:.6g} 0.004 {arm_length_m:.6g}"/></geometry>
    </visual>
  </link>
  <joint name="{JOINT_NAME}" type="{joint_type}">
    <parent link="base_link"/>
    <child link="{LOAD_BODY}"/>
    <origin xyz="0 0 0" rpy="0 0 0"/>
    <axis xyz="0 1 0"/>
    <limit effort="{profile.peak_torque_nm:.9g}" velocity="{profile.no_load_speed_rad_s:.9g}"{bounds}/>
    <dynamics damping="{profile.friction.viscous_nm_s_per_rad:.9g}" friction="{profile.friction.coulomb_nm:.9g}"/>
  </joint>
</robot>
"""


def default_joint_name(namespace: str) -> str:
    """The joint name a driver in `namespace` uses by default: `/servo1` -> `servo1_joint` (`/` -> `servo_joint`)."""
    stem = "_".join(part for part in namespace.split("/") if part)
    return f"{stem or 'servo'}_joint"


def joint_name(urdf: str) -> str:
    """The name of the first movable joint of a URDF."""
    for joint in ET.fromstring(urdf).iter("joint"):
        if joint.get("type") != "fixed":
            return str(joint.get("name"))
    raise ContractError("the URDF has no movable joint; check the profile")


def rename_joint(urdf: str, name: str) -> str:
    """`urdf` with its first movable joint (and every reference to it, e.g. in a transmission) called `name`."""
    old = joint_name(urdf)
    root = ET.fromstring(urdf)
    for element in root.iter("joint"):
        if element.get("name") == old:
            element.set("name", name)
    return ET.tostring(root, encoding="unicode")
