"""Composed runner: start a bringup's nodes as processes where `ros2 launch` is not installed.

    python -m mm_bringup.run sim [servos:=2 learner:=false ...]
    python -m mm_bringup.run hardware transport:=can
    python -m mm_bringup.run sim --dry-run          # print the command lines only

The nodes, parameter files and overrides come from `mm_bringup.bringup.describe`, the same description
`sim.launch.py` and `hardware.launch.py` use, and each command line is built the way launch_ros builds it:
`<executable> <arguments> --ros-args -r __node:=<name> -r __ns:=<namespace> --params-file <file>... ` with the
argument-dependent overrides in a generated parameter file keyed by the node's full name. SIGINT or SIGTERM
reaches every node as SIGINT (each shuts down cleanly); nodes still running after `sigterm_timeout_s` get
SIGTERM, then SIGKILL, as `ros2 launch` does. A node that exits on its own is reported and the others keep
running, also as `ros2 launch` does by default.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

import yaml

from mm_bringup.bringup import ARGUMENTS, KINDS, NodeSpec, PackageDir, describe, package_prefix
from mm_bringup.errors import BringupError

# How often the runner looks for nodes that exited on their own (s); it reacts to signals at once.
_POLL_S = 0.2


def executable_path(spec: NodeSpec, prefix: PackageDir = package_prefix) -> Path:
    """Where `ros2 run <package> <executable>` finds the executable: `<prefix>/lib/<package>/<executable>`."""
    path = prefix(spec.package) / "lib" / spec.package / spec.executable
    if not os.access(path, os.X_OK):
        msg = f"{spec.package} has no executable {spec.executable!r} at {path}: rebuild the workspace"
        raise BringupError(msg)
    return path


def overrides_file(spec: NodeSpec, directory: Path) -> Path | None:
    """Write `spec.parameters` as a parameter file keyed like launch_ros keys it; None when there are none."""
    if not spec.parameters:
        return None
    key = spec.full_name or "/**"
    path = directory / f"{(spec.full_name or spec.executable).strip('/').replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump({key: {"ros__parameters": dict(spec.parameters)}}), encoding="utf-8")
    return path


def command_line(spec: NodeSpec, executable: Path, overrides: Path | None) -> list[str]:
    """The process command line of one node, in launch_ros's order."""
    ros_arguments: list[str] = []
    if spec.name:
        ros_arguments += ["-r", f"__node:={spec.name}"]
    if spec.namespace:
        ros_arguments += ["-r", f"__ns:={spec.namespace}"]
    for parameter_file in spec.parameter_files:
        ros_arguments += ["--params-file", str(parameter_file)]
    if overrides is not None:
        ros_arguments += ["--params-file", str(overrides)]
    for source, target in spec.remappings:
        ros_arguments += ["-r", f"{source}:={target}"]
    return [str(executable), *spec.arguments, "--ros-args", *ros_arguments]


