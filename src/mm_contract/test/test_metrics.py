"""Response metrics on responses whose answers are known."""

import numpy as np
import pytest
from mm_contract.errors import ContractError
from mm_contract.metrics import Response, settling_time_s, step_metrics, tracking_metrics

DT_S = 0.001


def _response(position: list[float] | np.ndarray, target: float | np.ndarray = 1.0) -> Response:
    position = np.asarray(position, dtype=float)
    n = len(position)
    return Response(
        time_s=np.arange(1, n + 1, dtype=float) * DT_S,
        position_rad=position,
        target_rad=np.broadcast_to(np.asarray(target, dtype=float), (n,)).copy(),
        current_a=np.linspace(0.0, -2.0, n),
        power_w=np.where(np.arange(n) % 2 == 0, 10.0, -4.0),
        action=np.where(np.arange(n) % 2 == 0, 0.5, -0.5),
    )


def test_a_first_order_step_response_has_its_textbook_rise_and_settling_times() -> None:
    tau_s = 0.05
    t = np.arange(1, 1001) * DT_S
    metrics = step_metrics(_response(1.0 - np.exp(-t / tau_s)), start_rad=0.0, tolerance_rad=0.02)
    assert metrics.rise_time_s == pytest.approx(tau_s * np.log(9.0), abs=2 * DT_S)  # 10 % -> 90 %
    assert metrics.settling_time_s == pytest.approx(tau_s * np.log(1 / 0.02), abs=2 * DT_S)
    assert metrics.overshoot_rad == 0.0
    assert metrics.steady_state_error_rad < 1e-6


def test_overshoot_energy_peak_current_and_smoothness() -> None:
    metrics = step_metrics(_response([0.5, 1.3, 1.1, 1.0, 1.0, 1.0]), start_rad=0.0, tolerance_rad=0.01)
    assert metrics.overshoot_rad == pytest.approx(0.3)
    assert metrics.energy_j == pytest.approx(3 * 10.0 * DT_S)  # regenerated energy is not counted
    assert metrics.peak_current_a == pytest.approx(2.0)
    assert metrics.command_smoothness == pytest.approx(1.0)
    assert metrics.settling_time_s == pytest.approx(4 * DT_S)


def test_a_downward_move_measures_overshoot_below_the_target() -> None:
    metrics = step_metrics(_response([0.5, -0.2, 0.0, 0.0], target=0.0), start_rad=1.0, tolerance_rad=0.01)
    assert metrics.overshoot_rad == pytest.approx(0.2)


def test_a_response_that_never_settles_says_so() -> None:
    metrics = step_metrics(_response(np.linspace(0, 0.5, 100)), start_rad=0.0, tolerance_rad=0.01)
    assert metrics.settling_time_s is None
    assert metrics.rise_time_s is None
    assert settling_time_s(np.array([0.5, 0.001, 0.5]), DT_S, 0.01) is None


def test_tracking_metrics_measure_the_error_against_a_moving_target() -> None:
    target = np.sin(np.arange(200) * 0.05)
    metrics = tracking_metrics(_response(target - 0.1, target=target))
    assert metrics.rms_error_rad == pytest.approx(0.1)
    assert metrics.max_error_rad == pytest.approx(0.1)


def test_step_metrics_refuse_a_changing_target_and_bad_arrays() -> None:
    with pytest.raises(ContractError, match="needs one constant target"):
        step_metrics(_response([0.0, 0.5, 1.0], target=np.array([1.0, 1.0, 2.0])), start_rad=0.0, tolerance_rad=0.01)
    with pytest.raises(ContractError, match="equally long arrays"):
        Response(*(np.zeros(3),) * 5, np.zeros(2))
