"""The virtual servo: the MuJoCo plant driven by the firmware's own C core, with TFLite Micro as its policy backend.

Every control tick runs exactly what the ESP32's control task runs: read the encoder count, the current, the bus
voltage and temperature of this tick; `mm_core_step` of `firmware/core` (through the `mm_firmware_core` ctypes
binding) returns the current command; the plant applies it from this tick to the next (one control period of
latency, servo contract section 1). Modes, limits, faults, the heartbeat watchdog, the observation, the PID,
policy checks (CRC, ECDSA P-256, double buffer) and transition samples are therefore the firmware's code, not a
Python copy of it. The policy runs through the PyPI TFLite Micro runtime (`mm_contract.tflm.TflmPolicy`), like
`firmware/esp32/main/policy_tflm.cc`: one fixed arena per slot, models needing a larger arena are refused.

This module is ROS-free; `mm_sim.twin_node` puts it behind the servo's ROS topics. Optionally the servo also
sits on a python-can bus and answers the DBC protocol (`firmware/core/can/mm_servo.dbc`) through the core's
`CanEndpoint`, policies over ISO-TP included.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import can
import cantools
import mm_firmware_core as fw
import numpy as np
from mm_contract.constants import (
    ACTION_DIM,
    BATCH_MAX_SAMPLES,
    CAN_TYPE_MASK,
    ENCODER_COUNTS,
    ESP32_CURRENT_LIMIT_MA,
    ESP32_MAX_POLICY_BYTES,
    ESP32_OVERCURRENT_MA,
    ESP32_STATE_DECIMATION,
    ESP32_TFLM_ARENA_BYTES,
    ESP32_UROS_HEARTBEAT_TIMEOUT_MS,
    OBS_DIM,
    PUBLIC_KEY_BYTES,
)
from mm_contract.errors import ProfileError, TflmError
from mm_contract.observation import ObsScales
from mm_contract.profiles import ServoProfile, load_profile, parse_factors
from mm_contract.tflm import TflmPolicy, round_half_away
from mm_ros.parameters import parameter

from mm_sim.baselines import PidGains, initial_gains, tuned_gains
from mm_sim.errors import MmSimError
from mm_sim.model import Plant, SensorModel

_RAD_PER_COUNT = 2.0 * math.pi / ENCODER_COUNTS
DEFAULT_TEMPERATURE_C = 25.0  # the twin has no thermal model; the firmware reads an ambient-like value
_OVERCURRENT_RATIO = ESP32_OVERCURRENT_MA / ESP32_CURRENT_LIMIT_MA  # trip above the limit as the firmware's defaults


class VirtualServoError(MmSimError):
    """A virtual servo could not be built or driven as asked; the message says which setting to change."""


def parse_public_key(text: str) -> bytes:
    """The 65-byte uncompressed P-256 point from its hex form (`mm_contract.signing.public_key_hex`).

    An empty string means "no key": every policy is then refused with REASON_SIGNATURE, as on the firmware.
    """
    text = text.strip()
    if not text:
        return b""
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        msg = f"public key is not hex ({exc}); pass the 130 hex digits `mm pubkey` prints (04...)"
        raise VirtualServoError(msg) from exc
    if len(key) != PUBLIC_KEY_BYTES or key[0] != 0x04:
        msg = (
            f"public key must be a 65-byte uncompressed P-256 point starting with 04, got {len(key)} bytes "
            f"starting with {key[:1].hex() or 'nothing'}; pass what `mm pubkey` prints"
        )
        raise VirtualServoError(msg)
    return key


@dataclass(frozen=True)
class VirtualServoConfig:
    """What a virtual servo is built from; units in the names.

    Attributes:
        profile: a shipped profile name (`mm_sim.list_profiles()`) or a profile YAML path.
        load: one of the profile's loads ("inertia_disk", "pendulum", "spring").
        seed: seed of the sensor noise and of the core's POLICY-mode exploration noise (the plant itself is
            deterministic).
        public_key_hex: policy signing key, 130 hex digits (empty: every policy is refused).
        control_rate_hz: control rate; 0 keeps the profile's rate.
        heartbeat_timeout_s: watchdog timeout; 0 disables the watchdog.
        watchdog_brake: brake instead of hold when heartbeats stop.
        initial_angle_rad: true shaft angle at power-up. The core counts turns from power-up as the firmware
            does, so the reported position is this angle modulo 2π.
        state_decimation: control ticks per published state (and per CAN state frame burst).
        tflm_arena_bytes: TFLite Micro arena per policy slot; a policy asking for more is refused.
        max_policy_bytes: largest policy image accepted (REASON_TOO_LARGE above).
        pid_objective: whose cached tuned PID gains the core boots with (mm_sim.baselines.tuned_gains).
        plant_factors: the true plant differs from the profile by these factors ("load.mass_kg": 1.5, keys as
            in the profile's randomization; `ServoProfile.scaled`), as a real unit and its load differ from the
            datasheet; the firmware is still configured from the profile. Empty: the nominal plant.
        guard_error_rad, guard_saturation_s: the core's guard of POLICY-mode moves (servo contract section 4:
            error margin in rad, longest time at the current limit in s; <= 0 disables either check). None: the
            firmware's default (`mm_firmware_core.config_default()`, as the ESP32's Kconfig).
    """

    profile: str = parameter("mm_v3", "a shipped profile (mm_v3, mm_minimal, gimbal_bldc) or a profile YAML path")
    load: str = parameter("pendulum", "inertia_disk | pendulum | spring")
    seed: int = parameter(0, "sensor noise seed, and the core's POLICY-mode exploration noise seed")
    public_key_hex: str = parameter(
        "",
        "policy signing key: 130 hex digits from `mm pubkey` (empty refuses every policy)",
        name="public_key",
    )
    control_rate_hz: int = parameter(0, "0: the profile's rate (1 kHz for mm_v3); the firmware allows 100..4000 (Hz)")
    heartbeat_timeout_s: float = parameter(
        ESP32_UROS_HEARTBEAT_TIMEOUT_MS / 1000.0,
        "watchdog (s): the micro-ROS firmware's CONFIG_MM_UROS_HEARTBEAT_TIMEOUT_MS (0.05 with CAN); 0 off",
    )
    watchdog_brake: bool = parameter(False, "brake instead of hold when heartbeats stop (CONFIG_MM_WATCHDOG_BRAKE)")
    initial_angle_rad: float = parameter(
        0.0, "true shaft angle at power-up (rad; reported modulo 2*pi, like the firmware)"
    )
    state_decimation: int = parameter(
        ESP32_STATE_DECIMATION, "control ticks per ServoState (CONFIG_MM_STATE_DECIMATION): 200 Hz at 1 kHz"
    )
    tflm_arena_bytes: int = parameter(
        ESP32_TFLM_ARENA_BYTES, "TFLite Micro arena per policy slot (CONFIG_MM_TFLM_ARENA_BYTES)"
    )
    max_policy_bytes: int = parameter(ESP32_MAX_POLICY_BYTES, "largest policy image (CONFIG_MM_MAX_POLICY_BYTES)")
    pid_objective: str = parameter("accuracy", "the core boots with mm_sim's tuned PID gains for this objective")
    plant_factors: Mapping[str, float] = parameter(
        default_factory=dict,
        description='the true plant vs the profile, e.g. "load.mass_kg=1.5,friction.coulomb_nm=2" (empty: nominal)',
        text="",
        parse=parse_factors,
    )
    guard_error_rad: float | None = None
    guard_saturation_s: float | None = None

    def __post_init__(self) -> None:
        host_max = fw.constant("MM_MAX_POLICY_BYTES")  # one policy slot of the host core (mm_config.h)
        checks = {
            "control_rate_hz must be 0 (profile's) or in 100..4000 (the firmware's range)": self.control_rate_hz == 0
            or 100 <= self.control_rate_hz <= 4000,
            "heartbeat_timeout_s must be >= 0 (0 disables the watchdog)": self.heartbeat_timeout_s >= 0.0,
            "state_decimation must be >= 1": self.state_decimation >= 1,
            "tflm_arena_bytes must be >= 1024": self.tflm_arena_bytes >= 1024,
            f"max_policy_bytes must be in 1..{host_max} (one host core slot)": 0 < self.max_policy_bytes <= host_max,
            "initial_angle_rad must be finite": math.isfinite(self.initial_angle_rad),
        }
        problems = [text for text, ok in checks.items() if not ok]
        if problems:
            raise VirtualServoError("; ".join(problems))


@dataclass(frozen=True)
class _LoadedModel:
    """One slot's interpreter and its input/output quantisation in the firmware's float32 terms."""

    policy: TflmPolicy
    round_half_away: Any
    in_scale: np.float32
    in_zero: np.float32
    in_low: int
    in_high: int
    in_dtype: Any
    out_zero: int
    out_scale: np.float32


class TflmBackend:
    """The ESP32's TFLite Micro backend (`policy_tflm.cc`) in Python: two slots of a fixed arena each.

    `load` refuses a model whose header asks for more arena than a slot has, one TFLite Micro cannot load, or
    one that does not map 8 inputs to 1 output. `invoke` quantises the observation with policy_tflm.cc's
    arithmetic (float32 `obs / scale + zero_point`, rounded half away from zero, saturated), runs the integer
    model in the `mm_contract.tflm.TflmPolicy` interpreter and dequantises the action in float32.
    """

    def __init__(self, arena_bytes: int = ESP32_TFLM_ARENA_BYTES) -> None:
        """Two empty slots of `arena_bytes` (bytes) each."""
        self.arena_bytes = arena_bytes
        self._slots: dict[int, _LoadedModel] = {}

    def load(self, slot: int, model: bytes, arena_bytes: int, model_type: int) -> bool:
        """Load `model` into `slot`; False refuses it (the core reports REASON_BACKEND)."""
        # Imported here: mm_learning depends on mm_sim, and the runtime is only needed once a policy arrives.
        self._slots.pop(slot, None)
        if arena_bytes > self.arena_bytes:
            return False
        try:
            policy = TflmPolicy(model, arena_bytes=self.arena_bytes)
            shape_ok = policy(np.zeros(OBS_DIM, dtype=np.float32)).shape == (ACTION_DIM,)
        except (TflmError, ValueError, RuntimeError):
            return False
        if shape_ok:
            q_in, q_out = policy.input_quant, policy.output_quant
            info = np.iinfo(q_in.dtype)
            self._slots[slot] = _LoadedModel(
                policy=policy,
                round_half_away=round_half_away,
                in_scale=np.float32(q_in.scale),
                in_zero=np.float32(q_in.zero_point),
                in_low=int(info.min),
                in_high=int(info.max),
                in_dtype=q_in.dtype,
                out_zero=q_out.zero_point,
                out_scale=np.float32(q_out.scale),
            )
        return shape_ok

    def invoke(self, slot: int, observation: list[float]) -> float:
        """The action of the model in `slot` for the 8 observation features."""
        m = self._slots[slot]
        # TflmPolicy.__call__ (float64, clipped first) would cost 4x more per tick than the firmware's steps.
        scaled = np.asarray(observation, dtype=np.float32) / m.in_scale + m.in_zero
        q = np.clip(m.round_half_away(scaled), m.in_low, m.in_high).astype(m.in_dtype)
        out = int(m.policy.act_quantized(q[np.newaxis])[0, 0])
        return float(np.float32(out - m.out_zero) * m.out_scale)


def _servo_profile(config: VirtualServoConfig) -> ServoProfile:
    profile = load_profile(config.profile)
    if config.control_rate_hz:
        control = dataclasses.replace(profile.control, rate_hz=config.control_rate_hz)
        profile = dataclasses.replace(profile, control=control)
    return profile


def _boot_gains(profile: ServoProfile, load_name: str, objective: str) -> PidGains:
    try:
        return tuned_gains(profile, load_name, objective)
    except MmSimError:
        # Nothing cached for this profile/load/objective (e.g. a user's own profile): the physics-based start.
        return initial_gains(profile, profile.load(load_name))


class CanPort:
    """The servo's CAN side: a python-can bus and the core's `CanEndpoint`, served once per control tick.

    Like the firmware's TWAI task: received frames go to the endpoint and its answers (ISO-TP flow control,
    register answers, policy acks) go out at once; every `state_decimation` ticks the three state frames,
    when new faults latched a FAULT frame, and when the core abandoned a transfer whose last chunk came over CAN
    (`carries_policy`) its TRUNCATED POLICY_ACK frame are sent.
    """

    def __init__(self, core: fw.ServoCore, bus: can.BusABC, device_id: int, state_decimation: int) -> None:
        """Serve `bus` as device `device_id` (1..1022) for `core`."""
        self.bus = bus
        self.endpoint = core.can_endpoint(device_id)
        db: Any = cantools.database.load_file(str(fw.dbc_path()), frame_id_mask=CAN_TYPE_MASK)
        self._chunk_frame_id = int(db.get_message_by_name("POLICY_TP_DATA").frame_id) | device_id
        self._state_decimation = state_decimation
        self.frames_received = 0
        self.frames_sent = 0
        self.carries_policy = False  # the last policy chunk came over CAN (its acks go out here)

    def _send(self, frames: list[fw.Frame]) -> None:
        for frame_id, data in frames:
            self.bus.send(can.Message(arbitration_id=frame_id, data=data, is_extended_id=True))
            self.frames_sent += 1

    def serve(self, tick: int, dt_s: float) -> None:
        """Handle every frame waiting on the bus, advance the ISO-TP clock by `dt_s` (s), stream state."""
        while (message := self.bus.recv(timeout=0.0)) is not None:
            if message.is_extended_id and not message.is_remote_frame and not message.is_error_frame:
                self.frames_received += 1
                self.carries_policy |= message.arbitration_id == self._chunk_frame_id
                self._send(self.endpoint.receive(message.arbitration_id, bytes(message.data)))
        self.endpoint.tick(dt_s)
        if tick % self._state_decimation == 0:
            self._send(self.endpoint.state_frames())
            fault = self.endpoint.fault_frame()
            if fault is not None:
                self._send([fault])
            truncated = self.endpoint.truncated_ack_frame() if self.carries_policy else None
            if truncated is not None:
                self._send([truncated])


class VirtualServo:
    """One virtual servo: plant + sensors + firmware core (+ TFLite Micro backend, + optional CAN port).

    Not thread-safe, like the core: callers that command it from another thread hold one lock around every
    call (the ROS node does).
    """

    def __init__(self, config: VirtualServoConfig | None = None) -> None:
        """Build the servo of `config` (default: mm_v3 with the pendulum) and power it up (mode IDLE)."""
        self.config = config = config or VirtualServoConfig()
        self.profile = profile = _servo_profile(config)
        self.load = profile.load(config.load)
        self.dt_s = profile.dt_s
        try:
            plant_profile, plant_load = profile.scaled(config.load, config.plant_factors)
        except ProfileError as exc:
            raise VirtualServoError(f"plant_factors: {exc}") from exc
        self.plant = Plant(plant_profile, plant_load)
        self._sensors = SensorModel(plant_profile, np.random.default_rng(config.seed))
        self.backend = TflmBackend(config.tflm_arena_bytes)
        scales = ObsScales.from_profile(profile)
        limit_a = profile.driver.current_limit_a
        gains = _boot_gains(profile, config.load, config.pid_objective)
        guard = {
            name: value
            for name, value in (
                ("guard_error_rad", config.guard_error_rad),
                ("guard_saturation_s", config.guard_saturation_s),
            )
            if value is not None
        }
        try:
            self.core = fw.ServoCore(
                public_key=parse_public_key(config.public_key_hex),
                backend=self.backend,
                obs_scales=scales,
                gains=(gains.kp_pos, gains.v_max, gains.kp_vel, gains.ki_vel, gains.gravity_ff_a, gains.decel_rad_s2),
                current_limit_a=limit_a,
                overcurrent_a=_OVERCURRENT_RATIO * limit_a,
                heartbeat_timeout_s=config.heartbeat_timeout_s,
                watchdog_mode=fw.MODE_BRAKE if config.watchdog_brake else fw.MODE_HOLD,
                velocity_filter_tau_s=scales.velocity_filter_tau_s,
                torque_constant_nm_per_a=profile.output_torque_per_a,
                max_policy_bytes=config.max_policy_bytes,
                exploration_seed=config.seed,
                **guard,
            )
        except fw.FirmwareCoreError as exc:
            raise VirtualServoError(f"the firmware core refused the configuration of {config}: {exc}") from exc
        self._bus_voltage_v = profile.driver.bus_voltage_v
        self._ticks = 0
        self._brake_angle_rad: float | None = None
        self.can: CanPort | None = None
        self.plant.reset(config.initial_angle_rad)
        self._sensors.reset(config.initial_angle_rad)
        # The core counts turns from its first reading. That reading is taken noise-free here, so a shaft resting
        # at 0 boots at 0 and not one turn up at 2π - ε when the noise dips below count 0 (a real servo resting
        # there has the same ambiguity; it is the core's boot convention, not something the twin can fix).
        self._last_output = self.core.step(
            encoder_count=fw.encoder_count(config.initial_angle_rad), dt_s=self.dt_s, bus_voltage_v=self._bus_voltage_v
        )

    @property
    def ticks(self) -> int:
        """Control ticks run since power-up (the core's own tick counter is one ahead: the power-up reading)."""
        return self._ticks

    @property
    def time_s(self) -> float:
        """Simulated time since power-up (s)."""
        return self._ticks * self.dt_s

    def attach_can(self, bus: can.BusABC, device_id: int = 1) -> CanPort:
        """Also serve the DBC protocol on `bus` as device `device_id` from the next tick on."""
        try:
            self.can = CanPort(self.core, bus, device_id, self.config.state_decimation)
        except fw.FirmwareCoreError as exc:
            raise VirtualServoError(f"cannot attach CAN: {exc}; choose a device id in 1..1022") from exc
        return self.can

    def step(self, ticks: int = 1) -> fw.cs.Actuator:
        """Run `ticks` control periods; returns the last actuator command (applied during its period)."""
        plant, core, sensors, dt_s = self.plant, self.core, self._sensors, self.dt_s
        out = self._last_output
        for _ in range(ticks):
            position_rad, current_a = sensors.read(plant.angle_rad, plant.current_a)
            out = core.step(
                encoder_count=round(position_rad / _RAD_PER_COUNT) % ENCODER_COUNTS,
                dt_s=dt_s,
                current_a=current_a,
                bus_voltage_v=self._bus_voltage_v,
                temperature_c=DEFAULT_TEMPERATURE_C,
                power_w=plant.power_w,
            )
            self._ticks += 1
            if self.can is not None:
                self.can.serve(self._ticks, dt_s)
            plant.advance(out.current_cmd_a)
            self._hold_brake(out.brake_on)
        self._last_output = out
        return out

    def _hold_brake(self, engaged: bool) -> None:
        """A holding brake: while engaged the shaft stays where the brake caught it.

        The plant has no brake of its own: `Plant.hold` pins the shaft at rest where the brake caught it.
        """
        if not engaged:
            self._brake_angle_rad = None
            return
        if self._brake_angle_rad is None:
            self._brake_angle_rad = self.plant.angle_rad
        self.plant.hold(self._brake_angle_rad)

    def command(self, mode: int, target: float = 0.0, **fields: Any) -> int:
        """Apply a ServoCommand (fields as in mm_msgs/ServoCommand); returns the core's status, 0 = accepted."""
        return self.core.command(mode, target, **fields)

    def heartbeat(self, seq: int = 0) -> None:
        """A host heartbeat arrived."""
        self.core.heartbeat(seq)

    def state(self) -> fw.cs.State:
        """The state the firmware reports (ServoState fields)."""
        return self.core.state()

    def policy_chunk(
        self, *, transfer_id: int, total_size: int, image_crc32: int, index: int, chunk_size: int, data: bytes
    ) -> bool:
        """Feed one PolicyChunk; True when a PolicyAck is due (gap report, accepted or refused).

        Its acks, and the TRUNCATED ack of a transfer the core abandons later (`truncated_ack`), then belong to
        this path rather than to the CAN port, as on the firmware (the link of the last chunk).
        """
        if self.can is not None:
            self.can.carries_policy = False
        _, due = self.core.policy_chunk(
            transfer_id=transfer_id,
            total_size=total_size,
            image_crc32=image_crc32,
            index=index,
            chunk_size=chunk_size,
            data=data,
        )
        return due

    def policy_ack(self) -> fw.cs.PolicyAck:
        """The PolicyAck of the current or last transfer."""
        return self.core.policy_ack()

    def truncated_ack(self) -> fw.cs.PolicyAck | None:
        """The REJECTED/TRUNCATED ack of a transfer the core abandoned, once; None when there is none.

        A transfer is abandoned when a chunk of another one arrives or no chunk came for the core's transfer
        timeout. Only for transfers whose last chunk came through `policy_chunk` (the CAN port sends its own);
        poll after every chunk and every state period.
        """
        if self.can is not None and self.can.carries_policy:
            return None
        return self.core.truncated_ack()

    def full_batches(self) -> list[fw.cs.Batch]:
        """Every complete batch of transition samples queued (24 each), as the firmware publishes them.

        A tail of fewer than 24 samples waits for the next call, as on the firmware (firmware/README.md).
        """
        batches = []
        while self.core.samples_available() >= BATCH_MAX_SAMPLES:
            batches.append(self.core.pop_batch(BATCH_MAX_SAMPLES))
        return batches
