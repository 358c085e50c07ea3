"""Baselines a learned policy must beat, and the bound none can.

- `CascadedPid`: the firmware's POSITION-mode law (servo contract, section 8), in float32 as in the C core, so
  gains tuned on the twin run unchanged on the servo; `firmware/core/test/test_pid_parity.py` compares the two.
- `tune_pid`: auto-tunes its gains on the twin for an objective (a careful user's PID, not a strawman);
  `tuned_gains` reads the cached results (`mm_sim/data/tuned_pid.yaml`, rewritten by `python -m mm_sim.baselines`).
- `TimeOptimalController`: bang-bang at the current limit, with the switch found by simulating the same
  twin, so the voltage limit, current lag and latency are all honoured: the fastest move there is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml
from mm_contract.profiles import LoadParams, ServoProfile
from numpy.typing import NDArray

from mm_sim.env import ServoEnv
from mm_sim.errors import MmSimError
from mm_sim.evaluate import Move, evaluate
from mm_sim.model import Plant

_F32 = np.float32


@dataclass(frozen=True)
class PidGains:
    """Gains of the cascaded position/velocity PID (the names travel in `ServoCommand`).

    Attributes:
        kp_pos: outer position gain (1/s): rad of error to rad/s of velocity command.
        v_max: velocity command limit (rad/s).
        kp_vel: inner velocity proportional gain (A·s/rad).
        ki_vel: inner velocity integral gain (A/rad).
        gravity_ff_a: gravity feedforward (A), multiplied by sin(position_rad).
        decel_rad_s2: the deceleration the position loop plans with (rad/s²); 0: the linear position loop of a
            PID. Above 0 the loop is PTOS (proximate time-optimal servo): far from the target it asks for the
            velocity from which braking at `decel_rad_s2` stops on the target, near it kp_pos · e.
    """

    kp_pos: float
    v_max: float
    kp_vel: float
    ki_vel: float
    gravity_ff_a: float
    decel_rad_s2: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value) or value < 0.0:
                msg = f"PID gain {field.name}={value!r} must be a finite number >= 0; fix it in the profile or command"
                raise MmSimError(msg)
        if self.decel_rad_s2 > 0.0 and self.kp_pos <= 0.0:
            msg = f"PTOS (decel_rad_s2={self.decel_rad_s2!r}) needs kp_pos > 0 for its linear zone near the target"
            raise MmSimError(msg)


def position_loop(error_rad: Any, kp_pos: np.float32, decel_rad_s2: np.float32) -> Any:
    """The outer loop's velocity demand (rad/s) for position errors (rad), float32 as the C core computes it.

    PID (decel_rad_s2 = 0): kp_pos · e. PTOS: kp_pos · e within e_lin = decel / (2 kp_pos²) of the target,
    beyond it sign(e) · (sqrt(2 · decel · |e|) − decel / (2 kp_pos)): the braking curve, shifted so that value and
    slope are continuous at e_lin (servo contract, section 8). `error_rad` is a float32 scalar or array.
    """
    linear = kp_pos * error_rad
    if np.all(decel_rad_s2 <= 0.0):
        return linear
    magnitude = np.abs(error_rad)
    braking = np.sqrt(_F32(2.0) * decel_rad_s2 * magnitude) - decel_rad_s2 / (_F32(2.0) * kp_pos)
    curve = np.where(error_rad > 0.0, braking, -braking)
    return np.where(magnitude <= decel_rad_s2 / (_F32(2.0) * kp_pos * kp_pos), linear, curve).astype(_F32)


def braking_error(error_rad: Any, position_rad: Any, target_rad: Any, gravity_share: np.float32) -> Any:
    """The error PTOS brakes over (rad): |e| plus the work gravity does on the way, with the sign of e.

    `|e| + gravity_share · (cos(position) − cos(target))`, at least 0, where `gravity_share` = gravity_ff_a /
    current_limit_a is the share of the current the feed-forward needs at its peak (servo contract, section 8):
    the integral of the feed-forward's `sin` over the path, in units of the current limit. Gravity that helps
    braking (moving up) lengthens the distance braking at `decel` may start from, gravity that hurts shortens it,
    so one deceleration fits every angle of a pendulum. float32, in the C core's order of operations.
    """
    gravity = gravity_share * (np.cos(position_rad) - np.cos(target_rad))
    magnitude = np.maximum(np.abs(error_rad) + gravity, _F32(0.0))
    return np.where(error_rad > 0.0, magnitude, -magnitude).astype(_F32)


class CascadedPid:
    """Cascaded PID: position loop to a velocity command, velocity PI loop to a current command.

    Per tick (all float32):
        v_cmd = clip(f(e) + v_ref, -v_max, v_max), with f(e) = kp_pos * e when decel_rad_s2 = 0 (PID) and the
            PTOS curve of the gravity-corrected error otherwise (`position_loop` of `braking_error`)
        u = kp_vel * (v_cmd - v) + I + gravity_ff_a * sin(position_rad)
        i = clip(u, -current_limit_a, current_limit_a)
        I += ki_vel * (v_cmd - v) * dt, unless u is saturated and v_cmd - v has the sign of the saturation.
    The output of tick k uses the integrator as it was before tick k (it is computed before deciding whether
    to integrate, which is what the anti-windup condition needs).
    """

    def __init__(self, gains: PidGains, *, current_limit_a: float, dt_s: float) -> None:
        """Build the controller.

        Args:
            gains: the PID gains.
            current_limit_a: output clamp (A), > 0.
            dt_s: control period (s), > 0.
        """
        if not (current_limit_a > 0.0 and dt_s > 0.0):
            msg = f"current_limit_a={current_limit_a!r} and dt_s={dt_s!r} must both be > 0"
            raise MmSimError(msg)
        self.gains = gains
        self._kp_pos = _F32(gains.kp_pos)
        self._decel = _F32(gains.decel_rad_s2)
        self._v_max = _F32(gains.v_max)
        self._kp_vel = _F32(gains.kp_vel)
        self._ki_vel = _F32(gains.ki_vel)
        self._gravity_ff_a = _F32(gains.gravity_ff_a)
        self._limit_a = _F32(current_limit_a)
        # PTOS with a feed-forward brakes over the gravity-corrected distance; None: the error as it is.
        braking_corrected = self._decel > 0.0 and self._gravity_ff_a > 0.0
        self._gravity_share = self._gravity_ff_a / self._limit_a if braking_corrected else None
        self._dt_s = _F32(dt_s)
        self._integrator_a = _F32(0.0)

    @property
    def integrator_a(self) -> Any:
        """The integrator state I (A): a float, or a float32 array for a batch."""
        return float(self._integrator_a) if np.ndim(self._integrator_a) == 0 else self._integrator_a

    def reset(self, integrator_a: Any = 0.0) -> None:
        """Clear the integrator, as the firmware does on entering POSITION mode.

        A non-zero `integrator_a` (A; an array for a batch of servos) presets it instead, for a bumpless
        hand-over from another controller.
        """
        self._integrator_a = _F32(integrator_a)

    def step(
        self,
        *,
        position_rad: Any,
        velocity_rad_s: Any,
        target_rad: Any,
        target_velocity_rad_s: Any = 0.0,
        schedule: Any = None,
    ) -> Any:
        """Run one control tick and return the current command (A), within ±current_limit_a.

        Scalars give a float; arrays (one servo per element, as in `mm_sim.batch`) give a float32 array, with the
        integrator kept per element.

        Args:
            position_rad: measured, unwrapped position (rad).
            velocity_rad_s: filtered velocity estimate (rad/s).
            target_rad: position target (rad).
            target_velocity_rad_s: reference velocity (rad/s), 0 for step moves.
            schedule: a policy's deceleration schedule (schedule_range × action, float32): PTOS brakes at
                decel_rad_s2 · exp(schedule) this tick (servo contract, section 4); None: at decel_rad_s2.
        """
        position = _F32(position_rad)
        target = _F32(target_rad)
        error = target - position
        decel = self._decel if schedule is None else self._decel * np.exp(_F32(schedule))
        if self._gravity_share is not None:
            error = braking_error(error, position, target, self._gravity_share)
        demand = position_loop(error, self._kp_pos, decel)
        v_cmd = np.clip(demand + _F32(target_velocity_rad_s), -self._v_max, self._v_max)
        v_error = v_cmd - _F32(velocity_rad_s)
        unclamped = self._kp_vel * v_error + self._integrator_a + self._gravity_ff_a * np.sin(position)
        output = np.clip(unclamped, -self._limit_a, self._limit_a)
        # Conditional integration: winding up further into a saturated output only delays recovery.
        pushing_into_limit = (np.abs(unclamped) > self._limit_a) & ((v_error > 0) == (unclamped > 0))
        integrated = self._integrator_a + self._ki_vel * v_error * self._dt_s
        self._integrator_a = _F32(np.where(pushing_into_limit, self._integrator_a, integrated))
        return float(output) if np.ndim(output) == 0 else output.astype(_F32)


class PidController:
    """Drives a `ServoEnv` with `CascadedPid`, reading the sensed state from the env's `info`."""

    def __init__(self, gains: PidGains) -> None:
        """Use `gains`; the current limit and period come from the env at each reset."""
        self.gains = gains
        self._pid: CascadedPid | None = None
        self._limit_a = 1.0

    def reset(self, env: ServoEnv, info: dict[str, Any]) -> None:
        """Start with an empty integrator, as the firmware does on entering POSITION mode."""
        self._limit_a = env.profile.driver.current_limit_a
        self._pid = CascadedPid(self.gains, current_limit_a=self._limit_a, dt_s=env.dt_s)

    def _started(self) -> CascadedPid:
        if self._pid is None:
            msg = "call reset(env, info) after env.reset before using the controller"
            raise MmSimError(msg)
        return self._pid

    def preset_integrator(self, integrator_a: float) -> None:
        """Start the integrator at `integrator_a` (A): a bumpless hand-over from another controller."""
        self._started().reset(integrator_a)

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """The action (normalised current command) for the sensed state in `info`."""
        current_a = self._started().step(
            position_rad=info["position_rad"],
            velocity_rad_s=info["velocity_rad_s"],
            target_rad=info["target_rad"],
            target_velocity_rad_s=info["target_velocity_rad_s"],
        )
        return np.array([current_a / self._limit_a], dtype=np.float32)


