"""Python binding (ctypes) of the servo's C control core, libmmcore (firmware/core).

The twin node and the tests run the very C code the ESP32 runs. `ServoCore` wraps one core instance;
`Observer` and `pid_step` expose the sensing and PID pieces on their own for parity tests.

The library is found next to this package when installed by colcon (`<prefix>/lib/libmmcore.so`), or wherever
the environment variable `MM_CORE_LIB` points (for example a plain cmake build directory).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mm_firmware_core import _structs as cs

__all__ = [
    "CanEndpoint",
    "FirmwareCoreError",
    "InferenceBackend",
    "ObsScales",
    "Observer",
    "PidState",
    "ServoCore",
    "config_default",
    "constant",
    "crc32",
    "dbc_path",
    "encoder_count",
    "library",
    "pid_step",
]

# Module attributes read from libmmcore on first use (its C headers define them; PEP 562 __getattr__ below).
_LIBRARY_CONSTANTS = {
    "MODE_IDLE": "MM_MODE_IDLE",
    "MODE_HOLD": "MM_MODE_HOLD",
    "MODE_TORQUE": "MM_MODE_TORQUE",
    "MODE_POSITION": "MM_MODE_POSITION",
    "MODE_POLICY": "MM_MODE_POLICY",
    "MODE_BRAKE": "MM_MODE_BRAKE",
    "ENCODER_COUNTS": "MM_ENCODER_COUNTS",
}


class FirmwareCoreError(RuntimeError):
    """Raised when the core library cannot be loaded or refuses a call; the message says what to do."""


_log = logging.getLogger(__name__)


def _library_path() -> Path:
    env = os.environ.get("MM_CORE_LIB")
    if env:
        return Path(env)
    # Installed layout: <prefix>/lib/python3.X/site-packages/mm_firmware_core/__init__.py
    return Path(__file__).resolve().parent.parents[2] / "libmmcore.so"


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and result types of every function used here (so ctypes converts floats correctly)."""
    p = ctypes.POINTER
    sigs: dict[str, tuple[object, list[object]]] = {
        "mm_binding_sizeof": (ctypes.c_size_t, [ctypes.c_char_p]),
        "mm_binding_constant": (ctypes.c_int, [ctypes.c_char_p, p(ctypes.c_long)]),
        "mm_core_size": (ctypes.c_size_t, []),
        "mm_core_config_default": (None, [p(cs.Config)]),
        "mm_core_init": (ctypes.c_int, [ctypes.c_void_p, p(cs.Config)]),
        "mm_core_step": (ctypes.c_int, [ctypes.c_void_p, p(cs.Sensors), ctypes.c_float, p(cs.Actuator)]),
        "mm_core_command": (ctypes.c_int, [ctypes.c_void_p, p(cs.Command)]),
        "mm_core_heartbeat": (None, [ctypes.c_void_p, ctypes.c_uint32]),
        "mm_core_get_state": (None, [ctypes.c_void_p, p(cs.State)]),
        "mm_core_get_observation": (None, [ctypes.c_void_p, p(ctypes.c_float)]),
        "mm_core_set_zero_offset": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint16]),
        "mm_core_raw_encoder_count": (ctypes.c_uint16, [ctypes.c_void_p]),
        "mm_core_config": (p(cs.Config), [ctypes.c_void_p]),
        "mm_core_guard_trips": (ctypes.c_uint32, [ctypes.c_void_p]),
        "mm_core_policy_chunk": (
            ctypes.c_uint8,
            [
                ctypes.c_void_p,
                ctypes.c_uint32,
                ctypes.c_uint32,
                ctypes.c_uint32,
                ctypes.c_uint16,
                ctypes.c_uint16,
                ctypes.c_char_p,
                ctypes.c_uint16,
                p(ctypes.c_bool),
            ],
        ),
        "mm_core_policy_verify_pending": (ctypes.c_bool, [ctypes.c_void_p]),
        "mm_core_policy_finish": (ctypes.c_int, [ctypes.c_void_p]),
        "mm_core_policy_load": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]),
        "mm_core_policy_ack": (None, [ctypes.c_void_p, p(cs.PolicyAck)]),
        "mm_core_policy_truncated_ack": (ctypes.c_bool, [ctypes.c_void_p, p(cs.PolicyAck)]),
        "mm_core_policy_active": (ctypes.c_bool, [ctypes.c_void_p, p(cs.PolicyHeader)]),
        "mm_core_policy_version_floor": (ctypes.c_uint32, [ctypes.c_void_p]),
        "mm_core_pop_batch": (ctypes.c_uint8, [ctypes.c_void_p, p(cs.Batch), ctypes.c_uint8]),
        "mm_core_samples_available": (ctypes.c_uint32, [ctypes.c_void_p]),
        "mm_core_get_tuning": (None, [ctypes.c_void_p, p(cs.Tuning)]),
        "mm_core_gain_limits": (None, [ctypes.c_void_p, p(cs.PidGains)]),
        "mm_crc32": (ctypes.c_uint32, [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]),
        "mm_velocity_filter_reset": (None, [p(cs.VelocityFilter)]),
        "mm_velocity_filter_update": (
            ctypes.c_float,
            [p(cs.VelocityFilter), ctypes.c_float, ctypes.c_float, ctypes.c_float],
        ),
        "mm_observation_build": (
            None,
            [
                p(cs.ObsParams),
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                p(ctypes.c_float),
            ],
        ),
        "mm_pid_step": (
            ctypes.c_float,
            [
                p(cs.Pid),
                p(cs.PidGains),
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
                ctypes.c_float,
            ],
        ),
        "mm_can_init": (
            ctypes.c_bool,
            [ctypes.c_void_p, ctypes.c_uint16, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_float],
        ),
        "mm_can_receive": (ctypes.c_uint8, [ctypes.c_void_p, ctypes.c_void_p, p(cs.CanFrame), p(cs.CanFrame)]),
        "mm_can_state_frames": (ctypes.c_uint8, [ctypes.c_void_p, ctypes.c_void_p, p(cs.CanFrame)]),
        "mm_can_fault_frame": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p, p(cs.CanFrame)]),
        "mm_can_policy_ack_frame": (None, [ctypes.c_void_p, ctypes.c_void_p, p(cs.CanFrame)]),
        "mm_can_truncated_ack_frame": (ctypes.c_bool, [ctypes.c_void_p, ctypes.c_void_p, p(cs.CanFrame)]),
        "mm_can_tick": (None, [ctypes.c_void_p, ctypes.c_float]),
        "mm_can_auth_enable": (None, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]),
        "mm_can_auth_stats": (
            None,
            [ctypes.c_void_p, p(ctypes.c_uint32), p(ctypes.c_uint32), p(ctypes.c_uint32)],
        ),
        "mm_can_auth_tag": (ctypes.c_bool, [ctypes.c_char_p, p(cs.CanFrame), ctypes.c_uint32, ctypes.c_char_p]),
        "mm_can_register_read": (
            ctypes.c_uint8,
            [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, p(ctypes.c_int32)],
        ),
        "mm_can_register_write": (ctypes.c_uint8, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_int32]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


