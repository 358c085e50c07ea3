"""A `ServoLink` to a virtual servo in this process: the firmware core, TFLite Micro and the MuJoCo plant.

What the learner node does over DDS (driver's deploy_policy, servo_command, transitions), done by direct calls:
policy chunks into the core, POLICY mode with streaming, the core's own transition batches.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any

import mm_firmware_core as fw
import numpy as np
from mm_contract.transitions import COLUMNS, FLAG_EPISODE_START, TransitionColumns
from mm_learning.errors import OnlineError
from mm_learning.online_session import Episode
from mm_sim.virtual_servo import VirtualServo

CHUNK = 448  # mm_msgs/PolicyChunk.MAX_DATA
ACCEPTED = 1  # mm_msgs/PolicyAck.STATUS_ACCEPTED


class VirtualServoLink:
    """Drives `servo` the way the learner node drives a servo through the driver."""

    def __init__(self, servo: VirtualServo) -> None:
        self.servo = servo
        self._transfer = 0

    def deploy(self, image: bytes, metadata: object) -> int:
        """Send the image in PolicyChunk-sized pieces; the CRC the servo runs, or OnlineError with its reason."""
        self._transfer += 1
        crc = zlib.crc32(image)
        ack = None
        for index, offset in enumerate(range(0, len(image), CHUNK)):
            due = self.servo.policy_chunk(
                transfer_id=self._transfer,
                total_size=len(image),
                image_crc32=crc,
                index=index,
                chunk_size=CHUNK,
                data=image[offset : offset + CHUNK],
            )
            if due:
                ack = self.servo.policy_ack()
        if ack is None or ack.status != ACCEPTED:
            raise OnlineError(f"the servo refused the policy: {ack}")
        return int(ack.active_policy_crc32)

    def run_episode(self, episode: Episode) -> TransitionColumns:
        """PID to the start (if any), POLICY to the target with streaming for duration_s, then HOLD."""
        servo = self.servo
        if episode.start_rad is not None:
            servo.command(fw.MODE_POSITION, episode.start_rad, clear_faults=True)
            servo.step(round(episode.settle_s / servo.dt_s))
        ticks = round(episode.duration_s / servo.dt_s)
        status = servo.command(
            fw.MODE_POLICY,
            episode.target_rad,
            stream_transitions=True,
            clear_faults=True,
            exploration_std=episode.exploration_std,
            exploration_tau_s=episode.exploration_tau_s,
        )
        if status != 0:
            raise OnlineError(f"POLICY command refused: status {status}")
        batches = []
        for _ in range(ticks // fw.cs.BATCH_MAX_SAMPLES + 2):  # drained batch by batch, as the twin node does
            servo.step(fw.cs.BATCH_MAX_SAMPLES)
            batches += servo.full_batches()
        servo.command(fw.MODE_HOLD, 0.0)
        # The move's batches are consecutive from the one holding its first sample (earlier ones: a tail of the
        # previous move the core kept until now).
        starts = [i for i, b in enumerate(batches) if any(_column(b, "flags") & FLAG_EPISODE_START)]
        batches = batches[starts[-1] :]
        columns = {name: np.concatenate([_column(b, name) for b in batches]) for name in COLUMNS}
        first = int(np.flatnonzero(columns["flags"] & FLAG_EPISODE_START)[-1])
        part = slice(first, first + ticks)
        return TransitionColumns.from_arrays(
            first_tick=int(batches[0].first_tick) + first,
            dt_s=float(batches[0].dt_s),
            **{name: values[part] for name, values in columns.items()},
        )

    def hold(self) -> None:
        """HOLD, no streaming."""
        self.servo.command(fw.MODE_HOLD, 0.0)


def _column(batch: object, name: str) -> np.ndarray:
    n = int(batch.count)  # type: ignore[attr-defined]
    width = 8 if name == "observations" else 1
    values = np.asarray(getattr(batch, name)[: n * width])
    return values.reshape(n, width) if width > 1 else values


def lose_tails(link: VirtualServoLink, lose: Callable[[int], bool]) -> list[Any]:
    """Make `link` return only the first half of a move's transitions when lose(attempt number) says so; returns
    the list of the episodes run.
    """
    run_episode = link.run_episode
    attempts: list[Any] = []

    def lossy(episode: Any) -> TransitionColumns:
        columns = run_episode(episode)
        attempts.append(episode)
        if not lose(len(attempts)):
            return columns
        half = columns.count // 2
        arrays = {f.name: getattr(columns, f.name) for f in dataclasses.fields(columns)}
        return TransitionColumns(**{k: v[:half] if isinstance(v, np.ndarray) else v for k, v in arrays.items()})

    link.run_episode = lossy  # type: ignore[method-assign]
    return attempts
