"""mm_sim: the ROS-free MuJoCo twin of the Muscle Memory servo.

- `ServoEnv` (registered as `mm_sim/Servo-v0`): the Gymnasium env with the servo contract's observation/action.
- `load_profile`, `list_profiles`, `ServoProfile`: servo and load parameters.
- `build_observation`, `MultiTurnEncoder`, `VelocityFilter`: the firmware's sensing, in float32.
- `CascadedPid`, `PidGains`: the firmware's POSITION-mode law; `rollout` measures any controller on the twin.
"""

import gymnasium

from mm_sim.baselines import CascadedPid, PidController, PidGains
from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import EpisodeMetrics, ZeroController, pid_for, rollout
from mm_sim.sensing import MultiTurnEncoder, VelocityFilter, build_observation
from mm_sim.servo_profile import PolicyScales, ServoProfile, list_profiles, load_profile

ENV_ID = "mm_sim/Servo-v0"
gymnasium.register(id=ENV_ID, entry_point="mm_sim.env:ServoEnv")

__all__ = [
    "ENV_ID",
    "CascadedPid",
    "EpisodeMetrics",
    "MmSimError",
    "MultiTurnEncoder",
    "PidController",
    "PidGains",
    "PolicyScales",
    "ServoEnv",
    "ServoProfile",
    "VelocityFilter",
    "ZeroController",
    "build_observation",
    "list_profiles",
    "load_profile",
    "pid_for",
    "rollout",
]
