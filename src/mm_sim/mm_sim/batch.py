"""Many servos at once: the twin's step moves, vectorised, for fast training and evaluation.

`BatchTwin` runs `copies` servos of one profile and load through the same pipeline as `ServoEnv`, one array
element per servo: the mechanics from one MuJoCo model holding every copy (`build_mjcf(copies=...)`, each copy
moves exactly as the single model does), the electrical model (`model._Motor`), the encoder and velocity filter
(`MultiTurnEncoder`, `ObservationBuilder`), the observation features and the objective's reward terms
(`objectives.reward_terms`). With the sensing noise off it reproduces `ServoEnv` tick for tick
(`src/mm_sim/test/test_batch.py`); with noise each servo draws its own noise from one generator.

`rollout` drives every copy with the servo's POLICY mode in schedule mode (`Schedule`, `ScheduleDriver`): the
classical base law (`CascadedPid` as PTOS) runs every tick, and a policy deciding every `decimation` ticks
scales its braking deceleration by exp(range · a), exactly as the firmware does with a schedule image (servo
contract, sections 1, 4, 5). At a = 0, or with no policy, it is the classical controller. `evaluate_batch`
measures a controller on seeded moves with `mm_contract.metrics.step_metrics`, all moves at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from mm_contract.metrics import Response, step_metrics
from mm_contract.objectives import DEFAULT_TOLERANCE_RAD, Objective, parse_objective, reward_terms
from mm_contract.observation import COUNTS_PER_REV, MultiTurnEncoder, ObservationBuilder, ObsScales
from mm_contract.profiles import ServoProfile, load_profile
from numpy.typing import NDArray

from mm_sim.baselines import CascadedPid, PidGains
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Evaluation, Move
from mm_sim.model import PlantBatch

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
        objective: str | Mapping[str, float] | Objective,
        seed: int = 0,
        tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
        scales: ObsScales | None = None,
    ) -> None:
        """Build the batch.

        Args:
            profile: a shipped profile name or a `ServoProfile`.
            load: one of the profile's loads.
            copies: number of servos (>= 1).
            objective: anything `objectives.parse_objective` takes.
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
        self.weights = parse_objective(objective).weights
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
        self.previous_command = zeros.copy()
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
        self.previous_command = np.zeros(self.copies)
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
        self.previous_command = self.command
        self.command = np.clip(command, -1.0, 1.0)
        self.ticks += 1
        self._read()
        self._observer.advance(self.position_rad)

    def rewards(self) -> dict[str, Array]:
        """The objective's weighted reward terms of the last tick.

        As in `ServoEnv`, the action terms (smooth) see the normalised current commands: the one `tick` took
        and the one before it.
        """
        return reward_terms(
            self.weights,
            error_rad=np.abs(self.target_rad - self.position_rad),
            power_w=self.plant.power_w,
            action=self.command,
            previous_action=self.previous_command,
            dt_s=self.dt_s,
            tolerance_rad=self.tolerance_rad,
        )


@dataclass(frozen=True)
class Schedule:
    """How a scheduling policy drives the servo (POLICY mode with a schedule image, servo contract sections 4-5).

    Every tick the servo runs its classical base law (PTOS); every `decimation` ticks the policy decides an action
    a ∈ [-1, 1], held in between, and the base law brakes at `decel_rad_s2 · exp(range · a)` meanwhile. At a = 0
    it is the classical controller.

    Attributes:
        base: the base law's gains; `decel_rad_s2` > 0 when `range` > 0 (a PID has no braking curve to schedule).
        range: the schedule's log-range ρ, in [0, 2]; 0: the base law alone.
        decimation: control ticks per policy decision.
    """

    base: PidGains
    range: float
    decimation: int

    def __post_init__(self) -> None:
        if not (0.0 <= self.range <= MAX_SCHEDULE_RANGE) or self.decimation < 1:
            msg = (
                f"schedule range {self.range!r} must be in [0, {MAX_SCHEDULE_RANGE}] and decimation "
                f"{self.decimation!r} >= 1"
            )
            raise MmSimError(msg)
        if self.range > 0.0 and self.base.decel_rad_s2 <= 0.0:
            msg = "a schedule scales PTOS's braking deceleration: its base law needs decel_rad_s2 > 0"
            raise MmSimError(msg)


MAX_SCHEDULE_RANGE = 2.0
"""The firmware's MM_MAX_SCHEDULE_RANGE: the deceleration moves within exp(±2) of the base law's."""


