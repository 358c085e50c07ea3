"""Policy registry: content-addressed entries, queries, and a writer killed mid-write leaves it whole."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest
from mm_contract.errors import RegistryError
from mm_contract.observation import ObsScales
from mm_contract.policy_image import ModelType, PolicyHeader, pack_image
from mm_contract.registry import Registry
from mm_testing.paths import REPO

SRC = REPO / "src" / "mm_contract"


def _image(model: bytes) -> bytes:
    header = PolicyHeader(ModelType.INT16X8, ObsScales(3.0, 40.0, 25.0, 2.0, 0.004), arena_bytes=3552)
    return pack_image(header, model, lambda _: bytes(64))


def _metadata(objective: str, quantized_return: float, created: str, **metrics: float) -> dict:
    return {
        "objective": objective,
        "created_utc": created,
        "algorithm": "PPO",
        "scheme": "int16x8",
        "acceptance": {"closed_loop": {"quantized_return": quantized_return}},
        "metrics": metrics,
    }


def test_entries_are_stored_under_the_image_hash_and_read_back(tmp_path) -> None:
    registry = Registry(tmp_path)
    image = _image(b"model-a" * 10)
    entry = registry.add(image, _metadata("speed", -10.0, "2026-11-22T01:00:00+00:00"))
    assert entry.policy_id == hashlib.sha256(image).hexdigest()
    assert entry.image() == image and entry.metadata["policy_id"] == entry.policy_id
    assert registry.show(entry.policy_id[:8]).metadata["objective"] == "speed"
    # Adding the same image again changes nothing.
    assert registry.add(image, _metadata("speed", -99.0, "2026-11-22T02:00:00+00:00")) == entry
    assert [e.policy_id for e in registry.list()] == [entry.policy_id]


def test_best_for_objective_ranks_by_return_or_a_named_metric(tmp_path) -> None:
    registry = Registry(tmp_path)
    a = registry.add(_image(b"a" * 50), _metadata("speed", -12.0, "2026-11-22T01:00:00+00:00", settle_time_s=0.20))
    b = registry.add(_image(b"b" * 50), _metadata("speed", -10.0, "2026-11-22T01:01:00+00:00", settle_time_s=0.25))
    registry.add(_image(b"c" * 50), _metadata("energy", -1.0, "2026-11-22T01:02:00+00:00", settle_time_s=0.10))
    assert [e.policy_id for e in registry.list()][:2] == [a.policy_id, b.policy_id]
    assert registry.best_for_objective("speed") == b
    assert registry.best_for_objective("speed", "settle_time_s", higher_is_better=False) == a
    with pytest.raises(RegistryError, match="objective 'accuracy'"):
        registry.best_for_objective("accuracy")


def test_bad_requests_are_refused_with_a_reason(tmp_path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="malformed image"):
        registry.add(b"MMPL" + bytes(200), {})
    with pytest.raises(RegistryError, match="no policy"):
        registry.show("deadbeef")
    with pytest.raises(RegistryError, match="JSON"):
        registry.add(_image(b"x" * 20), {"bad": object()})
    entry = registry.add(_image(b"y" * 20), _metadata("speed", 0.0, "t"))
    (entry.path / "image.mmpl").write_bytes(_image(b"z" * 20))
    with pytest.raises(RegistryError, match="corrupt"):
        entry.image()


# The writer pauses inside its N-th fsync (N=1: image written, 2: metadata written, 3: staging directory
# synced, 4: after the rename into place) and waits; the test then kills it with SIGKILL.
_WRITER = """
import os, sys
from pathlib import Path
from mm_contract.registry import Registry
from mm_testing.paths import REPO
real_fsync, calls = os.fsync, [0]
def fsync_then_wait(fd):
    real_fsync(fd)
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):
        print("paused", flush=True)
        sys.stdin.read()
