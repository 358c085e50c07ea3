"""Many servos at once: the twin's step moves, vectorised, for fast training and evaluation.

`BatchTwin` runs `copies` servos of one profile and load through the same pipeline as `ServoEnv`, one array
element per servo: the mechanics from one MuJoCo model holding every copy (`build_mjcf(copies=...)`, each copy
moves exactly as the single model does), the electrical model (`model._Motor`), the encoder and velocity filter
(`MultiTurnEncoder`, `ObservationBuilder`), the observation features and the objective's reward terms
(`objectives.reward_terms`). With the sensing noise off it reproduces `ServoEnv` tick for tick
(`tests/mm_sim/test_batch.py`); with noise each servo draws its own noise from one generator.

`ScheduleVecEnv` is a Stable-Baselines3 `VecEnv` on top of it: the policy decides every `decimation` ticks a
residual r ∈ [-1, 1] that the servo adds, scaled by `schedule_range`, to its classical base law (`CascadedPid`,
PID or PTOS) computed every tick, exactly as the firmware's POLICY mode does with a residual image (servo
contract, sections 1, 4, 5). At r = 0 it is the classical controller.

`evaluate_batch` measures a controller on seeded moves with `mm_sim.metrics.step_metrics`, all moves at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from mm_sim.baselines import CascadedPid, PidGains
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Evaluation, Move
from mm_sim.metrics import Response, step_metrics
from mm_sim.model import PlantBatch
from mm_sim.objectives import DEFAULT_TOLERANCE_RAD, objective_weights, reward_terms
from mm_sim.observation import COUNTS_PER_REV, OBS_DIM, MultiTurnEncoder, ObservationBuilder, ObsScales
from mm_sim.profiles import ServoProfile, load_profile

_F32 = np.float32
Array = NDArray[np.float64]


class BatchTwin:
    """`copies` servos doing step moves, sensed as the firmware senses them.

    Timing as in `ServoEnv.step`: the command given to `tick` at tick k acts from tick k+1 on (one period of
    latency); the observation after a tick carries that command as its previous-action feature.
    """

    def __init__(
        self,
        profile: str | ServoProfile,
        load: str,
        copies: int,
        *,
        objective: str | Mapping[str, float],
        seed: int = 0,
        tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
        scales: ObsScales | None = None,
    ) -> None:
        """Build the batch.

        Args:
            profile: a shipped profile name or a `ServoProfile`.
            load: one of the profile's loads.
            copies: number of servos (>= 1).
            objective: a named objective or term weights (`objectives.objective_weights`).
            seed: seed of the sensing noise.
            tolerance_rad: the band of the speed term (rad).
            scales: observation scales (default: the profile's, as `ServoEnv` uses).
        """
        if copies < 1:
            msg = f"copies must be >= 1, got {copies}"
            raise MmSimError(msg)
        self.profile = profile if isinstance(profile, ServoProfile) else load_profile(profile)
        self.load = self.profile.load(load)
        self.copies = copies
        self.weights = objective_weights(objective)
        self.tolerance_rad = tolerance_rad
        self.scales = scales or ObsScales.from_profile(self.profile)
        self.dt_s = self.profile.dt_s
        self.current_limit_a = self.profile.driver.current_limit_a
        self.plant = PlantBatch(self.profile, self.load, copies)
        self.rng = np.random.default_rng(seed)
        self._noise = (self.profile.sensing.encoder_noise_counts, self.profile.sensing.current_noise_a)
        self._counts_per_rad = COUNTS_PER_REV / (2.0 * math.pi)
        self._observer = ObservationBuilder(self.scales, self.dt_s)
        self._encoder = MultiTurnEncoder(0)
        zeros = np.zeros(copies)
        self.target_rad = zeros.copy()
        self.position_rad = zeros.astype(_F32)
        self.current_a = zeros.copy()
        self.command = zeros.copy()
        self.ticks = 0

    @property
    def velocity_rad_s(self) -> NDArray[np.float32]:
        """The filtered velocity estimates (rad/s)."""
        return np.asarray(self._observer.velocity_rad_s, dtype=_F32)

    def _read(self) -> None:
        encoder_noise, current_noise = self._noise
        noise = self.rng.standard_normal((2, self.copies))
        count = np.floor(self.plant.angle_rad * self._counts_per_rad + noise[0] * encoder_noise) % COUNTS_PER_REV
        self.position_rad = np.asarray(self._encoder.update(count.astype(np.int64)), dtype=_F32)
        self.current_a = self.plant.current_a + noise[1] * current_noise

    def reset(self, start_rad: Array, target_rad: Array) -> NDArray[np.float32]:
        """Start every servo at rest at `start_rad` with target `target_rad` (rad); returns the observations."""
        self.plant.reset(np.asarray(start_rad, dtype=np.float64))
        self.target_rad = np.asarray(target_rad, dtype=np.float64).copy()
        first = np.floor(self.plant.angle_rad * self._counts_per_rad) % COUNTS_PER_REV
        self._encoder = MultiTurnEncoder(first.astype(np.int64), np.floor(start_rad / (2.0 * math.pi)).astype(np.int64))
        self.command = np.zeros(self.copies)
        self.ticks = 0
        self._read()
        self._observer.reset(self.position_rad)
        return self.observe(self.command)

    def observe(self, previous_action: Array) -> NDArray[np.float32]:
        """The observations (copies × 8) after the last tick, with `previous_action` as feature 6."""
        features = self._observer.features(
            self.position_rad,
            target_rad=self.target_rad,
            target_velocity_rad_s=np.zeros(self.copies),
            prev_action=previous_action,
            current_a=self.current_a,
        )
        return np.ascontiguousarray(features.T)

    def tick(self, command: Array) -> None:
        """Advance one control period with the last command, read the sensors, take the next `command`.

        `command` is the normalised current (clipped to [-1, 1]) applied from the next period on.
        """
        self.plant.advance(self.command * self.current_limit_a)
        self.command = np.clip(command, -1.0, 1.0)
        self.ticks += 1
        self._read()
        self._observer.advance(self.position_rad)

    def rewards(self, action: Array, previous_action: Array) -> dict[str, Array]:
        """The objective's weighted reward terms of the last tick (`action`: the actions the servo reports)."""
        return reward_terms(
            self.weights,
            error_rad=np.abs(self.target_rad - self.position_rad),
            power_w=self.plant.power_w,
            action=action,
            previous_action=previous_action,
            dt_s=self.dt_s,
            tolerance_rad=self.tolerance_rad,
        )


@dataclass(frozen=True)
class Schedule:
    """How a residual policy drives the servo: the base law and the bound on the residual.

    Attributes:
        base: gains of the classical law computed every tick (PID, or PTOS when `decel_rad_s2` > 0).
        limit: the residual's bound as a fraction of the current limit, in [0, 2] (2 lets a full residual turn a
            saturated base command around); 0: the base law alone.
        decimation: control ticks per policy decision (the residual is held in between).
    """

    base: PidGains
    limit: float
    decimation: int

    def __post_init__(self) -> None:
        if not (0.0 <= self.limit <= 2.0) or self.decimation < 1:
            msg = f"residual limit {self.limit!r} must be in [0, 2] and decimation {self.decimation!r} >= 1"
            raise MmSimError(msg)


class ScheduleDriver:
    """One decision period of the servo's POLICY mode with a residual image, for a batch.

    Every tick the base law runs on the sensed state; the applied command is clip(base / limit_a + ρ·r).
    """

    def __init__(self, twin: BatchTwin, residual: Schedule) -> None:
        """Drive `twin` with `residual`."""
        self.twin = twin
        self.residual = residual
        self._pid = CascadedPid(residual.base, current_limit_a=twin.current_limit_a, dt_s=twin.dt_s)
        self._pid.reset(np.zeros(twin.copies))

    def reset(self) -> None:
        """A new episode: the base law's integrator restarts, as the firmware's does."""
        self._pid.reset(np.zeros(self.twin.copies))

    def command(self, r: Array) -> Array:
        """The normalised command for residuals `r` on the present sensed state."""
        twin = self.twin
        base_a = self._pid.step(
            position_rad=twin.position_rad, velocity_rad_s=twin.velocity_rad_s, target_rad=twin.target_rad
        )
        return np.clip(base_a / twin.current_limit_a + self.residual.limit * r, -1.0, 1.0)

    def run(self, r: Array, previous_r: Array) -> Array:
        """Hold residuals `r` for one decision period; returns the summed reward per servo."""
        total = np.zeros(self.twin.copies)
        for _ in range(self.residual.decimation):
            self.twin.tick(self.command(r))
            total += sum(self.twin.rewards(r, previous_r).values())
            previous_r = r
        return total


def random_moves(
    rng: np.random.Generator, count: int, *, range_rad: float = math.pi, min_distance_rad: float = 0.2
) -> tuple[Array, Array]:
    """Starts and targets (rad) of `count` random moves in ±range_rad, at least `min_distance_rad` apart."""
    start = rng.uniform(-range_rad, range_rad, count)
    target = rng.uniform(-range_rad, range_rad, count)
    short = np.abs(target - start) < min_distance_rad
    while np.any(short):
        target[short] = rng.uniform(-range_rad, range_rad, int(short.sum()))
        short = np.abs(target - start) < min_distance_rad
    return start, target


class ScheduleVecEnv(VecEnv):
    """Stable-Baselines3 `VecEnv`: `copies` servos learning a residual on their classical law, on step moves.

    Each episode is one move of `episode_s` from rest to a random target (as `mm_sim.evaluate.seeded_moves`);
    every step is one policy decision (`residual.decimation` ticks). Observation: the servo's 8 features, with
    the previous residual as feature 6 (as the firmware reports it in residual mode). Action: r in [-1, 1].
    Reward: `reward_scale` × the objective's reward summed over the decision's ticks. Episodes end by time
    limit only (`TimeLimit.truncated`), all servos together.
    """

    def __init__(
        self,
        twin: BatchTwin,
        residual: Schedule,
        *,
        episode_s: float = 1.0,
        reward_scale: float = 10.0,
        seed: int = 0,
    ) -> None:
        """Wrap `twin` (its copies are the envs) with `residual`."""
        self.twin = twin
        self.driver = ScheduleDriver(twin, residual)
        self.decisions = max(1, round(episode_s / (twin.dt_s * residual.decimation)))
        self.reward_scale = reward_scale
        self._rng = np.random.default_rng(seed)
        self._previous = np.zeros(twin.copies)
        self._actions = np.zeros(twin.copies)
        self._returns = np.zeros(twin.copies)
        self._step = 0
        space = spaces.Box(-1.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self.render_mode = None
        super().__init__(twin.copies, space, spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32))

    def reset(self) -> VecEnvObs:
        """New moves for every servo."""
        return self.twin.reset(*self._new_moves())

    def _new_moves(self) -> tuple[Array, Array]:
        self.driver.reset()
        self._previous = np.zeros(self.num_envs)
        self._step = 0
        return random_moves(self._rng, self.num_envs)

    def step_async(self, actions: NDArray[np.float32]) -> None:
        """Store the residuals of the next decision."""
        self._actions = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.num_envs), -1.0, 1.0)

    def step_wait(self) -> VecEnvStepReturn:
        """Run one decision period on every servo."""
        r = self._actions
        rewards = self.reward_scale * self.driver.run(r, self._previous)
        self._returns += rewards
        self._previous = r
        self._step += 1
        observation = self.twin.observe(r)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        done = self._step >= self.decisions
        if done:
            for index, info in enumerate(infos):
                info["terminal_observation"] = observation[index]
                info["TimeLimit.truncated"] = True
                # What SB3's Monitor reports: the episode's (scaled) return and length in decisions.
                info["episode"] = {"r": float(self._returns[index]), "l": self._step, "t": 0.0}
            self._returns = np.zeros(self.num_envs)
            observation = self.twin.reset(*self._new_moves())
        return observation, rewards.astype(np.float32), np.full(self.num_envs, done), infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the batch, once per selected servo."""
        return [getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the batch."""
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        """Call a method of the batch once."""
        return [getattr(self, method_name)(*method_args, **kwargs)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """No servo is wrapped by a Gymnasium wrapper."""
        return [False] * len(list(self._get_indices(indices)))

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the move generator and the sensing noise."""
        self._rng = np.random.default_rng(seed)
        self.twin.rng = np.random.default_rng(None if seed is None else seed + 1)
        return [seed] * self.num_envs


SchedulePolicy = Callable[[NDArray[np.float32]], Any]
"""Residuals (copies,) in [-1, 1] for observations (copies × 8)."""


def evaluate_batch(
    twin: BatchTwin,
    residual: Schedule,
    moves: Sequence[Move],
    policy: SchedulePolicy | None = None,
    *,
    record: list[NDArray[np.float32]] | None = None,
) -> Evaluation:
    """Run every move at once (`twin.copies` must equal the number of moves) and measure each.

    `policy` None runs the base law alone (r = 0). Moves must share one duration. `record`, when given, receives
    the observations the policy decided on (copies × 8 per decision).
    """
    if twin.copies != len(moves) or len({m.duration_s for m in moves}) != 1:
        msg = f"evaluate_batch needs one servo per move ({twin.copies} vs {len(moves)}) and one move duration"
        raise MmSimError(msg)
    driver = ScheduleDriver(twin, residual)
    ticks = round(moves[0].duration_s / twin.dt_s)
    observation = twin.reset(np.array([m.start_rad for m in moves]), np.array([m.target_rad for m in moves]))
    columns = {name: np.zeros((ticks, twin.copies)) for name in ("position", "current", "power", "action")}
    returns = np.zeros(twin.copies)
    r = previous = np.zeros(twin.copies)
    for tick in range(ticks):
        if tick % residual.decimation == 0 and policy is not None:
            if record is not None:
                record.append(observation)
            previous, r = r, np.clip(np.asarray(policy(observation), dtype=np.float64), -1.0, 1.0).reshape(twin.copies)
        twin.tick(driver.command(r))
        returns += sum(twin.rewards(r, previous).values())
        previous = r
        observation = twin.observe(r)
        columns["position"][tick] = twin.position_rad
        columns["current"][tick] = twin.current_a
        columns["power"][tick] = twin.plant.power_w
        columns["action"][tick] = twin.command
    time_s = (np.arange(1, ticks + 1) * twin.dt_s).astype(np.float64)
    metrics = []
    for index, move in enumerate(moves):
        response = Response(
            time_s,
            columns["position"][:, index],
            np.full(ticks, move.target_rad),
            columns["current"][:, index],
            columns["power"][:, index],
            columns["action"][:, index],
        )
        metrics.append(step_metrics(response, start_rad=move.start_rad, tolerance_rad=twin.tolerance_rad))
    return Evaluation(list(moves), metrics, returns.tolist())
