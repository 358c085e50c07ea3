"""Response metrics shared by the env's users, the driver and the benches: computed from a recorded response.

A `Response` is what a run recorded tick by tick; `step_metrics` describes a move to one target, and
`tracking_metrics` a run against a moving reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mm_contract.errors import ContractError


@dataclass(frozen=True)
class Response:
    """A recorded response, one entry per control tick.

    Attributes:
        time_s: tick times (s), evenly spaced.
        position_rad: measured position (rad).
        target_rad: target (rad).
        current_a: measured current (A).
        power_w: electrical power drawn (W).
        action: the actions in [-1, 1].
    """

    time_s: NDArray[np.float64]
    position_rad: NDArray[np.float64]
    target_rad: NDArray[np.float64]
    current_a: NDArray[np.float64]
    power_w: NDArray[np.float64]
    action: NDArray[np.float64]

    def __post_init__(self) -> None:
        lengths = {len(v) for v in vars(self).values()}
        if len(lengths) != 1 or len(self.time_s) < 2:
            msg = f"a response needs equally long arrays of at least 2 ticks, got lengths {sorted(lengths)}"
            raise ContractError(msg)

    @property
    def dt_s(self) -> float:
        """Tick period (s)."""
        return float(self.time_s[1] - self.time_s[0])


@dataclass(frozen=True)
class StepMetrics:
    """How a move from rest to one target went.

    Attributes:
        rise_time_s: time from 10 % to 90 % of the move (s); None if it never got to 90 %.
        settling_time_s: time until |error| stays within the tolerance band to the end (s); None if never.
        overshoot_rad: furthest the shaft went past the target (rad).
        steady_state_error_rad: mean |error| over the last 10 % of the response (rad).
        rms_error_rad: root-mean-square error over the response (rad).
        energy_j: electrical energy drawn, ∫max(P, 0) dt (J).
        peak_current_a: largest |measured current| (A).
        command_smoothness: mean |a_k − a_{k−1}| (lower is smoother).
    """

    rise_time_s: float | None
    settling_time_s: float | None
    overshoot_rad: float
    steady_state_error_rad: float
    rms_error_rad: float
    energy_j: float
    peak_current_a: float
    command_smoothness: float


def _energy_j(response: Response) -> float:
    return float(np.sum(np.maximum(response.power_w, 0.0)) * response.dt_s)


def _smoothness(response: Response) -> float:
    return float(np.mean(np.abs(np.diff(response.action))))


def settling_time_s(error_rad: NDArray[np.float64], dt_s: float, tolerance_rad: float) -> float | None:
    """Time (s) after which |error| stays below `tolerance_rad` to the end.

    Entry k of `error_rad` is at time k·dt; None if the last entry is still outside the band.
    """
    outside = np.flatnonzero(np.abs(error_rad) >= tolerance_rad)
    if len(outside) == 0:
        return 0.0
    if outside[-1] == len(error_rad) - 1:
        return None
    return float(outside[-1] + 1) * dt_s


def steady_state_error_rad(error_rad: NDArray[np.float64]) -> float:
    """Mean |error| over the last 10 % of a response (at least its last tick) (rad)."""
    tail = max(1, len(error_rad) // 10)
    return float(np.mean(np.abs(error_rad[-tail:])))


def step_metrics(response: Response, *, start_rad: float, tolerance_rad: float) -> StepMetrics:
    """Metrics of a move from rest at `start_rad` to a constant target (the response's first target).

    Times are measured from the response's first tick minus one period (the tick the move was commanded).

    Raises:
        ContractError: the target changes within the response.
    """
    target_rad = float(response.target_rad[0])
    if np.any(response.target_rad != target_rad):
        msg = "step_metrics needs one constant target; cut the response at each target change"
        raise ContractError(msg)
    error = target_rad - response.position_rad
    dt_s = response.dt_s
    distance = target_rad - start_rad
    direction = 1.0 if distance >= 0.0 else -1.0
    progress = direction * (response.position_rad - start_rad)
    rise_time_s = None
    if abs(distance) > 0.0:
        reached_10 = np.flatnonzero(progress >= 0.1 * abs(distance))
        reached_90 = np.flatnonzero(progress >= 0.9 * abs(distance))
        if len(reached_90):
            rise_time_s = float(reached_90[0] - reached_10[0]) * dt_s
    settle = settling_time_s(error, dt_s, tolerance_rad)
    return StepMetrics(
        rise_time_s=rise_time_s,
        settling_time_s=None if settle is None else settle + dt_s,
        overshoot_rad=max(0.0, float(np.max(-direction * error))),
        steady_state_error_rad=steady_state_error_rad(error),
        rms_error_rad=float(math.sqrt(np.mean(error**2))),
        energy_j=_energy_j(response),
        peak_current_a=float(np.max(np.abs(response.current_a))),
        command_smoothness=_smoothness(response),
    )


@dataclass(frozen=True)
class TrackingMetrics:
    """How a run against a moving reference went.

    Attributes:
        rms_error_rad: root-mean-square tracking error (rad).
        max_error_rad: largest |error| (rad).
        energy_j: electrical energy drawn (J).
        peak_current_a: largest |measured current| (A).
        command_smoothness: mean |a_k − a_{k−1}|.
    """

    rms_error_rad: float
    max_error_rad: float
    energy_j: float
    peak_current_a: float
    command_smoothness: float


def tracking_metrics(response: Response) -> TrackingMetrics:
    """Metrics of a run against any reference."""
    error = response.target_rad - response.position_rad
    return TrackingMetrics(
        rms_error_rad=float(math.sqrt(np.mean(error**2))),
        max_error_rad=float(np.max(np.abs(error))),
        energy_j=_energy_j(response),
        peak_current_a=float(np.max(np.abs(response.current_a))),
        command_smoothness=_smoothness(response),
    )
