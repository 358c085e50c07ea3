"""The Gymnasium environment of the servo twin, `MuscleMemoryServo-v0`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from mm_contract.constants import OBS_DIM
from mm_contract.objectives import DEFAULT_TOLERANCE_RAD, Objective, TransitionSample, parse_objective, reward
from mm_contract.observation import ObservationBuilder, ObsScales
from mm_contract.profiles import LoadParams, ServoProfile, load_profile
from numpy.typing import NDArray

from mm_sim import reference as ref
from mm_sim.errors import MmSimError
from mm_sim.model import Plant, SensorModel
from mm_sim.render import SceneRenderer  # OpenGL only when rendering

TASKS = ("step", "waypoints", "track", "disturbance", "hold")
_NO_CHANGE = ref.Piecewise((0.0,), (0.0,))


class ServoEnv(gym.Env[NDArray[np.float32], NDArray[np.float32]]):
    """A servo (motor, current-regulated driver, 14-bit output encoder) driving its load to a target.

    ## Description
    The twin of one Muscle Memory servo, seen exactly as the firmware sees it (docs/servo-contract.md): every
    control tick (default 1 kHz) the policy gets the firmware's observation and returns a current command,
    which the plant applies from the next tick on (one control period of latency). The load turns about a
    horizontal axis; at position 0 it hangs down. The model: `mm_sim.model`; the parameters: the profile.

    ## Action space
    `Box(-1, 1, (1,), float32)`: the current command as a fraction of the current limit,
    `current_cmd_a = clip(a, -1, 1) * current_limit_a` (out-of-range values are clipped, as the firmware does).

    ## Observation space
    `Box(-1, 1, (8,), float32)`, from `mm_contract.observation.ObservationBuilder`; e = target − measured position:

    | index | feature | unit before scaling |
    |---|---|---|
    | 0 | clip(e / pos_scale_rad) | rad |
    | 1 | clip(e * fine_gain_per_rad) | rad |
    | 2 | clip(v / vel_scale_rad_s), v the filtered velocity estimate | rad/s |
    | 3 | sin(position_rad) | - |
    | 4 | cos(position_rad) | - |
    | 5 | clip(target_velocity_rad_s / vel_scale_rad_s) | rad/s |
    | 6 | previous action | - |
    | 7 | clip(current_a / current_limit_a), measured | A |

    ## Rewards
    `mm_contract.objectives.reward` for the chosen objective (`mm_contract.objectives.parse_objective`: a name,
    a mix "speed:0.7,energy:0.3" or term weights), from the measured quantities only. The weighted terms are in
    `info["reward_terms"]` and sum to the reward.

    ## Tasks
    - "step": random targets in [-target_range_rad, target_range_rad], a new one every `hold_s`.
    - "waypoints": a path of nearby targets, each held 0.2–0.6 s.
    - "track": a sine or chirp with its reference velocity.
    - "disturbance": hold random targets while external torque pulses (up to 30 % of peak torque) hit the load.
    - "hold": hold targets against gravity while the payload changes every `hold_s` (loads with a payload range).

    ## Starting state
    No current, the shaft at rest: at the first target plus U(-0.5, 0.5) rad for "disturbance" and "hold", at
    the reference's start for "track", anywhere in [-target_range_rad, target_range_rad] otherwise.

    ## Episode end
    Truncated after `episode_s` of simulated time; the servo has no terminal state (faults and derating are the
    firmware's business).

    ## Info
    `position_rad`, `velocity_rad_s`, `current_a` (as the firmware measures them), `target_rad`,
    `target_velocity_rad_s`, `power_w`, `energy_j` (electrical, since reset), `true_angle_rad`, `time_s`; after
    a step also `current_cmd_a` (the command the plant applied during the step) and `reward_terms`.

    ## Arguments
    - `profile`: a shipped profile name (`mm_sim.list_profiles()`), a path to a profile YAML, or a
      `ServoProfile`. Default "mm_v3".
    - `load`: the name of one of the profile's loads ("inertia_disk", "pendulum", "spring"). Default "pendulum".
    - `objective`: anything `parse_objective` takes (a name, a mix, term weights, an `Objective`). Default
      "accuracy".
    - `task`: one of the tasks above. Default "step".
    - `episode_s`: episode length (s). `hold_s`: time per target or payload for "step"/"hold" (s).
    - `target_range_rad`: targets lie in [-target_range_rad, target_range_rad].
    - `randomize`: draw the plant from the profile's randomisation ranges at every reset (seeded).
    - `tolerance_rad`: the band that counts as "at the target" for the speed term (rad).
    - `render_mode`: None or "rgb_array".

    `reset(options=...)` accepts `initial_angle_rad` (float) and `reference` (an object with
    `sample(t_s) -> (target_rad, target_velocity_rad_s)`) to run a chosen move.
    """

    # Gymnasium declares `metadata` as an instance attribute, so it cannot be a ClassVar here.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 50}  # noqa: RUF012

    def __init__(
        self,
        profile: str | Path | ServoProfile = "mm_v3",
        *,
        load: str = "pendulum",
        objective: str | Mapping[str, float] | Objective = "accuracy",
        task: str = "step",
        episode_s: float = 2.0,
        hold_s: float = 1.0,
        target_range_rad: float = math.pi,
        randomize: bool = False,
        tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
        render_mode: str | None = None,
    ) -> None:
        """Build the env; see the class docstring for the arguments."""
        self.nominal_profile = profile if isinstance(profile, ServoProfile) else load_profile(profile)
        self.load_name = load
        self.nominal_load = self.nominal_profile.load(load)
        if task not in TASKS:
            msg = f"unknown task {task!r}; choose one of {TASKS}"
            raise MmSimError(msg)
        if task == "hold" and self.nominal_load.payload_range_kg == 0.0:
            msg = f"task 'hold' changes the payload, but load {load!r} has payload_range_kg 0; use 'pendulum'"
            raise MmSimError(msg)
        if render_mode not in (None, "rgb_array"):
            msg = f"render_mode {render_mode!r} is not supported; use None or 'rgb_array'"
            raise MmSimError(msg)
        if not (episode_s > 0.0 and hold_s > 0.0 and target_range_rad > 0.0 and tolerance_rad > 0.0):
            msg = (
                f"episode_s={episode_s}, hold_s={hold_s}, target_range_rad={target_range_rad} and "
                f"tolerance_rad={tolerance_rad} must all be > 0"
            )
            raise MmSimError(msg)
        self.weights = parse_objective(objective).weights
        self.task = task
        self.episode_s = episode_s
        self.hold_s = hold_s
        self.target_range_rad = target_range_rad
        self.randomize = randomize
        self.tolerance_rad = tolerance_rad
        self.render_mode = render_mode

        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.scales = ObsScales.from_profile(self.nominal_profile)
        self.max_steps = round(episode_s * self.nominal_profile.control.rate_hz)
        self.reference: ref.Reference = ref.StepReference(ref.Piecewise((0.0,), (0.0,)))
        self.disturbance = self.payload = _NO_CHANGE
        self._renderer: Any = None
        self._build_plant(self.nominal_profile, self.nominal_load)
        self._action = 0.0
        self._steps = 0
        self._position_rad = self._current_a = self._target_rad = self._target_velocity_rad_s = 0.0

    def _build_plant(self, profile: ServoProfile, load: LoadParams) -> None:
        self.profile = profile
        self.plant = Plant(profile, load)
        self._sensors = SensorModel(profile, self.np_random)
        self._observer = ObservationBuilder(self.scales, profile.dt_s)
        self._dt_s = profile.dt_s
        self._limit_a = profile.driver.current_limit_a
        self.close()  # a renderer belongs to the previous plant

    @property
    def dt_s(self) -> float:
        """Control period (s)."""
        return self._dt_s

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Start an episode: a new (possibly randomised) plant, starting angle, reference and schedules."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"initial_angle_rad", "reference"}
        if unknown:
            msg = f"unknown reset options {sorted(unknown)}; the options are 'initial_angle_rad' and 'reference'"
            raise MmSimError(msg)
        if self.randomize:
            self._build_plant(*self.nominal_profile.perturbed(self.np_random, self.load_name))
        elif seed is not None:
            # The sensors draw their noise from np_random, which a seeded reset replaces.
            self._sensors = SensorModel(self.profile, self.np_random)
        self.reference = options.get("reference") or self._random_reference()
        self.disturbance, self.payload = self._random_schedules()
        angle_rad = float(options["initial_angle_rad"]) if "initial_angle_rad" in options else self._random_start()
        self.plant.reset(angle_rad)
        self._sensors.reset(angle_rad)
        self._action = 0.0
        self._steps = 0
        observation = self._sense(first=True)
        return observation, self._info()

    def _random_reference(self) -> ref.Reference:
        rng, span, duration = self.np_random, self.target_range_rad, self.episode_s
        if self.task == "track":
            # Headroom below the scale keeps the reference velocity feature unclipped.
            return ref.random_chirp(
                rng, range_rad=span, duration_s=duration, max_velocity_rad_s=0.5 * self.scales.vel_scale_rad_s
            )
        if self.task == "waypoints":
            return ref.random_waypoints(rng, range_rad=span, duration_s=duration, min_hold_s=0.2, max_hold_s=0.6)
        return ref.random_steps(rng, range_rad=span, duration_s=duration, hold_s=self.hold_s)

    def _random_schedules(self) -> tuple[ref.Piecewise, ref.Piecewise]:
        disturbance = payload = _NO_CHANGE
        if self.task == "disturbance":
            disturbance = ref.random_pulses(
                self.np_random,
                duration_s=self.episode_s,
                peak=0.3 * self.profile.peak_torque_nm,
                mean_gap_s=0.4,
                max_width_s=0.2,
            )
        if self.task == "hold":
            payload = ref.random_payloads(
                self.np_random,
                duration_s=self.episode_s,
                max_kg=self.plant.load.payload_range_kg,
                hold_s=self.hold_s,
            )
        return disturbance, payload

    def _random_start(self) -> float:
        first_target_rad = self.reference.sample(0.0)[0]
        if self.task == "track":
            return first_target_rad
        if self.task in ("disturbance", "hold"):
            return first_target_rad + float(self.np_random.uniform(-0.5, 0.5))
        return float(self.np_random.uniform(-self.target_range_rad, self.target_range_rad))

    def _sense(self, *, first: bool = False) -> NDArray[np.float32]:
        """Read the sensors at the present tick and build the observation the policy gets.

        The `first` reading of an episode also starts the velocity filter (v_0 = 0, θ_{−1} = θ_0).
        """
        plant = self.plant
        self._position_rad, self._current_a = self._sensors.read(plant.angle_rad, plant.current_a)
        if first:
            self._observer.reset(self._position_rad)
        self._target_rad, self._target_velocity_rad_s = self.reference.sample(self._steps * self._dt_s)
        return self._observer.update(
            self._position_rad, self._current_a, self._target_rad, self._target_velocity_rad_s, self._action
        )

    def _info(self) -> dict[str, Any]:
        return {
            "position_rad": self._position_rad,
            "velocity_rad_s": self._observer.velocity_rad_s,
            "current_a": self._current_a,
            "target_rad": self._target_rad,
            "target_velocity_rad_s": self._target_velocity_rad_s,
            "power_w": self.plant.power_w,
            "energy_j": self.plant.energy_j,
            "true_angle_rad": self.plant.angle_rad,
            "time_s": self._steps * self._dt_s,
        }

    def step(self, action: NDArray[np.float32]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        """Run one control period and take `action` as the servo's new command.

        The plant runs with the previous tick's command; `action` acts from the next period on.
        """
        values = np.asarray(action).reshape(-1)
        if values.shape != (1,) or not math.isfinite(value := float(values[0])):
            msg = f"action must be one finite number in [-1, 1] (shape (1,)), got {action!r}"
            raise MmSimError(msg)
        new_action = min(max(value, -1.0), 1.0)
        t_s = self._steps * self._dt_s
        if self.disturbance is not _NO_CHANGE:
            self.plant.set_disturbance(self.disturbance.value(t_s))
        if self.payload is not _NO_CHANGE:
            self.plant.set_payload(self.payload.value(t_s))
        current_cmd_a = self._action * self._limit_a
        self.plant.advance(current_cmd_a)
        self._steps += 1
        previous_action, self._action = self._action, new_action
        observation = self._sense()
        sample = TransitionSample(
            position_rad=self._position_rad,
            velocity_rad_s=self._observer.velocity_rad_s,
            current_a=self._current_a,
            target_rad=self._target_rad,
            power_w=self.plant.power_w,
            action=new_action,
            previous_action=previous_action,
            dt_s=self._dt_s,
        )
        step_reward, terms = reward(self.weights, sample, tolerance_rad=self.tolerance_rad)
        info = self._info()
        info["current_cmd_a"] = current_cmd_a
        info["reward_terms"] = terms
        return observation, step_reward, False, self._steps >= self.max_steps, info

    def render(self) -> NDArray[np.uint8]:
        """An RGB frame of the servo and its target (create the env with `render_mode="rgb_array"`)."""
        if self.render_mode != "rgb_array":
            msg = "this env was made without a render mode; create it with render_mode='rgb_array' to render"
            raise MmSimError(msg)
        if self._renderer is None:
            self._renderer = SceneRenderer(self.plant)
        return self._renderer.frame(self._target_rad)

    def close(self) -> None:
        """Release the renderer, if one was made."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