@functools.cache
def library() -> ctypes.CDLL:
    """Load libmmcore once, declare its functions and check the struct layouts."""
    path = _library_path()
    if not path.is_file():
        msg = (
            f"libmmcore not found at {path}; build firmware/core (colcon build or cmake) and source "
            "install/setup.bash, or set MM_CORE_LIB to the library's path"
        )
        raise FirmwareCoreError(msg)
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    for name, mirrored in cs.DIMENSIONS.items():
        value = ctypes.c_long()
        if not lib.mm_binding_constant(name.encode(), ctypes.byref(value)) or value.value != mirrored:
            msg = (
                f"{name} is {value.value} in {path} but {mirrored} in the binding; "
                "update mm_firmware_core/_structs.py to match the C header"
            )
            raise FirmwareCoreError(msg)
    for name, mirror in cs.MIRRORS.items():
        size = lib.mm_binding_sizeof(name.encode())
        if size != ctypes.sizeof(mirror):
            msg = (
                f"{name} is {size} bytes in {path} but {ctypes.sizeof(mirror)} in the binding; "
                "update mm_firmware_core/_structs.py to match the C header"
            )
            raise FirmwareCoreError(msg)
    return lib


@functools.cache
def constant(name: str) -> int:
    """The value of a C enum/macro of the core by its C name (e.g. 'MM_FAULT_POLICY')."""
    value = ctypes.c_long()
    if not library().mm_binding_constant(name.encode(), ctypes.byref(value)):
        msg = f"the core exports no constant named {name!r}; see mm_binding_constant in src/mm_binding.c"
        raise FirmwareCoreError(msg)
    return value.value


