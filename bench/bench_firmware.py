"""Cost of the firmware core's control step per control period, in instructions (valgrind callgrind).

Runs build/mm_firmware_core/mm_core_bench under callgrind with collection switched on only inside
mm_core_step, once per mode (policy mode with a trivial backend, so the number is the core's own overhead,
not a network's), and prints a markdown table and JSON. The baseline, measured in the same run, is the bare
cascaded PID law (mm_pid_step alone): the difference is what sensing, limits, faults, the watchdog and sampling
cost on top. Host x86-64 instruction counts are a proxy for the MCU: they count work, not ESP32 cycles.

Usage: python bench/bench_firmware.py [--steps N] [--build-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("idle", "hold", "torque", "position", "position_stream", "policy")


class BenchError(RuntimeError):
    """The bench cannot run; the message says what is missing."""


def _policy_files(directory: Path) -> list[str]:
    """A signed image (2 KB of placeholder model bytes) and its public key, packed by mm_learning."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from mm_contract.observation import ObsScales

    from mm_contract import policy_image, signing

    key = ec.generate_private_key(ec.SECP256R1())
    scales = ObsScales(3.0, 40.0, 25.0, 2.0, 0.004)
    header = policy_image.PolicyHeader(model_type=policy_image.ModelType.INT8, scales=scales, arena_bytes=2800)
    image = policy_image.pack_image(header, bytes(2048), lambda data: signing.sign(key, data))
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    key_path, image_path = directory / "key.bin", directory / "image.bin"
    key_path.write_bytes(public)
    image_path.write_bytes(image)
    return [str(key_path), str(image_path)]


def instructions_per_step(program: Path, mode: str, steps: int, workdir: Path, function: str = "mm_core_step") -> float:
    """Callgrind's instruction count (Ir) inside function (callees included), divided by the number of steps."""
    out = workdir / f"callgrind.{mode}.{function}.out"
    extra = _policy_files(workdir) if mode == "policy" else []
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        f"--toggle-collect={function}",
        str(program),
        mode,
        str(steps),
        *extra,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0:
        msg = f"{' '.join(cmd)} failed: {result.stderr[-2000:]}"
        raise BenchError(msg)
    match = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        msg = f"no instruction total in {out}"
        raise BenchError(msg)
    return int(match.group(1)) / steps


def main(argv: list[str] | None = None) -> int:
    """Measure every mode and print markdown + JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="control steps per mode (default 2000)")
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=Path(os.environ.get("MM_FIRMWARE_BUILD_DIR", REPO / "build" / "mm_firmware_core")),
        help="cmake build directory of firmware/core (with BUILD_TESTING=ON)",
    )
    args = parser.parse_args(argv)
    program = args.build_dir / "mm_core_bench"
    if not program.is_file():
        msg = f"{program} not found: build firmware/core with -DBUILD_TESTING=ON (make build)"
        raise BenchError(msg)
    if shutil.which("valgrind") is None:
        msg = "valgrind is not installed: apt-get install valgrind"
        raise BenchError(msg)
    with tempfile.TemporaryDirectory() as tmp:
        results = {mode: instructions_per_step(program, mode, args.steps, Path(tmp)) for mode in MODES}
        bare_pid = instructions_per_step(program, "position", args.steps, Path(tmp), function="mm_pid_step")
    print("| mode | instructions per control step (x86-64, callgrind) | x bare PID law |")
    print("|---|---|---|")
    for mode, value in results.items():
        print(f"| {mode} | {value:.0f} | {value / bare_pid:.1f} |")
    print(f"| baseline: bare PID law (mm_pid_step) | {bare_pid:.0f} | 1.0 |")
    print()
    print(
        json.dumps(
            {
                "bench": "firmware_core_step",
                "steps": args.steps,
                "instructions_per_step": results,
                "baseline_bare_pid_instructions_per_step": bare_pid,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
