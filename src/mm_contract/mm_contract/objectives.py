"""Objectives: what "driving the load well" means, as a reward computed from one transition sample.

`reward(weights, sample)` is pure and uses only what the servo reports in its transition samples (measured
position, velocity estimate, current, target, electrical power, actions, period), so the learner computes the
same reward from the real servo's transitions as the env does in simulation.

Terms (each is a cost per control tick, so an episode's sum is in physical units):
- `accuracy`: −|e|·dt, the integral of absolute error (rad·s).
- `speed`: −dt while |e| is outside the tolerance band, i.e. minus the time spent away from the target (s).
- `energy`: −max(P, 0)·dt, the electrical energy drawn (J); regenerated energy is not credited, since most
  drivers burn it in a resistor.
- `smooth`: −(a_k − a_{k−1})², command changes that excite the load and wear the gearbox.

Episode-level optimisers (the classical laws' tuner, the schedule's evolution strategy) judge the `energy` objective
by a move criterion instead of its per-tick return: the least electrical energy per move at matched settle
(`EnergyBudget`: mean settle at most 1.05× the energy-tuned PID's on the same moves, every move settled). The
per-tick return (error integral plus 0.05·J) rewards settling fast as much as saving energy, so laws tuned on it
spent energy to settle sooner than the PID; the criterion asks for what the objective names.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mm_contract.errors import ObjectiveError

TERMS = ("accuracy", "speed", "energy", "smooth")

OBJECTIVES: dict[str, dict[str, float]] = {
    # Each named objective still contains some accuracy: energy or smoothness alone is won by doing nothing.
    "accuracy": {"accuracy": 1.0},
    "speed": {"speed": 1.0, "accuracy": 0.1},
    # Measured under the accuracy-tuned PID (10 moves per shipped profile and load): with these weights the
    # energy term is 0.2-4.8x the accuracy term (holding against a spring or gravity costs copper loss all the
    # time) and the smooth term 0.1-0.7x, so each changes what is best without making standing still pay.
    "energy": {"accuracy": 1.0, "energy": 0.05},
    "smooth": {"accuracy": 1.0, "smooth": 0.01},
}
"""Named objectives as weights of the terms; `parse_objective` also takes mixes of them and raw term weights."""

DEFAULT_TOLERANCE_RAD = 0.01

SETTLE_BUDGET_FACTOR = 1.05
"""Energy at matched settle: the mean settle a controller may take, as a multiple of the reference PID's.

