"""Fixtures for the firmware core tests: the built libmmcore and its Python binding, signing keys, images.

The core and its binding come from the workspace (`make build`, or `colcon build` and `source
install/setup.bash`); `MM_CORE_LIB` points the binding at another libmmcore.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec


@pytest.fixture(scope="session", autouse=True)
def core_library() -> None:
    """Fail with what to do when the binding cannot load libmmcore."""
    try:
        import mm_firmware_core

        mm_firmware_core.library()
    except (ImportError, OSError, RuntimeError) as exc:
        pytest.fail(f"libmmcore not loadable ({exc}): build the workspace first (make build)", pytrace=False)


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key for this test session (nothing secret is stored)."""
    return ec.generate_private_key(ec.SECP256R1())
