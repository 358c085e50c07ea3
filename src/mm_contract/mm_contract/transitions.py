"""The servo's streamed samples and the rules that make them into decision transitions (ROS-free).

The servo sends consecutive control-tick samples in batches (the columns of ``mm_msgs/TransitionBatch``,
:data:`COLUMNS`). A decision transition is ``(obs_i, action_i, reward, obs_{i+k})``, where k is the policy's
decimation (the policy runs every k control ticks and the servo holds its action, exploration noise included, in
between; servo contract sections 4 and 5) and the reward is the sum of the objective's per-tick rewards over the k
ticks, each computed by :func:`reward_terms` from the physical columns of the tick after (so the objective changes
without touching the firmware). The online learner (mm_learning.online) and the bag dataset (mm_learning.bags)
both take their transitions from :func:`decisions`, so what a recording yields and what the replay buffer fills
cannot differ.

Which samples make a transition (the flags are ``TransitionBatch.FLAG_*``):

- samples i..i+k must be consecutive ticks: within one :class:`TransitionColumns` always (join consecutive
  batches with :func:`concatenate`);
- decisions start at an episode start (the servo restarts its policy counter there) and follow every k ticks;
  none of samples i+1..i+k may start an episode (a new target, a reset, a mode change or a new policy breaks the
  causal link); with k = 1 every sample may start one;
- none of samples i..i+k may carry a fault (the firmware's limits, not the action, drove the motor), and none of
  samples i..i+k-1 the guard flag (the move left the policy's envelope and the classical controller drove it,
  servo contract section 4);
- the action must be the same on ticks i..i+k-1 (a window where the PID, not a held policy action, drove the
  motor is no decision; a policy window whose action changes means the servo does not run the policy at k).

The servo has no terminal state, so every transition bootstraps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mm_contract.constants import OBS_DIM, SampleFlag
from mm_contract.errors import TransitionError
from mm_contract.objectives import TransitionSample, reward

# Plain ints: numpy treats an IntFlag as an int64 array operand, so `uint8_flags |= SampleFlag.GUARD` would not cast.
FLAG_EPISODE_START = int(SampleFlag.EPISODE_START)
FLAG_FAULT = int(SampleFlag.FAULT)
FLAG_POLICY = int(SampleFlag.POLICY)
FLAG_GUARD = int(SampleFlag.GUARD)
"""The ``mm_msgs/TransitionBatch`` flag bits (checked against the message by src/mm_learning/test/test_online.py)."""

PHYSICAL_COLUMNS = ("position_rad", "velocity_rad_s", "current_a", "target_rad", "power_w")
"""The measured per-sample columns the rewards are computed from."""
COLUMNS = ("observations", "actions", *PHYSICAL_COLUMNS, "flags")
"""Every per-sample column of a ``TransitionBatch``, in :class:`TransitionColumns`' order."""


@dataclass(frozen=True)
class TransitionColumns:
    """Consecutive samples, as in ``mm_msgs/TransitionBatch`` (all columns of length ``count``).

    Attributes:
        first_tick: control tick of the first sample.
        dt_s: control period (s).
        observations: (count, 8) contract observations.
        actions: normalised current command applied at each tick, in [-1, 1].
        position_rad: measured, unwrapped position (rad).
        velocity_rad_s: filtered velocity estimate (rad/s).
        current_a: measured current (A).
        target_rad: position target (rad).
        power_w: electrical power drawn from the bus (W).
        flags: FLAG_* bits per sample.
    """

    first_tick: int
    dt_s: float
    observations: NDArray[np.float32]
    actions: NDArray[np.float32]
    position_rad: NDArray[np.float64]
    velocity_rad_s: NDArray[np.float64]
    current_a: NDArray[np.float64]
    target_rad: NDArray[np.float64]
    power_w: NDArray[np.float64]
    flags: NDArray[np.uint8]

    @classmethod
    def from_arrays(
        cls,
        *,
        first_tick: int,
        dt_s: float,
        observations: ArrayLike,
        actions: ArrayLike,
        position_rad: ArrayLike,
        velocity_rad_s: ArrayLike,
        current_a: ArrayLike,
        target_rad: ArrayLike,
        power_w: ArrayLike,
        flags: ArrayLike,
    ) -> TransitionColumns:
        """Check and convert the columns; ``observations`` may be flat (row-major, as in the message).

        Raises:
            TransitionError: columns of different lengths, wrong observation width, non-finite values, a period
                that is not > 0, or actions outside [-1, 1].
        """
        actions_array = np.asarray(actions, dtype=np.float32).reshape(-1)
        count = len(actions_array)
        obs = np.asarray(observations, dtype=np.float32)
        if obs.size != count * OBS_DIM:
            msg = f"observations hold {obs.size} values for {count} samples; need count x {OBS_DIM} (row-major)"
            raise TransitionError(msg)
        given = dict(zip(PHYSICAL_COLUMNS, (position_rad, velocity_rad_s, current_a, target_rad, power_w), strict=True))
        physical = {name: np.asarray(values, dtype=np.float64).reshape(-1) for name, values in given.items()}
        flag_array = np.asarray(flags, dtype=np.uint8).reshape(-1)
        lengths = {name: len(values) for name, values in physical.items()} | {"flags": len(flag_array)}
        if any(length != count for length in lengths.values()):
            msg = f"transition columns differ in length: actions {count}, {lengths}; every column needs `count` rows"
            raise TransitionError(msg)
        if not (math.isfinite(dt_s) and dt_s > 0.0):
            msg = f"dt_s={dt_s!r} must be a control period > 0 (s)"
            raise TransitionError(msg)
        columns: list[NDArray[Any]] = [obs, actions_array, *physical.values()]
        if not all(np.all(np.isfinite(column)) for column in columns):
            msg = "a transition batch holds NaN or infinite values; the servo must not send unmeasured samples"
            raise TransitionError(msg)
        if np.any(np.abs(actions_array) > 1.0):
            msg = "actions must be normalised current commands in [-1, 1] (contract section 4)"
            raise TransitionError(msg)
        return cls(first_tick, float(dt_s), obs.reshape(count, OBS_DIM), actions_array, flags=flag_array, **physical)

    @property
    def count(self) -> int:
        """Number of samples."""
        return len(self.actions)

    def samples_from(self, start: int) -> TransitionColumns:
        """The samples from index `start` on."""
        return TransitionColumns(
            first_tick=self.first_tick + start,
            dt_s=self.dt_s,
            **{name: getattr(self, name)[start:] for name in COLUMNS},
        )


