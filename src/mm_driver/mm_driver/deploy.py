"""Policy deployment over any link: chunks out, the servo's verdict back (docs/servo-contract.md section 6).

The deployer cuts the image into chunks, sends them, resends what the servo reports missing, and waits for
its verdict.

The servo acknowledges when the chunk with the last index arrives (with the missing indices when there are
gaps), after it has verified a complete image (ACCEPTED or REJECTED with the reason), and on any chunk of a
transfer it has already judged. So when no answer comes, resending the last chunk asks for one. A transfer that
stops arriving is abandoned by the servo itself after its transfer timeout (REJECTED/TRUNCATED, firmware core
`transfer_timeout_s`, 2 s of control time by default), and that ack is its verdict like any other. The deployer
stops sending after `max_rounds` unanswered or unprogressing rounds, then listens `verdict_timeout_s` more for the
servo's TRUNCATED ack and reports it (with the policy the servo says it runs); without one it reports the transfer
truncated on its own account. In every failure the servo keeps running its previous policy; the outcome says what
it runs.
"""

from __future__ import annotations

import secrets
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from mm_driver.errors import DriverError
from mm_driver.transport import Ack, AckReason, AckStatus, Chunk, ChunkLink


def cut_image(image: bytes, *, transfer_id: int, chunk_size: int) -> list[Chunk]:
    """The chunks of `image` for one transfer, each at most `chunk_size` bytes.

    Raises:
        DriverError: empty image, or a chunk size outside 1..65535, or more than 65536 chunks (uint16 index).
    """
    if not image:
        raise DriverError("the policy image is empty; take it from the learner's `policy` topic or the registry")
    if not 0 < chunk_size <= 0xFFFF:
        raise DriverError(f"chunk_size {chunk_size} must be in 1..65535 bytes")
    count = -(-len(image) // chunk_size)
    if count > 0x10000:
        raise DriverError(f"{len(image)} bytes need {count} chunks of {chunk_size} B; the index is uint16: raise it")
    crc = zlib.crc32(image) & 0xFFFFFFFF
    return [
        Chunk(transfer_id, len(image), crc, index, chunk_size, bytes(image[off : off + chunk_size]))
        for index, off in enumerate(range(0, len(image), chunk_size))
    ]


@dataclass(frozen=True)
class DeployProgress:
    """Feedback of a running deployment (DeployPolicy feedback)."""

    phase: str  # "sending" or "verifying"
    chunks_acked: int
    total_chunks: int
    bytes_sent: int


@dataclass(frozen=True)
class DeployOutcome:
    """How a deployment ended (DeployPolicy result).

    Attributes:
        success: the servo accepted the image and reports it as its active policy.
        message: what happened, and for a refusal why and what to do.
        reason: the servo's refusal reason (NONE on success; TRUNCATED when the transfer never completed).
        active_policy_crc32: the policy the servo reported running at the end (0: none).
        previous_policy_crc32: the policy it ran before.
        elapsed_s: wall time from the first chunk to the verdict (s).
        chunks_sent: chunk messages sent, resends included.
        chunks_resent: of those, resends.
    """

    success: bool
    message: str
    reason: AckReason
    active_policy_crc32: int
    previous_policy_crc32: int
    elapsed_s: float
    chunks_sent: int
    chunks_resent: int


class Deployer:
    """Sends policy images over one link; feed it the servo's acks with `on_ack` (from any thread)."""

    def __init__(
        self,
        link: ChunkLink,
        *,
        chunk_size: int,
        ack_timeout_s: float,
        max_rounds: int,
        verdict_timeout_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Bind to a link.

        Args:
            link: sends chunks (a transport, or a wrapper that loses or corrupts them in tests).
            chunk_size: payload bytes per chunk; capped at what the link carries.
            ack_timeout_s: how long to wait for an answer before asking again (s).
            max_rounds: answers (or silences) without progress before the deployer stops sending.
            verdict_timeout_s: then how long to listen for the servo's own TRUNCATED ack (s); longer than the
                servo's transfer timeout (2 s by default) so that the servo's verdict is the one reported; 0 reports
                at once.
            clock: monotonic time source (s).
        """
        if ack_timeout_s <= 0.0 or max_rounds < 1 or verdict_timeout_s < 0.0:
            msg = (
                f"ack_timeout_s ({ack_timeout_s}) must be > 0, max_rounds ({max_rounds}) >= 1 and "
                f"verdict_timeout_s ({verdict_timeout_s}) >= 0"
            )
            raise DriverError(msg)
        self._link = link
        self._chunk_size = min(chunk_size, link.max_chunk_data)
        self._ack_timeout_s = ack_timeout_s
        self._max_rounds = max_rounds
        self._verdict_timeout_s = verdict_timeout_s
        self._clock = clock
        self._acks: list[Ack] = []
        self._cond = threading.Condition()
        self._busy = threading.Lock()

    @property
    def chunk_size(self) -> int:
        """Payload bytes per chunk used on this link."""
        return self._chunk_size

    def on_ack(self, ack: Ack) -> None:
        """An ack arrived from the servo."""
        with self._cond:
            self._acks.append(ack)
            self._cond.notify_all()

    def _next_ack(self, transfer_id: int, seen: int, timeout_s: float) -> tuple[Ack | None, int]:
        """The freshest news on `transfer_id` among the acks after the first `seen`, waiting up to timeout_s (s).

        A verdict (accepted/refused) wins over any RECEIVING ack; of several RECEIVING acks only the last counts,
        because the servo also acknowledges duplicates mid-transfer and those older gap lists are stale.
        """
        deadline = self._clock() + timeout_s
        with self._cond:
            while True:
                news = [a for a in self._acks[seen:] if a.transfer_id == transfer_id]
                seen = len(self._acks)
                if news:
                    verdicts = [a for a in news if a.status != AckStatus.RECEIVING]
                    return (verdicts[0] if verdicts else news[-1]), seen
                remaining = deadline - self._clock()
                if remaining <= 0.0:
                    return None, seen
                self._cond.wait(remaining)

    def deploy(
        self,
        image: bytes,
        *,
        previous_policy_crc32: int,
        transfer_id: int | None = None,
        progress: Callable[[DeployProgress], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> DeployOutcome:
        """Send `image` and return the servo's verdict.

        Args:
            image: the signed policy image (contract section 5).
            previous_policy_crc32: what the servo runs now (reported back if it refuses).
            transfer_id: the transfer's id; random when None.
            progress: called after each chunk sent and each ack.
            cancelled: polled between chunks; True stops the transfer (reported as TRUNCATED).

        Raises:
            DriverError: another deployment is running on this link, or the image cannot be cut.
        """
        if not self._busy.acquire(blocking=False):
            raise DriverError("a policy deployment is already running on this servo; wait for its result")
        try:
            tid = transfer_id if transfer_id is not None else secrets.randbits(32) or 1
            return _Transfer(
                self, image, tid, previous_crc=previous_policy_crc32, progress=progress, cancelled=cancelled
            ).run()
        finally:
            self._busy.release()


class _Transfer:
    """The state of one deployment (kept apart so Deployer stays reusable)."""

    def __init__(
        self,
        deployer: Deployer,
        image: bytes,
        transfer_id: int,
        *,
        previous_crc: int,
        progress: Callable[[DeployProgress], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> None:
        self.d = deployer
        self.chunks = cut_image(image, transfer_id=transfer_id, chunk_size=deployer.chunk_size)
        self.expected_crc = zlib.crc32(image) & 0xFFFFFFFF
        self.transfer_id = transfer_id
        self.previous_crc = previous_crc
        self.progress = progress
        self.cancelled = cancelled or (lambda: False)
        self.sent = self.resent = self.bytes_sent = self.acked = 0
        self.send_error = ""  # the last chunk the link failed to send, and why
        self.active_crc = previous_crc
        self.start = deployer._clock()

    def _report(self, phase: str) -> None:
        if self.progress is not None:
            self.progress(DeployProgress(phase, self.acked, len(self.chunks), self.bytes_sent))

    def _send(self, indices: list[int], *, resend: bool) -> bool:
        """Send chunks by index; False when cancelled.

        A chunk the link fails to send (e.g. an ISO-TP flow control that came too late from a busy servo) counts
        as lost: the servo reports it missing and it goes again, or the rounds run out.
        """
        for index in indices:
            if self.cancelled():
                return False
            chunk = self.chunks[index]
            try:
                self.d._link.send_chunk(chunk)
            except DriverError as exc:
                self.send_error = f"chunk {index}: {exc}"
                continue
            self.sent += 1
            self.resent += int(resend)
            self.bytes_sent += len(chunk.data)
            self._report("sending")
        return True

    def _outcome(self, success: bool, reason: AckReason, message: str) -> DeployOutcome:
        return DeployOutcome(
            success=success,
            message=message,
            reason=reason,
            active_policy_crc32=self.active_crc,
            previous_policy_crc32=self.previous_crc,
            elapsed_s=self.d._clock() - self.start,
            chunks_sent=self.sent,
            chunks_resent=self.resent,
        )

    def _verdict(self, ack: Ack) -> DeployOutcome:
        if ack.status == AckStatus.ACCEPTED and ack.active_policy_crc32 == self.expected_crc:
            return self._outcome(True, AckReason.NONE, f"accepted: the servo runs policy {self.expected_crc:08x}")
        if ack.status == AckStatus.ACCEPTED:
            msg = (
                f"the servo acknowledged the transfer but runs {ack.active_policy_crc32:08x}, not "
                f"{self.expected_crc:08x}; redeploy"
            )
            return self._outcome(False, AckReason.NONE, msg)
        reason = AckReason(ack.reason)
        msg = (
            f"refused by the servo ({reason.name}: {_REASON_HINTS.get(reason, 'see the servo log')}); "
            f"it still runs {ack.active_policy_crc32:08x}"
        )
        return self._outcome(False, reason, msg)

    def _truncated(self, why: str) -> DeployOutcome:
        failed = f"; last send failure: {self.send_error}" if self.send_error else ""
        msg = f"transfer truncated ({why}{failed}); the servo keeps policy {self.active_crc:08x}"
        return self._outcome(False, AckReason.TRUNCATED, msg)

    def _abandoned(self, seen: int, why: str) -> DeployOutcome:
        """Sending stopped: the servo's own verdict when it comes within verdict_timeout_s, else ours."""
        self._report("verifying")
        deadline = self.d._clock() + self.d._verdict_timeout_s
        while (remaining := deadline - self.d._clock()) > 0.0:
            ack, seen = self.d._next_ack(self.transfer_id, seen, remaining)
            if ack is not None and ack.status != AckStatus.RECEIVING:
                self.active_crc = ack.active_policy_crc32
                return self._verdict(ack)
        return self._truncated(f"{why}; the servo sent no verdict within {self.d._verdict_timeout_s} s")

    def run(self) -> DeployOutcome:
        total = len(self.chunks)
        last = total - 1
        if not self._send(list(range(total)), resend=False):
            return self._truncated("cancelled while sending")
        seen = 0
        best_received = -1
        stalled = 0
        while True:
            self._report("verifying")
            ack, seen = self.d._next_ack(self.transfer_id, seen, self.d._ack_timeout_s)
            if ack is not None:
                self.active_crc = ack.active_policy_crc32
                self.acked = ack.received_chunks
                if ack.status != AckStatus.RECEIVING:
                    # The servo verified a complete image, and its first ack is often this verdict; its count
                    # fields describe the reassembly buffer, which the verdict has already released.
                    if ack.status == AckStatus.ACCEPTED:
                        self.acked = total
                    self._report("verifying")
                    return self._verdict(ack)
                # Progress resets the stall count; only rounds that gain nothing bring the give-up nearer.
                stalled = 0 if ack.received_chunks > best_received else stalled + 1
                best_received = max(best_received, ack.received_chunks)
                resend = sorted(set(ack.missing) | {last})  # the last chunk asks for the next ack
            else:
                stalled += 1
                resend = [last]
            if stalled >= self.d._max_rounds:
                return self._abandoned(
                    seen,
                    f"{max(best_received, 0)}/{total} chunks acknowledged, no progress in "
                    f"{stalled} rounds of {self.d._ack_timeout_s} s",
                )
            if not self._send([i for i in resend if 0 <= i < total], resend=True):
                return self._truncated("cancelled while resending")


_REASON_HINTS = {
    AckReason.CRC: "the image or model CRC-32 does not match: the image was corrupted, send it again",
    AckReason.FORMAT: "bad magic, version or sizes: re-export the policy with mm_learning",
    AckReason.SHAPE: "observation/action dimensions the firmware does not run",
    AckReason.SIGNATURE: "the signature does not verify against the servo's key: sign with the matching key",
    AckReason.TOO_LARGE: "the image exceeds the servo's policy buffer: export a smaller network",
    AckReason.BACKEND: "the inference backend cannot load the model (ops or arena)",
    AckReason.TRUNCATED: "the transfer was abandoned before every chunk arrived",
    AckReason.BUSY: "the servo is verifying another transfer: retry when it is done",
    AckReason.ROLLBACK: "its policy_version is below one the servo already accepted: deploy a newer release",
}
