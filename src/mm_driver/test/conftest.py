"""Fixtures of the driver tests."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec


@pytest.fixture(scope="session")
def signing_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key for this session."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def other_key() -> ec.EllipticCurvePrivateKey:
    """A key the servo does not trust."""
    return ec.generate_private_key(ec.SECP256R1())