class ScheduleDriver:
    """The servo's POLICY mode with a schedule image, for a batch: the base law every tick, scheduled by `a`."""

    def __init__(self, twin: BatchTwin, schedule: Schedule) -> None:
        """Drive `twin` with `schedule`."""
        self.twin = twin
        self.schedule = schedule
        self._range = _F32(schedule.range)
        self._pid = CascadedPid(schedule.base, current_limit_a=twin.current_limit_a, dt_s=twin.dt_s)
        self._pid.reset(np.zeros(twin.copies))

    def reset(self) -> None:
        """A new episode: the base law's integrator restarts, as the firmware's does."""
        self._pid.reset(np.zeros(self.twin.copies))

    def command(self, action: Array) -> Array:
        """The normalised current command for policy actions `action` on the present sensed state."""
        twin = self.twin
        current_a = self._pid.step(
            position_rad=twin.position_rad,
            velocity_rad_s=twin.velocity_rad_s,
            target_rad=twin.target_rad,
            schedule=self._range * _F32(action) if self._range > 0.0 else None,
        )
        return np.asarray(current_a, dtype=np.float64) / twin.current_limit_a


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


SchedulePolicy = Callable[[NDArray[np.float32]], Any]
"""Actions (copies,) in [-1, 1] for observations (copies × 8)."""


@dataclass(frozen=True)
class Rollout:
    """What a batch of moves recorded.

    Attributes:
        returns: each servo's return (sum of the objective's rewards).
        position_rad: measured position per tick (rows) and servo (columns).
        current_a: measured current (A), same layout.
        power_w: electrical power (W), same layout.
        command: the normalised current command, same layout.
    """

    returns: Array
    position_rad: Array
    current_a: Array
    power_w: Array
    command: Array

    def outcomes(self, target_rad: Array, dt_s: float, tolerance_rad: float) -> tuple[Array, Array]:
        """Each servo's energy (J) and settling time (s; NaN if still outside the band at the end).

        Measured as `metrics.step_metrics` measures them: energy drawn (regeneration not credited); the settle
        ends with the tick after the last one outside ±`tolerance_rad` of `target_rad`, from the move's command.
        """
        energy_j = np.maximum(self.power_w, 0.0).sum(axis=0) * dt_s
        outside = np.abs(np.asarray(target_rad)[None, :] - self.position_rad) >= tolerance_rad
        last = len(outside) - 1 - np.argmax(outside[::-1], axis=0)
        settle_s = np.where(outside.any(axis=0), (last + 1) * dt_s, 0.0) + dt_s
        return energy_j, np.where(outside[-1], np.nan, settle_s)


def rollout(
    twin: BatchTwin,
    schedule: Schedule,
    start_rad: Array,
    target_rad: Array,
    ticks: int,
    *,
    policy: SchedulePolicy | None = None,
    seed: int,
    record: list[NDArray[np.float32]] | None = None,
) -> Rollout:
    """Run one move per servo for `ticks` ticks, the policy deciding every `schedule.decimation` ticks.

    `policy` None runs the base law alone (a = 0). The sensing noise restarts from `seed`, so two rollouts of the
    same moves and seed differ only by what the policies did. `record` receives the observations decided on.
    """
    twin.rng = np.random.default_rng(seed)
    driver = ScheduleDriver(twin, schedule)
    observation = twin.reset(start_rad, target_rad)
    columns = np.zeros((4, ticks, twin.copies))
    returns = np.zeros(twin.copies)
    action = np.zeros(twin.copies)
    for tick in range(ticks):
        if tick % schedule.decimation == 0 and policy is not None:
            if record is not None:
                record.append(observation)
            action = np.clip(np.asarray(policy(observation), dtype=np.float64), -1.0, 1.0).reshape(twin.copies)
        twin.tick(driver.command(action))
        returns += sum(twin.rewards().values())
        observation = twin.observe(action)
        columns[:, tick] = twin.position_rad, twin.current_a, twin.plant.power_w, twin.command
    return Rollout(returns, *columns)


def evaluate_batch(
    twin: BatchTwin,
    schedule: Schedule,
    moves: Sequence[Move],
    policy: SchedulePolicy | None = None,
    *,
    seed: int = 0,
    record: list[NDArray[np.float32]] | None = None,
) -> Evaluation:
    """Run every move at once (`twin.copies` must equal the number of moves) and measure each.

    `policy` None runs the base law alone. Moves must share one duration; `seed` seeds the sensing noise.
    """
    if twin.copies != len(moves) or len({m.duration_s for m in moves}) != 1:
        msg = f"evaluate_batch needs one servo per move ({twin.copies} vs {len(moves)}) and one move duration"
        raise MmSimError(msg)
    ticks = round(moves[0].duration_s / twin.dt_s)
    start = np.array([m.start_rad for m in moves])
    target = np.array([m.target_rad for m in moves])
    run = rollout(twin, schedule, start, target, ticks, policy=policy, seed=seed, record=record)
    time_s = (np.arange(1, ticks + 1) * twin.dt_s).astype(np.float64)
    metrics = []
    for index, move in enumerate(moves):
        response = Response(
            time_s,
            run.position_rad[:, index],
            np.full(ticks, move.target_rad),
            run.current_a[:, index],
            run.power_w[:, index],
            run.command[:, index],
        )
        metrics.append(step_metrics(response, start_rad=move.start_rad, tolerance_rad=twin.tolerance_rad))
    return Evaluation(list(moves), metrics, run.returns.tolist())
