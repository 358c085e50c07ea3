"""The ``mm`` command: learn, sweep, train, eval, keygen, pubkey, export, registry and bag subcommands.

One argparse parser with a subcommand per task; each ``_add_<command>`` function registers one subcommand and
its handler, so further commands (``train``, ``eval``) are added the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mm_contract.errors import ContractError
from mm_contract.objectives import parse_objective
from mm_contract.registry import Registry
from mm_contract.signing import generate_keypair, load_private_key, load_public_key, public_key_hex
from mm_contract.tflm import Scheme

from mm_learning.acceptance import DEFAULT_SCHEME, Budget
from mm_learning.bags import reindex_bag
from mm_learning.errors import LearningError, TrainingError
from mm_learning.goals import DEFAULT_ALGORITHM, DEFAULT_DEVICE, SB3_ALGORITHMS, Progress
from mm_learning.twin import TwinSpec

# The subcommands that train or export import their modules when they run (marked "PLC0415 -- torch"): those load
# torch and TensorFlow, which `mm --help`, `mm keygen` or `mm registry` have no use for.

DEFAULT_REGISTRY = Path("policies")


def _keygen(args: argparse.Namespace) -> None:
    private_path, public_path = generate_keypair(args.dir)
    print(f"private key: {private_path} (mode 0600, keep it secret)")
    print(f"public key:  {public_path}")
    print(f"firmware public key (65-byte uncompressed point, hex): {public_key_hex(load_private_key(private_path))}")


def _pubkey(args: argparse.Namespace) -> None:
    text = args.key.read_text(errors="replace")
    key = load_private_key(args.key) if "PRIVATE KEY" in text else load_public_key(args.key)
    print(public_key_hex(key))


def _export(args: argparse.Namespace) -> None:
    from mm_learning.pipeline import publish_run  # noqa: PLC0415 -- torch

    if args.run.is_file():
        msg = f"{args.run} is a file: give the run directory (`mm train --out`), whose config.json says how it trained"
        raise LearningError(msg)
    published = publish_run(
        args.run,
        private_key=load_private_key(args.key),
        registry=None if args.registry is None else Registry(args.registry),
        out_dir=args.out,
        name=args.name,
        export_moves=args.moves,
        scheme=Scheme(args.scheme),
        budget=Budget(model_bytes=args.max_model_bytes, arena_bytes=args.max_arena_bytes),
    )
    md = published.metadata
    loop = md["acceptance"]["closed_loop"]
    print(
        f"accepted {md['algorithm']} policy ({md['scheme']}) for {md['objective']!r} (step {published.best_steps}): "
        f"model {md['model_bytes']} B, arena {md['arena_bytes']} B"
    )
    print(f"  action error vs float: RMSE {md['acceptance']['action_error']['rmse']:.5f}")
    steady = (
        f"steady-state error {loop['quantized_steady_state_error_rad']:.5f} vs "
        f"{loop['float_steady_state_error_rad']:.5f} rad on the {loop['float_settled_moves']} moves float settled"
        if loop["float_settled_moves"]
        else "float settled no move in time: judged on the return"
    )
    print(
        f"  closed loop ({loop['moves']} moves): return {loop['quantized_return']:.4g} vs float "
        f"{loop['float_return']:.4g}; {steady}"
    )
    print(f"  policy_crc32 0x{md['hashes']['policy_crc32']:08x}, image sha256 {md['hashes']['image_sha256']}")
    for kind, path in published.export.paths.items():
        print(f"  {kind:6s} {path}")
    if published.entry is not None:
        entry = published.entry
        print(f"registered as {entry.policy_id} (policy_version {entry.policy_version}) in {args.registry}")


def _registry(args: argparse.Namespace) -> None:
    registry = Registry(args.root)
    if args.action == "list":
        for entry in registry.list():
            md = entry.metadata
            print(
                f"{entry.policy_id[:16]}  {md.get('created_utc', '?'):25s} {md.get('algorithm', '?'):5s} "
                f"{md.get('scheme', '?'):8s} objective={entry.objective or '-'}"
            )
        return
    if args.action == "show":
        entry = registry.show(args.policy_id)
    else:
        # Policies are stored under the objective's canonical text: "energy:3,speed:7" finds "speed:0.7,energy:0.3".
        objective = parse_objective(args.objective).text
        entry = registry.best_for_objective(objective, args.metric, higher_is_better=not args.lower_is_better)
    print(json.dumps({"policy_id": entry.policy_id, "path": str(entry.path), **entry.metadata}, indent=2))


def _twin(args: argparse.Namespace) -> TwinSpec:
    return TwinSpec(
        profile=args.profile, load=args.load, objective=parse_objective(args.objective), episode_s=args.episode_s
    )


def _print_comparison(policy: dict[str, float], pid: dict[str, float]) -> None:
    print("| metric | policy | PID |\n|---|---|---|")
    for name, value in policy.items():
        print(f"| {name} | {value:.5g} | {pid.get(name, float('nan')):.5g} |")


def _train(args: argparse.Namespace) -> None:
    from mm_learning.trainer import TrainConfig, Trainer  # noqa: PLC0415 -- torch

    def report(progress: Progress) -> None:
        if progress.phase == "evaluating" and progress.eval_metrics:
            m = progress.eval_metrics
            print(
                f"{progress.steps:>9} steps {progress.steps_per_s:7.0f}/s  settled {m['settled_fraction']:.2f}  "
                f"settle {m['mean_settling_time_s']:.3f} s  final error {m['mean_steady_state_error_rad']:.2e} rad  "
                f"energy {m['mean_energy_j']:.3g} J  return {m['mean_return']:.4g}",
                flush=True,
            )

    config = TrainConfig(
        out_dir=args.out,
        twin=_twin(args),
        algorithm=args.algo,
        max_steps=args.steps,
        max_time_s=args.time_s,
        seed=args.seed,
        n_envs=args.envs,
        eval_every_steps=args.eval_every,
        eval_moves=args.eval_moves,
        checkpoint_every_steps=args.checkpoint_every,
        stop_on_target=not args.no_early_stop,
        tensorboard=not args.no_tensorboard,
        progress_bar=not args.no_progress,
        device=args.device,
    )
    result = Trainer(config, on_progress=report).run()
    verdict = "beats" if result.target_beaten else "does not beat"
    print(
        f"stopped ({result.stop_reason}) after {result.steps} steps, {result.elapsed_s:.0f} s: "
        f"the policy {verdict} the {config.twin.objective.text} target against the PID"
    )
    _print_comparison(dict(result.eval_metrics), dict(result.baseline_metrics))
    print(
        f"best evaluated model (step {result.best_steps}, return {result.best_metrics['mean_return']:.4g}): "
        f"{result.best_model_path}  (mm export {config.out_dir} --key ... exports it)"
    )


def _eval(args: argparse.Namespace) -> None:
    from mm_learning.algorithms import ALGORITHMS, evaluate_model  # noqa: PLC0415 -- torch

    if args.algorithm not in ALGORITHMS:
        raise TrainingError(f"unknown algorithm {args.algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    model = ALGORITHMS[args.algorithm].load(args.model, device="cpu")
    results = evaluate_model(model, _twin(args), args.moves)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_comparison(results["policy"], results["pid"])


def _add_twin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--objective", default="accuracy", help="accuracy, speed, energy, smooth or a mix 'speed:0.7,energy:0.3'"
    )
    p.add_argument("--profile", default="mm_v3", help="mm_sim servo profile (default: mm_v3)")
    p.add_argument("--load", default="pendulum", help="mm_sim load of the profile (default: pendulum)")
    p.add_argument("--episode-s", type=float, default=1.0, help="length of one step move (s, default 1)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a policy for an objective in the MuJoCo twin (resumes a run in --out)")
    _add_twin_arguments(p)
    p.add_argument("--algo", choices=SB3_ALGORITHMS, default=DEFAULT_ALGORITHM, help="SB3 algorithm (default: ppo)")
    p.add_argument("--steps", type=int, default=200_000, help="env step budget; 0: none (default: 200000)")
    p.add_argument("--time-s", type=float, default=0.0, help="wall-time budget (s); 0: none")
    p.add_argument("--out", type=Path, required=True, help="run directory: checkpoints, TensorBoard logs, model.zip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--envs", type=int, default=0, help="vectorised envs (default: the preset's)")
    p.add_argument("--eval-every", type=int, default=20_000, help="evaluate every N env steps (default: 20000)")
    p.add_argument("--eval-moves", type=int, default=10, help="seeded moves per evaluation (default: 10)")
    p.add_argument("--checkpoint-every", type=int, default=20_000, help="checkpoint every N env steps")
    p.add_argument("--no-early-stop", action="store_true", help="train the whole budget even once the target is beaten")
    p.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--device",
        default=DEFAULT_DEVICE,
        help="torch device: cpu (default), cuda, cuda:N or auto; servo-sized policies gain nothing from a GPU",
    )
    p.set_defaults(func=_train)


def _learn(args: argparse.Namespace) -> None:
    from mm_learning import schedule  # noqa: PLC0415 -- torch

    def report(progress: schedule.Progress) -> None:
        m = progress.evaluation.summary()
        print(
            f"generation {progress.generation:4d}  {progress.ticks:>11,} ticks  {progress.elapsed_s:6.1f} s  "
            f"settle {m['mean_settling_time_s']:.4f} s  energy {m['mean_energy_j']:.3g} J  "
            f"score {progress.score:.4g} (best {progress.best_score:.4g}, classical {progress.start_score:.4g})",
            flush=True,
        )

    config = schedule.ScheduleConfig(
        profile=args.profile,
        load=args.load,
        objective=parse_objective(args.objective),
        generations=args.generations,
        seed=args.seed,
    )
    result = schedule.train_schedule(config, on_progress=report)
    published = schedule.publish(
        result,
        private_key=load_private_key(args.key),
        out_dir=args.out,
        registry=Registry(args.registry),
        evaluation_moves=args.moves,
    )
    rows = published.comparison.rows
    print("| metric | PID | PTOS | policy (quantised) | bound |\n|---|---|---|---|---|")
    for name in rows["policy"]:
        print(
            "| " + name + " | " + " | ".join(f"{rows[r][name]:.5g}" for r in ("pid", "ptos", "policy", "bound")) + " |"
        )
    print(published.comparison.verdict(config.objective))
    if result.unlearned():
        print(result.unlearned())
    print(f"registered {published.entry.policy_id} in {args.registry}; artifacts in {args.out}")


def _add_learn(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "learn",
        help="learn a deceleration schedule for the objective's classical controller in the twin (ES), then "
        "export, check, compare and register it (the learner node's default sim training)",
    )
    p.add_argument("--objective", default="speed", help="accuracy, speed, energy or smooth (default: speed)")
    p.add_argument("--profile", default="mm_v3", help="mm_sim servo profile (default: mm_v3)")
    p.add_argument("--load", default="pendulum", help="mm_sim load of the profile (default: pendulum)")
    p.add_argument("--generations", type=int, default=60, help="ES generations, the budget (default: 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--key", type=Path, required=True, help="private signing key (PEM) from `mm keygen`")
    p.add_argument("--out", type=Path, default=Path("export"), help="artifact directory (default: export)")
    p.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry directory (default: policies)")
    p.add_argument("--moves", type=int, default=100, help="evaluation moves of the comparison (default: 100)")
    p.set_defaults(func=_learn)


def _sweep(args: argparse.Namespace) -> None:
    from mm_learning import schedule, sweep  # noqa: PLC0415 -- torch

    trials = sweep.grid(
        objectives=args.objectives,
        loads=args.loads,
        seeds=args.seeds,
        es=sweep.parse_settings(args.es),
        base=schedule.ScheduleConfig(profile=args.profile, generations=args.generations),
    )
    where = args.address or f"a local Ray instance with {args.workers} workers"
    print(f"{len(trials)} trials on {where}", flush=True)

    def report(result: sweep.TrialResult) -> None:
        done = f"policy {result.policy_id[:12]} (version {result.policy_version})" if not result.error else "FAILED"
        print(f"{result.wall_s:7.1f} s  {result.trial.name}: {done} {result.error}".rstrip(), flush=True)

    results = sweep.run_sweep(
        trials,
        registry=Registry(args.registry),
        private_key=load_private_key(args.key),
        address=args.address,
        workers=args.workers,
        evaluation_moves=args.moves,
        on_result=report,
    )
    paths = sweep.write_tables(results, args.out)
    print(sweep.markdown(results), end="")
    failed = sum(bool(r.error) for r in results)
    tables = ", ".join(str(path) for path in paths.values())
    print(f"{len(results) - failed} registered in {args.registry}, {failed} failed; tables: {tables}")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="learn schedules for a grid of objectives x loads x seeds (x ES settings) as Ray tasks, register "
        "each policy and write a result table",
    )
    p.add_argument("--objectives", nargs="+", default=["speed"], help="objectives or mixes (default: speed)")
    p.add_argument("--loads", nargs="+", default=["pendulum"], help="loads of the profile (default: pendulum)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: 0)")
    p.add_argument(
        "--es",
        action="append",
        default=[],
        metavar="NAME=V1,V2",
        help="an ES setting for every trial (one value) or to vary (several), repeatable: sigma, learning_rate, "
        "pairs, moves, hidden, ... (mm_learning.schedule.ScheduleConfig)",
    )
    p.add_argument("--profile", default="mm_v3", help="mm_sim servo profile (default: mm_v3)")
    p.add_argument("--generations", type=int, default=60, help="ES generations per trial, the budget (default: 60)")
    p.add_argument("--moves", type=int, default=20, help="evaluation moves of each comparison (default: 20)")
    p.add_argument(
        "--address", default=None, help="Ray cluster: 'head:6379', 'auto', 'ray://head:10001' (default: local Ray)"
    )
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="trials at once on local Ray (default: CPUs)"
    )
    p.add_argument("--key", type=Path, required=True, help="private signing key (PEM) from `mm keygen`")
    p.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY, help="registry directory (default: policies)")
    p.add_argument("--out", type=Path, default=Path("sweep"), help="directory of the result tables (default: sweep)")
    p.set_defaults(func=_sweep)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="a trained model vs the PID tuned for the objective on seeded moves")
    p.add_argument("model", type=Path, help="SB3 model .zip (e.g. runs/x/model.zip)")
    p.add_argument("--algorithm", required=True, help="ppo, sac, td3, ddpg or a2c")
    _add_twin_arguments(p)
    p.add_argument("--moves", type=int, default=100, help="seeded step moves (default: 100)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    p.set_defaults(func=_eval)


def _add_keygen(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keygen", help="make the trainer's ECDSA P-256 signing key pair and print the firmware key")
    p.add_argument("--dir", type=Path, default=Path("keys"), help="directory for the PEM files (default: keys)")
    p.set_defaults(func=_keygen)


def _add_pubkey(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pubkey", help="print a key's public point in hex for the firmware configuration")
    p.add_argument("key", type=Path, help="private or public PEM key file")
    p.set_defaults(func=_pubkey)


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="convert the best model of a `mm train` run into a checked, signed servo policy (objective, profile, "
        "load, algorithm and velocity scale come from the run's config.json)",
    )
    p.add_argument("run", type=Path, help="the run directory (`mm train --out`)")
    p.add_argument("--key", type=Path, required=True, help="private signing key (PEM) from `mm keygen`")
    p.add_argument("--out", type=Path, default=None, help="artifact directory (default: <run>/export)")
    p.add_argument("--name", default="policy", help="artifact base name (default: policy)")
    p.add_argument("--scheme", choices=[s.value for s in Scheme], default=DEFAULT_SCHEME.value)
    p.add_argument("--moves", type=int, default=10, help="seeded moves for calibration, held-out and checks")
    p.add_argument("--max-model-bytes", type=int, default=Budget().model_bytes)
    p.add_argument("--max-arena-bytes", type=int, default=Budget().arena_bytes)
    p.add_argument("--registry", type=Path, default=None, help="also store the accepted policy in this registry")
    p.set_defaults(func=_export)


def _add_registry(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="list, show or pick accepted policies")
    p.add_argument("--root", type=Path, default=DEFAULT_REGISTRY, help="registry directory (default: policies)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every registered policy, oldest first")
    show = actions.add_parser("show", help="metadata of one policy")
    show.add_argument("policy_id", help="sha256 of the image, or its first 8+ hex digits")
    best = actions.add_parser("best", help="the best policy for an objective")
    best.add_argument("objective", help="a name, a mix 'speed:0.7,energy:0.3' or term weights, in any spelling")
    best.add_argument("--metric", default=None, help="metadata metrics key (default: closed-loop return)")
    best.add_argument("--lower-is-better", action="store_true", help="for metrics like settle time or energy")
    p.set_defaults(func=_registry)


def _bag(args: argparse.Namespace) -> None:
    done = reindex_bag(args.bag)
    print(f"{done.bag}: complete bag with {sum(done.messages.values())} messages")
    for topic, count in sorted(done.messages.items()):
        print(f"  {topic}: {count}")
    print("kept as recorded: " + ", ".join(str(path) for path in done.kept))


def _add_bag(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag", help="recordings: reindex one a killed recorder left unfinished")
    actions = p.add_subparsers(dest="action", required=True)
    reindex = actions.add_parser(
        "reindex", help="make an unfinished MCAP recording (recorder killed) a complete bag, as `ros2 bag reindex`"
    )
    reindex.add_argument("bag", type=Path, help="the bag directory (holds the .mcap file, no metadata.yaml)")
    p.set_defaults(func=_bag)


def build_parser() -> argparse.ArgumentParser:
    """The ``mm`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mm", description="Muscle Memory learner: train, evaluate, export, sign, register."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_learn,
        _add_sweep,
        _add_train,
        _add_eval,
        _add_keygen,
        _add_pubkey,
        _add_export,
        _add_registry,
        _add_bag,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mm`` command; returns the process exit code (2 with a message on a refused request)."""
    # TensorFlow's C++ info/warning lines would drown the command's own report; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (LearningError, ContractError) as exc:
        print(f"mm {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
