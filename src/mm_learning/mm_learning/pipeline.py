"""After an SB3 training run (ROS-free): its best model → export with every check → quantised evaluation → register.

One pipeline for every caller: the learner node's sim-mode Train goal and ``mm export <run>`` both call
:func:`publish_run` on the run directory, which reads what the run was trained with from the run's own
``config.json`` (objective, profile, load, algorithm, velocity scale, episode length, evaluation moves), so an
export can neither ask again nor disagree with the training. (The ES schedule learner has its own,
``schedule.publish``, used by the node, ``mm learn`` and ``mm sweep``.)

Stages, each announced through ``on_phase`` ("exporting", "validating", "publishing"):

1. ``best_model.zip``, the evaluated model with the highest mean return (RL can make a policy worse);
2. :func:`export_trained`: calibration, held-out and closed-loop observations from the twin of the run's
   config on seeded moves, every acceptance check, signature, artifacts;
3. the quantised policy, run by TFLite Micro, evaluated in the nominal twin on the run's evaluation moves;
4. ``schedule.register`` into a registry (optional): versioned and signed again, the metadata's ``objective`` the
   objective's canonical text (what ``mm registry best <objective>`` finds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.registry import Registry, RegistryEntry
from mm_contract.tflm import Scheme, TflmPolicy
from mm_sim.env import ServoEnv
from mm_sim.evaluate import PolicyController
from stable_baselines3.common.base_class import BaseAlgorithm

from mm_learning.acceptance import DEFAULT_SCHEME, Budget, rollout_observations
from mm_learning.actor import actor_from_sb3
from mm_learning.algorithms import ALGORITHMS
from mm_learning.checkpoints import latest_checkpoint, read_state
from mm_learning.errors import TrainingError
from mm_learning.export import ClosedLoopSetup, ExportResult, export_policy
from mm_learning.schedule import register
from mm_learning.trainer import BEST_MODEL, TrainConfig
from mm_learning.twin import TwinSpec, evaluate_moves

EXPORT_CALIBRATION_SEED, EXPORT_HELD_OUT_SEED, EXPORT_CHECK_SEED = 2_000_000, 3_000_000, 4_000_000
"""Seeds of the export's calibration, held-out and closed-loop moves: disjoint from each other and from the
evaluation (``twin.EVAL_SEED``) and behaviour-cloning (``algorithms.CLONE_SEED``) seeds."""


@dataclass(frozen=True)
class PublishedRun:
    """A run's best model, exported, checked, evaluated quantised and (with a registry) registered.

    Attributes:
        config: the run's configuration as trained (``config.json``).
        best_steps: env steps of the exported model (the best evaluated one).
        export: the accepted export (files; its image is unversioned).
        quantized_metrics: the quantised policy in the twin on the run's evaluation moves (finite values only).
        metadata: the export's metadata with ``quantized_metrics``: what the registry stores.
        entry: the registry entry (its ``image()`` is the versioned image to deploy), or None without a registry.
    """

    config: TrainConfig
    best_steps: int
    export: ExportResult
    quantized_metrics: dict[str, float]
    metadata: dict[str, Any]
    entry: RegistryEntry | None


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics without NaNs (e.g. the settling time when no move settled), for JSON and the registry."""
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


def evaluate_quantized(model: bytes, twin: TwinSpec, moves: int) -> dict[str, float]:
    """The quantised policy ``model`` (.tflite), run by TFLite Micro, in the nominal twin on ``moves`` seeded moves."""
    env = twin.make_env(randomize=False)
    try:
        return evaluate_moves(env, PolicyController(TflmPolicy(model)), twin.moves(moves))
    finally:
        env.close()


def _best_evaluation(run_dir: Path) -> tuple[int, dict[str, float]]:
    """The step count and evaluation of the run's best model, from its latest checkpoint.

    Raises:
        TrainingError: the run has no evaluated model (cancelled before its first evaluation, or no run here).
    """
    checkpoint = latest_checkpoint(run_dir)
    state = {} if checkpoint is None else read_state(checkpoint)
    if "best" not in state or not (run_dir / BEST_MODEL).is_file():
        msg = f"{run_dir} has no evaluated model ({BEST_MODEL}) yet; train the run on (same `mm train` command)"
        raise TrainingError(msg)
    return int(state["best"]["steps"]), finite_metrics(state["best"]["metrics"])