def config_default() -> cs.Config:
    """The core's default configuration (mm_core_config_default), what `ServoCore` starts from.

    For example the POLICY-mode guard's guard_error_rad and guard_saturation_s (servo contract section 4).
    """
    cfg = cs.Config()
    library().mm_core_config_default(ctypes.byref(cfg))
    return cfg


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32 of data as the core computes it (equals zlib.crc32)."""
    return int(library().mm_crc32(crc, data, len(data)))


def dbc_path() -> Path:
    """The CAN database (mm_servo.dbc): installed share directory, else the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here.parents[3] / "share" / "mm_firmware_core" / "can" / "mm_servo.dbc",
        here.parents[1] / "can" / "mm_servo.dbc",
    ):
        if candidate.is_file():
            return candidate
    msg = "mm_servo.dbc not found next to the binding; reinstall mm_firmware_core"
    raise FirmwareCoreError(msg)


def __getattr__(name: str) -> int:
    """MODE_* and ENCODER_COUNTS, read from libmmcore (FirmwareCoreError when it cannot load)."""
    c_name = _LIBRARY_CONSTANTS.get(name)
    if c_name is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return constant(c_name)


class ObsScales(Protocol):
    """Observation scales (servo contract section 3) as any object with these attributes carries them.

    mm_contract.observation.ObsScales is one; the names are the fields of the C struct mm_obs_params_t.
    """

    @property
    def pos_scale_rad(self) -> float:
        """Position error giving a coarse error feature of 1 (rad)."""

    @property
    def vel_scale_rad_s(self) -> float:
        """Velocity giving a velocity feature of 1 (rad/s)."""

    @property
    def fine_gain_per_rad(self) -> float:
        """Gain of the fine error feature (1/rad)."""

    @property
    def current_limit_a(self) -> float:
        """Current for action 1 and for a current feature of 1 (A)."""

    @property
    def velocity_filter_tau_s(self) -> float:
        """Time constant of the velocity estimate's low-pass filter (s)."""


def _obs_params(scales: ObsScales) -> cs.ObsParams:
    """The C struct mm_obs_params_t of `scales`, field by field under the C names."""
    return cs.ObsParams(*(float(getattr(scales, field[0])) for field in cs.ObsParams._fields_))


class Observer:
    """The C velocity filter + observation builder, stepped like mm_contract.observation.ObservationBuilder."""

    def __init__(self, scales: ObsScales, dt_s: float) -> None:
        """Build an observer for the given scales and control period dt_s (s)."""
        self._lib = library()
        self._params = _obs_params(scales)
        self._dt_s = dt_s
        self._filter = cs.VelocityFilter()
        self._lib.mm_velocity_filter_reset(ctypes.byref(self._filter))

    @property
    def velocity_rad_s(self) -> float:
        """The filtered velocity estimate (rad/s)."""
        return float(self._filter.velocity_rad_s)

    def update(
        self,
        position_rad: float,
        current_a: float,
        target_rad: float,
        target_velocity_rad_s: float,
        prev_action: float,
    ) -> list[float]:
        """Feed one tick and return the 8 observation features."""
        lib = self._lib
        velocity = lib.mm_velocity_filter_update(
            ctypes.byref(self._filter), position_rad, self._dt_s, self._params.velocity_filter_tau_s
        )
        obs = (ctypes.c_float * cs.OBS_DIM)()
        lib.mm_observation_build(
            ctypes.byref(self._params),
            position_rad,
            velocity,
            current_a,
            target_rad,
            target_velocity_rad_s,
            prev_action,
            obs,
        )
        return list(obs)


