"""The chunker and deployer against a real firmware core fed chunk by chunk (the micro-ROS chunk path without
ROS): loss, duplicates, corruption, refusals, and a transfer that never completes.
"""

from __future__ import annotations

import threading
import zlib

import mm_firmware_core as fw
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from driver_support import (
    AcceptAnyBackend,
    CoreLink,
    FaultyLink,
    ack_of,
    public_key_bytes,
    signed_image,
    wrong_crc_image,
)
from mm_driver.deploy import Deployer, DeployProgress, cut_image
from mm_driver.errors import DriverError
from mm_driver.transport import AckReason

from mm_msgs.msg import PolicyChunk


def test_cut_image_covers_the_image_in_max_data_pieces() -> None:
    image = bytes(range(256)) * 40 + b"tail"
    chunks = cut_image(image, transfer_id=9, chunk_size=PolicyChunk.MAX_DATA)
    assert b"".join(c.data for c in chunks) == image
    assert all(len(c.data) <= PolicyChunk.MAX_DATA for c in chunks)
    assert len(chunks) == -(-len(image) // PolicyChunk.MAX_DATA)
    assert {c.image_crc32 for c in chunks} == {zlib.crc32(image)}
    assert [c.index for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("chunk_size", [0, 70000])
def test_cut_image_refuses_bad_chunk_sizes(chunk_size: int) -> None:
    with pytest.raises(DriverError, match="chunk_size"):
        cut_image(b"x" * 100, transfer_id=1, chunk_size=chunk_size)


def _servo(key: ec.EllipticCurvePrivateKey) -> fw.ServoCore:
    return fw.ServoCore(public_key=public_key_bytes(key), backend=AcceptAnyBackend(), heartbeat_timeout_s=0)


def _deployer(link: object, *, max_rounds: int = 5) -> Deployer:
    return Deployer(link, chunk_size=PolicyChunk.MAX_DATA, ack_timeout_s=0.05, max_rounds=max_rounds)


def _setup(key: ec.EllipticCurvePrivateKey, **faults: object) -> tuple[fw.ServoCore, Deployer, int]:
    """A servo already running a first policy, and a deployer whose link has the given faults."""
    core = _servo(key)
    first = signed_image(key, 2000, seed=1)
    assert core.load_policy(first) == 0
    deployer: Deployer
    link = CoreLink(core, lambda ack: deployer.on_ack(ack))  # noqa: PLW0108 -- deployer is bound below
    deployer = _deployer(FaultyLink(link, **faults))  # type: ignore[arg-type]
    return core, deployer, zlib.crc32(first)


def test_16k_image_is_accepted_despite_loss_and_duplicates(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key, drop={0, 5, 36}, duplicate={3, 7})
    image = signed_image(signing_key, 16 * 1024, seed=2)
    seen: list[DeployProgress] = []
    outcome = deployer.deploy(image, previous_policy_crc32=first, progress=seen.append)
    assert outcome.success, outcome.message
    assert outcome.active_policy_crc32 == zlib.crc32(image) == core.state().policy_crc32
    assert outcome.previous_policy_crc32 == first
    total = len(cut_image(image, transfer_id=1, chunk_size=PolicyChunk.MAX_DATA))
    assert outcome.chunks_resent >= 3  # the three lost chunks went again
    assert outcome.chunks_sent == total + outcome.chunks_resent
    assert {p.phase for p in seen} == {"sending", "verifying"}
    assert seen[-1].total_chunks == total
    assert seen[-1].chunks_acked == total, "the last feedback counts every chunk the servo received"


def test_feedback_counts_acked_chunks_when_the_first_ack_is_the_verdict(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    """A lossless transfer: the servo answers once, with its verdict; that answer's count reaches the feedback."""
    _, deployer, first = _setup(signing_key)
    image = signed_image(signing_key, 12 * 1024, seed=5)
    seen: list[DeployProgress] = []
    assert deployer.deploy(image, previous_policy_crc32=first, progress=seen.append).success
    total = len(cut_image(image, transfer_id=1, chunk_size=PolicyChunk.MAX_DATA))
    assert [p.chunks_acked for p in seen if p.phase == "sending"] == [0] * total
    assert seen[-1] == DeployProgress("verifying", total, total, len(image))


def test_losing_the_last_chunk_is_recovered_by_asking_again(signing_key: ec.EllipticCurvePrivateKey) -> None:
    image = signed_image(signing_key, 4096, seed=3)
    last = len(cut_image(image, transfer_id=1, chunk_size=PolicyChunk.MAX_DATA)) - 1
    core, deployer, first = _setup(signing_key, drop={last})
    outcome = deployer.deploy(image, previous_policy_crc32=first)
    assert outcome.success, outcome.message
    assert core.state().policy_crc32 == zlib.crc32(image)


def test_chunks_the_link_fails_to_send_go_again(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key, fail={2, 9})
    image = signed_image(signing_key, 8 * 1024, seed=10)
    outcome = deployer.deploy(image, previous_policy_crc32=first)
    assert outcome.success, outcome.message
    assert outcome.chunks_resent >= 2 and core.state().policy_crc32 == zlib.crc32(image)


def test_corrupted_chunk_is_refused_and_previous_policy_stays(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key, corrupt=4)
    outcome = deployer.deploy(signed_image(signing_key, 16 * 1024, seed=4), previous_policy_crc32=first)
    assert not outcome.success
    assert outcome.reason == AckReason.CRC
    assert "CRC" in outcome.message and f"{first:08x}" in outcome.message
    assert core.state().policy_crc32 == first == outcome.active_policy_crc32


def test_wrong_model_crc_is_refused(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key)
    bad = wrong_crc_image(signing_key, 16 * 1024)
    outcome = deployer.deploy(bad, previous_policy_crc32=first)
    assert (outcome.success, outcome.reason) == (False, AckReason.CRC)
    assert core.state().policy_crc32 == first


def test_bad_signature_is_refused(
    signing_key: ec.EllipticCurvePrivateKey, other_key: ec.EllipticCurvePrivateKey
) -> None:
    core, deployer, first = _setup(signing_key)
    outcome = deployer.deploy(signed_image(other_key, 16 * 1024, seed=6), previous_policy_crc32=first)
    assert (outcome.success, outcome.reason) == (False, AckReason.SIGNATURE)
    assert "sign with the matching key" in outcome.message
    assert core.state().policy_crc32 == first


def test_truncated_image_is_refused(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key)
    outcome = deployer.deploy(signed_image(signing_key, 16 * 1024, seed=7)[:-700], previous_policy_crc32=first)
    assert (outcome.success, outcome.reason) == (False, AckReason.FORMAT)
    assert core.state().policy_crc32 == first


def test_abandoned_transfer_reports_truncated(signing_key: ec.EllipticCurvePrivateKey) -> None:
    core, deployer, first = _setup(signing_key, stop_after=10)
    outcome = deployer.deploy(signed_image(signing_key, 16 * 1024, seed=8), previous_policy_crc32=first)
    assert (outcome.success, outcome.reason) == (False, AckReason.TRUNCATED)
    assert "truncat" in outcome.message.lower() and f"{first:08x}" in outcome.message
    assert core.state().policy_crc32 == first


def test_a_stopped_transfer_ends_with_the_servos_own_truncated_verdict(signing_key: ec.EllipticCurvePrivateKey) -> None:
    """The link stops after 10 chunks. The deployer stops sending after its silent rounds and listens; the servo,
    stepped from then on, abandons the transfer after its transfer timeout (0.05 s of control time) and its
    REJECTED/TRUNCATED ack, with the chunks it had, is the outcome.
    """
    core = fw.ServoCore(
        public_key=public_key_bytes(signing_key),
        backend=AcceptAnyBackend(),
        heartbeat_timeout_s=0,
        transfer_timeout_s=0.05,
    )
    first = signed_image(signing_key, 2000, seed=1)
    assert core.load_policy(first) == 0
    deployer: Deployer
    link = FaultyLink(CoreLink(core, lambda ack: deployer.on_ack(ack)), stop_after=10)  # noqa: PLW0108
    deployer = Deployer(link, chunk_size=PolicyChunk.MAX_DATA, ack_timeout_s=0.05, max_rounds=2, verdict_timeout_s=10.0)

    def servo_runs() -> None:  # the control loop, once the link is dead (the core is not re-entrant)
        for _ in range(1000):
            core.step(encoder_count=0, dt_s=0.001)
            if (truncated := core.truncated_ack()) is not None:
                deployer.on_ack(ack_of(truncated))
                return

    stepper = threading.Thread(target=servo_runs)

    def start_the_servo(progress: DeployProgress) -> None:
        if progress.phase == "verifying" and stepper.ident is None:  # every chunk the link passes has gone
            stepper.start()

    outcome = deployer.deploy(
        signed_image(signing_key, 16 * 1024, seed=9),
        previous_policy_crc32=zlib.crc32(first),
        progress=start_the_servo,
    )
    stepper.join()
    assert (outcome.success, outcome.reason) == (False, AckReason.TRUNCATED)
    assert outcome.message.startswith("refused by the servo (TRUNCATED"), outcome.message
    assert outcome.active_policy_crc32 == zlib.crc32(first) == core.state().policy_crc32


def test_second_deploy_on_the_same_link_is_refused_while_one_runs(signing_key: ec.EllipticCurvePrivateKey) -> None:
    _, deployer, first = _setup(signing_key)
    inner: list[object] = []

    def progress(_: DeployProgress) -> None:
        if not inner:
            with pytest.raises(DriverError, match="already running"):
                deployer.deploy(b"x" * 100, previous_policy_crc32=first)
            inner.append(True)

    assert deployer.deploy(signed_image(signing_key, 1000), previous_policy_crc32=first, progress=progress).success
    assert inner
