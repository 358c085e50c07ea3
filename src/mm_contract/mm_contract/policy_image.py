"""The servo policy image of docs/servo-contract.md section 5 (format version 2, little-endian).

``image = header (80 B) || model (.tflite bytes) || signature (64 B, raw ECDSA P-256 r || s)``.
Format 2 adds the schedule mode: with ``schedule_range`` ρ > 0 the servo runs a PTOS base law (contract section 8,
its gains in the header) every tick, braking at ``decel_rad_s2 · exp(ρ · a)`` with a the policy's action: at a = 0 it
is the classical PTOS controller, and the policy schedules how hard it brakes (contract section 4).
The firmware core parses and verifies the same layout; this module packs it and parses it back with the same
structural checks, so a Python-side round trip catches what the servo would refuse.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from mm_contract.constants import ACTION_DIM, OBS_DIM
from mm_contract.errors import PolicyImageError
from mm_contract.observation import ObsScales

MAGIC = b"MMPL"
FORMAT_VERSION = 2
HEADER_SIZE = 80
SIGNATURE_SIZE = 64
# Image size ceiling used when the caller does not pass the firmware's configured maximum: the model budget
# (see mm_learning.acceptance.Budget) is far below it, so this only guards against absurd inputs.
DEFAULT_MAX_IMAGE_BYTES = 256 * 1024
MAX_POLICY_DECIMATION = 255  # one header byte
MAX_POLICY_VERSION = 0xFFFFFFFF  # uint32 at offset 72

# magic, format_version, header_size, model_type, obs_dim, action_dim, policy_decimation, model_size,
# pos_scale_rad, vel_scale_rad_s, fine_gain_per_rad, current_limit_a, velocity_filter_tau_s,
# arena_bytes, model_crc32, schedule_range,
# base kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a, decel_rad_s2, policy_version, reserved
_HEADER = struct.Struct("<4sHHBBBBI5fIIf6fII")
assert _HEADER.size == HEADER_SIZE

BaseGains = tuple[float, float, float, float, float, float]
"""The base law's gains: (kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a, decel_rad_s2), as `mm_sim.baselines.PidGains`."""
NO_BASE: BaseGains = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
_BASE_NAMES = ("kp_pos", "v_max", "kp_vel", "ki_vel", "gravity_ff_a", "decel_rad_s2")


MAX_SCHEDULE_RANGE = 2.0
"""The largest schedule_range (firmware MM_MAX_SCHEDULE_RANGE): the deceleration is scaled by at most exp(±2)."""


