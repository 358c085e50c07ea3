"""Recordings of a servo's topics as rosbag2 bags, and their transitions as a dataset for the learner (ROS-free).

Writing: :class:`BagWriter` writes a rosbag2 directory (``metadata.yaml`` + one MCAP file) with the ``rosbags``
package, the way ``ros2 bag record`` would on a Jazzy install: CDR payloads, type names such as
``mm_msgs/msg/TransitionBatch``, the message definitions and RIHS01 type hashes, and each topic's offered QoS
(so ``ros2 bag play`` republishes ``state`` best effort). Messages may be rclpy messages (the recorder node),
rosbags message objects or already serialized CDR bytes (tests and the ROS-free demo path, see
:func:`batch_message`).

Crash safety: MCAP keeps messages in an in-memory chunk until the chunk is written. :meth:`BagWriter.flush`
writes the pending chunk and flushes the file, so a recorder killed with SIGKILL loses at most what arrived since
its last flush; ``metadata.yaml`` and the MCAP summary are only written by :meth:`BagWriter.close`, so such a bag
has neither. The readers here recover it: :func:`read_messages` reads the MCAP file record by record (mcap's
stream reader) and stops at the first record cut by the kill; :func:`reindex_bag` (``mm bag reindex``) makes such
a recording a complete bag again, which every indexed reader and ``ros2 bag play`` then accept.

Reading: :func:`read_messages` reads bags written here or by ``ros2 bag record`` (sqlite3 or MCAP storage).
:func:`load_transitions` rebuilds the consecutive transitions of the recorded ``TransitionBatch`` messages and
computes their rewards for any objective with ``mm_contract.objectives``, so one recording serves every objective.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from mcap.exceptions import EndOfFile, InvalidMagic, UnsupportedCompressionError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mm_contract.errors import TransitionError
from mm_contract.objectives import parse_objective
from mm_contract.transitions import COLUMNS, TransitionColumns, concatenate, decisions, follows, reward_terms
from numpy.typing import NDArray
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2.metadata import parse_qos
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mm_learning.errors import LearningError

if TYPE_CHECKING:
    from stable_baselines3.common.buffers import ReplayBuffer

TRANSITION_BATCH = "mm_msgs/msg/TransitionBatch"
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(LearningError):
    """A bag cannot be written or read (missing path, unknown message type, unreadable storage)."""


def _qos(reliability: QosReliability, depth: int) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


RELIABLE = _qos(QosReliability.RELIABLE, 10)
"""Offered QoS recorded for reliable topics (transitions, command, policy_ack, reward, joint_states)."""
BEST_EFFORT = _qos(QosReliability.BEST_EFFORT, 10)
"""Offered QoS recorded for best-effort topics (state, heartbeat): ``ros2 bag play`` replays them best effort."""


def _msg_dirs() -> list[Path]:
    """Where mm_msgs' .msg files are: the installed package share (ament index), else this source tree."""
    dirs: list[Path] = []
    with suppress(PackageNotFoundError):
        dirs.append(Path(get_package_share_directory("mm_msgs")) / "msg")
    dirs.append(Path(__file__).resolve().parents[2] / "mm_msgs" / "msg")
    return [d for d in dirs if d.is_dir()]


def make_typestore(msg_dirs: Iterable[Path | str] | None = None) -> Typestore:
    """The ROS 2 Jazzy types plus mm_msgs' messages, read from their .msg files.

    Args:
        msg_dirs: directories of ``mm_msgs`` .msg files; default: the installed share (ament index), else the
            source tree ``src/mm_msgs/msg``.

    Raises:
        BagError: no .msg files found, or a definition that does not parse.
    """
    dirs = [Path(d) for d in msg_dirs] if msg_dirs is not None else _msg_dirs()
    files = [path for directory in dirs for path in sorted(directory.glob("*.msg"))]
    if not files:
        msg = f"no mm_msgs .msg files in {[str(d) for d in dirs]}; build mm_msgs (colcon) or pass msg_dirs"
        raise BagError(msg)
    types: dict[str, Any] = {}
    for path in files:
        try:
            types.update(get_types_from_msg(path.read_text(), f"mm_msgs/msg/{path.stem}"))
        except TypesysError as err:
            msg = f"{path}: not a valid message definition ({err}); fix the .msg file"
            raise BagError(msg) from err
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(types)
    return store


