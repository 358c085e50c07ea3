"""Objectives: one grammar (names, mixes, term weights) parsed once into a canonical value; each term rewards what
its name says, mixes are weighted sums, bad input is refused with the valid choices."""

import math

import numpy as np
import pytest
from mm_contract.errors import ObjectiveError
from mm_contract.objectives import (
    OBJECTIVES,
    SETTLE_BUDGET_FACTOR,
    EnergyBudget,
    Objective,
    TransitionSample,
    parse_objective,
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
    weights = parse_objective(objective).weights
    total, terms = reward(weights, _sample())
    assert set(terms) == set(weights)
    assert total == pytest.approx(sum(terms.values()))


def test_a_mix_is_a_dict_of_weights() -> None:
    total, terms = reward(parse_objective({"accuracy": 2.0, "energy": 0.5}).weights, _sample())
    assert terms["accuracy"] == pytest.approx(2.0 * -0.2 * 0.001)
    assert terms["energy"] == pytest.approx(0.5 * -3.0 * 0.001)
    assert total == pytest.approx(terms["accuracy"] + terms["energy"])


@pytest.mark.parametrize(
    ("objective", "match"),
    [
        ("fastest", r"unknown objective 'fastest'"),
        ({"accuracy": 1.0, "style": 2.0}, r"unknown terms \['style'\]"),
        ({"energy": -1.0}, r"weight '-1.0' of 'energy' .* must be a finite number >= 0"),
        ({}, r"unknown terms \[\]; the terms are"),
    ],
)
def test_bad_objectives_are_refused(objective: str | dict[str, float], match: str) -> None:
    with pytest.raises(ObjectiveError, match=match):
        parse_objective(objective)


def test_objective_mix_is_normalised_and_bad_objectives_are_named() -> None:
    # Moved from src/mm_learning/test/test_trainer.py: mm_learning's own parser is gone, this is the one.
    assert parse_objective("speed").mix == {"speed": 1.0}
    assert parse_objective("speed:3, energy:1").mix == pytest.approx({"speed": 0.75, "energy": 0.25})
    with pytest.raises(ObjectiveError, match="unknown objective 'fast'"):
        parse_objective("fast")
    with pytest.raises(ObjectiveError, match="must be a finite number > 0"):
        parse_objective("speed:nan")
    with pytest.raises(ObjectiveError, match="must be a finite number > 0"):
        parse_objective("speed:0,energy:1")
    with pytest.raises(ObjectiveError, match="appears twice"):
        parse_objective("speed,speed")


@pytest.mark.parametrize(
    ("spellings", "text"),
    [
        (["speed", "speed:1", " speed:2 "], "speed"),
        (["speed:0.7,energy:0.3", "energy:3, speed:7", "speed:70,energy:30"], "speed:0.7,energy:0.3"),
        (["speed,energy"], "speed:0.5,energy:0.5"),
        ([{"energy": 0.05, "accuracy": 1.0}, "energy=0.05,accuracy=1"], "accuracy=1,energy=0.05"),
    ],
)
def test_every_spelling_of_an_objective_parses_to_one_canonical_value(
    spellings: list[str | dict[str, float]], text: str
) -> None:
    values = [parse_objective(spelling) for spelling in spellings]
    assert {value.text for value in values} == {text}
    assert all(value == values[0] for value in values)
    # The canonical text is what crosses process and file boundaries: it parses back to the same value.
    assert parse_objective(text) == values[0]
    assert parse_objective(values[0]) is values[0]
    assert str(values[0]) == text


def test_a_mix_weighs_its_components_terms_and_serves_its_largest_components_classical_law() -> None:
    mix = parse_objective("speed:0.7,energy:0.3")
    speed, energy = OBJECTIVES["speed"], OBJECTIVES["energy"]
    assert mix.weights == pytest.approx(
        {
            "accuracy": 0.7 * speed["accuracy"] + 0.3 * energy["accuracy"],
            "speed": 0.7 * speed["speed"],
            "energy": 0.3 * energy["energy"],
        }
    )
    assert mix.base == "speed" and parse_objective("energy").base == "energy"
    with pytest.raises(ObjectiveError, match="term weights, which have no tuned classical controller"):
        _ = parse_objective({"accuracy": 1.0}).base
    assert isinstance(mix, Objective)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("speed:0.7,energy=0.3", r"unknown objective 'energy=0.3'"),
        ("accuracy=1,accuracy=2", "term 'accuracy' appears twice"),
        ("accuracy=x", r"weight 'x' of 'accuracy'"),
        ("", "unknown objective ''"),
    ],
)
def test_text_that_is_neither_a_mix_nor_term_weights_is_refused(text: str, match: str) -> None:
    with pytest.raises(ObjectiveError, match=match):
        parse_objective(text)


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


def test_a_bounded_energy_budget_judges_the_upper_confidence_bound_of_the_mean_settle() -> None:
    reference = np.array([0.2, 0.4, 0.6, 0.8])
    energy = np.full(4, 2.0)
    plain = EnergyBudget.of_moves(reference, energy, confidence_z=0.0)
    assert plain == EnergyBudget.matching(0.5, 2.0)
    bounded = EnergyBudget.of_moves(reference, energy, confidence_z=2.0)
    assert bounded.settle_s == plain.settle_s and bounded.reference_moves_s == (0.2, 0.4, 0.6, 0.8)
    # Both controllers take the budget's mean settle: one in proportion to the reference on every move (no
    # spread of the paired difference, so no margin), one with the long and the short moves swapped.
    proportional = reference * SETTLE_BUDGET_FACTOR
    scrambled = proportional[[3, 2, 1, 0]]
    settle = np.array([proportional, scrambled])
    plain_scores = plain.score_moves(np.ones((2, 4)), settle)
    bounded_scores = bounded.score_moves(np.ones((2, 4)), settle)
    assert plain_scores[0] == pytest.approx(plain_scores[1]) == pytest.approx(-0.5)
    assert bounded_scores[0] == pytest.approx(-0.5)
    assert bounded_scores[1] < -0.5 - 1.0  # the bound overruns the budget: penalised
    # The reference itself stays inside its own bounded budget.
    assert bounded.score_moves(energy[None], reference[None])[0] == pytest.approx(-1.0)


def test_a_bounded_energy_budget_refuses_other_moves_and_a_bad_confidence() -> None:
    bounded = EnergyBudget.of_moves(np.array([0.2, 0.4]), np.array([1.0, 1.0]), confidence_z=2.0)
    with pytest.raises(ObjectiveError, match="reference's 2 moves, not 3"):
        bounded.score_moves(np.ones((1, 3)), np.full((1, 3), 0.3))
    for z in (-1.0, math.nan):
        with pytest.raises(ObjectiveError, match="finite z >= 0"):
            EnergyBudget.of_moves(np.array([0.2]), np.array([1.0]), confidence_z=z)
    with pytest.raises(ObjectiveError, match="reference that settles"):
        EnergyBudget.of_moves(np.array([math.nan, math.nan]), np.array([1.0, 1.0]), confidence_z=2.0)
