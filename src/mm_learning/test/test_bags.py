"""Recorded bags (mm_learning.bags, recorder node) read back exactly and turn into the learner's dataset.

ROS-free half: bags written from generated batches. ROS half (marked ``ros``): the recorder node in its own
process records what this process publishes over DDS, then is stopped cleanly or killed with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml
from mm_contract.objectives import TransitionSample, parse_objective, reward
from mm_contract.transitions import FLAG_EPISODE_START, FLAG_FAULT, FLAG_GUARD, TransitionColumns
from mm_learning.bags import (
    BEST_EFFORT,
    TRANSITION_BATCH,
    BagError,
    BagWriter,
    batch_message,
    load_transitions,
    make_typestore,
    read_batches,
    read_messages,
    reindex_bag,
)
from mm_testing.paths import REPO

MSG_DIR = REPO / "src" / "mm_msgs" / "msg"
TOPIC = "/servo_t/transitions"
DT_S = 0.001


@dataclass(frozen=True)
class Recording:
    """Generated batches and what a correct reader must rebuild from them."""

    batches: list[tuple[TransitionColumns, int]]  # (columns, policy_crc32)
    expected_transitions: int
    run_lengths: list[int]


def _columns(rng: np.random.Generator, first_tick: int, flags: np.ndarray) -> TransitionColumns:
    n = len(flags)
    return TransitionColumns.from_arrays(
        first_tick=first_tick,
        dt_s=DT_S,
        observations=rng.uniform(-1.0, 1.0, (n, 8)),
        actions=rng.uniform(-1.0, 1.0, n),
        position_rad=rng.normal(0.0, 1.0, n),
        velocity_rad_s=rng.normal(0.0, 5.0, n),
        current_a=rng.normal(0.0, 1.0, n),
        target_rad=np.full(n, 0.5),
        power_w=rng.normal(2.0, 3.0, n),
        flags=flags,
    )


def generated_recording(seed: int = 0) -> Recording:
    """Six batches of 24 samples: an episode start, a fault, lost samples and a policy change.

    Samples are ticks 0..71 (policy A), an episode start at tick 30, a fault at ticks 50-51, then ticks
    100..147 (the servo lost 28 samples; policy B), then 148..171 (policy C).
    Valid transitions i -> i+1: 0..71 has 71 pairs minus 1 into the episode start (29->30) minus 3 touching the
    fault (49->50, 50->51, 51->52) = 67; 100..171 has 71 pairs. Runs by first tick: 0-28 (29 transitions),
    30-48 (19), 52-70 (19), 100-147 (48: 147->148 is policy B's action), 148-170 (23, policy C).
    """
    rng = np.random.default_rng(seed)
    batches = []
    for k, policy in ((0, 0xA), (1, 0xA), (2, 0xA)):
        flags = np.zeros(24, dtype=np.uint8)
        for tick in range(k * 24, k * 24 + 24):
            if tick == 30:
                flags[tick - k * 24] |= FLAG_EPISODE_START
            if tick in (50, 51):
                flags[tick - k * 24] |= FLAG_FAULT
        batches.append((_columns(rng, k * 24, flags), policy))
    for first_tick, policy in ((100, 0xB), (124, 0xB), (148, 0xC)):
        batches.append((_columns(rng, first_tick, np.zeros(24, dtype=np.uint8)), policy))
    return Recording(batches, 67 + 71, [29, 19, 19, 48, 23])


def write_recording(path: Path, recording: Recording, *, storage: Literal["mcap", "sqlite3"] = "mcap") -> None:
    store = make_typestore()
    with BagWriter(path, typestore=store, storage=storage) as bag:
        bag.add_topic(TOPIC, TRANSITION_BATCH)
        bag.add_topic("/servo_t/state", "mm_msgs/msg/ServoState", qos=BEST_EFFORT)
        for k, (columns, policy) in enumerate(recording.batches):
            stamp_ns = 1_000_000_000 + k * 24_000_000
            bag.write(TOPIC, batch_message(columns, stamp_ns=stamp_ns, policy_crc32=policy, typestore=store), stamp_ns)
            state = store.types["mm_msgs/msg/ServoState"](
                stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0),
                **{name: 0 for name in ("seq", "tick", "mode", "fault_flags", "policy_crc32", "dropped_samples")},
                **dict.fromkeys(
                    (
                        "position_rad",
                        "velocity_rad_s",
                        "current_a",
                        "current_cmd_a",
                        "effort_nm",
                        "bus_voltage_v",
                        "power_w",
                        "temperature_c",
                        "target_rad",
                    ),
                    float(k),
                ),
            )
            bag.write("/servo_t/state", state, stamp_ns + 1)


def assert_same_batch(read: TransitionColumns, written: TransitionColumns) -> None:
    assert read.first_tick == written.first_tick
    assert read.dt_s == pytest.approx(written.dt_s, rel=1e-7)
    for name in ("observations", "actions", "position_rad", "velocity_rad_s", "current_a", "target_rad", "power_w"):
        # The message carries float32: the values must come back as exactly the float32 that was sent.
        np.testing.assert_array_equal(getattr(read, name), getattr(written, name).astype(np.float32), err_msg=name)
    np.testing.assert_array_equal(read.flags, written.flags)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_reads_back_exactly(tmp_path: Path, storage: Literal["mcap", "sqlite3"]) -> None:
    recording = generated_recording()
    write_recording(tmp_path / "bag", recording, storage=storage)
    batches, complete = read_batches(tmp_path / "bag")
    assert complete
    assert len(batches) == len(recording.batches)
    for read, (written, policy) in zip(batches, recording.batches, strict=True):
        assert read.topic == TOPIC and read.policy_crc32 == policy
        assert_same_batch(read.columns, written)
    states = read_messages(tmp_path / "bag", msgtypes=["mm_msgs/msg/ServoState"]).messages
    assert [m.topic for m in states] == ["/servo_t/state"] * len(recording.batches)


def test_metadata_is_what_ros2_bag_reads(tmp_path: Path) -> None:
    write_recording(tmp_path / "bag", generated_recording())
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == "mcap"
    assert info["relative_file_paths"] == ["bag.mcap"] and (tmp_path / "bag" / "bag.mcap").is_file()
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert topics[TOPIC]["topic_metadata"]["type"] == "mm_msgs/msg/TransitionBatch"
    assert topics[TOPIC]["topic_metadata"]["serialization_format"] == "cdr"
    assert topics[TOPIC]["message_count"] == 6
    assert topics[TOPIC]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "reliable"
    assert topics["/servo_t/state"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
    # The hash ros2 bag checks against the installed type must be the one rosidl generated for mm_msgs.
    generated = REPO / "install" / "mm_msgs" / "share" / "mm_msgs" / "msg" / "TransitionBatch.json"
    if generated.is_file():
        hashes = {h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]}
        assert topics[TOPIC]["topic_metadata"]["type_description_hash"] == hashes[TRANSITION_BATCH]


@pytest.mark.parametrize("objective", ["accuracy", "energy", "speed:0.7,energy:0.3"])
def test_dataset_transitions_and_rewards(tmp_path: Path, objective: str) -> None:
    recording = generated_recording()
    write_recording(tmp_path / "bag", recording)
    dataset = load_transitions(tmp_path / "bag", objective)
    assert dataset.complete and dataset.objective == objective
    assert len(dataset) == recording.expected_transitions
    # Every transition joins tick t to t+1 of the recorded samples, unchanged.
    samples = {}
    for columns, policy in recording.batches:
        for i in range(columns.count):
            samples[columns.first_tick + i] = (columns, i, policy)
    weights = parse_objective(objective).weights
    for j, tick in enumerate(dataset.ticks):
        columns, i, policy = samples[int(tick)]
        following, i1, _ = samples[int(tick) + 1]
        np.testing.assert_array_equal(dataset.observations[j], columns.observations[i])
        np.testing.assert_array_equal(dataset.next_observations[j], following.observations[i1])
        assert dataset.actions[j, 0] == columns.actions[i].astype(np.float32)
        assert dataset.policy_crc32[j] == policy
        expected = reward(
            weights,
            TransitionSample(
                position_rad=float(np.float32(following.position_rad[i1])),
                velocity_rad_s=float(np.float32(following.velocity_rad_s[i1])),
                current_a=float(np.float32(following.current_a[i1])),
                target_rad=float(np.float32(following.target_rad[i1])),
                power_w=float(np.float32(following.power_w[i1])),
                action=float(np.float32(columns.actions[i])),
                previous_action=float(np.float32(columns.observations[i, 6])),
                dt_s=float(np.float32(DT_S)),
            ),
        )[0]
        assert dataset.rewards[j] == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert [e.steps for e in dataset.episodes()] == recording.run_lengths
    assert [e.policy_crc32 for e in dataset.episodes()] == [0xA, 0xA, 0xA, 0xB, 0xC]
    assert sum(e.total_reward for e in dataset.episodes()) == pytest.approx(dataset.rewards.sum())


def test_one_recording_serves_every_objective(tmp_path: Path) -> None:
    write_recording(tmp_path / "bag", generated_recording())
    accuracy = load_transitions(tmp_path / "bag", "accuracy")
    energy = load_transitions(tmp_path / "bag", "energy")
    np.testing.assert_array_equal(accuracy.ticks, energy.ticks)
    # energy = accuracy + 0.05 x energy term, and the generated power is mostly positive.
    assert np.all(energy.rewards <= accuracy.rewards) and np.any(energy.rewards < accuracy.rewards)


@pytest.mark.parametrize("guarded", [False, True])
def test_dataset_agrees_with_the_online_learner_and_fills_its_buffer(tmp_path: Path, guarded: bool) -> None:
    from mm_learning.online import OnlineLearner

    recording = generated_recording()
    if guarded:  # the classical controller drove ticks 60 and 61: 60->61 and 61->62 are no transitions
        columns, policy = recording.batches[2]
        flags = columns.flags.copy()
        flags[[60 - 48, 61 - 48]] |= FLAG_GUARD
        recording.batches[2] = (dataclasses.replace(columns, flags=flags), policy)
    write_recording(tmp_path / "bag", recording)
    dataset = load_transitions(tmp_path / "bag", "energy")
    learner = OnlineLearner(objective="energy", algorithm="sac", hyperparameters={"buffer_size": 1000})
    stored = sum(learner.add_batch(columns) for columns, _ in recording.batches)
    assert stored == len(dataset), "the dataset and the online learner disagree on which transitions exist"
    assert len(dataset) == recording.expected_transitions - (2 if guarded else 0)
    first = recording.batches[0][0]
    np.testing.assert_allclose(dataset.rewards[:23], learner.rewards(first), rtol=1e-5)  # float32 in the bag

    buffer = learner.model.replay_buffer
    assert buffer is not None
    before = buffer.size()
    assert dataset.add_to(buffer) == len(dataset)
    assert buffer.size() == before + len(dataset)
    rows = slice(before, before + len(dataset))
    np.testing.assert_array_equal(buffer.observations[rows, 0], dataset.observations)
    np.testing.assert_allclose(buffer.rewards[rows, 0], dataset.rewards, rtol=1e-6)
    # Run ends are truncations: SB3 keeps bootstrapping through them.
    np.testing.assert_array_equal(buffer.timeouts[rows, 0], dataset.dones)
    losses = learner.train(gradient_steps=2, batch_size=64)
    assert np.isfinite(losses["train/critic_loss"])


def test_interrupted_recording_keeps_what_was_flushed(tmp_path: Path) -> None:
    recording = generated_recording()
    store = make_typestore()
    bag = BagWriter(tmp_path / "bag", typestore=store)
    bag.add_topic(TOPIC, TRANSITION_BATCH)
    mcap = tmp_path / "bag" / "bag.mcap"
    flushed: list[bytes] = []
    for k, (columns, policy) in enumerate(recording.batches):
        bag.write(TOPIC, batch_message(columns, stamp_ns=k, policy_crc32=policy, typestore=store), k)
        if k in (3, 4):
            bag.flush()
            flushed.append(mcap.read_bytes())  # what a SIGKILL right now would leave on disk
    bag.close()

    def killed_bag(name: str, data: bytes) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.mcap").write_bytes(data)
        return tmp_path / name

    # Killed after the second flush: both chunks survive (5 batches), the sixth was only in memory.
    batches, complete = read_batches(killed_bag("killed", flushed[1]))
    assert not complete
    assert len(batches) == 5
    for read, (written, _) in zip(batches, recording.batches, strict=False):
        assert_same_batch(read.columns, written)
    assert len(load_transitions(tmp_path / "killed", "accuracy")) == 67 + 47  # ticks 100..147 under policy B
    # Killed while the second chunk was being written: only that chunk is lost.
    cut = flushed[1][: (len(flushed[0]) + len(flushed[1])) // 2]
    assert len(read_batches(killed_bag("cut", cut))[0]) == 4


def _assert_indexed_readers_accept(bag: Path, topic_counts: dict[str, int]) -> None:
    """Rosbags' AnyReader (what `ros2 bag info`/`play` need: metadata.yaml) and mcap's indexed reader."""
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader

    with AnyReader([bag], default_typestore=make_typestore()) as reader:
        assert {c.topic: c.msgcount for c in reader.connections} == topic_counts
    (mcap,) = bag.glob("*.mcap")
    with mcap.open("rb") as stream:
        summary = make_reader(stream).get_summary()
    assert summary is not None and summary.statistics is not None
    assert summary.statistics.message_count == sum(topic_counts.values())


def test_reindex_makes_a_killed_recording_a_complete_bag(tmp_path: Path) -> None:
    """`mm bag reindex`: what survived the kill, with its topics, types and QoS, readable by indexed readers."""
    from rosbags.highlevel import AnyReader

    recording = generated_recording()
    store = make_typestore()
    bag = BagWriter(tmp_path / "rec", typestore=store)
    bag.add_topic(TOPIC, TRANSITION_BATCH)
    bag.add_topic("/servo_t/state_raw", "std_msgs/msg/String", qos=BEST_EFFORT)
    string = store.types["std_msgs/msg/String"]
    for k, (columns, policy) in enumerate(recording.batches[:5]):
        bag.write(TOPIC, batch_message(columns, stamp_ns=k, policy_crc32=policy, typestore=store), k)
        bag.write("/servo_t/state_raw", string(data=f"s{k}"), k)
    bag.flush()
    killed = (tmp_path / "rec" / "rec.mcap").read_bytes() + b"\x05\x20"  # a record cut after two bytes
    bag.close()
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "killed.mcap").write_bytes(killed)
    with pytest.raises(FileNotFoundError, match="metadata"), AnyReader([tmp_path / "killed"]):
        pass

    done = reindex_bag(tmp_path / "killed")
    assert done.messages == {TOPIC: 5, "/servo_t/state_raw": 5}
    assert done.kept == [tmp_path / "killed" / "killed.mcap.unfinished"]
    assert done.kept[0].read_bytes() == killed, "the unfinished recording is kept as it was"
    _assert_indexed_readers_accept(tmp_path / "killed", done.messages)
    batches, complete = read_batches(tmp_path / "killed")
    assert complete and len(batches) == 5
    for read, (written, _) in zip(batches, recording.batches, strict=False):
        assert_same_batch(read.columns, written)
    info = yaml.safe_load((tmp_path / "killed" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    topics = [entry["topic_metadata"] for entry in info["topics_with_message_count"]]
    offered = {topic["name"]: topic["offered_qos_profiles"] for topic in topics}
    assert "best_effort" in str(offered["/servo_t/state_raw"]) and "best_effort" not in str(offered[TOPIC])
    with pytest.raises(BagError, match="needs no reindex"):
        reindex_bag(tmp_path / "killed")
    with pytest.raises(BagError, match="not an unfinished MCAP recording"):
        reindex_bag(tmp_path / "nothing")


def test_bad_paths_and_missing_types_are_explained(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        load_transitions(tmp_path / "nope", "accuracy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        load_transitions(tmp_path / "empty", "accuracy")
    (tmp_path / "junk.mcap").write_bytes(b"not an mcap file")
    with pytest.raises(BagError, match="cannot read bag"):
        read_messages(tmp_path / "junk.mcap")
    with BagWriter(tmp_path / "states") as bag:
        bag.add_topic("/s/state", "mm_msgs/msg/ServoState", qos=BEST_EFFORT)
    with pytest.raises(BagError, match=r"holds no mm_msgs/msg/TransitionBatch.*record the `transitions` topic"):
        load_transitions(tmp_path / "states", "accuracy")
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "states")
    with BagWriter(tmp_path / "other") as bag, pytest.raises(BagError, match="'mm_msgs/msg/Nope' is unknown"):
        bag.add_topic("/x", "mm_msgs/msg/Nope")
    with pytest.raises(BagError, match=r"no mm_msgs \.msg files"):
        make_typestore([tmp_path / "empty"])
    from rosbags.typesys import Stores, get_typestore

    with pytest.raises(BagError, match="does not know mm_msgs/msg/TransitionBatch"):
        read_batches(tmp_path / "states", typestore=get_typestore(Stores.ROS2_JAZZY))


def test_bag_of_another_mm_msgs_version_is_refused(tmp_path: Path) -> None:
    changed = tmp_path / "msg"
    changed.mkdir()
    for path in MSG_DIR.glob("*.msg"):
        (changed / path.name).write_text(path.read_text())
    with (changed / "TransitionBatch.msg").open("a") as definition:
        definition.write("float32[<=24] torque_nm\n")
    old = make_typestore([changed])
    with BagWriter(tmp_path / "old", typestore=old) as bag:
        bag.add_topic(TOPIC, TRANSITION_BATCH)
        current = batch_message(generated_recording().batches[0][0], stamp_ns=0)
        fields = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}  # type: ignore[arg-type]
        bag.write(TOPIC, old.types[TRANSITION_BATCH](**fields, torque_nm=np.zeros(24, np.float32)), 0)
    with pytest.raises(BagError, match=r"with another definition .* read it with the mm_msgs version"):
        load_transitions(tmp_path / "old", "accuracy")
    assert len(read_batches(tmp_path / "old", typestore=old)[0]) == 1


# --- across processes: the recorder node records what this process publishes over DDS -----------------------

DISCOVERY_TIMEOUT_S = 30.0
SYNC_SEQ = 2**32 - 1  # ServoState.seq of the messages that only wait for the recorder


def _continuous(n: int, seed: int = 1) -> list[TransitionColumns]:
    rng = np.random.default_rng(seed)
    return [_columns(rng, k * 24, np.zeros(24, dtype=np.uint8)) for k in range(n)]


def _ros_message(columns: TransitionColumns, policy_crc32: int) -> Any:
    from mm_msgs.msg import TransitionBatch

    return TransitionBatch(
        first_tick=columns.first_tick,
        dt_s=columns.dt_s,
        policy_crc32=policy_crc32,
        count=columns.count,
        observations=columns.observations.reshape(-1).tolist(),
        actions=columns.actions.tolist(),
        position_rad=columns.position_rad.tolist(),
        velocity_rad_s=columns.velocity_rad_s.tolist(),
        current_a=columns.current_a.tolist(),
        target_rad=columns.target_rad.tolist(),
        power_w=columns.power_w.tolist(),
        flags=columns.flags.tolist(),
    )


class _Publisher:
    """A node in /bagtest publishing transitions (reliable) and state (best effort), as the servo does."""

    def __init__(self) -> None:
        rclpy = pytest.importorskip("rclpy")
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from mm_msgs.msg import ServoState, TransitionBatch

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("bag_source", namespace="/bagtest", context=self.context)
        self.transitions = self.node.create_publisher(
            TransitionBatch, "transitions", QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.state = self.node.create_publisher(
            ServoState, "state", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: list[Any] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def wait_for_recorder(self, recorder: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while min(self.transitions.get_subscription_count(), self.state.get_subscription_count()) < 1:
            assert recorder.poll() is None, "the recorder exited before subscribing (see recorder.log)"
            assert time.monotonic() < deadline, "the recorder did not subscribe within the discovery timeout"
            self.executor.spin_once(timeout_sec=0.05)

    def publish(self, columns: TransitionColumns, seq: int) -> None:
        from mm_msgs.msg import ServoState

        self.transitions.publish(_ros_message(columns, policy_crc32=7))
        self.state.publish(ServoState(seq=seq, tick=columns.first_tick, position_rad=float(seq)))

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _start_recorder(tmp_path: Path, bag: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "mm_learning.recorder_node", "--ros-args", "-r", "__ns:=/bagtest"]
    args += ["-p", f"output:={bag}", "-p", "flush_period_s:=0.2"]
    with (tmp_path / "recorder.log").open("wb") as log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.ros
@pytest.mark.slow
def test_recorder_node_records_across_processes(tmp_path: Path, report: Callable[[str], None]) -> None:
    from rclpy.duration import Duration

    from mm_msgs.msg import ServoState

    source = _Publisher()
    recorder = _start_recorder(tmp_path, tmp_path / "bag")
    try:
        source.wait_for_recorder(recorder)
        # `state` is best effort: what is published before the recorder's reader matches is lost, so wait until
        # one state has reached the bag (the recorder flushes every 0.2 s) before the measured run.
        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while not read_messages(tmp_path / "bag", msgtypes=["mm_msgs/msg/ServoState"]).messages:
            assert time.monotonic() < deadline, "no best-effort state reached the bag"
            source.state.publish(ServoState(seq=SYNC_SEQ))
            source.executor.spin_once(timeout_sec=0.05)
        sent = _continuous(40)
        for seq, columns in enumerate(sent):
            source.publish(columns, seq)
        assert source.transitions.wait_for_all_acked(Duration(seconds=10)), "the recorder did not acknowledge"
        # /diagnostics: every topic's count; WARN because nothing was published on the other recorded topics.
        from diagnostic_msgs.msg import DiagnosticStatus

        def recording() -> dict[str, str]:
            for array in source.diagnostics[::-1]:
                for status in array.status:
                    if status.name == "/bagtest/recorder: recording":
                        return {"level": str(status.level[0])} | {kv.key: kv.value for kv in status.values}
            return {}

        deadline = time.monotonic() + DISCOVERY_TIMEOUT_S
        while recording().get("/bagtest/transitions") != str(len(sent)):
            assert time.monotonic() < deadline, f"no diagnostics with 40 transitions: {recording()}"
            source.executor.spin_once(timeout_sec=0.1)
        assert recording()["level"] == str(DiagnosticStatus.WARN[0]) and recording()["/bagtest/reward"] == "0"
        recorder.send_signal(signal.SIGINT)
        assert recorder.wait(timeout=30) == 0, (tmp_path / "recorder.log").read_text()
    finally:
        if recorder.poll() is None:
            recorder.kill()
        source.close()
    batches, complete = read_batches(tmp_path / "bag")
    assert complete
    assert len(batches) == len(sent), f"{len(batches)} of {len(sent)} reliable batches recorded"
    for read, written in zip(batches, sent, strict=True):
        assert read.topic == "/bagtest/transitions" and read.policy_crc32 == 7
        assert_same_batch(read.columns, written)
    dataset = load_transitions(tmp_path / "bag", "energy")
    assert len(dataset) == 40 * 24 - 1 and dataset.dones.sum() == 1  # one run: ticks continue across batches
    info = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    assert topics["/bagtest/state"]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
    assert topics["/bagtest/joint_states"]["topic_metadata"]["type"] == "sensor_msgs/msg/JointState"
    states = [m for m in read_messages(tmp_path / "bag").messages if m.topic == "/bagtest/state"]
    measured = sum(1 for m in states if m.data != states[0].data)  # the run's states, not the SYNC_SEQ ones
    assert topics["/bagtest/state"]["message_count"] == len(states) and 0 < measured <= len(sent)
    report(f"bags: recorder across processes: {len(batches)}/{len(sent)} transition batches, {measured}/40 states")


@pytest.mark.ros
@pytest.mark.slow
def test_recording_killed_with_sigkill_still_reads_back(tmp_path: Path, report: Callable[[str], None]) -> None:
    source = _Publisher()
    recorder = _start_recorder(tmp_path, tmp_path / "bag")
    sent = _continuous(400, seed=2)
    published = 0
    try:
        source.wait_for_recorder(recorder)
        on_disk = 0
        # Publish until the recorder's periodic flushes have put >= 10 batches on disk, then kill it mid-run.
        while on_disk < 10:
            assert published < len(sent), f"only {on_disk} batches reached the disk after {published} were sent"
            for columns in sent[published : published + 5]:
                source.publish(columns, published)
                published += 1
            source.executor.spin_once(timeout_sec=0.02)
            on_disk = len(read_messages(tmp_path / "bag", msgtypes=[TRANSITION_BATCH]).messages)
        for columns in sent[published : published + 5]:
            source.publish(columns, published)
            published += 1
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
        source.close()
    assert not (tmp_path / "bag" / "metadata.yaml").exists(), "a killed recorder cannot have closed the bag"
    batches, complete = read_batches(tmp_path / "bag")
    assert not complete
    # What survives is exactly a prefix of what was sent: every flushed chunk, nothing after the last flush.
    assert 10 <= len(batches) <= published
    for read, written in zip(batches, sent, strict=False):
        assert_same_batch(read.columns, written)
    assert len(load_transitions(tmp_path / "bag", "accuracy")) == len(batches) * 24 - 1
    done = reindex_bag(tmp_path / "bag")
    assert done.messages["/bagtest/transitions"] == len(batches)
    _assert_indexed_readers_accept(tmp_path / "bag", done.messages)
    report(f"bags: recorder killed with SIGKILL: {len(batches)} of {published} published batches survived")


def test_recorder_topic_entries() -> None:
    pytest.importorskip("rclpy")
    from mm_learning.recorder_node import topic_type

    assert topic_type("transitions") == ("transitions", TRANSITION_BATCH)
    assert topic_type("odom:nav_msgs/msg/Odometry") == ("odom", "nav_msgs/msg/Odometry")
    with pytest.raises(BagError, match=r"give one of .* or name:pkg/msg/Type"):
        topic_type("odom")


@pytest.mark.ros
def test_recorder_without_output_says_what_to_set() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mm_learning.recorder_node"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "parameter `output` is empty" in result.stderr + result.stdout
