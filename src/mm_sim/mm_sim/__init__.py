"""mm_sim: the MuJoCo twin of the Muscle Memory servo and its virtual servo node.

- `ServoEnv` (registered as `MuscleMemoryServo-v0`): the Gymnasium env with the servo contract's
  observation and action (the contract itself, profiles and objectives are in mm_contract).
- `model`: the plant and its sensors; `batch`: many plants stepped as one.
- `baselines`: the contract's cascaded PID, PTOS, their auto-tuning, and the time-optimal bound; `evaluate` runs
  any controller over seeded moves and returns mm_contract metrics.
- `virtual_servo`, `twin_node`: the firmware's C core on the twin behind the servo's own ROS interface.
"""

import os
import sys

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    # MuJoCo picks its OpenGL backend when first imported; without a display only EGL renders offscreen.
    os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium

from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError

ENV_ID = "MuscleMemoryServo-v0"
gymnasium.register(id=ENV_ID, entry_point="mm_sim.env:ServoEnv")

__all__ = ["ENV_ID", "MmSimError", "ServoEnv"]
