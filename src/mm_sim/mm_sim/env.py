"""The Gymnasium environment of the servo twin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from mm_sim.errors import MmSimError
from mm_sim.plant import Plant
from mm_sim.reference import Reference, random_sine, random_steps
from mm_sim.reward import RewardWeights, reward_terms
from mm_sim.sensing import OBSERVATION_SIZE, SensorReading, Sensors, build_observation
from mm_sim.servo_profile import ServoProfile, load_profile

TASKS = ("step", "track")


class ServoEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """A servo (DC gearmotor, 14-bit output encoder, current-regulated driver) moving its load to a target.

    ## Description
    The twin of one Muscle Memory servo, seen exactly as the firmware sees it (docs/servo-contract.md): the
    policy gets the firmware's observation every control tick (default 1 kHz) and returns a current command,
    which the plant applies from the next tick on (one control period of latency). The load turns about a
    horizontal axis; at position 0 it hangs down.

    ## Action space
    `Box(-1, 1, (1,), float32)`: the current command as a fraction of `current_limit_a`
    (`current_cmd_a = clip(a, -1, 1) * current_limit_a`). Out-of-range values are clipped, as the firmware does.

    ## Observation space
    `Box(-1, 1, (8,), float32)`, e = target_rad - position_rad (measured):

    | index | feature | unit before scaling |
    |---|---|---|
    | 0 | clip(e / pos_scale_rad) | rad |
    | 1 | clip(e * fine_gain_per_rad) | rad |
    | 2 | clip(v / vel_scale_rad_s), filtered velocity estimate | rad/s |
    | 3 | sin(position_rad) | - |
    | 4 | cos(position_rad) | - |
    | 5 | clip(target_velocity_rad_s / vel_scale_rad_s) | rad/s |
    | 6 | previous action | - |
    | 7 | clip(current_a / current_limit_a), measured | A |

    ## Rewards
    The sum of the terms of `mm_sim.reward.reward_terms` (position error, precision bonus, effort, smoothness),
    from the measured error and the actions only; each term is in `info["reward_terms"]`.

    ## Starting state
    No current, the shaft at rest: for "step" at an angle drawn from [-target_range_rad, target_range_rad],
    for "track" where the reference starts (the error is then what tracking leaves).

    ## Episode end
    Truncated after `episode_s` of simulated time; the servo has no terminal state (end stops, faults and
    derating are the firmware's business, not the plant's).

    ## Info
    `position_rad`, `velocity_rad_s`, `current_a` (what the firmware measures), `target_rad`,
    `target_velocity_rad_s`, `true_angle_rad`, `true_velocity_rad_s`, `time_s`; after a step also
    `current_cmd_a` (the command the plant applied during the step) and `reward_terms`.

    ## Arguments
    - `profile`: a shipped profile name (`mm_sim.list_profiles()`), a path to a profile YAML, or a
      `ServoProfile`. Default "arm".
    - `task`: "step" (random step targets, reference velocity 0) or "track" (random sine, with its velocity).
    - `episode_s`: episode length (s).
    - `hold_s`: for "step", how long each target holds (s); default the whole episode.
    - `target_range_rad`: targets and starting angles lie in [-target_range_rad, target_range_rad].
    - `randomize`: domain randomisation: each reset scales the profile's uncertain physical parameters by
      U(1 - randomize, 1 + randomize); 0 keeps the nominal profile.
    - `reward_weights`: `RewardWeights` of the reward terms.
    - `render_mode`: None or "rgb_array" (needs OpenGL, e.g. `MUJOCO_GL=egl`).

    `reset(options=...)` accepts `initial_angle_rad` (float) and `reference` (an object with
    `sample(t_s) -> (target_rad, target_velocity_rad_s)`) to run a chosen move.
    """

    # Gymnasium declares `metadata` as an instance attribute, so it cannot be a ClassVar here.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}  # noqa: RUF012

    def __init__(
        self,
        profile: str | Path | ServoProfile = "arm",
        *,
        task: str = "step",
        episode_s: float = 2.0,
        hold_s: float | None = None,
        target_range_rad: float = math.pi,
        randomize: float = 0.0,
        reward_weights: RewardWeights | None = None,
        render_mode: str | None = None,
    ) -> None:
        """Build the env; see the class docstring for the arguments."""
        self.nominal_profile = profile if isinstance(profile, ServoProfile) else load_profile(profile)
        if task not in TASKS:
            msg = f"unknown task {task!r}; choose one of {TASKS}"
            raise MmSimError(msg)
        if render_mode not in (None, *self.metadata["render_modes"]):
            msg = f"render_mode {render_mode!r} is not supported; use None or 'rgb_array'"
            raise MmSimError(msg)
        hold_s = episode_s if hold_s is None else hold_s
        if not (episode_s > 0.0 and hold_s > 0.0 and target_range_rad > 0.0):
            msg = f"episode_s={episode_s}, hold_s={hold_s} and target_range_rad={target_range_rad} must be > 0"
            raise MmSimError(msg)
        # Fail now rather than at the first reset if the fraction is out of range.
        self.nominal_profile.perturbed(np.random.default_rng(0), randomize)
        self.task = task
        self.episode_s = episode_s
        self.hold_s = hold_s
        self.target_range_rad = target_range_rad
        self.randomize = randomize
        self.reward_weights = reward_weights or RewardWeights()
        self.render_mode = render_mode

        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(OBSERVATION_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.profile = self.nominal_profile
        self.max_steps = round(episode_s * self.profile.control_rate_hz)
        self._plant = Plant(self.profile)
        self._sensors = self._make_sensors()
        self.reference: Reference = random_steps(
            np.random.default_rng(0), range_rad=target_range_rad, duration_s=episode_s, hold_s=hold_s
        )
        self._reading = SensorReading(0.0, 0.0, 0.0)
        self._action = 0.0
        self._steps = 0

    @property
    def dt_s(self) -> float:
        """Control period (s)."""
        return self.profile.dt_s

    def _make_sensors(self) -> Sensors:
        return Sensors(
            dt_s=self.profile.dt_s,
            velocity_filter_tau_s=self.profile.policy_scales.velocity_filter_tau_s,
            current_noise_a=self.profile.sensing.current_noise_a,
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode: new (possibly randomised) plant, starting angle and reference."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"initial_angle_rad", "reference"}
        if unknown:
            msg = f"unknown reset options {sorted(unknown)}; the options are 'initial_angle_rad' and 'reference'"
            raise MmSimError(msg)
        if self.randomize > 0.0:
            self._plant.close()
            self.profile = self.nominal_profile.perturbed(self.np_random, self.randomize)
            self._plant = Plant(self.profile)
            self._sensors = self._make_sensors()
        self.reference = options.get("reference") or self._random_reference()
        if "initial_angle_rad" in options:
            angle_rad = float(options["initial_angle_rad"])
        elif self.task == "track":
            angle_rad = self.reference.sample(0.0)[0]
        else:
            angle_rad = float(self.np_random.uniform(-self.target_range_rad, self.target_range_rad))
        self._plant.reset(angle_rad)
        self._sensors.reset(angle_rad)
        self._action = 0.0
        self._steps = 0
        observation = self._sense()
        return observation, self._info()

    def _random_reference(self) -> Reference:
        if self.task == "step":
            return random_steps(
                self.np_random, range_rad=self.target_range_rad, duration_s=self.episode_s, hold_s=self.hold_s
            )
        return random_sine(
            self.np_random,
            range_rad=self.target_range_rad,
            max_frequency_hz=2.0,
            # Leave headroom below the scale so the reference velocity feature is never clipped.
            max_velocity_rad_s=0.5 * self.profile.policy_scales.vel_scale_rad_s,
        )

    def _sense(self) -> NDArray[np.float32]:
        """Read the sensors at the present tick and build the observation the policy gets."""
        self._reading = self._sensors.read(
            angle_rad=self._plant.angle_rad, current_a=self._plant.current_a, rng=self.np_random
        )
        self._target_rad, self._target_velocity_rad_s = self.reference.sample(self._steps * self.dt_s)
        return build_observation(
            position_rad=self._reading.position_rad,
            velocity_rad_s=self._reading.velocity_rad_s,
            target_rad=self._target_rad,
            target_velocity_rad_s=self._target_velocity_rad_s,
            previous_action=self._action,
            current_a=self._reading.current_a,
            scales=self.profile.policy_scales,
        )

    def _info(self) -> dict[str, Any]:
        return {
            "position_rad": self._reading.position_rad,
            "velocity_rad_s": self._reading.velocity_rad_s,
            "current_a": self._reading.current_a,
            "target_rad": self._target_rad,
            "target_velocity_rad_s": self._target_velocity_rad_s,
            "true_angle_rad": self._plant.angle_rad,
            "true_velocity_rad_s": self._plant.velocity_rad_s,
            "time_s": self._steps * self.dt_s,
        }

    def step(self, action: NDArray[np.float32]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Run one control period and take `action` as the servo's new command.

        The plant runs with the previous tick's command; `action` acts from the next period on.
        """
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        if values.shape != (1,) or not np.isfinite(values[0]):
            msg = f"action must be one finite number in [-1, 1] (shape (1,)), got {action!r}"
            raise MmSimError(msg)
        new_action = float(np.clip(values[0], -1.0, 1.0))
        current_cmd_a = self._action * self.profile.policy_scales.current_limit_a
        self._plant.advance(current_cmd_a)
        self._steps += 1
        previous_action, self._action = self._action, new_action
        observation = self._sense()
        terms = reward_terms(
            error_rad=self._target_rad - self._reading.position_rad,
            action=new_action,
            previous_action=previous_action,
            pos_scale_rad=self.profile.policy_scales.pos_scale_rad,
            weights=self.reward_weights,
        )
        info = self._info() | {"current_cmd_a": current_cmd_a, "reward_terms": terms}
        truncated = self._steps >= self.max_steps
        return observation, sum(terms.values()), False, truncated, info

    def render(self) -> NDArray[np.uint8]:
        """An RGB frame of the servo when `render_mode="rgb_array"`."""
        if self.render_mode != "rgb_array":
            msg = "this env was made without a render mode; create it with render_mode='rgb_array' to render"
            raise MmSimError(msg)
        return self._plant.render(self._target_rad)

    def close(self) -> None:
        """Release the renderer."""
        self._plant.close()
