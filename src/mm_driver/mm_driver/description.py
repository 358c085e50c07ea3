"""The driver's robot description: mm_sim's URDF with the servo's joint named per servo.

Every mm_sim URDF names its joint `servo_joint`; several servos publishing that name on one `/joint_states`
could not be told apart, so each driver renames it (parameter `joint_name`, by default from its namespace).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mm_driver.errors import DriverError


def default_joint_name(namespace: str) -> str:
    """The joint name a driver in `namespace` uses by default: `/servo1` -> `servo1_joint` (`/` -> `servo_joint`)."""
    stem = "_".join(part for part in namespace.split("/") if part)
    return f"{stem or 'servo'}_joint"


def joint_name(urdf: str) -> str:
    """The name of the first movable joint of a URDF."""
    for joint in ET.fromstring(urdf).iter("joint"):
        if joint.get("type") != "fixed":
            return str(joint.get("name"))
    raise DriverError("the URDF has no movable joint; check the mm_sim profile")


def rename_joint(urdf: str, name: str) -> str:
    """`urdf` with its first movable joint (and every reference to it, e.g. in a transmission) called `name`."""
    old = joint_name(urdf)
    root = ET.fromstring(urdf)
    for element in root.iter("joint"):
        if element.get("name") == old:
            element.set("name", name)
    return ET.tostring(root, encoding="unicode")