def gravity_feedforward_a(profile: ServoProfile, load: LoadParams) -> float:
    """The current that holds `load` horizontal: its gravity torque over the torque per ampere (A)."""
    return load.gravity_torque_nm / profile.output_torque_per_a


def initial_gains(profile: ServoProfile, load: LoadParams) -> PidGains:
    """Gains from the physics, the starting point of tuning.

    A velocity loop a quarter of the way to what the latency and the velocity filter allow; a velocity limit
    reachable within a quarter turn of braking; a position gain whose demanded deceleration (kp_pos · v) stays
    within the braking the motor has left after gravity.
    """
    inertia = profile.output_inertia_kg_m2(load)
    accel_per_a = profile.output_torque_per_a / inertia
    velocity_bandwidth = 0.25 * min(
        math.pi * profile.control.rate_hz / 3.0, 1.0 / profile.observation.velocity_filter_tau_s
    )
    kp_vel = velocity_bandwidth / accel_per_a
    braking = 0.7 * (profile.peak_torque_nm - load.gravity_torque_nm) / inertia
    v_max = min(0.8 * profile.no_load_speed_rad_s, math.sqrt(braking * math.pi / 2.0))
    kp_pos = min(velocity_bandwidth / 6.0, braking / v_max)
    return PidGains(
        kp_pos=kp_pos,
        v_max=v_max,
        kp_vel=kp_vel,
        ki_vel=kp_vel * velocity_bandwidth / 5.0,
        gravity_ff_a=gravity_feedforward_a(profile, load),
    )


