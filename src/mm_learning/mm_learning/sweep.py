"""Many schedule trainings at once on Ray: a grid of objectives × loads × seeds (× ES settings), one table.

Each trial is one `schedule.train_schedule` run with a generation budget, exported with every check and compared
with PID, PTOS and the time-optimal bound (`schedule.check`) inside a Ray task; the task returns the image and
its metadata, and this process registers it (`schedule.register`: versioned and signed with the sweep's key).
The signing key therefore never leaves the machine that runs the sweep: workers sign their exports with a
throwaway key, and the registry re-signs every image it versions anyway. A trial that raises is reported with
its error and the others go on.

Ray runs on this machine by default (`ray.init(num_cpus=workers)`): Ray's single-machine mode, so every server
of the instance binds 127.0.0.1, with no dashboard and no usage statistics. Given an address (`auto`,
`ray://head:10001`, `head:6379`) the trials run on that cluster instead; mm_sim and mm_learning travel with the
job (Ray `py_modules`), their dependencies (requirements.txt) must be installed on the nodes.

The evolution strategy is numpy on a batched MuJoCo twin: one trial uses one CPU and gains nothing from a GPU
(docs/learning.md, "Sweeps"), so trials ask Ray for one CPU each and none for a GPU.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from mm_contract.errors import ContractError
from mm_contract.objectives import parse_objective
from mm_contract.registry import Registry

import mm_learning
import mm_sim
from mm_learning import schedule
from mm_learning.errors import LearningError

LOOPBACK = "127.0.0.1"
ES_AXES = tuple(
    f.name
    for f in dataclasses.fields(schedule.ScheduleConfig)
    if (isinstance(f.default, int | float) or f.name == "episode_s") and f.name not in ("seed", "generations")
)
"""ScheduleConfig fields a sweep may vary (`--es NAME=V1,V2`); seeds and the budget have their own options."""
TABLE_NAMES = {"markdown": "sweep.md", "csv": "sweep.csv", "json": "sweep.json"}


class SweepError(LearningError):
    """A sweep cannot start: a bad grid, or Ray cannot be started or reached."""


@dataclass(frozen=True)
class Trial:
    """One training of a sweep.

    Attributes:
        config: the run (objective, load, seed, budget and ES settings).
        varied: the ES settings this sweep varies, with this trial's values (table columns).
    """

    config: schedule.ScheduleConfig
    varied: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        """objective/load/seed, then the varied settings: unique within a grid."""
        c = self.config
        return "/".join([c.objective.text, c.load, f"seed={c.seed}", *(f"{k}={v:g}" for k, v in self.varied)])


def parse_settings(settings: Sequence[str]) -> dict[str, list[float]]:
    """ES settings from ``NAME=V1,V2`` strings (`mm sweep --es`), for :func:`grid`.

    Raises:
        SweepError: a string not of that form.
    """
    parsed: dict[str, list[float]] = {}
    for setting in settings:
        name, _, listed = setting.partition("=")
        try:
            parsed[name] = [float(value) for value in listed.split(",")]
        except ValueError as exc:
            raise SweepError(f"ES setting {setting!r}: give NAME=V1,V2 with numbers ({exc})") from exc
    return parsed


def grid(
    *,
    objectives: Sequence[str],
    loads: Sequence[str],
    seeds: Sequence[int],
    es: Mapping[str, Sequence[float]] | None = None,
    base: schedule.ScheduleConfig | None = None,
) -> list[Trial]:
    """Every combination of objectives × loads × seeds × the values of each ES setting in `es`.

    Args:
        objectives: named objectives or mixes ("speed:0.7,energy:0.3").
        loads: loads of the base profile (an unknown load fails its trials, not the grid).
        seeds: seeds of the perturbations, moves and sensing noise.
        es: values per ES setting (names in :data:`ES_AXES`, e.g. {"sigma": [0.05, 0.1]}); a setting with one
            value applies to every trial and is not a column of the table.
        base: every other setting, including the generation budget and the profile (default: ScheduleConfig()).

    Raises:
        SweepError: an empty axis or an unknown ES setting.
        ObjectiveError: an objective `parse_objective` refuses.
        TrainingError: a combination ScheduleConfig refuses (e.g. sigma=0).
    """
    es = dict(es or {})
    unknown = sorted(set(es) - set(ES_AXES))
    if unknown:
        raise SweepError(f"unknown ES setting(s) {unknown}; vary one of {', '.join(ES_AXES)}")
    axes = {"objectives": objectives, "loads": loads, "seeds": seeds} | {f"es {k}": v for k, v in es.items()}
    empty = [name for name, values in axes.items() if len(values) == 0]
    if empty:
        raise SweepError(f"the grid is empty along {', '.join(empty)}: give at least one value each")
    base = base or schedule.ScheduleConfig()
    kinds: dict[str, type[Any]] = {name: int if isinstance(getattr(base, name), int) else float for name in es}
    fractional = [f"{name}={v:g}" for name, vs in es.items() for v in vs if kinds[name] is int and v != int(v)]
    if fractional:
        raise SweepError(f"{', '.join(fractional)}: these settings are whole numbers")
    base = dataclasses.replace(base, **{name: kinds[name](v[0]) for name, v in es.items() if len(v) == 1})
    varying = {name: values for name, values in es.items() if len(values) > 1}
    parsed = {objective: parse_objective(objective) for objective in objectives}
    trials = []
    for objective, load, seed in itertools.product(objectives, loads, seeds):
        for values in itertools.product(*varying.values()):
            varied = tuple(zip(varying, values, strict=True))
            settings = {name: kinds[name](value) for name, value in varied}
            config = dataclasses.replace(base, objective=parsed[objective], load=load, seed=seed, **settings)
            trials.append(Trial(config, varied))
    return trials


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial's Ray task sends back: the checked, unregistered policy and its comparison.

    Attributes:
        image: the exported image (signed with the worker's throwaway key).
        metadata: what the registry stores with it (`schedule.Checked.metadata`).
        comparison: PID, PTOS, the quantised policy and the bound on the evaluation moves (`Comparison.rows`).
        ticks: control ticks of experience. beat_start: a validation beat the classical start.
        node: the Ray node that ran it (its address and the first 8 hex digits of its id; '' outside Ray).
    """

    image: bytes
    metadata: dict[str, Any]
    comparison: dict[str, dict[str, float]]
    ticks: int
    beat_start: bool
    node: str = ""