class Runner:
    """Starts every node of a bringup as a child process and stops them all (context manager)."""

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        *,
        prefix: PackageDir = package_prefix,
        sigterm_timeout_s: float = 10.0,
        sigkill_timeout_s: float = 5.0,
        out: TextIO = sys.stdout,
        log: BinaryIO | None = None,
    ) -> None:
        """`specs` from `describe`; `prefix` finds installed packages; timeouts in seconds; messages to `out`.

        The nodes write to this process's stdout and stderr, or both to `log` (an open file) when given.
        """
        self._specs = list(specs)
        self._log = log
        self._prefix = prefix
        self._sigterm_timeout_s = sigterm_timeout_s
        self._sigkill_timeout_s = sigkill_timeout_s
        self._out = out
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.processes: list[tuple[NodeSpec, subprocess.Popen[bytes]]] = []
        self._reported: set[int] = set()
        self._stop_requested = threading.Event()

    def commands(self, directory: Path) -> list[list[str]]:
        """Every node's command line, with its override parameter file written to `directory`."""
        return [
            command_line(spec, executable_path(spec, self._prefix), overrides_file(spec, directory))
            for spec in self._specs
        ]

    def start(self) -> None:
        """Start every node; on a failure, stop the ones already started and raise `BringupError`."""
        self._workdir = tempfile.TemporaryDirectory(prefix="mm_bringup_")
        commands = self.commands(Path(self._workdir.name))
        try:
            for spec, command in zip(self._specs, commands, strict=True):
                # Own process group: a terminal's Ctrl-C reaches the runner only, which forwards it once.
                process = subprocess.Popen(
                    command,
                    process_group=0,
                    stdout=self._log,
                    stderr=subprocess.STDOUT if self._log is not None else None,
                    preexec_fn=_default_sigint if signal.getsignal(signal.SIGINT) is signal.SIG_IGN else None,  # noqa: PLW1509
                )
                self.processes.append((spec, process))
                self._say(f"started {_label(spec)} pid {process.pid}: {' '.join(command)}")
        except OSError as exc:
            self.stop()
            msg = f"cannot start {command[0]}: {exc}"
            raise BringupError(msg) from exc

    def request_stop(self) -> None:
        """Ask `wait` to return (safe from a signal handler)."""
        self._stop_requested.set()

    def wait(self) -> None:
        """Until a stop is requested or every node has exited, reporting nodes that exit on their own."""
        while not self._stop_requested.wait(_POLL_S):
            self._report_exits()
            if all(process.poll() is not None for _, process in self.processes):
                return

    def stop(self) -> dict[str, int]:
        """SIGINT to every running node, SIGTERM after `sigterm_timeout_s`, SIGKILL after `sigkill_timeout_s`.

        Returns each node's exit code (negative: the signal that ended it), keyed by its label.
        """
        for signum, timeout_s in (
            (signal.SIGINT, self._sigterm_timeout_s),
            (signal.SIGTERM, self._sigkill_timeout_s),
            (signal.SIGKILL, None),
        ):
            running = [(spec, process) for spec, process in self.processes if process.poll() is None]
            if not running:
                break
            for spec, process in running:
                if signum != signal.SIGINT:
                    self._say(f"{_label(spec)} still running: sending {signal.Signals(signum).name}")
                process.send_signal(signum)
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            for _, process in running:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    process.wait(remaining)
                except subprocess.TimeoutExpired:
                    continue
        self._report_exits()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        return {_label(spec): int(process.returncode) for spec, process in self.processes}

    def __enter__(self) -> Runner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _report_exits(self) -> None:
        for spec, process in self.processes:
            if process.poll() is not None and process.pid not in self._reported:
                self._reported.add(process.pid)
                self._say(f"{_label(spec)} (pid {process.pid}) exited with code {process.returncode}")

    def _say(self, text: str) -> None:
        print(f"[mm_bringup.run] {text}", file=self._out, flush=True)


def _default_sigint() -> None:
    """In a node's process before exec: SIGINT back to its default action.

    A runner started with SIGINT ignored (a background job of a non-interactive shell) would pass that on, and
    a node cannot undo an ignored SIGINT it inherits (POSIX shells, Python without rclpy's handler): the SIGINT
    the runner sends to stop the nodes would do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _label(spec: NodeSpec) -> str:
    return spec.full_name or f"{spec.package}/{spec.executable}"


def _help_epilog() -> str:
    lines = []
    for kind in KINDS:
        lines.append(f"{kind} arguments (name:=value):")
        for argument in ARGUMENTS[kind]:
            choices = f" ({'|'.join(argument.choices)})" if argument.choices else ""
            lines.append(f"  {argument.name}{choices}, default {argument.default!r}: {argument.description}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mm_bringup.run KIND [name:=value ...]`: start the bringup, run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m mm_bringup.run",
        description="Start a Muscle Memory bringup's nodes without ros2 launch (same nodes and parameters).",
        epilog=_help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS, help="which bringup: sim (virtual servos) or hardware")
    parser.add_argument("arguments", nargs="*", help="launch arguments as name:=value")
    parser.add_argument("--dry-run", action="store_true", help="print the command lines and exit")
    options = parser.parse_args(argv)
    try:
        runner = Runner(describe(options.kind, options.arguments))
        if options.dry_run:
            with tempfile.TemporaryDirectory(prefix="mm_bringup_") as directory:
                for command in runner.commands(Path(directory)):
                    print(" ".join(command))
            return 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            runner.request_stop()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        runner.start()
        runner.wait()
        codes = runner.stop()
    except BringupError as exc:
        print(f"mm_bringup.run: {exc}", file=sys.stderr)
        return 2
    failed = {label: code for label, code in codes.items() if code != 0}
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