def export_trained(
    model: BaseAlgorithm,
    twin: TwinSpec,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    out_dir: Path,
    moves: int = 10,
    name: str = "policy",
    metrics: Mapping[str, float] | None = None,
    **export_options: Any,
) -> ExportResult:
    """Export a trained model with :func:`mm_learning.export.export_policy` (checks, signature, artifacts).

    Calibration, held-out and closed-loop observations come from rollouts of the float actor on disjoint
    seeded moves of the nominal twin. ``export_options`` go to ``export_policy`` (``scheme``, ``budget``).
    Returns the ``ExportResult``; raises ``PolicyRejected`` naming the failed check.
    """
    actor = actor_from_sb3(model)

    def make_env() -> ServoEnv:
        return twin.make_env(randomize=False)

    calibration = rollout_observations(make_env, actor, range(EXPORT_CALIBRATION_SEED, EXPORT_CALIBRATION_SEED + moves))
    held_out = rollout_observations(make_env, actor, range(EXPORT_HELD_OUT_SEED, EXPORT_HELD_OUT_SEED + moves))
    return export_policy(
        actor,
        scales=twin.scales(),
        representative_obs=calibration,
        held_out_obs=held_out,
        closed_loop_setup=ClosedLoopSetup(make_env, range(EXPORT_CHECK_SEED, EXPORT_CHECK_SEED + moves)),
        private_key=private_key,
        out_dir=out_dir,
        name=name,
        objective=twin.objective.text,
        training_steps=int(model.num_timesteps),
        metrics=metrics,
        **export_options,
    )


def publish_run(
    run_dir: Path,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    registry: Registry | None,
    out_dir: Path | None = None,
    name: str = "policy",
    export_moves: int = 10,
    scheme: Scheme = DEFAULT_SCHEME,
    budget: Budget = Budget(),  # noqa: B008 -- frozen dataclass, safe as a default
    on_phase: Callable[[str], None] | None = None,
) -> PublishedRun:
    """Export, check, evaluate and register the best model of the SB3 run in ``run_dir`` (see the module docstring).

    Args:
        run_dir: the run directory (``mm train --out``, or the learner node's run folder).
        private_key: the signing key.
        registry: where to store the accepted policy; None: export and evaluate only.
        out_dir: artifact directory (default ``run_dir/export``).
        name: artifact base name.
        export_moves: seeded moves for the calibration, held-out and closed-loop checks.
        scheme: the quantisation scheme.
        budget: the firmware's model and arena budget.
        on_phase: called with "exporting", "validating" and "publishing" as each stage starts.

    Raises:
        TrainingError: ``run_dir`` is not a run, or has no evaluated model.
        PolicyRejected: a check refused the policy (nothing is registered).
    """
    phase = on_phase or (lambda _phase: None)
    config = TrainConfig.read(run_dir)
    best_steps, best_metrics = _best_evaluation(run_dir)
    phase("exporting")
    model = ALGORITHMS[config.algorithm].load(run_dir / BEST_MODEL, device="cpu")
    export = export_trained(
        model,
        config.twin,
        private_key=private_key,
        out_dir=out_dir or run_dir / "export",
        moves=export_moves,
        name=name,
        metrics=best_metrics,
        scheme=scheme,
        budget=budget,
    )
    phase("validating")
    quantized = finite_metrics(evaluate_quantized(export.paths["tflite"].read_bytes(), config.twin, config.eval_moves))
    metadata = dict(export.metadata) | {"quantized_metrics": quantized}
    phase("publishing")
    entry = None if registry is None else register(export.image, metadata, registry=registry, private_key=private_key)
    return PublishedRun(config, best_steps, export, quantized, metadata, entry)
