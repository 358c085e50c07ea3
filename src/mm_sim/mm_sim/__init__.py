"""mm_sim: the ROS-free MuJoCo twin of the Muscle Memory servo.

- `ServoEnv` (registered as `MuscleMemoryServo-v0`): the Gymnasium env with the servo contract's
  observation and action.
- `load_profile`, `list_profiles`, `ServoProfile`: servo, driver and load parameters.
- `ObsScales`, `ObservationBuilder`: the firmware's sensing (contract sections 2-3), in float32.
- `objectives`: the reward terms, usable on the real servo's transitions.
- `baselines`: the contract's cascaded PID, its auto-tuning, and the time-optimal bound; `evaluate` runs any
  controller over seeded moves and returns `metrics`.
"""

import os
import sys

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # MuJoCo picks its OpenGL backend when first imported; without a display only EGL renders offscreen.
    os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium

from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError, ProfileError
from mm_sim.observation import ObservationBuilder, ObsScales
from mm_sim.profiles import ServoProfile, list_profiles, load_profile

ENV_ID = "MuscleMemoryServo-v0"
gymnasium.register(id=ENV_ID, entry_point="mm_sim.env:ServoEnv")

__all__ = [
    "ENV_ID",
    "MmSimError",
    "ObsScales",
    "ObservationBuilder",
    "ProfileError",
    "ServoEnv",
    "ServoProfile",
    "list_profiles",
    "load_profile",
]