_TUNED_NAMES = ("kp_pos", "v_max", "kp_vel", "ki_vel")


def tune_pid(
    env: ServoEnv, *, moves: list[Move], start: PidGains, evaluations: int = 32, seed: int = 0
) -> tuple[PidGains, float]:
    """Tune kp_pos, v_max, kp_vel and ki_vel for the env's objective on `moves`; gravity feedforward is kept.

    A (1+4) evolution strategy in log space: four random perturbations per round, the best kept if it raises
    the mean return, the step size halved after a round without gain.

    Args:
        env: the twin, with the objective to tune for.
        moves: the training moves.
        start: the starting gains (`initial_gains`).
        evaluations: the most gain sets to try (the start, then 4 per round).
        seed: seed of the perturbations and of the moves' sensor noise.

    Returns:
        The best gains and their mean return on `moves`.
    """
    base = np.log([getattr(start, n) for n in _TUNED_NAMES])

    def gains_at(x: NDArray[np.float64]) -> PidGains:
        """The gains at log-offset `x` from the start."""
        return dataclasses.replace(start, **dict(zip(_TUNED_NAMES, np.exp(base + x).tolist(), strict=True)))

    def score(x: NDArray[np.float64]) -> float:
        return evaluate(env, PidController(gains_at(x)), moves, seed=seed).mean_return

    best_x, best = evolve(score, len(_TUNED_NAMES), evaluations=evaluations, seed=seed)
    return gains_at(best_x), best


