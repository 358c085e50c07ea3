"""`mm sweep --address`: a grid on a Ray cluster of two nodes, started as an installation starts one.

The head and a worker node are `ray start` processes (`--head`, then `--address` of the head), one CPU each, both
on 127.0.0.1 with their own temporary directory; the sweep is `mm sweep` in its own process, given the head's
address, as on a cluster whose head is another machine. Its two trials are submitted together and each needs the
one CPU of a node, so they run one on each node: the table says where. Nodes are stopped by their process groups
(`ray stop` would stop every Ray instance of this user on the machine).
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mm_contract.registry import Registry
from mm_contract.signing import generate_keypair
from test_sweep import TINY, TINY_ES

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _ray_cli() -> str:
    found = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if found is None:
        pytest.fail("the ray command (requirements.txt) is not installed beside this Python")
    return found


def _wait_for_nodes(address: str, count: int) -> None:
    """Until the cluster at `address` has `count` live nodes (ray status, which also waits for the head's GCS)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    status = ""
    while time.monotonic() < deadline:
        run = subprocess.run(
            [_ray_cli(), "status", "--address", address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=_cluster_env(),
        )
        status = run.stdout
        if run.returncode == 0 and status.count("node_") >= count:
            return
        time.sleep(1.0)
    pytest.fail(f"the Ray cluster at {address} did not reach {count} nodes in {START_TIMEOUT_S} s:\n{status}")


_AUTH_TOKEN = secrets.token_hex(32)
"""The test cluster's authentication token (Ray's own are 64 hex digits)."""


def _cluster_env() -> dict[str, str]:
    """This environment for Ray's processes, without the single-machine switch a local sweep in this process set.

    `sweep.ray_session` sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` for a local instance (test_sweep.py runs one in
    this process); with it `ray start` refuses a second node. Token authentication for every process of the
    cluster, as `ray.init` sets it for a local instance, with this run's own token (``RAY_AUTH_TOKEN``): left to
    the environment, `ray start --head` took the token a local instance had left in ``~/.ray/auth_token`` while
    `ray status` sent none, so the cluster never came up when this file ran without test_sweep.py before it.
    """
    env = {name: value for name, value in os.environ.items() if name != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    return env | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _AUTH_TOKEN}


@pytest.fixture
def cluster() -> Iterator[str]:
    """A head and one worker node (one CPU each) on loopback; yields the head's GCS address."""
    address = f"{LOOPBACK}:{_free_port()}"
    temp_dir = tempfile.mkdtemp(prefix="mm-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = _cluster_env()
    common = ["--block", f"--node-ip-address={LOOPBACK}", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"]
    head = [_ray_cli(), "start", "--head", f"--port={address.rsplit(':', 1)[1]}", "--include-dashboard=false"]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        for command in (
            [*head, f"--temp-dir={temp_dir}", *common],
            [_ray_cli(), "start", f"--address={address}", *common],
        ):
            # Its own session, so that stopping it stops every Ray process it started.
            node = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL)
            nodes.append(node)
            _wait_for_nodes(address, len(nodes))
        yield address
    finally:
        for node in reversed(nodes):
            _stop_group(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(node: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group `node` leads (its own session), SIGKILL after 30 s.

    The group, not only its leader: if `ray start --block` has exited, the raylet and the other processes it
    started live on in the group.
    """
    try:
        os.killpg(node.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the whole group is gone
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
        node.wait()


@pytest.mark.slow
def test_mm_sweep_on_a_two_node_cluster_runs_a_trial_on_each_node_and_registers_both(
    cluster: str, tmp_path: Path
) -> None:
    private_key, _ = generate_keypair(tmp_path / "keys")
    registry, out = tmp_path / "registry", tmp_path / "sweep"
    args = ["sweep", "--address", cluster, "--seeds", "0", "1", "--generations", str(TINY.generations)]
    args += [f"--es={setting}" for setting in TINY_ES]
    args += ["--moves", "4", "--key", str(private_key), "--registry", str(registry), "--out", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "mm_learning.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=_cluster_env(),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"2 trials on {cluster}" in run.stdout and "2 registered" in run.stdout

    with (out / "sweep.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["error"] for row in rows] == ["", ""]
    nodes = {row["node"] for row in rows}
    assert len(nodes) == 2 and all(node.startswith(f"{LOOPBACK}/") for node in nodes), nodes
    assert {row["policy_id"] for row in rows} == {e.policy_id for e in Registry(registry).list()}
