"""Each servo fact is defined once per language and the copies agree (servo contract section 7, issue #16).

Python's definition is `mm_contract.constants`; the C core's are its headers (read through libmmcore), the
messages' the .msg files (read as text), the CAN protocol's the DBC, the ESP32 defaults' the Kconfig. Here every
one of them is checked against the others, and the Python modules that use a fact are checked to take it from
`mm_contract.constants` rather than to carry a literal of their own.
"""

from __future__ import annotations

import ast
import re
from enum import Enum
from pathlib import Path

import pytest
from mm_testing.fw_support import REPO, kconfig_default, require

from mm_contract import constants as c

MSG_DIR = REPO / "src" / "mm_msgs" / "msg"
CONSTANT = re.compile(r"^\s*\w+\s+([A-Z][A-Z0-9_]*)\s*=\s*(\d+)", re.MULTILINE)


def _constants(msg: str) -> dict[str, int]:
    return {name: int(value) for name, value in CONSTANT.findall((MSG_DIR / f"{msg}.msg").read_text())}


# (message, constant prefix in the .msg, C prefix, the Python enum)
GROUPS = [
    ("ServoCommand", "MODE_", "MM_MODE_", c.Mode),
    ("ServoState", "FAULT_", "MM_FAULT_", c.Fault),
    ("PolicyAck", "STATUS_", "MM_ACK_", c.AckStatus),
    ("PolicyAck", "REASON_", "MM_REASON_", c.AckReason),
    ("TransitionBatch", "FLAG_", "MM_SAMPLE_", c.SampleFlag),
]


def _members(enum: type[Enum]) -> dict[str, int]:
    return {str(member.name): int(member.value) for member in enum}


@pytest.mark.parametrize(("msg", "prefix", "c_prefix", "enum"), GROUPS)
def test_enums_match_the_messages(msg: str, prefix: str, c_prefix: str, enum: type[Enum]) -> None:
    import mm_firmware_core as fw

    expected = {k: v for k, v in _constants(msg).items() if k.startswith(prefix)}
    assert expected, f"no {prefix}* constants in {msg}.msg"
    for name, value in expected.items():
        c_name = c_prefix + name.removeprefix(prefix)
        assert fw.constant(c_name) == value, f"{c_name} != {msg}.{name}"
    # The Python definition has exactly the .msg names and values.
    assert _members(enum) == {k.removeprefix(prefix): v for k, v in expected.items()}, f"{enum.__name__} != {msg}"


def test_sizes_match_the_message_bounds() -> None:
    import mm_firmware_core as fw

    batch = _constants("TransitionBatch")
    assert fw.constant("MM_BATCH_MAX_SAMPLES") == batch["MAX_SAMPLES"] == c.BATCH_MAX_SAMPLES
    assert fw.constant("MM_OBS_DIM") == batch["OBS_DIM"] == c.OBS_DIM
    ack_text = (MSG_DIR / "PolicyAck.msg").read_text()
    bound = re.search(r"uint16\[<=(\d+)\]\s+missing", ack_text)
    assert bound is not None
    assert fw.constant("MM_ACK_MAX_MISSING") == int(bound.group(1)) == c.ACK_MAX_MISSING
    # A PolicyChunk's data must fit the CAN ISO-TP buffer as well (same chunks over both transports).
    assert _constants("PolicyChunk")["MAX_DATA"] + 16 <= fw.constant("MM_ISOTP_MAX_PAYLOAD")
    # Every bounded column of a TransitionBatch holds MAX_SAMPLES samples, the observations OBS_DIM of each.
    columns = re.findall(r"^\w+\[<=(\d+)\]\s+(\w+)", (MSG_DIR / "TransitionBatch.msg").read_text(), re.MULTILINE)
    assert {name: int(n) for n, name in columns} == {
        name: c.BATCH_MAX_SAMPLES * (c.OBS_DIM if name == "observations" else 1) for _, name in columns
    }


def test_python_constants_equal_the_c_headers() -> None:
    """The scalars of mm_contract.constants against the core's macros (mm_config.h, mm_core.h, mm_can.h)."""
    import mm_firmware_core as fw

    pairs = {
        "MM_OBS_DIM": c.OBS_DIM,
        "MM_ACTION_DIM": c.ACTION_DIM,
        "MM_BATCH_MAX_SAMPLES": c.BATCH_MAX_SAMPLES,
        "MM_ACK_MAX_MISSING": c.ACK_MAX_MISSING,
        "MM_ENCODER_COUNTS": c.ENCODER_COUNTS,
        "MM_PUBLIC_KEY_BYTES": c.PUBLIC_KEY_BYTES,
        "MM_FAULTS_BLOCKING": c.BLOCKING_FAULTS,
        "MM_CAN_DEVICE_BITS": c.CAN_DEVICE_BITS,
        "MM_CAN_DEVICE_MASK": c.CAN_DEVICE_MASK,
        "MM_CAN_BROADCAST": c.CAN_BROADCAST,
        "MM_CHUNK_HEADER_BYTES": c.CHUNK_HEADER_BYTES,
        "MM_ISOTP_MAX_PAYLOAD": c.ISOTP_MAX_PAYLOAD,
    }
    assert {name: fw.constant(name) for name in pairs} == {name: int(value) for name, value in pairs.items()}
    assert 0x1FFFFFFF & ~fw.constant("MM_CAN_DEVICE_MASK") == c.CAN_TYPE_MASK
    assert not c.BLOCKING_FAULTS & c.Fault.END_STOP


