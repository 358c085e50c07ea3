"""What the servo is asked to do over an episode: targets, and the disturbances and payloads it meets."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Reference(Protocol):
    """A target trajectory: `sample(t_s)` gives (target_rad, target_velocity_rad_s) at time t_s (s)."""

    def sample(self, t_s: float) -> tuple[float, float]:
        """Target position (rad) and reference velocity (rad/s) at time `t_s` (s)."""
        ...


@dataclass(frozen=True)
class Piecewise:
    """A piecewise-constant signal: `values[j]` from `times_s[j]` on (times ascending, the first 0).

    Used for step targets (rad), payloads (kg) and disturbance torques (N·m).
    """

    times_s: tuple[float, ...]
    values: tuple[float, ...]

    def value(self, t_s: float) -> float:
        """The value in force at `t_s` (s)."""
        return self.values[bisect.bisect_right(self.times_s, t_s) - 1]

    def last_change_s(self, t_s: float) -> float:
        """When the value in force at `t_s` was set (s)."""
        return self.times_s[bisect.bisect_right(self.times_s, t_s) - 1]


@dataclass(frozen=True)
class StepReference:
    """Step moves: piecewise-constant targets (rad) with reference velocity 0."""

    targets: Piecewise

    def sample(self, t_s: float) -> tuple[float, float]:
        """Target position (rad) and reference velocity (0 rad/s) at time `t_s` (s)."""
        return self.targets.value(t_s), 0.0


@dataclass(frozen=True)
class ChirpReference:
    """A sine or chirp: `target = center + amplitude * sin(φ(t))`.

    The frequency sweeps linearly from f0 to f1 over `sweep_s` (a sine when f0 = f1); the reference velocity is
    the exact derivative.

    Attributes:
        center_rad: centre (rad).
        amplitude_rad: amplitude (rad).
        f0_hz: start frequency (Hz).
        f1_hz: frequency at `sweep_s` (Hz).
        sweep_s: sweep duration (s).
        phase_rad: phase at t = 0 (rad).
    """

    center_rad: float
    amplitude_rad: float
    f0_hz: float
    f1_hz: float
    sweep_s: float
    phase_rad: float

    def sample(self, t_s: float) -> tuple[float, float]:
        """Target position (rad) and reference velocity (rad/s) at time `t_s` (s)."""
        rate = (self.f1_hz - self.f0_hz) / self.sweep_s
        phase = 2.0 * math.pi * (self.f0_hz * t_s + 0.5 * rate * t_s**2) + self.phase_rad
        omega = 2.0 * math.pi * (self.f0_hz + rate * t_s)
        return (
            self.center_rad + self.amplitude_rad * math.sin(phase),
            self.amplitude_rad * omega * math.cos(phase),
        )


def random_steps(rng: np.random.Generator, *, range_rad: float, duration_s: float, hold_s: float) -> StepReference:
    """Targets drawn uniformly from [-range_rad, range_rad], a new one every `hold_s` (s)."""
    count = max(1, math.ceil(duration_s / hold_s))
    targets = tuple(float(x) for x in rng.uniform(-range_rad, range_rad, size=count))
    return StepReference(Piecewise(tuple(j * hold_s for j in range(count)), targets))


def random_waypoints(
    rng: np.random.Generator, *, range_rad: float, duration_s: float, min_hold_s: float, max_hold_s: float
) -> StepReference:
    """A sequence of nearby targets, each held for a random time in [min_hold_s, max_hold_s] (s)."""
    times, targets, t_s = [], [], 0.0
    target = float(rng.uniform(-range_rad, range_rad))
    while t_s < duration_s:
        times.append(t_s)
        targets.append(target)
        t_s += float(rng.uniform(min_hold_s, max_hold_s))
        # Waypoints are close together: a path through the range rather than jumps across it.
        target = float(np.clip(target + rng.uniform(-0.5, 0.5) * range_rad, -range_rad, range_rad))
    return StepReference(Piecewise(tuple(times), tuple(targets)))


def random_chirp(
    rng: np.random.Generator, *, range_rad: float, duration_s: float, max_velocity_rad_s: float
) -> ChirpReference:
    """A sine or a chirp (even odds) within [-range_rad, range_rad], its peak velocity below the bound."""
    f_max_hz = 3.0
    f0_hz = float(rng.uniform(0.2, 1.0))
    f1_hz = f0_hz if rng.uniform() < 0.5 else float(rng.uniform(f0_hz, f_max_hz))
    amplitude_limit_rad = min(range_rad / 2.0, max_velocity_rad_s / (2.0 * math.pi * max(f0_hz, f1_hz)))
    amplitude_rad = float(rng.uniform(0.2, 1.0)) * amplitude_limit_rad
    center_rad = float(rng.uniform(-range_rad + amplitude_rad, range_rad - amplitude_rad))
    return ChirpReference(center_rad, amplitude_rad, f0_hz, f1_hz, duration_s, float(rng.uniform(0.0, 2 * math.pi)))


def random_pulses(
    rng: np.random.Generator, *, duration_s: float, peak: float, mean_gap_s: float, max_width_s: float
) -> Piecewise:
    """Pulses of a value in ±[peak/4, peak], lasting up to `max_width_s`, separated by ~`mean_gap_s` (s)."""
    times, values, t_s = [0.0], [0.0], float(rng.exponential(mean_gap_s))
    while t_s < duration_s:
        magnitude = float(rng.uniform(0.25, 1.0)) * peak * (1.0 if rng.uniform() < 0.5 else -1.0)
        width_s = float(rng.uniform(0.2, 1.0)) * max_width_s
        times += [t_s, t_s + width_s]
        values += [magnitude, 0.0]
        t_s += width_s + float(rng.exponential(mean_gap_s))
    return Piecewise(tuple(times), tuple(values))


def random_payloads(rng: np.random.Generator, *, duration_s: float, max_kg: float, hold_s: float) -> Piecewise:
    """Payloads drawn from [0, max_kg] (kg), changing every `hold_s` (s), starting with none."""
    count = max(1, math.ceil(duration_s / hold_s))
    values = (0.0, *(float(x) for x in rng.uniform(0.0, max_kg, size=count - 1)))
    return Piecewise(tuple(j * hold_s for j in range(count)), values)
