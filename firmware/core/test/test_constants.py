"""The C core's enums equal the mm_msgs constants (servo contract section 7), read from the .msg text."""

from __future__ import annotations

import re

import pytest
from mm_testing.fw_support import REPO

MSG_DIR = REPO / "src" / "mm_msgs" / "msg"
CONSTANT = re.compile(r"^\s*\w+\s+([A-Z][A-Z0-9_]*)\s*=\s*(\d+)", re.MULTILINE)


def _constants(msg: str) -> dict[str, int]:
    return {name: int(value) for name, value in CONSTANT.findall((MSG_DIR / f"{msg}.msg").read_text())}


# (message, constant prefix in the .msg, C prefix)
GROUPS = [
    ("ServoCommand", "MODE_", "MM_MODE_"),
    ("ServoState", "FAULT_", "MM_FAULT_"),
    ("PolicyAck", "STATUS_", "MM_ACK_"),
    ("PolicyAck", "REASON_", "MM_REASON_"),
    ("TransitionBatch", "FLAG_", "MM_SAMPLE_"),
]


@pytest.mark.parametrize(("msg", "prefix", "c_prefix"), GROUPS)
def test_enums_match_the_messages(msg: str, prefix: str, c_prefix: str) -> None:
    import mm_firmware_core as fw

    expected = {k: v for k, v in _constants(msg).items() if k.startswith(prefix)}
    assert expected, f"no {prefix}* constants in {msg}.msg"
    for name, value in expected.items():
        c_name = c_prefix + name.removeprefix(prefix)
        assert fw.constant(c_name) == value, f"{c_name} != {msg}.{name}"


def test_sizes_match_the_message_bounds() -> None:
    import mm_firmware_core as fw

    batch = _constants("TransitionBatch")
    assert fw.constant("MM_BATCH_MAX_SAMPLES") == batch["MAX_SAMPLES"]
    assert fw.constant("MM_OBS_DIM") == batch["OBS_DIM"]
    ack_text = (MSG_DIR / "PolicyAck.msg").read_text()
    bound = re.search(r"uint16\[<=(\d+)\]\s+missing", ack_text)
    assert bound is not None
    assert fw.constant("MM_ACK_MAX_MISSING") == int(bound.group(1))
    # A PolicyChunk's data must fit the CAN ISO-TP buffer as well (same chunks over both transports).
    assert _constants("PolicyChunk")["MAX_DATA"] + 16 <= fw.constant("MM_ISOTP_MAX_PAYLOAD")


def test_ack_reasons_are_mirrored_in_the_driver_and_the_dbc() -> None:
    """PolicyAck.REASON_* (the C enum is checked above) equal mm_driver's AckReason and the DBC's VAL_ table, so
    a new reason (ROLLBACK) is never decoded as an unknown value by either transport.
    """
    import cantools
    import mm_firmware_core as fw
    from mm_testing.fw_support import require

    transport = require("mm_driver.transport")
    expected = {k.removeprefix("REASON_"): v for k, v in _constants("PolicyAck").items() if k.startswith("REASON_")}
    assert {m.name: int(m.value) for m in transport.AckReason} == expected
    db = cantools.database.load_file(fw.dbc_path())
    choices = db.get_message_by_name("POLICY_ACK").get_signal_by_name("reason").choices
    assert {str(name): int(value) for value, name in choices.items()} == expected