def run_trial(config: schedule.ScheduleConfig, evaluation_moves: int) -> TrialOutcome:
    """Train one trial, export it with every check (signed with a throwaway key) and compare (in a Ray task)."""
    result = schedule.train_schedule(config)
    with tempfile.TemporaryDirectory(prefix="mm-sweep-") as out_dir:
        checked = schedule.check(
            result,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            out_dir=Path(out_dir),
            evaluation_moves=evaluation_moves,
        )
    return TrialOutcome(
        checked.export.image, checked.metadata, checked.comparison.rows, result.ticks, result.best is not None
    )


def _run_trial_on_node(config: schedule.ScheduleConfig, evaluation_moves: int) -> TrialOutcome:
    """:func:`run_trial` as a Ray task: its outcome names the node that ran it."""
    ray = _ray()
    node = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return dataclasses.replace(run_trial(config, evaluation_moves), node=node)


@dataclass(frozen=True)
class TrialResult:
    """A finished trial: its registered policy and comparison, or the error that stopped it.

    Attributes:
        trial: the trial.
        wall_s: wall time (s) from submitting the sweep to this trial's result.
        outcome: what the task returned (None if it failed).
        policy_id: the registry entry ('' if none). policy_version: its version (0 if none).
        error: why the trial failed ('' if it did not).
    """

    trial: Trial
    wall_s: float
    outcome: TrialOutcome | None = None
    policy_id: str = ""
    policy_version: int = 0
    error: str = ""

    def row(self) -> dict[str, Any]:
        """One table row: the trial, then its objective's metric for PID, PTOS, policy and bound."""
        config, outcome = self.trial.config, self.outcome
        metric, _ = schedule.objective_metric(config.objective)
        row: dict[str, Any] = {
            "trial": self.trial.name,
            "objective": config.objective.text,
            "load": config.load,
            "seed": config.seed,
            **dict(self.trial.varied),
            "generations": config.generations,
            "ticks": outcome.ticks if outcome else 0,
            "metric": metric,
        }
        if outcome is not None:
            comparison = schedule.Comparison(outcome.comparison)
            row |= {name: outcome.comparison[name][metric] for name in ("pid", "ptos", "policy", "bound")}
            row |= {
                "vs_ptos_pct": comparison.change_pct(config.objective, "ptos"),
                "beat_start": outcome.beat_start,
                "node": outcome.node,
            }
        else:
            row |= dict.fromkeys(("pid", "ptos", "policy", "bound", "vs_ptos_pct", "beat_start", "node"))
        return row | {
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "wall_s": self.wall_s,
            "error": self.error,
        }


def _ray() -> Any:
    """The ray module, imported on first use (a few seconds; only sweeps need it).

    Not at the top: Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first imported, and
    :func:`ray_session` sets it for a local instance first.
    """
    import ray  # noqa: PLC0415 -- configured by the environment at its first import

    return ray


