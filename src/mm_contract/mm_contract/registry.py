"""Accepted policies on disk under their content hash (sha256 of the signed image), with metadata and metrics.

Layout: ``<root>/policies/<sha256>/{image.mmpl, metadata.json}``. An entry is built in a temporary directory
under ``<root>/.incoming`` (every file fsynced) and renamed into place in one ``os.replace``, so a writer
killed at any moment leaves the registry whole: either the complete entry is there or none of it. Leftover
temporary directories are invisible to readers and removed by :meth:`Registry.clean_incoming`.

Anti-rollback (servo contract section 5): given the signer, :meth:`Registry.add` gives each new policy the next
``policy_version`` of this registry root (max(existing) + 1), signs it into the image and only then stores it; the
servo refuses images with a lower version than one it accepted. Version assignment and the write happen under an
exclusive lock on ``<root>/.lock``, so two writers never hand out the same version.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_contract.errors import PolicyImageError, RegistryError
from mm_contract.policy_image import HEADER_SIZE, PolicyImage, pack_image, parse_image, policy_crc32

IMAGE_NAME = "image.mmpl"
METADATA_NAME = "metadata.json"
LOCK_NAME = ".lock"
_VERSION_FIELD = slice(72, 76)  # policy_version in the header (contract section 5)
# Ranking used by best_for_objective when no metric is named: every accepted policy has it (check c).
DEFAULT_RANK_KEY = ("acceptance", "closed_loop", "quantized_return")


@dataclass(frozen=True)
class RegistryEntry:
    """One registered policy."""

    policy_id: str
    """sha256 of the image, hex."""
    path: Path
    metadata: dict[str, Any]

    @property
    def objective(self) -> str:
        """The objective the policy was trained for ('' if not recorded)."""
        return str(self.metadata.get("objective", ""))

    def image(self) -> bytes:
        """The signed image, checked against its content hash."""
        image = (self.path / IMAGE_NAME).read_bytes()
        if hashlib.sha256(image).hexdigest() != self.policy_id:
            msg = f"image of {self.policy_id} no longer matches its hash: the registry copy is corrupt, re-export it"
            raise RegistryError(msg)
        return image

    @property
    def policy_crc32(self) -> int:
        """The policy id the servo reports once this image is active."""
        return policy_crc32(self.image())

    @property
    def policy_version(self) -> int:
        """The anti-rollback version signed into the image (0: unversioned)."""
        return parse_image(self.image()).header.policy_version


def content_sha256(parsed: PolicyImage) -> str:
    """sha256 of ``header || model`` with the policy_version zeroed: the same policy whatever version it carries."""
    signed = bytearray(parsed.signed_bytes)
    signed[_VERSION_FIELD] = bytes(4)
    assert len(signed) == HEADER_SIZE + len(parsed.model)
    return hashlib.sha256(bytes(signed)).hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """A content-addressed store of accepted policy images.

    Args:
        root: registry directory (created on first write).

    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._policies = self.root / "policies"
        self._incoming = self.root / ".incoming"

    def add(
        self, image: bytes, metadata: Mapping[str, Any], *, sign: Callable[[bytes], bytes] | None = None
    ) -> RegistryEntry:
        """Store an accepted image with its metadata; adding the same image again returns the existing entry.

        Args:
            image: a signed policy image (as :func:`mm_learning.export.export_policy` writes it).
            metadata: JSON-serialisable metadata stored next to it.
            sign: the signer (``functools.partial(mm_contract.signing.sign, key)``). Given, the registry versions
                the policy: it re-packs the image with ``policy_version`` = :meth:`next_version` and signs it, so
                the stored image (and its ids) is the versioned one; the same policy content added again returns
                its existing entry instead of a new version. None stores the image as it is (its own version,
                often 0: unversioned, which a servo refuses once it has accepted a versioned image).

        Raises:
            RegistryError: if the image is malformed or the metadata is not JSON-serialisable.

        """
        try:
            parsed = parse_image(image)
        except PolicyImageError as exc:
            raise RegistryError(f"refusing to register a malformed image: {exc}") from exc
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if sign is None:
                return self._store(image, metadata)
            content = content_sha256(parsed)
            for entry in self.list():
                if entry.metadata.get("content_sha256") == content:
                    return entry
            version = self.next_version()
            try:
                versioned = pack_image(parsed.header, parsed.model, sign, version=version)
            except PolicyImageError as exc:
                raise RegistryError(f"cannot version the image: {exc}") from exc
            extra: dict[str, Any] = {"content_sha256": content}
            hashes = metadata.get("hashes")
            if isinstance(hashes, Mapping):  # export's hashes describe the unversioned image: restate them
                extra["hashes"] = {
                    **hashes,
                    "image_sha256": hashlib.sha256(versioned).hexdigest(),
                    "policy_crc32": policy_crc32(versioned),
                }
            return self._store(versioned, {**metadata, **extra})

    def next_version(self) -> int:
        """The policy_version the next versioned policy gets: 1 + the highest in this registry root (1 if none)."""
        return 1 + max((int(e.metadata.get("policy_version", 0)) for e in self.list()), default=0)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock of this registry root for writers (version assignment + write)."""
        with open(self.root / LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _store(self, image: bytes, metadata: Mapping[str, Any]) -> RegistryEntry:
        """Write one entry atomically (staged under .incoming, fsynced, renamed into place)."""
        policy_id = hashlib.sha256(image).hexdigest()
        target = self._policies / policy_id
        if target.is_dir():
            return self.show(policy_id)
        version = parse_image(image).header.policy_version
        try:
            text = (
                json.dumps({**metadata, "policy_id": policy_id, "policy_version": version}, indent=2, allow_nan=False)
                + "\n"
            )
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"metadata cannot be stored as JSON: {exc}") from exc
        self._policies.mkdir(parents=True, exist_ok=True)
        self._incoming.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{policy_id[:12]}-", dir=self._incoming))
        try:
            _write_synced(staging / IMAGE_NAME, image)
            _write_synced(staging / METADATA_NAME, text.encode())
            _fsync_dir(staging)
            try:
                os.replace(staging, target)
            except OSError:
                # Another writer registered the same image meanwhile (rename onto a non-empty directory fails).
                if not target.is_dir():
                    raise
            _fsync_dir(self._policies)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.show(policy_id)

    def list(self) -> list[RegistryEntry]:
        """All entries, oldest first (by their ``created_utc`` metadata, then id)."""
        if not self._policies.is_dir():
            return []
        entries = [self._load(path) for path in self._policies.iterdir() if path.is_dir()]
        return sorted(entries, key=lambda e: (str(e.metadata.get("created_utc", "")), e.policy_id))

    def show(self, policy_id: str) -> RegistryEntry:
        """The entry whose id is ``policy_id`` or starts with it (at least 8 hex digits).

        Raises:
            RegistryError: if no entry or more than one entry matches.

        """
        if len(policy_id) < 8:
            raise RegistryError(f"policy id prefix {policy_id!r} is too short; give at least 8 hex digits")
        matches = [e for e in self.list() if e.policy_id.startswith(policy_id.lower())]
        if len(matches) != 1:
            found = "no policy" if not matches else f"{len(matches)} policies"
            raise RegistryError(f"{found} in {self.root} match {policy_id!r}; see `mm registry list`")
        return matches[0]

    def best_for_objective(
        self, objective: str, metric: str | None = None, *, higher_is_better: bool = True
    ) -> RegistryEntry:
        """The best entry trained for ``objective``.

        Args:
            objective: objective name as recorded at export.
            metric: a key of the entry's ``metrics``; by default the quantised policy's closed-loop return
                measured at acceptance (the objective's own reward).
            higher_is_better: set False for metrics such as settle time or energy.

        Raises:
            RegistryError: if no entry for the objective has the metric.

        """

        def score(entry: RegistryEntry) -> float | None:
            value: Any = entry.metadata
            for key in ("metrics", metric) if metric else DEFAULT_RANK_KEY:
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, int | float) or not math.isfinite(value):
                return None
            return float(value) if higher_is_better else -float(value)

        scored = [(s, e) for e in self.list() if e.objective == objective and (s := score(e)) is not None]
        if not scored:
            what = f"metric {metric!r}" if metric else "a closed-loop return"
            raise RegistryError(f"no registered policy for objective {objective!r} has {what}")
        return max(scored, key=lambda pair: pair[0])[1]

    def clean_incoming(self) -> int:
        """Remove temporary directories left by interrupted writers; returns how many were removed.

        Only call this when no other process is writing to the registry.
        """
        if not self._incoming.is_dir():
            return 0
        leftovers = list(self._incoming.iterdir())
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
        return len(leftovers)

    def _load(self, path: Path) -> RegistryEntry:
        try:
            metadata = json.loads((path / METADATA_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"registry entry {path} is unreadable: {exc}") from exc
        return RegistryEntry(policy_id=path.name, path=path, metadata=metadata)