def evolve(
    score: Callable[[NDArray[np.float64]], float], dims: int, *, evaluations: int, seed: int, sigma: float = 0.5
) -> tuple[NDArray[np.float64], float]:
    """Maximise `score` over offsets from 0 by a (1+4) evolution strategy; returns the best offset and score.

    Four random perturbations per round, the best kept if it raises the score, the step size halved after a
    round without gain; at most `evaluations` calls of `score` (the start, then 4 per round).
    """
    rng = np.random.default_rng(seed)
    best_x, best = np.zeros(dims), score(np.zeros(dims))
    used = 1
    while used + 4 <= evaluations:
        candidates = [best_x + sigma * rng.standard_normal(dims) for _ in range(4)]
        scores = [score(x) for x in candidates]
        used += 4
        if max(scores) > best:
            best, best_x = max(scores), candidates[int(np.argmax(scores))]
        else:
            sigma *= 0.5
    return best_x, best


def polish(
    score: Callable[[NDArray[np.float64]], float],
    start: NDArray[np.float64],
    start_score: float,
    *,
    evaluations: int,
    step: float,
) -> tuple[NDArray[np.float64], float]:
    """Maximise `score` by a coordinate search from `start` (its score `start_score`); returns the best point and score.

    One coordinate at a time, `+step` then `-step`; a gain is kept at once and the sweep goes on from it; after a
    sweep without gain the step halves. At most `evaluations` calls of `score`. A random (1+4) round moves every
    coordinate at once, so near an optimum most of its candidates lose on some coordinate; one coordinate at a
    time finds what is left along each gain (measured: `bench/bench_baseline_audit.py`).
    """
    best_x, best = np.array(start, dtype=np.float64), start_score
    used = 0
    while used < evaluations:
        gained = False
        for index in range(best_x.size):
            for sign in (1.0, -1.0):
                if used >= evaluations:
                    return best_x, best
                candidate = best_x.copy()
                candidate[index] += sign * step
                value = score(candidate)
                used += 1
                if value > best:
                    best_x, best, gained = candidate, value, True
                    break
        if not gained:
            step *= 0.5
    return best_x, best


LAWS = ("pid", "ptos")
"""The classical laws with cached tuned gains: the linear cascaded PID and PTOS (`decel_rad_s2` > 0)."""