os.fsync = fsync_then_wait
Registry(Path(sys.argv[1])).add(Path(sys.argv[2]).read_bytes(), {"objective": "speed", "created_utc": "t2"})
"""


@pytest.mark.parametrize(("pause_at_fsync", "entry_visible"), [(1, False), (2, False), (3, False), (4, True)])
def test_registry_survives_a_writer_killed_mid_write(tmp_path, pause_at_fsync, entry_visible) -> None:
    registry = Registry(tmp_path / "reg")
    first = registry.add(_image(b"first" * 10), _metadata("speed", -5.0, "t1"))
    second_image = _image(b"second" * 10)
    (tmp_path / "second.mmpl").write_bytes(second_image)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(registry.root), str(tmp_path / "second.mmpl"), str(pause_at_fsync)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"paused\n"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    # The registry is whole: the earlier entry reads back, the killed write is all-or-nothing.
    ids = [e.policy_id for e in Registry(registry.root).list()]
    second_id = hashlib.sha256(second_image).hexdigest()
    assert ids == ([first.policy_id, second_id] if entry_visible else [first.policy_id])
    assert registry.show(first.policy_id).image() == _image(b"first" * 10)
    # Leftovers are invisible and removable; writing the same policy again completes it.
    registry.clean_incoming()
    assert registry.add(second_image, _metadata("speed", -4.0, "t3")).image() == second_image
    assert len(registry.list()) == 2


def _signer(tag: int):
    """A stand-in signer: a 64-byte signature that depends on the signed bytes (nothing verifies it here)."""
    return lambda data: hashlib.sha512(bytes([tag]) + data).digest()


def test_the_registry_versions_each_new_policy_max_plus_one(tmp_path) -> None:
    from mm_contract.policy_image import parse_image

    registry = Registry(tmp_path)
    assert registry.next_version() == 1
    sign = _signer(1)
    a = registry.add(_image(b"a" * 40), {**_metadata("speed", 0.0, "t1"), "hashes": {"model_crc32": 7}}, sign=sign)
    b = registry.add(_image(b"b" * 40), _metadata("speed", 0.0, "t2"), sign=sign)
    assert (a.policy_version, b.policy_version) == (1, 2)
    assert a.metadata["policy_version"] == 1 and registry.next_version() == 3
    # The version is in the signed header, and the stored image is the versioned, re-signed one.
    parsed = parse_image(b.image())
    assert parsed.header.policy_version == 2
    assert parsed.signature == sign(parsed.signed_bytes)
    assert a.metadata["hashes"] == {"model_crc32": 7, "image_sha256": a.policy_id, "policy_crc32": a.policy_crc32}
    # The same content again (whatever version it carries) is the existing entry, not a new version.
    assert registry.add(_image(b"a" * 40), _metadata("speed", 0.0, "t3"), sign=sign) == a
    assert registry.add(b.image(), _metadata("speed", 0.0, "t3"), sign=sign) == b
    # An unversioned image stored as it is counts as 0; a versioned import raises the next version.
    plain = registry.add(_image(b"c" * 40), _metadata("speed", 0.0, "t4"))
    assert plain.policy_version == 0 and registry.next_version() == 3
    imported = pack_image(parse_image(_image(b"d" * 40)).header, b"d" * 40, _signer(2), version=10)
    assert registry.add(imported, _metadata("speed", 0.0, "t5")).policy_version == 10
    assert registry.add(_image(b"e" * 40), _metadata("speed", 0.0, "t6"), sign=sign).policy_version == 11


_VERSIONING_WRITER = """
import hashlib, sys
from pathlib import Path
from mm_contract.policy_image import ModelType, PolicyHeader, pack_image
from mm_contract.registry import Registry
from mm_testing.paths import REPO
from mm_contract.observation import ObsScales
from mm_testing.paths import REPO
header = PolicyHeader(ModelType.INT16X8, ObsScales(3.0, 40.0, 25.0, 2.0, 0.004), arena_bytes=3552)
sign = lambda data: hashlib.sha512(data).digest()
for k in range(int(sys.argv[3])):
    model = f"{sys.argv[2]}-{k}".encode() * 8
    Registry(Path(sys.argv[1])).add(pack_image(header, model, sign), {"created_utc": "t"}, sign=sign)
"""


def test_concurrent_writers_never_share_a_version(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    writers = [
        subprocess.Popen([sys.executable, "-c", _VERSIONING_WRITER, str(tmp_path / "reg"), name, "6"], env=env)
        for name in ("w1", "w2")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    versions = sorted(e.policy_version for e in Registry(tmp_path / "reg").list())
    assert versions == list(range(1, 13))