def _as_float32(value: float) -> float:
    """The value the header carries: rounded to float32 as packing does (beyond float32's range: ±inf)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", value))[0])
    except OverflowError:
        return math.copysign(math.inf, value)


def schedule_problem(schedule_range: float, base_gains: tuple[float, ...]) -> str | None:
    """Why the servo would refuse these schedule fields (servo contract section 5), or None when it accepts them.

    The firmware's rules, applied to the float32 values the header carries: schedule_range finite and in
    [0, MAX_SCHEDULE_RANGE]; the six base gains finite and >= 0; in schedule mode (schedule_range > 0) the base law
    must be PTOS, decel_rad_s2 > 0 (the deceleration the policy scales) and kp_pos > 0 (its linear zone), the gains
    rule every law of the servo obeys.
    """
    if len(base_gains) != len(_BASE_NAMES):
        return f"base_gains has {len(base_gains)} values; give {len(_BASE_NAMES)}: {', '.join(_BASE_NAMES)}"
    rho = _as_float32(schedule_range)
    if not (math.isfinite(rho) and 0.0 <= rho <= MAX_SCHEDULE_RANGE):
        return (
            f"schedule_range={schedule_range!r} must be in [0, {MAX_SCHEDULE_RANGE}] "
            "(0: the policy is the whole action)"
        )
    gains = [_as_float32(value) for value in base_gains]
    for name, value, given in zip(_BASE_NAMES, gains, base_gains, strict=True):
        if not (math.isfinite(value) and value >= 0.0):
            return f"base gain {name}={given!r} must be a finite number >= 0"
    kp_pos, decel = gains[0], gains[5]
    if rho > 0.0 and not decel > 0.0:
        return (
            f"schedule mode (schedule_range={schedule_range!r}) needs a PTOS base law: decel_rad_s2={base_gains[5]!r} "
            "must be > 0 (the deceleration the policy scales)"
        )
    if rho > 0.0 and not kp_pos > 0.0:
        return f"base gains: PTOS (decel_rad_s2={decel!r}) needs kp_pos > 0 for its linear zone near the target"
    return None


class ModelType(IntEnum):
    """Header ``model_type``: which integer scheme the TFLite model uses."""

    INT8 = 1
    """Full int8: int8 activations and weights, int32 biases."""
    INT16X8 = 2
    """int16 activations, int8 weights, int64 biases."""


@dataclass(frozen=True)
class PolicyHeader:
    """The 80-byte header fields the caller chooses (sizes and CRC are derived from the model when packing)."""

    model_type: ModelType
    scales: ObsScales
    arena_bytes: int
    model_size: int = 0
    model_crc32: int = 0
    obs_dim: int = OBS_DIM
    action_dim: int = ACTION_DIM
    policy_decimation: int = 0
    """Control ticks per policy run (the action is held between runs); 0: the servo's configured default."""
    schedule_range: float = 0.0
    """ρ. 0: the policy's output is the whole action. In (0, MAX_SCHEDULE_RANGE]: schedule mode, the servo runs the
    PTOS law of `base_gains` every tick with its braking deceleration decel_rad_s2 · exp(ρ · a), a the policy's
    action, and applies its current (clamped to ±current_limit_a, nothing added)."""
    base_gains: BaseGains = NO_BASE
    """The base law of schedule mode: (kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a, decel_rad_s2), PTOS
    (decel_rad_s2 > 0, kp_pos > 0) when schedule_range > 0; all 0 without."""
    policy_version: int = 0
    """Anti-rollback release number (offset 72, covered by the signature): the servo refuses an image whose version
    is below the highest it accepted. 0: unversioned. :class:`mm_contract.registry.Registry` assigns it."""

    def pack(self) -> bytes:
        """Serialise to the 80 header bytes.

        Raises:
            PolicyImageError: a policy_decimation that does not fit its byte, or schedule fields the servo refuses.
        """
        if not 0 <= self.policy_decimation <= MAX_POLICY_DECIMATION:
            msg = f"policy_decimation={self.policy_decimation} must be in [0, {MAX_POLICY_DECIMATION}] (0: the servo's)"
            raise PolicyImageError(msg)
        if not 0 <= self.policy_version <= MAX_POLICY_VERSION:
            raise PolicyImageError(f"policy_version={self.policy_version} must be in [0, {MAX_POLICY_VERSION}]")
        problem = schedule_problem(self.schedule_range, self.base_gains)
        if problem is not None:
            raise PolicyImageError(problem)
        s = self.scales
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            HEADER_SIZE,
            int(self.model_type),
            self.obs_dim,
            self.action_dim,
            self.policy_decimation,
            self.model_size,
            s.pos_scale_rad,
            s.vel_scale_rad_s,
            s.fine_gain_per_rad,
            s.current_limit_a,
            s.velocity_filter_tau_s,
            self.arena_bytes,
            self.model_crc32,
            self.schedule_range,
            *self.base_gains,
            self.policy_version,
            0,
        )


@dataclass(frozen=True)
class PolicyImage:
    """A parsed policy image; :attr:`raw` is the exact byte string that was parsed."""

    header: PolicyHeader
    model: bytes
    signature: bytes
    raw: bytes

    @property
    def signed_bytes(self) -> bytes:
        """``header || model``, the bytes the signature covers (SHA-256 is applied by the signer)."""
        return self.raw[: HEADER_SIZE + len(self.model)]

    @property
    def policy_crc32(self) -> int:
        """The policy id the servo reports for this image."""
        return policy_crc32(self.raw)


def policy_crc32(image: bytes) -> int:
    """Policy id: CRC-32/ISO-HDLC (``zlib.crc32``) of the whole image, as the servo reports it."""
    return zlib.crc32(image) & 0xFFFFFFFF