@dataclass
class PidState:
    """Integrator of the C cascaded PID (A)."""

    integrator_a: float = 0.0


def pid_step(
    state: PidState,
    gains: Sequence[float],
    *,
    current_limit_a: float,
    dt_s: float,
    position_rad: float,
    velocity_rad_s: float,
    target_rad: float,
    target_velocity_rad_s: float = 0.0,
) -> float:
    """One tick of the C PID (servo contract section 8).

    gains = (kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a[, decel_rad_s2]); decel_rad_s2 (default 0) > 0 runs the
    PTOS position loop. The gains are not checked here (the core checks them where they enter a servo).
    """
    pid = cs.Pid(state.integrator_a)
    out = library().mm_pid_step(
        ctypes.byref(pid),
        ctypes.byref(cs.PidGains(*gains)),
        current_limit_a,
        dt_s,
        position_rad,
        velocity_rad_s,
        target_rad,
        target_velocity_rad_s,
    )
    state.integrator_a = float(pid.integrator_a)
    return float(out)


class InferenceBackend(Protocol):
    """What ServoCore needs to run policies: load a .tflite model into slot 0/1, and run it."""

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Load model into slot; False refuses it (the core then reports REASON_BACKEND)."""

    def invoke(self, slot: int, observation: list[float]) -> float:
        """Run the model in slot on the 8 features and return the action."""


class ServoCore:
    """One servo control core (opaque C struct) with an optional Python inference backend."""

    def __init__(
        self,
        *,
        public_key: bytes = b"",
        backend: InferenceBackend | None = None,
        obs_scales: ObsScales | None = None,
        gains: Sequence[float] | None = None,
        **overrides: float | int,
    ) -> None:
        """Initialise a core.

        Args:
            public_key: policy signing key, 65-byte uncompressed P-256 point (empty: no policy verifies).
            backend: inference backend; None means no policy can load.
            obs_scales: observation scales for samples while no policy is active.
            gains: initial PID gains (kp_pos, v_max, kp_vel, ki_vel, gravity_ff_a[, decel_rad_s2]); decel_rad_s2
                (default 0) > 0 makes the POSITION/HOLD position loop PTOS. Gains the core refuses (negative,
                not finite, PTOS with kp_pos 0) fail the init.
            overrides: mm_config_t scalar fields to change from the defaults (e.g. heartbeat_timeout_s=0,
                zero_offset_counts=5120: the raw count with the load hanging straight down, transfer_timeout_s=2.0:
                control time without a chunk before a transfer is abandoned as truncated, 0 disables,
                exploration_seed=3: seed of the POLICY-mode exploration noise, guard_error_rad=1.5 and
                guard_saturation_s=0.5: the POLICY-mode guard's envelope, 0 disables either check).
        """
        self._lib = library()
        self._mem = ctypes.create_string_buffer(self._lib.mm_core_size() + 16)
        # Align by hand: the struct holds atomics and floats; create_string_buffer only promises malloc alignment.
        addr = ctypes.addressof(self._mem)
        self._ptr = ctypes.c_void_p((addr + 15) & ~15)
        cfg = config_default()
        if public_key:
            if len(public_key) != cs.PUBLIC_KEY_BYTES:
                msg = f"public_key must be a 65-byte uncompressed P-256 point, got {len(public_key)} bytes"
                raise FirmwareCoreError(msg)
            ctypes.memmove(cfg.public_key, public_key, cs.PUBLIC_KEY_BYTES)
        for name, value in overrides.items():
            if not hasattr(cfg, name) or name in {"gains", "obs", "backend", "public_key"}:
                msg = f"unknown or non-scalar config field {name!r}"
                raise FirmwareCoreError(msg)
            setattr(cfg, name, value)
        if obs_scales is not None:
            cfg.obs = _obs_params(obs_scales)
        if gains is not None:
            cfg.gains = cs.PidGains(*gains)
        self._callbacks: tuple[object, object] | None = None
        self._backend_error: Exception | None = None
        if backend is not None:
            cfg.backend = self._wrap_backend(backend)
        status = self._lib.mm_core_init(self._ptr, ctypes.byref(cfg))
        if status != 0:
            msg = f"mm_core_init refused the configuration (status {status}); check limits and scales"
            raise FirmwareCoreError(msg)
        self._can = ctypes.create_string_buffer(self._lib.mm_binding_sizeof(b"mm_can_t"))

    @property
    def backend_error(self) -> Exception | None:
        """The last exception the inference backend raised (None: none since the core was made).

        The C core cannot take a Python exception: one raised by the backend's `load` refuses the image
        (REASON_BACKEND) and one raised by `invoke` fails the inference (FAULT_POLICY), as a refusal or a failed
        inference would; the exception is logged with its traceback (logger `mm_firmware_core`) and kept here.
        """
        return self._backend_error

    def _backend_raised(self, call: str, exc: Exception) -> int:
        """Log and keep an exception the backend raised inside a C callback; the core's failure code (1)."""
        self._backend_error = exc
        what = "refused as REASON_BACKEND" if call == "load" else "FAULT_POLICY latched"
        _log.error("inference backend %s raised %r: %s", call, exc, what, exc_info=exc)
        return 1

    def _wrap_backend(self, backend: InferenceBackend) -> cs.Backend:
        def load(_ctx: Any, slot: int, model: Any, size: int, arena: int, model_type: int) -> int:
            try:
                return 0 if backend.load(slot, ctypes.string_at(model, size), arena, model_type) else 1
            except Exception as exc:  # a C callback cannot propagate it: logged and kept, see backend_error
                return self._backend_raised("load", exc)

        def invoke(_ctx: Any, slot: int, obs: Any, action: Any) -> int:
            try:
                value = backend.invoke(slot, [obs[i] for i in range(cs.OBS_DIM)])
            except Exception as exc:  # as in load
                return self._backend_raised("invoke", exc)
            action[0] = value
            return 0

        load_fn, invoke_fn = cs.LOAD_FN(load), cs.INVOKE_FN(invoke)
        self._callbacks = (load_fn, invoke_fn)  # keep them alive as long as the core
        return cs.Backend(load_fn, invoke_fn, None)

    # -- control -------------------------------------------------------------------------------------------
    def step(
        self,
        *,
        encoder_count: int,
        dt_s: float,
        current_a: float = 0.0,
        bus_voltage_v: float = 24.0,
        temperature_c: float = 25.0,
        power_w: float = 0.0,
        encoder_ok: bool = True,
        end_stop_low: bool = False,
        end_stop_high: bool = False,
    ) -> cs.Actuator:
        """One control tick with this tick's readings; returns the command applied from the next tick.

        Raises:
            FirmwareCoreError: dt_s is not finite and positive; the core refused the tick and changed nothing.
        """
        sensors = cs.Sensors(
            encoder_count,
            encoder_ok,
            end_stop_low,
            end_stop_high,
            current_a,
            bus_voltage_v,
            temperature_c,
            power_w,
        )
        out = cs.Actuator()
        if self._lib.mm_core_step(self._ptr, ctypes.byref(sensors), dt_s, ctypes.byref(out)) != 0:
            msg = f"the core refused the control period dt_s={dt_s!r}: it must be finite and positive (s)"
            raise FirmwareCoreError(msg)
        return out

    def command(self, mode: int, target: float = 0.0, **fields: float | bool) -> int:
        """Apply a ServoCommand-like command; returns the mm_status_t (0 = accepted, 1 = a field out of range).

        `fields` are mm_command_t fields by name, e.g. stream_transitions=True, or exploration_std=0.2 (in [0, 1])
        and exploration_tau_s=0.02 (s, >= 0): POLICY-mode exploration noise (servo contract section 4).
        """
        cmd = cs.Command(mode=mode, target=target)
        for name, value in fields.items():
            setattr(cmd, name, value)
        return int(self._lib.mm_core_command(self._ptr, ctypes.byref(cmd)))

    def heartbeat(self, seq: int = 0) -> None:
        """A host heartbeat arrived."""
        self._lib.mm_core_heartbeat(self._ptr, seq)

    def state(self) -> cs.State:
        """The reported state (ServoState fields)."""
        out = cs.State()
        self._lib.mm_core_get_state(self._ptr, ctypes.byref(out))
        return out

    def observation(self) -> list[float]:
        """The observation of the last step."""
        obs = (ctypes.c_float * cs.OBS_DIM)()
        self._lib.mm_core_get_observation(self._ptr, obs)
        return list(obs)

    @property
    def zero_offset_counts(self) -> int:
        """Raw encoder count (0..16383) that the core takes as position 0 (load hanging straight down)."""
        return int(self._lib.mm_core_config(self._ptr).contents.zero_offset_counts)

    @property
    def raw_encoder_count(self) -> int:
        """The raw encoder count of the last step, before the zero offset (read it to calibrate the zero)."""
        return int(self._lib.mm_core_raw_encoder_count(self._ptr))

    def set_zero_offset(self, counts: int) -> None:
        """Recalibrate the zero to raw count `counts` (0..16383); the position restarts within the first turn.

        Raises:
            FirmwareCoreError: counts outside 0..16383, or the servo is in an active mode (command IDLE or BRAKE
                first: the position would jump under control).
        """
        limit = constant("MM_ENCODER_COUNTS")
        if not 0 <= counts < limit:
            msg = f"zero offset {counts} is outside 0..{limit - 1}: give the raw count of the hanging load"
            raise FirmwareCoreError(msg)
        if self._lib.mm_core_set_zero_offset(self._ptr, counts) != 0:
            msg = "the zero offset can only change in IDLE or BRAKE; command one of them first"
            raise FirmwareCoreError(msg)

    def samples_available(self) -> int:
        """Transition samples queued and not yet popped (the firmware publishes them in batches of 24)."""
        return int(self._lib.mm_core_samples_available(self._ptr))

    def pop_batch(self, max_samples: int = cs.BATCH_MAX_SAMPLES) -> cs.Batch:
        """Take up to max_samples consecutive transition samples (TransitionBatch columns)."""
        batch = cs.Batch()
        self._lib.mm_core_pop_batch(self._ptr, ctypes.byref(batch), max_samples)
        return batch

    # -- policies ------------------------------------------------------------------------------------------
    def load_policy(self, image: bytes) -> int:
        """Stage, verify and activate a whole image; returns the PolicyAck reason (0 = accepted)."""
        return int(self._lib.mm_core_policy_load(self._ptr, image, len(image)))

    def policy_chunk(
        self,
        *,
        transfer_id: int,
        total_size: int,
        image_crc32: int,
        index: int,
        chunk_size: int,
        data: bytes,
    ) -> tuple[int, bool]:
        """Feed one chunk; returns (ack status, ack due). Completes the checks itself when the last arrives."""
        due = ctypes.c_bool(False)
        status = self._lib.mm_core_policy_chunk(
            self._ptr, transfer_id, total_size, image_crc32, index, chunk_size, data, len(data), ctypes.byref(due)
        )
        if self._lib.mm_core_policy_verify_pending(self._ptr):
            self._lib.mm_core_policy_finish(self._ptr)
            return int(self.policy_ack().status), True
        return int(status), bool(due.value)

    def policy_ack(self) -> cs.PolicyAck:
        """The PolicyAck of the current transfer."""
        out = cs.PolicyAck()
        self._lib.mm_core_policy_ack(self._ptr, ctypes.byref(out))
        return out

    def truncated_ack(self) -> cs.PolicyAck | None:
        """The REJECTED/TRUNCATED ack of a transfer the core abandoned, once, or None.

        A transfer is abandoned when a chunk of another transfer_id arrives before it completed, when no chunk
        arrived for `transfer_timeout_s` of control time (checked in `step`), or when `load_policy` replaces it.
        Poll after every chunk and every control period and send the ack to the sender: it hears nothing else.
        """
        out = cs.PolicyAck()
        return out if self._lib.mm_core_policy_truncated_ack(self._ptr, ctypes.byref(out)) else None

    def active_policy(self) -> cs.PolicyHeader | None:
        """The active policy's header, or None."""
        header = cs.PolicyHeader()
        return header if self._lib.mm_core_policy_active(self._ptr, ctypes.byref(header)) else None

    def policy_version_floor(self) -> int:
        """Anti-rollback floor: the highest policy_version accepted (what the ESP32 keeps in NVS)."""
        return int(self._lib.mm_core_policy_version_floor(self._ptr))

    def guard_trips(self) -> int:
        """Moves the POLICY-mode guard handed to the classical controller since init (servo contract section 4)."""
        return int(self._lib.mm_core_guard_trips(self._ptr))

    def tuning(self) -> cs.Tuning:
        """The PID gains and current limit in effect."""
        out = cs.Tuning()
        self._lib.mm_core_get_tuning(self._ptr, ctypes.byref(out))
        return out

    def gain_limits(self) -> cs.PidGains:
        """The largest PID gains the core accepts for its hard current limit (mm_core.h, MM_GAIN_MARGIN)."""
        out = cs.PidGains()
        self._lib.mm_core_gain_limits(self._ptr, ctypes.byref(out))
        return out

    # -- CAN -----------------------------------------------------------------------------------------------
    def can_endpoint(
        self, device_id: int, *, block_size: int = 0, st_min: int = 0, timeout_s: float = 1.0
    ) -> CanEndpoint:
        """Attach the CAN protocol endpoint (device id 1..1022) to this core."""
        return CanEndpoint(self, device_id, block_size=block_size, st_min=st_min, timeout_s=timeout_s)


Frame = tuple[int, bytes]


class CanEndpoint:
    """The servo side of the CAN protocol (mm_servo.dbc) for one core."""

    def __init__(self, core: ServoCore, device_id: int, *, block_size: int, st_min: int, timeout_s: float) -> None:
        """Bind to core with a device id and ISO-TP flow-control parameters."""
        self._core = core
        self._lib = library()
        self._mem = ctypes.create_string_buffer(self._lib.mm_binding_sizeof(b"mm_can_t"))
        if not self._lib.mm_can_init(self._mem, device_id, block_size, st_min, timeout_s):
            msg = f"device id {device_id} is outside 1..1022"
            raise FirmwareCoreError(msg)

    @staticmethod
    def _frames(frames: ctypes.Array[cs.CanFrame], n: int) -> list[Frame]:
        return [(int(f.id), bytes(f.data[: f.dlc])) for f in frames[:n]]

    def receive(self, frame_id: int, data: bytes) -> list[Frame]:
        """Handle one received frame; returns the frames to send (flow control, acks, register answers).

        A completed policy transfer is verified and activated before returning, and its ack is included; a chunk
        that abandons an unfinished transfer also yields that transfer's REJECTED/TRUNCATED ack.
        """
        rx = cs.CanFrame(frame_id, len(data), (ctypes.c_uint8 * 8)(*data))
        tx = (cs.CanFrame * constant("MM_CAN_MAX_REPLIES"))()
        n = self._lib.mm_can_receive(self._mem, self._core._ptr, ctypes.byref(rx), tx)
        out = self._frames(tx, n)
        if self._lib.mm_core_policy_verify_pending(self._core._ptr):
            self._lib.mm_core_policy_finish(self._core._ptr)
            ack = cs.CanFrame()
            self._lib.mm_can_policy_ack_frame(self._mem, self._core._ptr, ctypes.byref(ack))
            out.append((int(ack.id), bytes(ack.data[: ack.dlc])))
        return out

    def state_frames(self) -> list[Frame]:
        """The frames of one state burst (STATE_STATUS last)."""
        tx = (cs.CanFrame * constant("MM_CAN_STATE_FRAMES"))()
        return self._frames(tx, self._lib.mm_can_state_frames(self._mem, self._core._ptr, tx))

    def fault_frame(self) -> Frame | None:
        """A FAULT frame when new faults latched since the last call."""
        tx = cs.CanFrame()
        if self._lib.mm_can_fault_frame(self._mem, self._core._ptr, ctypes.byref(tx)):
            return int(tx.id), bytes(tx.data[: tx.dlc])
        return None

    def truncated_ack_frame(self) -> Frame | None:
        """The POLICY_ACK frame (REJECTED, TRUNCATED) of a transfer the core abandoned, once; poll every period."""
        tx = cs.CanFrame()
        if self._lib.mm_can_truncated_ack_frame(self._mem, self._core._ptr, ctypes.byref(tx)):
            return int(tx.id), bytes(tx.data[: tx.dlc])
        return None

    def tick(self, dt_s: float) -> None:
        """Advance the ISO-TP receiver's clock (s)."""
        self._lib.mm_can_tick(self._mem, dt_s)

    def enable_auth(self, key: bytes, freshness: int = 0) -> None:
        """Require a COMMAND_AUTH frame (AES-128-CMAC tag, fresh counter) after every frame that acts on the servo."""
        if len(key) != 16:
            msg = f"the fleet key is 16 bytes (AES-128), got {len(key)}"
            raise FirmwareCoreError(msg)
        self._lib.mm_can_auth_enable(self._mem, key, freshness)

    def auth_stats(self) -> tuple[int, int, int]:
        """(frames accepted with a valid tag, frames refused, last accepted freshness counter)."""
        accepted, refused, freshness = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
        self._lib.mm_can_auth_stats(self._mem, ctypes.byref(accepted), ctypes.byref(refused), ctypes.byref(freshness))
        return int(accepted.value), int(refused.value), int(freshness.value)

    @staticmethod
    def auth_tag(key: bytes, frame_id: int, data: bytes, freshness: int) -> bytes:
        """The 4-byte tag the core expects in a COMMAND_AUTH frame for this frame and counter."""
        frame = cs.CanFrame(frame_id, len(data), (ctypes.c_uint8 * 8)(*data))
        tag = ctypes.create_string_buffer(4)
        if not library().mm_can_auth_tag(key, ctypes.byref(frame), freshness, tag):
            raise FirmwareCoreError("the core could not compute the CMAC (mbedTLS without CMAC?)")
        return tag.raw

    def register_read(self, register: int) -> int:
        """A register's int32 value (units as mm_can.h names them).

        Raises:
            FirmwareCoreError: the register is unknown.
        """
        value = ctypes.c_int32()
        if self._lib.mm_can_register_read(self._mem, self._core._ptr, register, ctypes.byref(value)) != 0:
            msg = f"register 0x{register:04x} is unknown (mm_register_t in mm_can.h)"
            raise FirmwareCoreError(msg)
        return int(value.value)

    def register_write(self, register: int, value: int) -> int:
        """Write a register; returns the REGISTER_RESPONSE status (0 OK, 3 OUT_OF_RANGE, ...)."""
        return int(self._lib.mm_can_register_write(self._mem, self._core._ptr, register, value))


def encoder_count(position_rad: float) -> int:
    """The 14-bit count an AS5047 reports at position_rad (floor quantisation)."""
    counts = constant("MM_ENCODER_COUNTS")
    return math.floor(position_rad / (2.0 * math.pi) * counts) % counts
