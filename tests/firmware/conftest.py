"""Fixtures for the firmware core tests: the built libmmcore and its Python binding, signing keys, images.

The core is found, in this order: the installed binding (after `colcon build` and `source install/setup.bash`),
or `$MM_FIRMWARE_BUILD_DIR/libmmcore.so` (default build/mm_firmware_core) with the binding from the source tree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fw_support import BUILD_DIR, REPO


def _use_build_dir() -> None:
    """Point the binding at the cmake build directory when no installed copy is on the path."""
    try:
        import mm_firmware_core

        mm_firmware_core.library()
    except (ImportError, OSError, RuntimeError):
        lib = BUILD_DIR / "libmmcore.so"
        if not lib.is_file():
            pytest.fail(
                f"libmmcore not found: build firmware/core first (make build, or cmake into {BUILD_DIR}) or set "
                "MM_FIRMWARE_BUILD_DIR / MM_CORE_LIB",
                pytrace=False,
            )
        os.environ["MM_CORE_LIB"] = str(lib)
        sys.path.insert(0, str(REPO / "firmware" / "core" / "python"))
        sys.modules.pop("mm_firmware_core", None)


@pytest.fixture(scope="session", autouse=True)
def core_library() -> None:
    """Make `import mm_firmware_core` work against a built libmmcore."""
    _use_build_dir()


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key for this test session (nothing secret is stored)."""
    return ec.generate_private_key(ec.SECP256R1())