class BagWriter:
    """Write a rosbag2 directory with one MCAP file (a context manager; the bag is complete after close).

    Args:
        path: bag directory to create; it must not exist yet.
        typestore: message types; default :func:`make_typestore`.
        storage: "mcap" (default, what the recorder and demo write) or "sqlite3" (``ros2 bag record``'s
            storage before Jazzy).
    """

    def __init__(
        self, path: Path | str, *, typestore: Typestore | None = None, storage: Literal["mcap", "sqlite3"] = "mcap"
    ) -> None:
        self.path = Path(path)
        self.typestore = typestore or make_typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._writer: Writer | None = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
            self._writer.open()
        except WriterError as err:
            msg = f"cannot create bag {self.path}: {err} Choose a new directory (bags are never overwritten)."
            raise BagError(msg) from err
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        """Messages written per topic."""
        self.flush()  # the MCAP header on disk: a recording killed from now on is recognised as one

    def add_topic(self, topic: str, msgtype: str, *, qos: Qos = RELIABLE) -> None:
        """Declare a topic before writing to it.

        Args:
            topic: full topic name, e.g. ``/servo1/transitions``.
            msgtype: ``pkg/msg/Type``.
            qos: the QoS the publisher offered (:data:`RELIABLE` or :data:`BEST_EFFORT`).

        Raises:
            BagError: unknown type, or the topic was already declared.
        """
        if topic in self._connections:
            msg = f"topic {topic} is already in bag {self.path}; declare each topic once"
            raise BagError(msg)
        if msgtype not in self.typestore.fielddefs:
            msg = f"message type {msgtype!r} is unknown; use pkg/msg/Type of ROS 2 Jazzy or mm_msgs"
            raise BagError(msg)
        self._connections[topic] = self._open_writer().add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=[qos]
        )
        self.counts[topic] = 0

    def write(self, topic: str, message: object, stamp_ns: int) -> None:
        """Write one message.

        Args:
            topic: a topic declared with :meth:`add_topic`.
            message: CDR bytes, a rosbags message object, or an rclpy message (serialized with
                ``rclpy.serialization.serialize_message``).
            stamp_ns: receive time (ns since the epoch, or sim time), as ``ros2 bag record`` stamps.
        """
        if topic not in self._connections:
            msg = f"topic {topic} was not declared; call add_topic({topic!r}, msgtype) first"
            raise BagError(msg)
        if isinstance(message, bytes | bytearray | memoryview):
            data = bytes(message)
        elif msgtype := getattr(type(message), "__msgtype__", None):
            data = bytes(self.typestore.serialize_cdr(message, msgtype))
        else:
            from rclpy.serialization import serialize_message  # noqa: PLC0415 -- rclpy: only for rclpy messages

            data = serialize_message(message)
        self._open_writer().write(self._connections[topic], stamp_ns, data)
        self.counts[topic] += 1

    def flush(self) -> None:
        """Write the pending MCAP chunk and flush the file: messages so far survive a SIGKILL of the process."""
        storage: Any = self._open_writer().storage
        # rosbags 0.11's MCAP storage has no public flush; its close_chunk is what close() itself calls.
        if storage is not None and hasattr(storage, "close_chunk"):
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            os.fsync(storage.bio.fileno())

    def close(self) -> None:
        """Write the MCAP summary and ``metadata.yaml``; the bag is then complete. Closing twice is harmless."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _open_writer(self) -> Writer:
        if self._writer is None:
            msg = f"bag {self.path} is closed; open a new BagWriter to record more"
            raise BagError(msg)
        return self._writer

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # Close even after an error: whatever was written stays readable.
        self.close()


def batch_message(
    batch: TransitionColumns,
    *,
    stamp_ns: int,
    policy_crc32: int = 0,
    dropped_samples: int = 0,
    typestore: Typestore | None = None,
) -> object:
    """A rosbags ``mm_msgs/msg/TransitionBatch`` from transition columns (for bags written without ROS).

    Args:
        batch: the samples (at most ``TransitionBatch.MAX_SAMPLES``).
        stamp_ns: time of the first sample (ns).
        policy_crc32: policy that produced the actions.
        dropped_samples: samples the servo lost since boot.
        typestore: from :func:`make_typestore` (made when omitted).
    """
    store = typestore or make_typestore()
    types = store.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)

    def f32(values: NDArray[Any]) -> NDArray[np.float32]:
        return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)

    return types[TRANSITION_BATCH](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
        first_tick=batch.first_tick,
        dt_s=batch.dt_s,
        policy_crc32=policy_crc32,
        dropped_samples=dropped_samples,
        count=batch.count,
        **{name: f32(getattr(batch, name)) for name in COLUMNS if name != "flags"},
        flags=np.ascontiguousarray(batch.flags, dtype=np.uint8),
    )


@dataclass(frozen=True)
class RawMessage:
    """One recorded message as stored: ``data`` is its CDR serialization.

    Attributes:
        type_hash: RIHS01 hash of the definition it was recorded with ("" when the bag does not say).
    """

    topic: str
    msgtype: str
    stamp_ns: int
    data: bytes
    type_hash: str = ""


@dataclass(frozen=True)
class BagContents:
    """The messages read from a bag, in storage order (receive time).

    Attributes:
        messages: the messages of the requested topics or types.
        complete: False for a recording that was not closed (killed): ``messages`` then holds what had been
            written to disk, up to the first record the kill cut.
    """

    messages: list[RawMessage]
    complete: bool


def read_messages(bag_path: Path | str, *, msgtypes: Iterable[str] | None = None) -> BagContents:
    """Read the messages of a bag directory (``ros2 bag record`` or :class:`BagWriter`; MCAP or sqlite3) or file.

    Args:
        bag_path: bag directory, or one ``.mcap`` / ``.db3`` file.
        msgtypes: keep only these types (``pkg/msg/Type``); default all.

    Raises:
        BagError: the path does not exist, holds no bag, or the storage cannot be read.
    """
    path = Path(bag_path)
    wanted = set(msgtypes) if msgtypes is not None else None
    if not path.exists():
        msg = f"bag {path} does not exist; pass the directory `ros2 bag record -o` (or the recorder) created"
        raise BagError(msg)
    if path.is_dir() and not (path / "metadata.yaml").exists():
        mcaps = sorted(path.glob("*.mcap"))
        if not mcaps:
            msg = f"{path} is not a rosbag2 bag: it has no metadata.yaml and no .mcap file"
            raise BagError(msg)
        return BagContents([m for f in mcaps for m in _salvage_mcap(f) if wanted is None or m.msgtype in wanted], False)
    try:
        with Reader(path) as reader:
            connections = [c for c in reader.connections if wanted is None or c.msgtype in wanted]
            messages = (
                [
                    RawMessage(conn.topic, conn.msgtype, stamp, bytes(data), conn.digest)
                    for conn, stamp, data in reader.messages(connections=connections)
                ]
                if connections
                else []
            )
    except (ReaderError, FileNotFoundError) as err:
        if path.suffix == ".mcap" and "end magic" in str(err):
            return BagContents([m for m in _salvage_mcap(path) if wanted is None or m.msgtype in wanted], False)
        msg = f"cannot read bag {path}: {err}"
        raise BagError(msg) from err
    return BagContents(messages, True)


@dataclass(frozen=True)
class _Channel:
    """A channel of an MCAP file: its topic, message type and the QoS its publisher offered."""

    topic: str
    msgtype: str
    qos: Qos


def _mcap_stream(path: Path) -> Iterator[tuple[_Channel, RawMessage]]:
    """Messages of an MCAP file that was never closed, up to the first record cut short (mcap's stream reader)."""
    schemas: dict[int, str] = {}
    channels: dict[int, _Channel] = {}
    with path.open("rb") as stream:
        head = stream.read(len(_MCAP_MAGIC))
        if len(head) < len(_MCAP_MAGIC) and _MCAP_MAGIC.startswith(head):
            return  # killed before the file header reached the disk: nothing was recorded
        stream.seek(0)
        reader = StreamReader(stream, validate_crcs=True).records
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except InvalidMagic as err:
                msg = f"{path} is not an MCAP file ({err}); it cannot be recovered"
                raise BagError(msg) from err
            except UnsupportedCompressionError as err:
                msg = f"{path}: {err}; install the decompressor (lz4, zstandard) to recover it"
                raise BagError(msg) from err
            except (EndOfFile, struct.error, ValueError):
                return  # the record the kill cut (a short read, or a chunk whose CRC does not match)
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                offered = record.metadata.get("offered_qos_profiles", "")
                qos = parse_qos(offered)[:1] if offered else []
                channels[record.id] = _Channel(record.topic, schemas.get(record.schema_id, ""), *(qos or [RELIABLE]))
            elif isinstance(record, Message):
                channel = channels[record.channel_id]
                yield channel, RawMessage(channel.topic, channel.msgtype, record.log_time, record.data)


def _salvage_mcap(path: Path) -> Iterator[RawMessage]:
    """Messages of an MCAP file that was never closed, up to the first record cut short."""
    for _, message in _mcap_stream(path):
        yield message


@dataclass(frozen=True)
class Reindexed:
    """What :func:`reindex_bag` did.

    Attributes:
        bag: the bag directory, now complete (``metadata.yaml`` and a closed MCAP file).
        messages: messages per topic in the rebuilt bag.
        kept: the unfinished recording, renamed so that nothing is lost (``*.mcap.unfinished``).
    """

    bag: Path
    messages: dict[str, int]
    kept: list[Path]


def reindex_bag(bag_path: Path | str, *, typestore: Typestore | None = None) -> Reindexed:
    """Make a recording that was never closed (a recorder killed with SIGKILL) a complete rosbag2 bag.

    ``ros2 bag reindex`` rebuilds ``metadata.yaml``; an MCAP file cut by a kill also lacks its summary, which
    indexed readers (rosbags' ``AnyReader``, mcap's ``make_reader``) need. So the recovered messages are written
    again, with their topics, types and offered QoS, into a complete bag beside the original, which then takes
    its place; the unfinished MCAP files stay in the bag directory as ``*.mcap.unfinished``. A crash during the
    rebuild leaves the recording as it was (the new bag is moved in last).

    Raises:
        BagError: not a directory of MCAP files, the bag is already complete, or a recorded type is unknown.
    """
    path = Path(bag_path)
    mcaps = sorted(path.glob("*.mcap")) if path.is_dir() else []
    if not mcaps:
        msg = f"{path} is not an unfinished MCAP recording: pass the bag directory that holds its .mcap file"
        raise BagError(msg)
    if (path / "metadata.yaml").exists():
        msg = f"{path} has a metadata.yaml: it was closed and needs no reindex"
        raise BagError(msg)
    work = path.parent / f".{path.name}.reindex"
    shutil.rmtree(work, ignore_errors=True)  # a rebuild that crashed earlier
    work.mkdir()
    rebuilt = work / path.name  # rosbags names the MCAP file after the directory, as the original is named
    with BagWriter(rebuilt, typestore=typestore) as bag:
        for mcap in mcaps:
            for channel, message in _mcap_stream(mcap):
                if channel.topic not in bag.counts:
                    bag.add_topic(channel.topic, channel.msgtype, qos=channel.qos)
                bag.write(channel.topic, message.data, message.stamp_ns)
        counts = dict(bag.counts)
    kept = []
    for mcap in mcaps:
        kept.append(mcap.with_name(mcap.name + ".unfinished"))
        mcap.rename(kept[-1])
    for produced in sorted(rebuilt.iterdir(), key=lambda f: f.name == "metadata.yaml"):  # metadata.yaml last
        produced.rename(path / produced.name)
    shutil.rmtree(work)
    return Reindexed(path, counts, kept)


@dataclass(frozen=True)
class RecordedBatch:
    """One recorded ``TransitionBatch``.

    Attributes:
        topic: where it was recorded (one servo per namespace).
        stamp_ns: receive time (ns).
        policy_crc32: the policy that produced the actions.
        dropped_samples: samples the servo lost since boot (buffer full).
        columns: the samples.
    """

    topic: str
    stamp_ns: int
    policy_crc32: int
    dropped_samples: int
    columns: TransitionColumns


def read_batches(bag_path: Path | str, *, typestore: Typestore | None = None) -> tuple[list[RecordedBatch], bool]:
    """The ``TransitionBatch`` messages of a bag, in recorded order, and whether the bag was closed cleanly.

    Raises:
        BagError: unreadable bag, no TransitionBatch in it, or messages that do not decode with the known
            definition (recorded with another version of mm_msgs).
    """
    store = typestore or make_typestore()
    if TRANSITION_BATCH not in store.fielddefs:
        msg = f"the typestore does not know {TRANSITION_BATCH}; build it with make_typestore() (mm_msgs .msg files)"
        raise BagError(msg)
    contents = read_messages(bag_path)
    found = sorted({(m.topic, m.msgtype) for m in contents.messages})
    raw = [m for m in contents.messages if m.msgtype == TRANSITION_BATCH]
    if not raw:
        msg = f"bag {bag_path} holds no {TRANSITION_BATCH} messages (topics: {found}); record the `transitions` topic"
        raise BagError(msg)
    known_hash = store.hash_rihs01(TRANSITION_BATCH)
    if other := sorted({m.type_hash for m in raw if m.type_hash and m.type_hash != known_hash}):
        msg = (
            f"bag {bag_path} recorded {TRANSITION_BATCH} with another definition ({other[0]}, this mm_msgs has "
            f"{known_hash}); read it with the mm_msgs version that recorded it (make_typestore(msg_dirs=...))"
        )
        raise BagError(msg)
    batches = []
    for message in raw:
        try:
            decoded: Any = store.deserialize_cdr(message.data, TRANSITION_BATCH)
            columns = TransitionColumns.from_arrays(
                first_tick=int(decoded.first_tick),
                dt_s=float(decoded.dt_s),
                **{name: getattr(decoded, name) for name in COLUMNS},
            )
        except (TransitionError, ValueError, IndexError, struct.error) as err:
            msg = (
                f"{message.topic} at {message.stamp_ns} ns does not decode as this mm_msgs {TRANSITION_BATCH} "
                f"({err}); read the bag with the mm_msgs version that recorded it"
            )
            raise BagError(msg) from err
        batches.append(
            RecordedBatch(message.topic, message.stamp_ns, decoded.policy_crc32, decoded.dropped_samples, columns)
        )
    return batches, contents.complete


@dataclass(frozen=True)
class Episode:
    """A run of consecutive transitions under one policy (what an evaluation from recorded data scores)."""

    topic: str
    policy_crc32: int
    first_tick: int
    steps: int
    total_reward: float


@dataclass(frozen=True)
class TransitionDataset:
    """Transitions rebuilt from recorded batches, with rewards for one objective (all arrays have N rows).

    Transition j is ``(observations[j], actions[j], rewards[j], next_observations[j])`` from control tick
    ``ticks[j]`` to the next tick, by the rules the online learner uses (``mm_contract.transitions.decisions``, one
    decision per tick): both samples consecutive ticks of one servo, the second not starting an episode, neither
    faulted, the first not driven by the guard. ``dones[j]`` marks the last transition of a run: the next one does
    not follow tick by tick (episode start, fault, guard, lost samples,
    a gap in the recording), comes from another policy or servo, or there is none. The servo has no terminal
    state, so runs end by truncation: :meth:`add_to` stores them as time-limit ends, which SB3 bootstraps.

    Attributes:
        objective: the canonical text (`Objective.text`) of the objective the rewards were computed for.
        complete: False when the bag was an interrupted recording (see :class:`BagContents`).
    """

    objective: str
    observations: NDArray[np.float32]
    actions: NDArray[np.float32]
    next_observations: NDArray[np.float32]
    rewards: NDArray[np.float64]
    dones: NDArray[np.bool_]
    ticks: NDArray[np.int64]
    policy_crc32: NDArray[np.uint32]
    topics: NDArray[np.str_]
    complete: bool

    def __len__(self) -> int:
        return len(self.rewards)

    def episodes(self) -> list[Episode]:
        """The runs of consecutive transitions, in order, with their summed reward."""
        ends = np.flatnonzero(self.dones)
        starts = np.concatenate([[0], ends[:-1] + 1])
        return [
            Episode(
                str(self.topics[s]),
                int(self.policy_crc32[s]),
                int(self.ticks[s]),
                int(e - s + 1),
                float(self.rewards[s : e + 1].sum()),
            )
            for s, e in zip(starts, ends, strict=True)
        ]

    def add_to(self, buffer: ReplayBuffer) -> int:
        """Store every transition in an SB3 replay buffer (e.g. ``model.replay_buffer``); returns how many.

        Raises:
            BagError: the buffer is not for the contract's observation and action sizes, or has several envs.
        """
        obs_shape = tuple(buffer.observation_space.shape or ())
        if buffer.n_envs != 1 or obs_shape != self.observations.shape[1:] or buffer.action_dim != 1:
            msg = (
                f"replay buffer for {buffer.n_envs} envs, observations {obs_shape}, {buffer.action_dim} actions; "
                f"the servo's transitions need 1 env, observations {self.observations.shape[1:]}, 1 action"
            )
            raise BagError(msg)
        # A buffer that does not handle time limits would treat a run's end as terminal and stop bootstrapping.
        dones = self.dones if buffer.handle_timeout_termination else np.zeros_like(self.dones)
        for j in range(len(self)):
            buffer.add(
                self.observations[j : j + 1],
                self.next_observations[j : j + 1],
                self.actions[j : j + 1],
                self.rewards[j : j + 1].astype(np.float32),
                dones[j : j + 1],
                [{"TimeLimit.truncated": bool(self.dones[j])}],
            )
        return len(self)


def load_transitions(
    bag_path: Path | str, objective: str | Mapping[str, float], *, typestore: Typestore | None = None
) -> TransitionDataset:
    """The transitions recorded in a bag, with rewards for ``objective`` (see :class:`TransitionDataset`).

    Args:
        bag_path: bag directory (MCAP or sqlite3, closed or interrupted) or one .mcap/.db3 file.
        objective: objective text (``"energy"``, ``"speed:0.7,energy:0.3"``) or mm_sim term weights.
        typestore: from :func:`make_typestore` (made when omitted).

    Raises:
        BagError: see :func:`read_batches`. An unknown objective raises ObjectiveError.
    """
    parsed = parse_objective(objective)
    weights = parsed.weights
    batches, complete = read_batches(bag_path, typestore=typestore)
    rows = [
        _transitions(topic, [b for b in batches if b.topic == topic], weights)
        for topic in dict.fromkeys(b.topic for b in batches)
    ]
    columns = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
    return TransitionDataset(
        objective=parsed.text,
        observations=columns["observations"],
        actions=columns["actions"],
        next_observations=columns["next_observations"],
        rewards=columns["rewards"],
        dones=columns["dones"],
        ticks=columns["ticks"],
        policy_crc32=columns["policy_crc32"],
        topics=columns["topics"],
        complete=complete,
    )


def _runs(batches: list[RecordedBatch]) -> list[tuple[TransitionColumns, NDArray[np.uint32]]]:
    """One servo's batches joined into runs of consecutive ticks, each with the policy of every sample."""
    runs: list[tuple[TransitionColumns, NDArray[np.uint32]]] = []
    for batch in batches:
        policy = np.full(batch.columns.count, batch.policy_crc32, dtype=np.uint32)
        if runs and follows(runs[-1][0], batch.columns):
            runs[-1] = (concatenate(runs[-1][0], batch.columns), np.concatenate([runs[-1][1], policy]))
        else:
            runs.append((batch.columns, policy))
    return runs


def _transitions(topic: str, batches: list[RecordedBatch], weights: Mapping[str, float]) -> dict[str, NDArray[Any]]:
    """One servo's transitions (mm_contract.transitions.decisions, one per tick) as columns with their rewards."""
    parts: list[dict[str, NDArray[Any]]] = []
    for run, policy in _runs(batches):
        kept, _ = decisions(run, 1, 0)
        ticks = run.first_tick + kept.astype(np.int64)
        follows_next = (ticks[1:] == ticks[:-1] + 1) & (policy[kept[1:]] == policy[kept[:-1]])
        parts.append(
            {
                "observations": run.observations[kept],
                "actions": run.actions[kept][:, None],
                "next_observations": run.observations[kept + 1],
                "rewards": reward_terms(weights, run)[0][kept],
                "dones": np.concatenate([~follows_next, [True]]) if len(kept) else np.zeros(0, dtype=bool),
                "ticks": ticks,
                "policy_crc32": policy[kept],
                "topics": np.full(len(kept), topic),
            }
        )
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