def test_the_binding_takes_its_constants_from_the_library() -> None:
    """mm_firmware_core's MODE_* and ENCODER_COUNTS are libmmcore's; its struct sizes are checked at load."""
    import mm_firmware_core as fw
    from mm_firmware_core import _structs as cs

    assert {m.name: getattr(fw, f"MODE_{m.name}") for m in c.Mode} == {m.name: int(m) for m in c.Mode}
    assert fw.ENCODER_COUNTS == c.ENCODER_COUNTS
    with pytest.raises(AttributeError, match="no attribute 'MODE_SPIN'"):
        _ = fw.MODE_SPIN
    # The array sizes of the ctypes mirrors are compared with the library's constants when it loads.
    assert {name: fw.constant(name) for name in cs.DIMENSIONS} == cs.DIMENSIONS
    # The observation scales: mm_contract's ObsScales fields are the C struct mm_obs_params_t's.
    from dataclasses import fields

    from mm_contract.observation import ObsScales

    assert [f.name for f in fields(ObsScales)] == [f[0] for f in cs.ObsParams._fields_]


def test_the_dbc_value_tables_and_ids_match() -> None:
    """The DBC's VAL_ tables are the Python enums; every frame id leaves the device bits free."""
    import cantools
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=c.CAN_TYPE_MASK)

    def choices(message: str, signal: str) -> dict[str, int]:
        table = db.get_message_by_name(message).get_signal_by_name(signal).choices
        return {str(name): int(value) for value, name in table.items()}

    for message in ("FAULT", "COMMAND", "STATE_ELECTRICAL"):
        assert choices(message, "mode") == _members(c.Mode), message
    assert choices("POLICY_ACK", "status") == _members(c.AckStatus)
    assert all(m.frame_id & c.CAN_DEVICE_MASK == 0 for m in db.messages)
    can_transport = require("mm_driver.can_transport")
    assert can_transport.CHUNK_HEADER.size == c.CHUNK_HEADER_BYTES


def test_ack_reasons_are_mirrored_in_the_driver_and_the_dbc() -> None:
    """PolicyAck.REASON_* (the C enum is checked above) equal mm_driver's AckReason and the DBC's VAL_ table, so
    a new reason (ROLLBACK) is never decoded as an unknown value by either transport.
    """
    import cantools
    import mm_firmware_core as fw

    transport = require("mm_driver.transport")
    expected = {k.removeprefix("REASON_"): v for k, v in _constants("PolicyAck").items() if k.startswith("REASON_")}
    assert {m.name: int(m.value) for m in transport.AckReason} == expected
    db = cantools.database.load_file(fw.dbc_path())
    choices = db.get_message_by_name("POLICY_ACK").get_signal_by_name("reason").choices
    assert {str(name): int(value) for value, name in choices.items()} == expected


def test_the_esp32_defaults_are_the_kconfig_defaults() -> None:
    """constants.ESP32_<name> is the default of Kconfig CONFIG_MM_<name>; the virtual servo takes them."""
    esp32 = {name: value for name, value in vars(c).items() if name.startswith("ESP32_")}
    assert esp32
    assert {name: kconfig_default("MM_" + name.removeprefix("ESP32_")) for name in esp32} == esp32
    virtual_servo = require("mm_sim.virtual_servo")
    config = virtual_servo.VirtualServoConfig()
    assert config.state_decimation == c.ESP32_STATE_DECIMATION
    assert config.heartbeat_timeout_s == c.ESP32_UROS_HEARTBEAT_TIMEOUT_MS / 1000.0
    assert (config.tflm_arena_bytes, config.max_policy_bytes) == (c.ESP32_TFLM_ARENA_BYTES, c.ESP32_MAX_POLICY_BYTES)


def test_the_python_users_take_the_definition() -> None:
    """The modules that name a fact re-export mm_contract.constants' object, not a copy of it."""
    transport = require("mm_driver.transport")
    transitions = require("mm_contract.transitions")
    policy_image = require("mm_contract.policy_image")
    observation = require("mm_contract.observation")
    assert (transport.Mode, transport.AckStatus, transport.AckReason) == (c.Mode, c.AckStatus, c.AckReason)
    assert transport.fault_names(0x21) == ["OVERCURRENT", "END_STOP"]
    assert tuple(c.SampleFlag) == (
        transitions.FLAG_EPISODE_START,
        transitions.FLAG_FAULT,
        transitions.FLAG_POLICY,
        transitions.FLAG_GUARD,
    )
    assert (policy_image.OBS_DIM, policy_image.ACTION_DIM, observation.COUNTS_PER_REV) == (
        c.OBS_DIM,
        c.ACTION_DIM,
        c.ENCODER_COUNTS,
    )


