"""`mm sweep` (mm_learning.sweep): a grid of schedule trainings as Ray tasks on a local 2-worker instance.

Ray starts once for the module (a few seconds) and both sweeps use it; trials are tiny (2 generations of 2 pairs
on 2 moves of 0.1 s) so the time goes to Ray, TensorFlow's import in each worker and the exports' checks.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mm_contract.registry import Registry
from mm_contract.signing import generate_keypair, load_private_key, public_key_hex
from mm_learning.cli import main
from mm_learning.errors import TrainingError
from mm_learning.schedule import ScheduleConfig
from mm_learning.sweep import SweepError, grid, parse_settings, ray_session, run_sweep, write_tables

TINY = ScheduleConfig(
    generations=2, pairs=2, moves=2, hidden=4, episode_s=0.1, validation_moves=4, validate_every=1, seed=0
)
TINY_ES = [f"{name}={getattr(TINY, name)}" for name in ("pairs", "moves", "hidden", "validation_moves")]
LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 in /proc/net/tcp and tcp6


def _descendants(pid: int) -> set[int]:
    """`pid` and every process below it (Ray's servers and workers are children of the process that started it)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        below = {child for child, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | below, bool(below)
    return tree


def _listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        with_fds = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd) for fd in with_fds.iterdir()]
        except OSError:
            continue
        inodes |= {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(fields[1].rsplit(":", 1)[0])
    return addresses


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance with 2 workers for the module; sweeps in this process use it."""
    with ray_session(None, workers=2):
        yield


@pytest.mark.slow
def test_mm_sweep_runs_a_4_trial_grid_on_local_ray_registers_4_policies_and_writes_the_table(
    local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    assert ray.cluster_resources()["CPU"] == 2
    assert _listening_addresses(_descendants(os.getpid())) <= LOOPBACK_HEX
    private_key, _ = generate_keypair(tmp_path / "keys")
    registry, out = tmp_path / "registry", tmp_path / "sweep"
    args = ["sweep", "--objectives", "speed", "energy", "--seeds", "0", "1", "--generations", str(TINY.generations)]
    args += [f"--es={setting}" for setting in TINY_ES]
    args += ["--moves", "4", "--key", str(private_key), "--registry", str(registry), "--out", str(out)]
    assert main(args) == 0
    assert "4 registered" in capsys.readouterr().out

    entries = Registry(registry).list()
    assert len(entries) == 4
    assert sorted(e.policy_version for e in entries) == [1, 2, 3, 4]
    assert {e.objective for e in entries} == {"speed", "energy"}
    public_key = load_private_key(private_key).public_key()
    for entry in entries:  # re-signed with the sweep's key, compared with every controller
        assert entry.metadata["public_key_hex"] == public_key_hex(public_key)
        assert set(entry.metadata["comparison"]) == {"pid", "ptos", "policy", "bound"}
        assert "ptos_mean_settling_time_s" in entry.metadata["quantized_metrics"]

    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(row["error"] == "" for row in rows)
    assert {row["policy_id"] for row in rows} == {e.policy_id for e in entries}
    assert {(row["objective"], row["seed"]) for row in rows} == {(o, s) for o in ("speed", "energy") for s in "01"}
    for row in rows:
        assert all(float(row[column]) > 0 for column in ("pid", "ptos", "policy", "bound"))
        assert row["node"].startswith("127.0.0.1/")  # the one local node
    table = (out / "sweep.md").read_text().splitlines()
    assert len(table) == 2 + 4 and "| pid | ptos | policy | bound |" in table[0]
    assert len(json.loads((out / "sweep.json").read_text())) == 4


@pytest.mark.slow
def test_a_failing_trial_is_reported_with_its_error_and_the_others_still_register(
    local_ray: None, tmp_path: Path
) -> None:
    trials = grid(objectives=["speed"], loads=["no_such_load", "pendulum"], seeds=[0], base=TINY)
    registry = Registry(tmp_path / "registry")
    results = run_sweep(
        trials, registry=registry, private_key=load_private_key(generate_keypair(tmp_path)[0]), evaluation_moves=4
    )
    failed, done = results
    # The trial's own exception (mm_sim has no tuned gains for the load), not Ray's wrapper with its traceback.
    assert failed.error.startswith("ProfileError: ") and "has no load 'no_such_load'" in failed.error
    assert "Traceback" not in failed.error
    assert failed.policy_id == "" and failed.outcome is None
    assert done.error == "" and [e.policy_id for e in registry.list()] == [done.policy_id]
    paths = write_tables(results, tmp_path / "out")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [row["load"] for row in rows] == ["no_such_load", "pendulum"]
    assert "no_such_load" in rows[0]["error"] and rows[0]["policy"] == "" and rows[1]["policy_id"] == done.policy_id


def test_a_grid_is_the_product_of_its_axes_and_refuses_what_cannot_run() -> None:
    trials = grid(
        objectives=["speed", "speed:0.7,energy:0.3"], loads=["pendulum"], seeds=[0, 1, 2], es={"sigma": [0.05, 0.1]}
    )
    assert len(trials) == 2 * 3 * 2 and len({t.name for t in trials}) == len(trials)
    assert {t.config.sigma for t in trials} == {0.05, 0.1}
    fixed = grid(objectives=["speed"], loads=["pendulum"], seeds=[0], es=parse_settings(["pairs=4"]))
    assert fixed[0].config.pairs == 4 and fixed[0].varied == ()
    with pytest.raises(SweepError, match="unknown ES setting"):
        grid(objectives=["speed"], loads=["pendulum"], seeds=[0], es={"sigmaa": [0.1]})
    with pytest.raises(SweepError, match="empty along seeds"):
        grid(objectives=["speed"], loads=["pendulum"], seeds=[])
    with pytest.raises(SweepError, match="whole numbers"):
        grid(objectives=["speed"], loads=["pendulum"], seeds=[0], es={"pairs": [2.5]})
    with pytest.raises(TrainingError):
        grid(objectives=["speed"], loads=["pendulum"], seeds=[0], es={"sigma": [0.0]})
    with pytest.raises(SweepError, match="NAME=V1,V2"):
        parse_settings(["sigma=fast"])


def test_mm_sweep_refuses_a_bad_grid_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--es", "sigmaa=0.1", "--key", str(tmp_path / "absent.pem")]) == 2
    assert "mm sweep: unknown ES setting(s) ['sigmaa']" in capsys.readouterr().err