def follows(first: TransitionColumns, second: TransitionColumns) -> bool:
    """Whether `second` starts at the tick after `first`'s last sample."""
    return first.first_tick + first.count == second.first_tick


def concatenate(first: TransitionColumns, second: TransitionColumns) -> TransitionColumns:
    """Two consecutive batches as one.

    Raises:
        TransitionError: `second` does not start at the tick after `first` ends.
    """
    if not follows(first, second):
        msg = f"batches are not consecutive: ticks {first.first_tick}+{first.count} then {second.first_tick}"
        raise TransitionError(msg)
    return TransitionColumns(
        first_tick=first.first_tick,
        dt_s=second.dt_s,
        **{name: np.concatenate([getattr(first, name), getattr(second, name)]) for name in COLUMNS},
    )


def first_decision(batch: TransitionColumns, decimation: int) -> int:
    """Where decisions start in a new stream: its first episode start, or any sample when every tick decides."""
    if decimation == 1:
        return 0
    starts = np.flatnonzero(batch.flags & FLAG_EPISODE_START)
    return int(starts[0]) if len(starts) else batch.count


def decisions(batch: TransitionColumns, decimation: int, start: int) -> tuple[NDArray[np.intp], int]:
    """The decision transitions of consecutive samples, by the rules of the module docstring.

    Args:
        batch: consecutive samples.
        decimation: control ticks per decision k (the policy image's ``policy_decimation``), >= 1.
        start: index of a decision start (e.g. :func:`first_decision`).

    Returns:
        The indices i of the transitions ``(obs_i, action_i, obs_{i+k})`` to keep, and the index of the next
        decision start, the first sample a following batch's decisions depend on (``count`` or less).

    Raises:
        TransitionError: decimation < 1, or a policy window whose action changed within a decision.
    """
    k = decimation
    if k < 1:
        msg = f"decimation {k} must be >= 1 control tick per decision"
        raise TransitionError(msg)
    actions, flags = batch.actions, batch.flags
    kept: list[int] = []
    i = start
    while i + k < batch.count:
        later_start = np.flatnonzero(flags[i + 1 : i + k + 1] & FLAG_EPISODE_START)
        if len(later_start):
            i += 1 + int(later_start[0])  # the next decision starts with the new episode
            continue
        held = bool(np.all(actions[i : i + k] == actions[i]))
        if not held and np.all(flags[i : i + k] & FLAG_POLICY):
            msg = (
                f"the servo changed its action within a decision of {k} ticks (from tick {batch.first_tick + i}): it"
                " does not run the policy at the image's policy_decimation (firmware without contract section 5's"
                " decimation byte?)"
            )
            raise TransitionError(msg)
        guarded = np.any(flags[i : i + k] & FLAG_GUARD)
        if held and not guarded and not np.any(flags[i : i + k + 1] & FLAG_FAULT):
            kept.append(i)
        i += k
    return np.asarray(kept, dtype=np.intp), i


def reward_terms(
    terms: Mapping[str, float], batch: TransitionColumns
) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
    """The reward of each tick i -> i+1 for term weights `terms`, and its weighted terms (``count - 1`` each).

    The terms sum to the reward. The twin's env computes the same: the measured state of sample i+1 (after
    action i took effect), action i, and the action before it (feature 6 of observation i, the previous action as
    the contract defines it).
    """
    values = np.empty(batch.count - 1)
    columns = {name: np.empty(batch.count - 1) for name in terms}
    for i in range(batch.count - 1):
        sample = TransitionSample(
            position_rad=float(batch.position_rad[i + 1]),
            velocity_rad_s=float(batch.velocity_rad_s[i + 1]),
            current_a=float(batch.current_a[i + 1]),
            target_rad=float(batch.target_rad[i + 1]),
            power_w=float(batch.power_w[i + 1]),
            action=float(batch.actions[i]),
            previous_action=float(batch.observations[i, 6]),
            dt_s=batch.dt_s,
        )
        values[i], sample_terms = reward(terms, sample)
        for name, value in sample_terms.items():
            columns[name][i] = value
    return values, columns


def decision_rewards(rewards: NDArray[np.float64], kept: NDArray[np.intp], decimation: int) -> NDArray[np.float64]:
    """The reward of each kept decision: the per-tick `rewards` (:func:`reward_terms`) summed over its k ticks."""
    if decimation == 1:
        return rewards[kept]
    return np.array([np.sum(rewards[i : i + decimation]) for i in kept], dtype=np.float64)