# Literals that only mm_contract/constants.py may write in Python code (docstrings and comments aside): the
# encoder's counts, the CAN id masks and the ISO-TP buffer size. Test code (each package's test/ and mm_testing,
# which depends on no workspace package) may write them: a test states the expected value on its own.
UNIQUE_LITERALS = {
    16384: "ENCODER_COUNTS",
    0x1FFFFC00: "CAN_TYPE_MASK",
    0x3FF: "CAN_DEVICE_MASK",
    1040: "ISOTP_MAX_PAYLOAD",
}
PYTHON_SOURCES = ("src", "launch", "firmware/core/python", "bench", "tools")


def _literal_copies(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value}, not constants.{UNIQUE_LITERALS[node.value]}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value in UNIQUE_LITERALS
    ]


def _is_test_code(path: Path) -> bool:
    parts = path.relative_to(REPO).parts
    return "test" in parts or "mm_testing" in parts


def test_no_python_module_carries_its_own_copy() -> None:
    definition = REPO / "src" / "mm_contract" / "mm_contract" / "constants.py"
    copies = [
        copy
        for root in PYTHON_SOURCES
        for path in sorted((REPO / root).rglob("*.py"))
        if path != definition and "build" not in path.relative_to(REPO).parts and not _is_test_code(path)
        for copy in _literal_copies(path)
    ]
    assert not copies, "\n".join(copies)


def _register_map() -> dict[str, int]:
    """The DBC's register map: register name -> id (REGISTER_REQUEST and REGISTER_RESPONSE carry the same)."""
    import cantools
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=c.CAN_TYPE_MASK)
    maps = [
        {
            str(name): int(value)
            for value, name in db.get_message_by_name(m).get_signal_by_name("register_id").choices.items()
        }
        for m in ("REGISTER_REQUEST", "REGISTER_RESPONSE")
    ]
    assert maps[0] == maps[1]
    return maps[0]


def test_the_register_map_is_the_dbcs() -> None:
    """The register ids exist once, in the DBC: the C enum (mm_can.h, from the generated choices) and the driver's
    registers are its names; ids below 0x10 are read-only, the others writable, as the DBC's comment says."""
    import cantools
    import mm_firmware_core as fw

    registers = _register_map()
    assert {name: fw.constant(f"MM_REG_{name}") for name in registers} == registers
    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=c.CAN_TYPE_MASK)
    status = db.get_message_by_name("REGISTER_RESPONSE").get_signal_by_name("status").choices
    c_status = {"OK": "OK", "UNKNOWN_REGISTER": "UNKNOWN", "READ_ONLY": "READ_ONLY", "OUT_OF_RANGE": "OUT_OF_RANGE"}
    c_status["ACTIVE_MODE"] = "ACTIVE_MODE"
    assert {str(n): int(v) for v, n in status.items()} == {n: fw.constant(f"MM_REG_{c_status[n]}") for n in c_status}
    endpoint = fw.ServoCore(heartbeat_timeout_s=0).can_endpoint(5)
    read_only = fw.constant("MM_REG_READ_ONLY")
    for name, register in registers.items():
        written = endpoint.register_write(register, endpoint.register_read(register))
        assert (written == read_only) == (register < 0x10), f"{name} (0x{register:04x})"
    can_transport = require("mm_driver.can_transport")
    writable = {name for name, register in registers.items() if register >= 0x10} - {"ZERO_OFFSET_COUNTS"}
    assert set(can_transport.REGISTERS.values()) == writable  # every tuning register is a Command field


def test_the_register_scales_are_the_names_units() -> None:
    """The C core scales every register as its name's unit suffix says, the scale the driver sends with."""
    import mm_firmware_core as fw

    can_transport = require("mm_driver.can_transport")
    registers = _register_map()
    core = fw.ServoCore(heartbeat_timeout_s=0.05, current_limit_a=4.0)
    endpoint = core.can_endpoint(5)
    assert endpoint.register_read(registers["HARD_CURRENT_LIMIT_MA"]) == 4.0 * can_transport.register_scale("_MA")
    assert endpoint.register_read(registers["HEARTBEAT_TIMEOUT_MS"]) == 50 == 0.05 * can_transport.register_scale("_MS")
    values = {"current_limit_a": 2.5, "max_velocity_rad_s": 12.25, "kp_pos": 30.5, "kp_vel": 0.0625, "ki_vel": 1.75}
    values["gravity_ff_a"] = 0.375
    for field, value in values.items():
        register = can_transport.REGISTERS[field]
        raw = round(value * can_transport.register_scale(register))
        assert endpoint.register_write(registers[register], raw) == fw.constant("MM_REG_OK"), register
        tuning = core.tuning()
        gain = "v_max" if field == "max_velocity_rad_s" else field
        applied = tuning.current_limit_a if field == "current_limit_a" else getattr(tuning.gains, gain)
        assert applied == pytest.approx(value, rel=1e-6), register
        assert endpoint.register_read(registers[register]) == raw, register
    assert can_transport.register_scale("ZERO_OFFSET_COUNTS") == 1.0