def pack_image(
    header: PolicyHeader, model: bytes, sign: Callable[[bytes], bytes], *, version: int | None = None
) -> bytes:
    """Build a signed image.

    Args:
        header: header fields; ``model_size`` and ``model_crc32`` are filled in from ``model``.
        model: the .tflite flatbuffer bytes.
        sign: returns the 64-byte raw ``r || s`` signature of the bytes it is given (``header || model``),
            e.g. ``functools.partial(mm_contract.signing.sign, private_key)``.
        version: the anti-rollback ``policy_version`` to sign into the header (the registry supplies it);
            None keeps ``header.policy_version``.
    """
    if not model:
        raise PolicyImageError("model bytes are empty; export a .tflite model first")
    full = PolicyHeader(
        model_type=ModelType(header.model_type),
        scales=header.scales,
        arena_bytes=header.arena_bytes,
        model_size=len(model),
        model_crc32=zlib.crc32(model) & 0xFFFFFFFF,
        obs_dim=header.obs_dim,
        action_dim=header.action_dim,
        policy_decimation=header.policy_decimation,
        schedule_range=header.schedule_range,
        base_gains=header.base_gains,
        policy_version=header.policy_version if version is None else version,
    )
    signed = full.pack() + model
    signature = sign(signed)
    if len(signature) != SIGNATURE_SIZE:
        msg = f"signer returned {len(signature)} bytes; the image needs a raw {SIGNATURE_SIZE}-byte r || s"
        raise PolicyImageError(msg)
    return signed + signature


def parse_image(image: bytes, *, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> PolicyImage:
    """Parse and structurally check an image as the firmware does (signature not verified here).

    Raises:
        PolicyImageError: naming the first inconsistent field.
    """
    image = bytes(image)
    if len(image) > max_image_bytes:
        raise PolicyImageError(f"image is {len(image)} bytes, above the maximum of {max_image_bytes}")
    if len(image) < HEADER_SIZE + SIGNATURE_SIZE:
        msg = f"image is {len(image)} bytes, shorter than header + signature ({HEADER_SIZE + SIGNATURE_SIZE})"
        raise PolicyImageError(msg)
    (
        magic,
        version,
        header_size,
        model_type,
        obs_dim,
        action_dim,
        decimation,
        model_size,
        pos_scale,
        vel_scale,
        fine_gain,
        current_limit,
        tau,
        arena,
        model_crc,
        schedule_range,
        *base,
        policy_version,
        _reserved,
    ) = _HEADER.unpack_from(image)
    if magic != MAGIC:
        raise PolicyImageError(f"magic is {magic!r}, expected {MAGIC!r}: not a policy image")
    if version != FORMAT_VERSION:
        raise PolicyImageError(f"format_version {version} is not supported (this code reads {FORMAT_VERSION})")
    if header_size != HEADER_SIZE:
        raise PolicyImageError(f"header_size {header_size} != {HEADER_SIZE}")
    if model_type not in ModelType._value2member_map_:
        raise PolicyImageError(f"model_type {model_type} is unknown (1 = int8, 2 = int16x8)")
    if (obs_dim, action_dim) != (OBS_DIM, ACTION_DIM):
        msg = f"obs_dim/action_dim {obs_dim}/{action_dim} differ from the servo's {OBS_DIM}/{ACTION_DIM}"
        raise PolicyImageError(msg)
    problem = schedule_problem(schedule_range, tuple(base))
    if problem is not None:
        raise PolicyImageError(problem)
    if HEADER_SIZE + model_size + SIGNATURE_SIZE != len(image):
        msg = (
            f"{HEADER_SIZE} + model_size ({model_size}) + {SIGNATURE_SIZE} = "
            f"{HEADER_SIZE + model_size + SIGNATURE_SIZE} != image length {len(image)}: truncated or padded image"
        )
        raise PolicyImageError(msg)
    model = image[HEADER_SIZE : HEADER_SIZE + model_size]
    actual_crc = zlib.crc32(model) & 0xFFFFFFFF
    if actual_crc != model_crc:
        raise PolicyImageError(f"model_crc32 0x{model_crc:08x} != CRC of the model bytes 0x{actual_crc:08x}")
    header = PolicyHeader(
        model_type=ModelType(model_type),
        scales=ObsScales(pos_scale, vel_scale, fine_gain, current_limit, tau),
        arena_bytes=arena,
        model_size=model_size,
        model_crc32=model_crc,
        obs_dim=obs_dim,
        action_dim=action_dim,
        policy_decimation=decimation,
        schedule_range=schedule_range,
        base_gains=(base[0], base[1], base[2], base[3], base[4], base[5]),
        policy_version=policy_version,
    )
    return PolicyImage(header=header, model=model, signature=image[HEADER_SIZE + model_size :], raw=image)
