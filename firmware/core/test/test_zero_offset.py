"""Zero calibration (servo contract section 2): position 0 is the load hanging straight down, wherever the magnet
sits on the shaft. The core subtracts `zero_offset_counts` from the raw count before unwrapping, so the same
physical motion read through differently glued magnets gives bit-identical observations, PID currents and states.
"""

from __future__ import annotations

import math
from typing import Any

import cantools
import numpy as np
import pytest
from cantools.database.can import Database
from mm_testing.fw_support import recorded_run

DT_S = 0.001
GAINS = (20.0, 20.0, 0.2, 2.0, 0.8)  # kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a: the feed-forward uses sin(pos)
DEVICE = 9
MASK = 0x1FFFFC00


def _run(magnet_offset: int, zero_offset_counts: int) -> dict[str, np.ndarray]:
    """Step a core in POSITION mode through the recorded motion as seen by a magnet glued `magnet_offset` counts
    away from the hanging position; returns the streamed observations, current commands and positions.
    """
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0, gains=GAINS, zero_offset_counts=zero_offset_counts)
    observations, currents, positions = [], [], []
    for row in recorded_run(ticks=1500, dt_s=DT_S):
        assert core.command(fw.MODE_POSITION, row["target_rad"], stream_transitions=True) == 0
        raw = (fw.encoder_count(row["angle_rad"]) + magnet_offset) % fw.ENCODER_COUNTS
        out = core.step(encoder_count=raw, dt_s=DT_S, current_a=row["current_a"])
        batch = core.pop_batch(1)
        assert batch.count == 1
        observations.append(list(batch.observations[:8]))
        currents.append(out.current_cmd_a)
        positions.append(core.state().position_rad)
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "currents": np.asarray(currents, dtype=np.float32),
        "positions": np.asarray(positions, dtype=np.float32),
    }


@pytest.mark.parametrize("magnet_offset", [1, 5000, 8192, 16383])
def test_same_angle_through_another_magnet_offset_gives_identical_observations(magnet_offset: int) -> None:
    reference = _run(magnet_offset=0, zero_offset_counts=0)
    calibrated = _run(magnet_offset=magnet_offset, zero_offset_counts=magnet_offset)
    for name, values in reference.items():
        assert np.array_equal(calibrated[name], values), f"{name} differ with the magnet {magnet_offset} counts off"
    # The run matters: it wraps the raw count several times and drives the gravity feed-forward both ways.
    assert np.ptp(reference["positions"]) > 2 * math.pi
    assert (reference["observations"][:, 3] > 0.9).any() and (reference["observations"][:, 3] < -0.9).any()


def test_uncalibrated_magnet_offset_shifts_the_gravity_features() -> None:
    # Why the offset exists: without it the sin/cos features see the magnet's frame, not the load's.
    reference = _run(magnet_offset=0, zero_offset_counts=0)
    uncalibrated = _run(magnet_offset=4096, zero_offset_counts=0)
    shift = np.abs(uncalibrated["observations"][:, 3:5] - reference["observations"][:, 3:5]).max()
    assert shift > 0.5


def test_hanging_load_reads_position_zero_and_cos_one() -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0, zero_offset_counts=7000)
    assert core.zero_offset_counts == 7000
    assert core.command(fw.MODE_IDLE, stream_transitions=True) == 0
    core.step(encoder_count=7000, dt_s=DT_S)
    assert core.state().position_rad == 0.0
    assert core.raw_encoder_count == 7000
    assert core.observation()[3:5] == [0.0, 1.0]  # sin, cos of the hanging position


def test_zero_offset_is_set_only_while_stopped_and_in_range() -> None:
    import mm_firmware_core as fw

    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    core.step(encoder_count=3210, dt_s=DT_S)
    core.set_zero_offset(core.raw_encoder_count)
    core.step(encoder_count=3210, dt_s=DT_S)
    assert core.state().position_rad == 0.0
    with pytest.raises(fw.FirmwareCoreError, match=r"outside 0\.\.16383"):
        core.set_zero_offset(16384)
    assert core.command(fw.MODE_HOLD) == 0
    with pytest.raises(fw.FirmwareCoreError, match="only change in IDLE or BRAKE"):
        core.set_zero_offset(100)
    assert core.zero_offset_counts == 3210
    with pytest.raises(fw.FirmwareCoreError, match="refused the configuration"):
        fw.ServoCore(zero_offset_counts=16384)


def _register(db: Database, endpoint: Any, op: str, register_id: int, value: int = 0) -> dict[str, Any]:
    request = db.get_message_by_name("REGISTER_REQUEST")
    frames = endpoint.receive(
        request.frame_id | DEVICE, request.encode({"op": op, "register_id": register_id, "value": value})
    )
    assert len(frames) == 1
    frame_id, data = frames[0]
    answer = db.get_message_by_frame_id(frame_id, force_extended_id=True).decode(data, decode_choices=True)
    assert isinstance(answer, dict)
    return answer


def test_can_registers_calibrate_the_zero() -> None:
    import mm_firmware_core as fw

    db = cantools.database.load_file(fw.dbc_path(), frame_id_mask=MASK)
    assert isinstance(db, Database)
    core = fw.ServoCore(heartbeat_timeout_s=0.0)
    endpoint = core.can_endpoint(DEVICE)
    core.step(encoder_count=11111, dt_s=DT_S)  # the load hangs; its magnet reads 11111
    raw = _register(db, endpoint, "READ", fw.constant("MM_REG_RAW_ENCODER_COUNT"))
    assert (raw["status"], raw["value"]) == ("OK", 11111)
    written = _register(db, endpoint, "WRITE", fw.constant("MM_REG_ZERO_OFFSET_COUNTS"), 11111)
    assert (written["status"], written["value"]) == ("OK", 11111)
    core.step(encoder_count=11111, dt_s=DT_S)
    assert core.state().position_rad == 0.0
    assert _register(db, endpoint, "WRITE", fw.constant("MM_REG_ZERO_OFFSET_COUNTS"), 20000)["status"] == (
        "OUT_OF_RANGE"
    )
    assert core.command(fw.MODE_HOLD) == 0
    refused = _register(db, endpoint, "WRITE", fw.constant("MM_REG_ZERO_OFFSET_COUNTS"), 5)
    assert (refused["status"], refused["value"]) == ("ACTIVE_MODE", 11111)
    assert fw.constant("MM_REG_ACTIVE_MODE") == 4