5 % inside the 1.1× the energy goal allows: a law tuned to the edge of its budget on one set of moves overran it
by up to 0.4 % on another (the tuning moves against the validation moves of mm_v3 + pendulum)."""


@dataclass(frozen=True)
class EnergyBudget:
    """The `energy` objective's move criterion: least energy per move within a settle budget.

    The score is dimensionless: −(mean energy / the reference's), with penalties (100 per unit of relative
    budget overrun, 1000 per fraction of unsettled moves) steep enough that a search stays within the budget and
    settles every move.

    A budget made by `of_moves` with `confidence_z` > 0 also knows the reference's settle on each move and judges
    a controller on the same moves by an upper confidence bound of its mean settle instead of the mean: mean +
    z · the standard error of its paired difference from the reference (each move's settle minus the reference's
    scaled by the ratio of the means, the delta method for a ratio of means). A search that spends the budget to
    its edge on one set of moves overruns it on the next about half the time; bounded this way it stays inside on
    a new set with the one-sided confidence of z (2: about 98 %).

    Attributes:
        settle_s: the mean settling time allowed (s): `SETTLE_BUDGET_FACTOR` × the reference PID's.
        energy_j: the reference PID's mean energy per move (J), the unit of the score.
        reference_moves_s: the reference's settle on each move (s, NaN: not settled); empty unless bounded.
        confidence_z: standard errors added to a controller's mean settle (0: the mean itself).
    """

    settle_s: float
    energy_j: float
    reference_moves_s: tuple[float, ...] = ()
    confidence_z: float = 0.0

    @classmethod
    def matching(cls, reference_settle_s: float, reference_energy_j: float) -> EnergyBudget:
        """The budget of a reference controller that settled its moves in `reference_settle_s` (s, mean).

        Raises:
            ObjectiveError: the reference did not settle (NaN) or a value is not positive.
        """
        if not (reference_settle_s > 0.0 and reference_energy_j > 0.0):
            msg = (
                f"an energy budget needs a reference that settles its moves using energy: settle "
                f"{reference_settle_s!r} s, energy {reference_energy_j!r} J"
            )
            raise ObjectiveError(msg)
        return cls(SETTLE_BUDGET_FACTOR * reference_settle_s, reference_energy_j)

    @classmethod
    def of_moves(
        cls, reference_settle_s: NDArray[np.float64], reference_energy_j: NDArray[np.float64], *, confidence_z: float
    ) -> EnergyBudget:
        """The budget of a reference from its moves (arrays over the moves: s, NaN where not settled; J).

        `confidence_z` > 0: controllers are judged on the same moves by the upper confidence bound of their mean
        settle (class docstring); 0: as `matching`.

        Raises:
            ObjectiveError: as `matching`, or `confidence_z` is negative or not finite.
        """
        if not (math.isfinite(confidence_z) and confidence_z >= 0.0):
            msg = f"the settle budget's confidence must be a finite z >= 0, not {confidence_z!r}"
            raise ObjectiveError(msg)
        settle = np.asarray(reference_settle_s, dtype=float)
        mean_settle = float(np.nanmean(settle)) if not np.isnan(settle).all() else math.nan
        budget = cls.matching(mean_settle, float(np.mean(reference_energy_j)))
        if confidence_z == 0.0:
            return budget
        return cls(budget.settle_s, budget.energy_j, tuple(settle.tolist()), confidence_z)

    def _mean_settle(self, settle_s: NDArray[np.float64], settled: NDArray[np.bool_]) -> NDArray[np.float64]:
        """Each controller's mean settle over its settled moves (s), or its upper confidence bound."""
        count = np.maximum(settled.sum(axis=-1), 1)
        mean_settle = np.where(settled, settle_s, 0.0).sum(axis=-1) / count
        if self.confidence_z == 0.0:
            return np.asarray(mean_settle)
        reference = np.asarray(self.reference_moves_s)
        if settle_s.shape[-1:] != reference.shape:
            msg = f"a bounded budget judges the reference's {reference.size} moves, not {settle_s.shape[-1]}"
            raise ObjectiveError(msg)
        paired = settled & ~np.isnan(reference)
        pairs = paired.sum(axis=-1)
        own = np.where(paired, settle_s, 0.0).sum(axis=-1)
        ratio = own / np.maximum(np.where(paired, reference, 0.0).sum(axis=-1), 1e-12)
        difference = np.where(paired, settle_s - ratio[..., None] * reference, 0.0)
        error = np.sqrt((difference**2).sum(axis=-1) / np.maximum(pairs - 1, 1) / np.maximum(pairs, 1))
        return np.asarray(mean_settle + self.confidence_z * error)

    def score_moves(self, energy_j: NDArray[np.float64], settle_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scores (higher is better) of controllers from their moves, arrays (controllers × moves).

        Args:
            energy_j: each move's energy (J).
            settle_s: each move's settling time (s); NaN where the move did not settle.

        Raises:
            ObjectiveError: a bounded budget (`of_moves`) is given other moves than the reference's.
        """
        settled = ~np.isnan(settle_s)
        fraction = settled.mean(axis=-1)
        mean_settle = self._mean_settle(settle_s, settled)
        overrun = np.where(fraction > 0.0, np.maximum(0.0, mean_settle / self.settle_s - 1.0), 1.0)
        return np.asarray(-energy_j.mean(axis=-1) / self.energy_j - 100.0 * overrun - 1000.0 * (1.0 - fraction))


@dataclass(frozen=True)
class TransitionSample:
    """One control tick as the servo reports it.

    Attributes:
        position_rad: measured, unwrapped position after the tick (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        current_a: measured motor current (A).
        target_rad: position target (rad).
        power_w: electrical power drawn (W).
        action: the action of this tick, in [-1, 1].
        previous_action: the action of the tick before.
        dt_s: control period (s).
    """

    position_rad: float
    velocity_rad_s: float
    current_a: float
    target_rad: float
    power_w: float
    action: float
    previous_action: float
    dt_s: float


@dataclass(frozen=True)
class Objective:
    """An objective as the learner uses it, parsed once from what a user wrote (`parse_objective`).

    Attributes:
        text: the canonical spelling (the registry key, run folder key and metadata "objective"): a name
            ("speed"), a mix with weights normalised to sum to 1 in `OBJECTIVES` order ("speed:0.7,energy:0.3"),
            or reward term weights in `TERMS` order ("accuracy=1,energy=0.05"). `parse_objective(text)` gives the
            same value back.
        components: the named objectives of a mix and their weights (sum 1), in `OBJECTIVES` order; empty for
            term weights.
        terms: the reward term weights (`reward`, `reward_terms`), in `TERMS` order: each component's
            `OBJECTIVES` weights times its mix weight, summed.
    """

    text: str
    components: tuple[tuple[str, float], ...]
    terms: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return self.text

    @property
    def weights(self) -> dict[str, float]:
        """The reward term weights as a dict (what `reward` and `reward_terms` take)."""
        return dict(self.terms)

    @property
    def mix(self) -> dict[str, float]:
        """The named objectives and their weights (sum 1); empty for term weights."""
        return dict(self.components)

    @property
    def base(self) -> str:
        """The named objective whose tuned classical gains serve this one: a mix's largest component.

        Raises:
            ObjectiveError: term weights have no named objective, hence no tuned classical controller.
        """
        if not self.components:
            msg = (
                f"objective {self.text!r} is term weights, which have no tuned classical controller; "
                f"use one of {list(OBJECTIVES)} or a mix like 'speed:0.7,energy:0.3'"
            )
            raise ObjectiveError(msg)
        return max(self.components, key=lambda item: item[1])[0]


def _weight(text: str, part: str, spec: str, *, positive: bool) -> float:
    """A weight of `part` in `spec`; `positive`: > 0 (mix weights), else >= 0 (term weights)."""
    try:
        weight = float(text) if text.strip() else 1.0
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and (weight > 0.0 if positive else weight >= 0.0)):
        bound = "> 0" if positive else ">= 0"
        msg = f"objective weight {text.strip()!r} of {part!r} in {spec!r} must be a finite number {bound}"
        raise ObjectiveError(msg)
    return weight


def _spell(pairs: Iterable[tuple[str, float]], separator: str) -> str:
    return ",".join(f"{name}{separator}{weight:.6g}" for name, weight in pairs)


def _from_terms(weights: Mapping[str, float], spec: object) -> Objective:
    unknown = sorted(set(weights) - set(TERMS))
    if unknown or not weights:
        msg = f"objective {spec!r}: unknown terms {unknown}; the terms are {list(TERMS)}"
        raise ObjectiveError(msg)
    checked = {term: _weight(str(weight), term, str(spec), positive=False) for term, weight in weights.items()}
    terms = tuple((term, checked[term]) for term in TERMS if term in checked)
    return Objective(_spell(terms, "="), (), terms)


def _from_mix(weights: Mapping[str, float]) -> Objective:
    total = sum(weights.values())
    components = tuple((name, weights[name] / total) for name in OBJECTIVES if name in weights)
    summed: dict[str, float] = {}
    for name, share in components:
        for term, weight in OBJECTIVES[name].items():
            summed[term] = summed.get(term, 0.0) + share * weight
    text = components[0][0] if len(components) == 1 else _spell(components, ":")
    return Objective(text, components, tuple((term, summed[term]) for term in TERMS if term in summed))


def parse_objective(spec: str | Mapping[str, float] | Objective) -> Objective:
    """The one parser of objectives: what every entry point (CLI, Train goal, env, config files) calls.

    Args:
        spec: a named objective ("speed"), a mix of named objectives with positive weights
            ("speed:0.7,energy:0.3"; a weight left out is 1; normalised to sum 1), reward term weights as a
            dict ({"accuracy": 1.0, "energy": 0.05}) or as text ("accuracy=1,energy=0.05"), or an `Objective`
            (returned as it is).

    Raises:
        ObjectiveError: an unknown name or term, a name given twice, a weight that is not a finite number
            (> 0 in a mix, >= 0 for a term), or text mixing both forms; the message lists the valid ones.
    """
    if isinstance(spec, Objective):
        return spec
    if not isinstance(spec, str):
        return _from_terms(dict(spec), spec)
    parts = [part.strip() for part in spec.split(",")]
    if all("=" in part for part in parts):
        terms: dict[str, float] = {}
        for part in parts:
            term, _, weight = part.partition("=")
            if term.strip() in terms:
                raise ObjectiveError(f"term {term.strip()!r} appears twice in {spec!r}; give each term once")
            terms[term.strip()] = _weight(weight, term.strip(), spec, positive=False)
        return _from_terms(terms, spec)
    mix: dict[str, float] = {}
    for part in parts:
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in OBJECTIVES:
            msg = (
                f"unknown objective {name!r} in {spec!r}; use one of {', '.join(OBJECTIVES)}, a mix like "
                "'speed:0.7,energy:0.3' or term weights like 'accuracy=1,energy=0.05'"
            )
            raise ObjectiveError(msg)
        if name in mix:
            raise ObjectiveError(f"objective {name!r} appears twice in {spec!r}; give each objective once")
        mix[name] = _weight(weight, name, spec, positive=True)
    return _from_mix(mix)


def reward(
    weights: Mapping[str, float], sample: TransitionSample, *, tolerance_rad: float = DEFAULT_TOLERANCE_RAD
) -> tuple[float, dict[str, float]]:
    """The reward of one tick and its weighted terms (which sum to it).

    Args:
        weights: term weights, `Objective.weights`.
        sample: the tick as the servo reports it.
        tolerance_rad: the band that counts as "at the target" for `speed` (rad).
    """
    terms = reward_terms(
        weights,
        error_rad=abs(sample.target_rad - sample.position_rad),
        power_w=sample.power_w,
        action=sample.action,
        previous_action=sample.previous_action,
        dt_s=sample.dt_s,
        tolerance_rad=tolerance_rad,
    )
    return sum(terms.values()), terms


def reward_terms(
    weights: Mapping[str, float],
    *,
    error_rad: Any,
    power_w: Any,
    action: Any,
    previous_action: Any,
    dt_s: float,
    tolerance_rad: float = DEFAULT_TOLERANCE_RAD,
) -> dict[str, Any]:
    """The weighted terms of `reward` for |error| `error_rad` (rad), floats or arrays (one element per servo).

    Args:
        weights: term weights, `Objective.weights`.
        error_rad: absolute position error after the tick (rad).
        power_w: electrical power drawn (W).
        action: the action of this tick, in [-1, 1].
        previous_action: the action of the tick before.
        dt_s: control period (s).
        tolerance_rad: the band that counts as "at the target" for `speed` (rad).
    """
    raw = {
        "accuracy": lambda: -error_rad * dt_s,
        "speed": lambda: np.where(error_rad > tolerance_rad, -dt_s, 0.0),
        "energy": lambda: -np.maximum(power_w, 0.0) * dt_s,
        "smooth": lambda: -((action - previous_action) ** 2),
    }
    scalar = np.ndim(error_rad) == 0
    return {term: float(weight * raw[term]()) if scalar else weight * raw[term]() for term, weight in weights.items()}