def _tuned_cache(law: str) -> dict[str, Any]:
    if law not in LAWS:
        msg = f"unknown law {law!r}; use one of {LAWS}"
        raise MmSimError(msg)
    text = (resources.files("mm_sim") / "data" / f"tuned_{law}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


def tuned_gains(profile: ServoProfile, load_name: str, objective: str, *, law: str = "pid") -> PidGains:
    """The cached tuned gains of `law` ("pid" or "ptos") for a shipped profile, load and named objective.

    Raises:
        MmSimError: nothing is cached for them (rerun `python -m mm_sim.tuning` to refresh the caches).
    """
    entry = _tuned_cache(law).get(profile.name, {}).get(load_name, {}).get(objective)
    if entry is None:
        msg = (
            f"no tuned {law} gains cached for {profile.name}/{load_name}/{objective}; "
            "run `python -m mm_sim.tuning` to refresh the caches"
        )
        raise MmSimError(msg)
    return PidGains(**entry)


BAND_AIM = 0.8
"""Where in the far half of the settle band the bound's bang-bang part stops the shaft, as a fraction of the band's
half-width past the target (the rest is margin for the sensing noise and the hold's first correction)."""


class TimeOptimalController:
    """The fastest settle the twin allows, as a controller: bang-bang, then the PID holds.

    Full current towards the target, one tick of an intermediate current, then full braking current until the
    shaft stops; the switch (a real-valued tick) is found by bisection on a copy of the env's plant (same
    parameters, same period of latency), so the current limit, the bus-voltage limit, the current loop's lag and
    friction are all honoured. Settling counts from entering the env's ±tolerance band for good, so the shaft is
    planned to stop `BAND_AIM` of the band *past* the target: it enters the band as late in its braking as it can
    and never leaves it (stopping on the target instead enters the band earlier in distance but later in time,
    and a law that enters at speed and stops inside the band settled sooner than that "bound"). The PID then
    takes over bumplessly: its integrator starts at the current that holds the load at the target. It uses the
    true plant, which no real controller has: it is a bound, not a baseline.
    """

    def __init__(self, hold_gains: PidGains) -> None:
        """Hold the target with `hold_gains` once the bang-bang part has stopped the shaft."""
        self.hold_gains = hold_gains
        self._hold = PidController(hold_gains)
        self._schedule: list[float] = []
        self._tick = 0
        self._hold_integrator_a = 0.0

    def reset(self, env: ServoEnv, info: dict[str, Any]) -> None:
        """Plan the bang-bang part for the move `env` has just started."""
        profile, load, target_rad = env.profile, env.plant.load, info["target_rad"]
        self._hold.reset(env, info)
        self._tick = 0
        start_rad = env.plant.angle_rad
        past_rad = math.copysign(BAND_AIM * env.tolerance_rad, target_rad - start_rad)
        self._schedule = bang_bang_schedule(Plant(profile, load), start_rad=start_rad, target_rad=target_rad + past_rad)
        static_nm = load.gravity_torque_nm * math.sin(target_rad) + load.stiffness_nm_per_rad * target_rad
        feedforward_a = self.hold_gains.gravity_ff_a * math.sin(target_rad)
        self._hold_integrator_a = static_nm / profile.output_torque_per_a - feedforward_a

    def __call__(self, observation: NDArray[np.float32], info: dict[str, Any]) -> NDArray[np.float32]:
        """The planned action, then the PID's."""
        self._tick += 1
        if self._tick <= len(self._schedule):
            return np.array([self._schedule[self._tick - 1]], dtype=np.float32)
        if self._tick == len(self._schedule) + 1:
            self._hold.preset_integrator(self._hold_integrator_a)
        return self._hold(observation, info)


def _bang_bang(plant: Plant, start_rad: float, direction: float, switch: float, max_ticks: int) -> list[float]:
    """Run the bang-bang move switching at the real-valued tick `switch` on `plant`; return its actions.

    Whole ticks of full current, one tick of the remainder (between full drive and full braking), then full
    braking until the shaft stops. The first tick runs with no command: an action acts one period later.
    """
    plant.reset(start_rad)
    plant.advance(0.0)
    limit_a = plant.profile.driver.current_limit_a
    whole = int(switch)
    actions: list[float] = []
    for tick in range(max_ticks):
        action = 1.0 if tick < whole else (2.0 * (switch - whole) - 1.0 if tick == whole else -1.0)
        actions.append(direction * action)
        plant.advance(direction * action * limit_a)
        if tick >= whole and direction * plant.velocity_rad_s <= 0.0:
            break
    return actions


def bang_bang_schedule(plant: Plant, *, start_rad: float, target_rad: float) -> list[float]:
    """Actions of the time-optimal move from rest at `start_rad` to rest at `target_rad` on `plant`."""
    direction = 1.0 if target_rad >= start_rad else -1.0
    max_ticks = round(5.0 / plant.profile.dt_s)

    def short_of_target(switch: float) -> bool:
        _bang_bang(plant, start_rad, direction, switch, max_ticks)
        return direction * (plant.angle_rad - target_rad) < 0.0

    low, high = 0.0, 1.0
    # Grow the accelerating phase until the shaft stops beyond the target, then bisect the switch to 1 % of a tick.
    while short_of_target(high) and high < max_ticks:
        low, high = high, 2.0 * high
    while high - low > 0.01:
        middle = 0.5 * (low + high)
        if short_of_target(middle):
            low = middle
        else:
            high = middle
    return _bang_bang(plant, start_rad, direction, low, max_ticks)
