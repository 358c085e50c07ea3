"""The core cross-compiles for an ESP32-C3-class RISC-V MCU (rv32imc, picolibc) and needs nothing from the
platform beyond memory/math helpers and the signature check: no heap, no stdio, no OS.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from mm_testing.fw_support import REPO

# expf, logf, sqrtf: the exploration noise (Ornstein-Uhlenbeck coefficient, Box-Muller).
ALLOWED = {
    "memcpy",
    "memset",
    "memcmp",
    "sinf",
    "cosf",
    "expf",
    "logf",
    "sqrtf",
    "fminf",
    "fmaxf",
    "mm_ecdsa_p256_verify",
    "mm_can_auth_tag",
}


def test_core_builds_freestanding_for_rv32imc(tmp_path: Path) -> None:
    if shutil.which("riscv64-unknown-elf-gcc") is None:
        pytest.fail(
            "riscv64-unknown-elf-gcc missing: apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
            pytrace=False,
        )
    result = subprocess.run(
        ["sh", str(REPO / "firmware/tools/cross_compile_riscv.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    size_table, _, undefined = result.stdout.partition("undefined:")
    totals = next(line for line in size_table.splitlines() if "(TOTALS)" in line).split()
    text_bytes = int(totals[0])
    print(f"rv32imc -Os core (without mbedTLS): text {text_bytes} B, data {totals[1]} B, bss {totals[2]} B")
    assert 4_000 < text_bytes < 64_000
    symbols = set(undefined.split())
    # Soft-float helpers of libgcc (__addsf3, ...) are expected on an MCU without an FPU.
    unexpected = {s for s in symbols if not s.startswith("__") or s.startswith("__atomic")} - ALLOWED
    assert not unexpected, f"the core needs platform symbols it should not: {sorted(unexpected)}"
    assert (tmp_path / "libmmcore_rv32.a").is_file()
