"""Run every benchmark in bench/ once and write bench/RESULTS.md.

Each ``bench_*.py`` prints its own markdown table (its result next to the baseline measured in the same run) and
its JSON; this script runs them one after another on an otherwise idle machine, records the machine and the
package versions, and writes everything into one file so the numbers of one run stay together.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PACKAGES = ("mujoco", "gymnasium", "stable-baselines3", "torch", "tensorflow-cpu", "tflite-micro", "numpy")


def _versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    model = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
        if Path("/proc/cpuinfo").exists()
        else cpu
    )
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def main() -> int:
    """Run the benchmarks named on the command line (default: all) and write RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benches", nargs="*", help="bench script names (default: every bench_*.py)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "RESULTS.md")
    args = parser.parse_args()
    scripts = [BENCH_DIR / b for b in args.benches] if args.benches else sorted(BENCH_DIR.glob("bench_*.py"))
    sections = [
        "# Benchmark results (one run of `make bench`)\n",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- machine: {_machine()}",
        f"- versions: {_versions()}\n",
    ]
    failed = []
    for script in scripts:
        print(f"bench: running {script.name}", flush=True)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - start
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed.append(script.name)
            print(proc.stderr, file=sys.stderr)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        sections.append(f"## {script.name} — {status}, {elapsed:.0f} s\n\n{proc.stdout.strip()}\n")
    args.out.write_text("\n".join(sections) + "\n", encoding="utf-8")
    print(f"bench: wrote {args.out}")
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