@contextlib.contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[None]:
    """Ray for the duration of a sweep: a private local instance (address None) or the cluster at `address`.

    A process already connected to Ray keeps its connection (and `address`, `workers` are ignored).

    Raises:
        SweepError: workers < 1, the local instance would not bind to loopback, or Ray cannot start or connect.
    """
    if address is None and workers < 1:
        raise SweepError(f"workers={workers}: a local Ray instance needs at least 1")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if address is None:
        # Ray's single-machine mode (its default on macOS and Windows): the node's address is 127.0.0.1 and every
        # server binds it; read when ray is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = _ray()
    if ray.is_initialized():
        yield
        return
    try:
        if address is None:
            # address="local": a new instance even where RAY_ADDRESS names a cluster.
            ray.init(address="local", num_cpus=workers, num_gpus=0, include_dashboard=False, log_to_driver=False)
        else:
            code = [str(Path(module.__file__).parent) for module in (mm_sim, mm_learning) if module.__file__]
            ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": code})
    except Exception as exc:  # Ray raises a bare Exception when its node times out during startup
        where = "start a local Ray instance" if address is None else f"connect to the Ray cluster at {address!r}"
        hint = "; on a busy machine Ray's agents may start too slowly: run it again"
        raise SweepError(f"cannot {where}: {exc}{hint if address is None else ''}") from exc
    try:
        if address is None and ray.util.get_node_ip_address() != LOOPBACK:
            msg = (
                f"the local Ray instance took address {ray.util.get_node_ip_address()} instead of {LOOPBACK}: "
                "ray was imported before the sweep set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0; run the sweep in "
                "its own process"
            )
            raise SweepError(msg)
        yield
    finally:
        ray.shutdown()


def run_sweep(
    trials: Sequence[Trial],
    *,
    registry: Registry,
    private_key: ec.EllipticCurvePrivateKey,
    address: str | None = None,
    workers: int = 2,
    evaluation_moves: int = 20,
    on_result: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Run every trial as a Ray task, register each policy as it arrives; results in the order of `trials`.

    Args:
        trials: from :func:`grid`.
        registry: where the policies go (on this machine).
        private_key: signs the registered images (never sent to the workers).
        address: a Ray cluster (`head:6379`, `auto`, `ray://head:10001`), or None for a local instance.
        workers: CPUs of the local instance, i.e. trials at once (ignored with an address, or when this process
            is already connected to Ray).
        evaluation_moves: moves of each trial's comparison.
        on_result: called with each result as it arrives (progress).

    Raises:
        SweepError: no trials, or Ray cannot start.
    """
    if not trials:
        raise SweepError("no trials to run")
    started = time.perf_counter()
    results: dict[int, TrialResult] = {}
    with ray_session(address, workers):
        ray = _ray()
        task = ray.remote(num_cpus=1, max_retries=0)(_run_trial_on_node)
        pending = {task.remote(trial.config, evaluation_moves): i for i, trial in enumerate(trials)}
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done)
            result = _collect(trials[index], done, registry, private_key, time.perf_counter() - started)
            results[index] = result
            if on_result is not None:
                on_result(result)
    return [results[i] for i in range(len(trials))]


def _collect(
    trial: Trial, ref: Any, registry: Registry, private_key: ec.EllipticCurvePrivateKey, wall_s: float
) -> TrialResult:
    """The task's outcome registered, or its error (a trial's exception, a lost worker, a refused registration)."""
    ray = _ray()
    try:
        outcome: TrialOutcome = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if exc.cause is not None else exc
        return TrialResult(trial, wall_s, error=f"{type(cause).__name__}: {cause}")
    except ray.exceptions.RayError as exc:  # the worker or its node died
        return TrialResult(trial, wall_s, error=f"{type(exc).__name__}: {exc}")
    try:
        entry = schedule.register(outcome.image, outcome.metadata, registry=registry, private_key=private_key)
    except (LearningError, ContractError) as exc:
        return TrialResult(trial, wall_s, outcome, error=f"{type(exc).__name__}: {exc}")
    return TrialResult(trial, wall_s, outcome, entry.policy_id, entry.policy_version)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown(results: Sequence[TrialResult]) -> str:
    """The result table in markdown: one row per trial, policy ids shortened to 12 hex digits."""
    rows = [r.row() | {"policy_id": r.policy_id[:12]} for r in results]
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)).replace("|", "\\|").replace("\n", " ") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[TrialResult], out_dir: Path) -> dict[str, Path]:
    """Write the table as markdown, CSV and JSON (with every trial's settings and comparison) into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {kind: out_dir / name for kind, name in TABLE_NAMES.items()}
    paths["markdown"].write_text(markdown(results))
    rows = [r.row() for r in results]
    columns = list(dict.fromkeys(c for row in rows for c in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    paths["csv"].write_text(buffer.getvalue())
    detail = [
        row
        | {
            "config": dataclasses.asdict(r.trial.config),
            "comparison": r.outcome.comparison if r.outcome else None,
        }
        for r, row in zip(results, rows, strict=True)
    ]
    paths["json"].write_text(json.dumps(detail, indent=1) + "\n")
    return paths
