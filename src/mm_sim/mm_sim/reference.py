"""Position references the env asks the servo to follow: step moves and sine tracking."""

from __future__ import annotations

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
class StepReference:
    """Piecewise-constant targets: `targets_rad[j]` from `j * hold_s` on; reference velocity 0.

    Attributes:
        targets_rad: the successive targets (rad); the last one holds to the end.
        hold_s: how long each target holds (s).
    """

    targets_rad: tuple[float, ...]
    hold_s: float

    def sample(self, t_s: float) -> tuple[float, float]:
        """Target position (rad) and reference velocity (0 rad/s) at time `t_s` (s)."""
        index = min(int(t_s / self.hold_s), len(self.targets_rad) - 1)
        return self.targets_rad[index], 0.0

    def last_change_s(self, t_s: float) -> float:
        """When the target in force at `t_s` was set (s)."""
        return min(int(t_s / self.hold_s), len(self.targets_rad) - 1) * self.hold_s


@dataclass(frozen=True)
class SineReference:
    """`target = center + amplitude * sin(2π f t + phase)`, with its derivative as reference velocity.

    Attributes:
        center_rad: centre of the motion (rad).
        amplitude_rad: amplitude (rad).
        frequency_hz: frequency (Hz).
        phase_rad: phase at t = 0 (rad).
    """

    center_rad: float
    amplitude_rad: float
    frequency_hz: float
    phase_rad: float

    def sample(self, t_s: float) -> tuple[float, float]:
        """Target position (rad) and reference velocity (rad/s) at time `t_s` (s)."""
        omega = 2.0 * math.pi * self.frequency_hz
        angle = omega * t_s + self.phase_rad
        return (
            self.center_rad + self.amplitude_rad * math.sin(angle),
            self.amplitude_rad * omega * math.cos(angle),
        )


def random_steps(rng: np.random.Generator, *, range_rad: float, duration_s: float, hold_s: float) -> StepReference:
    """Step targets drawn uniformly from [-range_rad, range_rad], a new one every `hold_s` over `duration_s`."""
    count = max(1, math.ceil(duration_s / hold_s))
    return StepReference(tuple(float(x) for x in rng.uniform(-range_rad, range_rad, size=count)), hold_s)


def random_sine(
    rng: np.random.Generator, *, range_rad: float, max_frequency_hz: float, max_velocity_rad_s: float
) -> SineReference:
    """A sine within [-range_rad, range_rad] whose peak velocity stays below `max_velocity_rad_s`."""
    frequency_hz = float(rng.uniform(0.1 * max_frequency_hz, max_frequency_hz))
    amplitude_limit_rad = min(range_rad / 2.0, max_velocity_rad_s / (2.0 * math.pi * frequency_hz))
    amplitude_rad = float(rng.uniform(0.2, 1.0)) * amplitude_limit_rad
    center_rad = float(rng.uniform(-range_rad + amplitude_rad, range_rad - amplitude_rad))
    return SineReference(center_rad, amplitude_rad, frequency_hz, float(rng.uniform(0.0, 2.0 * math.pi)))
