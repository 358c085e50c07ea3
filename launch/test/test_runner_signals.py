"""The composed runner's process handling, with small shell scripts as nodes (no ROS).

SIGINT first, SIGTERM to nodes that ignore it, SIGKILL last (as `ros2 launch` escalates); nodes that exit on
their own are reported with their exit code; `python -m mm_bringup.run` forwards SIGINT to every node.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bringup_support import REPO, FakeInstall
from mm_bringup.bringup import NodeSpec
from mm_bringup.run import Runner

TIMEOUT_S = 20.0
# Scripts report readiness after installing their traps, so a test never signals a script still starting up.
SCRIPTS = {
    "polite": "trap 'exit 0' INT",
    "stubborn": "trap '' INT; trap 'exit 3' TERM",
    "deaf": "trap '' INT TERM",
}


def _install_scripts(install: FakeInstall, ready_dir: Path) -> list[NodeSpec]:
    for name, traps in SCRIPTS.items():
        script = f"#!/bin/sh\n{traps}\ntouch {ready_dir / name}\nwhile :; do sleep 0.05; done\n"
        install.add("fake_nodes", name, script=script)
    return [NodeSpec("fake_nodes", name, name, "/t") for name in SCRIPTS]


def _wait_for(paths: list[Path]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all(path.exists() for path in paths):
        assert time.monotonic() < deadline, f"not ready: {[p.name for p in paths if not p.exists()]}"
        time.sleep(0.01)


def test_stop_escalates_from_sigint_to_sigterm_to_sigkill(fake_install: FakeInstall, tmp_path: Path) -> None:
    specs = _install_scripts(fake_install, tmp_path)
    out = io.StringIO()
    runner = Runner(specs, prefix=fake_install.prefix, sigterm_timeout_s=1.0, sigkill_timeout_s=1.0, out=out)
    runner.start()
    _wait_for([tmp_path / name for name in SCRIPTS])
    codes = runner.stop()
    assert codes == {"/t/polite": 0, "/t/stubborn": 3, "/t/deaf": -signal.SIGKILL}
    log = out.getvalue()
    assert "/t/stubborn still running: sending SIGTERM" in log
    assert "/t/deaf still running: sending SIGKILL" in log
    assert "/t/polite still running" not in log
    assert all(process.poll() is not None for _, process in runner.processes)


def test_wait_returns_when_every_node_exited_and_reports_codes(fake_install: FakeInstall) -> None:
    fake_install.add("fake_nodes", "quits", script="#!/bin/sh\nexit 5\n")
    out = io.StringIO()
    with Runner([NodeSpec("fake_nodes", "quits", "quits", "/t")], prefix=fake_install.prefix, out=out) as runner:
        runner.wait()
    assert "/t/quits (pid" in out.getvalue()
    assert "exited with code 5" in out.getvalue()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_main_forwards_signals_to_every_node(fake_install: FakeInstall, tmp_path: Path, signum: int) -> None:
    """`python -m mm_bringup.run sim servos:=2` under a shell or a supervisor: one signal stops every node."""
    polite = f"#!/bin/sh\n{SCRIPTS['polite']}\ntouch {tmp_path}/ready-$$\nwhile :; do sleep 0.05; done\n"
    for package, executable in (("mm_sim", "virtual_servo"), ("mm_driver", "driver"), ("mm_learning", "learner")):
        fake_install.add(package, executable, script=polite)
    env = os.environ | {
        "AMENT_PREFIX_PATH": str(fake_install.root),
        "PYTHONPATH": os.pathsep.join([str(REPO / "launch"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "mm_bringup.run", "sim", "servos:=2"]
    # The runner is the only process in its group that gets the signal, so only its forwarding reaches the nodes.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        pids = []
        while len(pids) < 6:
            line = process.stdout.readline()
            assert line, "the runner ended before starting its nodes"
            if " started " in line:
                pids.append(int(line.split(" pid ")[1].split(":")[0]))
        _wait_for([tmp_path / f"ready-{pid}" for pid in pids])
        process.send_signal(signum)
        assert process.wait(TIMEOUT_S) == 0
        rest = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert rest.count("exited with code 0") == 6
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_executables_are_found_like_ros2_run(fake_install: FakeInstall) -> None:
    """<prefix>/lib/<package>/<executable>, as `ros2 run` and launch_ros look them up."""
    from mm_bringup.run import executable_path

    spec = NodeSpec("mm_driver", "driver", "driver", "/servo1")
    assert executable_path(spec, fake_install.prefix) == fake_install.root / "lib/mm_driver/driver"
    assert os.access(executable_path(spec, fake_install.prefix), os.X_OK)
