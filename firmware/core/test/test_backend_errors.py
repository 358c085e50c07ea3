"""An exception inside the Python inference backend is logged with its traceback and kept, never swallowed: the
core still refuses the image (REASON_BACKEND) or fails the inference (FAULT_POLICY) as the contract says."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mm_testing.fw_support import HalfGainBackend, image, public_key_bytes

MODEL = bytes(range(256)) * 2
REASON_NONE, REASON_BACKEND = 0, 6
FAULT_POLICY = 0x80


class BrokenBackend(HalfGainBackend):
    """A backend with a bug: `load` or `invoke` raises instead of refusing."""

    def __init__(self, *, fail_in: str) -> None:
        super().__init__()
        self.fail_in = fail_in

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Raise when told to, else load."""
        if self.fail_in == "load":
            raise ZeroDivisionError("bug in the backend's load")
        return super().load(slot, model, arena_bytes, model_type)

    def invoke(self, slot: int, observation: list[float]) -> float:
        """Raise when told to, else 0.5 x the coarse error."""
        if self.fail_in == "invoke":
            raise KeyError("bug in the backend's invoke")
        return super().invoke(slot, observation)


def test_a_raising_load_is_logged_and_kept(
    signing_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=BrokenBackend(fail_in="load"))
    assert core.backend_error is None
    with caplog.at_level(logging.ERROR, logger="mm_firmware_core"):
        assert core.load_policy(image(signing_key, MODEL)) == REASON_BACKEND
    assert isinstance(core.backend_error, ZeroDivisionError)
    [record] = [r for r in caplog.records if r.name == "mm_firmware_core"]
    assert "load raised ZeroDivisionError" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is core.backend_error  # the traceback is logged


def test_a_raising_invoke_latches_the_policy_fault_and_is_logged(
    signing_key: ec.EllipticCurvePrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    import mm_firmware_core as fw

    backend = BrokenBackend(fail_in="none")
    core = fw.ServoCore(public_key=public_key_bytes(signing_key), backend=backend, heartbeat_timeout_s=0.0)
    assert core.load_policy(image(signing_key, MODEL)) == REASON_NONE
    assert core.command(fw.MODE_POLICY, 1.0) == 0
    backend.fail_in = "invoke"
    with caplog.at_level(logging.ERROR, logger="mm_firmware_core"):
        core.step(encoder_count=0, dt_s=0.001)
    assert core.state().fault_flags & FAULT_POLICY
    assert isinstance(core.backend_error, KeyError)
    assert any("invoke raised KeyError" in r.getMessage() for r in caplog.records)
