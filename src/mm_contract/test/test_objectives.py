"""Objectives: each term rewards what its name says, mixes are weighted sums, bad weights are refused."""

import math

import numpy as np
import pytest
from mm_contract.errors import ObjectiveError
from mm_contract.objectives import (
    OBJECTIVES,
    SETTLE_BUDGET_FACTOR,
    EnergyBudget,
    TransitionSample,
    objective_weights,
    reward,
)


def _sample(**changes: float) -> TransitionSample:
    values = {
        "position_rad": 1.0,
        "velocity_rad_s": 0.0,
        "current_a": 0.5,
        "target_rad": 1.2,
        "power_w": 3.0,
        "action": 0.4,
        "previous_action": 0.1,
        "dt_s": 0.001,
    } | changes
    return TransitionSample(**values)


def test_each_term_measures_its_quantity_per_tick() -> None:
    _, terms = reward({"accuracy": 1, "speed": 1, "energy": 1, "smooth": 1}, _sample())
    assert terms["accuracy"] == pytest.approx(-0.2 * 0.001)  # rad·s
    assert terms["speed"] == pytest.approx(-0.001)  # s away from the target
    assert terms["energy"] == pytest.approx(-3.0 * 0.001)  # J drawn
    assert terms["smooth"] == pytest.approx(-(0.3**2))


def test_inside_the_band_costs_no_time_and_regeneration_is_not_credited() -> None:
    _, terms = reward({"speed": 1.0, "energy": 1.0}, _sample(position_rad=1.195, power_w=-5.0))
    assert terms == {"speed": 0.0, "energy": 0.0}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_named_objectives_sum_their_weighted_terms(objective: str) -> None:
    weights = objective_weights(objective)
    total, terms = reward(weights, _sample())
    assert set(terms) == set(weights)
    assert total == pytest.approx(sum(terms.values()))


def test_a_mix_is_a_dict_of_weights() -> None:
    total, terms = reward(objective_weights({"accuracy": 2.0, "energy": 0.5}), _sample())
    assert terms["accuracy"] == pytest.approx(2.0 * -0.2 * 0.001)
    assert terms["energy"] == pytest.approx(0.5 * -3.0 * 0.001)
    assert total == pytest.approx(terms["accuracy"] + terms["energy"])


@pytest.mark.parametrize(
    ("objective", "match"),
    [
        ("fastest", r"unknown objective 'fastest'"),
        ({"accuracy": 1.0, "style": 2.0}, r"unknown terms \['style'\]"),
        ({"energy": -1.0}, r"energy=-1.0 must be a finite number >= 0"),
        ({}, r"unknown terms \[\]; the terms are"),
    ],
)
def test_bad_objectives_are_refused(objective: str | dict[str, float], match: str) -> None:
    with pytest.raises(ObjectiveError, match=match):
        objective_weights(objective)


def test_the_energy_criterion_prefers_less_energy_only_within_the_settle_budget_with_every_move_settled() -> None:
    budget = EnergyBudget.matching(reference_settle_s=0.4, reference_energy_j=2.0)
    assert budget.settle_s == pytest.approx(0.4 * SETTLE_BUDGET_FACTOR)
    nan = math.nan
    energy = np.array([[2.0, 2.0], [1.0, 1.0], [0.5, 0.5], [0.5, 0.5], [1.0, 1.0]])
    within = budget.settle_s
    settle = np.array([[0.4, 0.4], [within, within], [0.5, 0.5], [0.3, nan], [nan, nan]])
    reference, cheaper, too_slow, one_unsettled, none_settled = budget.score_moves(energy, settle)
    assert reference == pytest.approx(-1.0) and cheaper == pytest.approx(-0.5)
    assert too_slow < reference and one_unsettled < too_slow and none_settled < one_unsettled
    with pytest.raises(ObjectiveError, match="reference that settles"):
        EnergyBudget.matching(nan, 2.0)
