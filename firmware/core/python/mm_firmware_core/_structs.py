"""ctypes mirrors of the core's public structs (firmware/core/include/mm_core/*.h).

The layouts are checked against the library's own `sizeof` at load time (`check_layouts`), so a header change
that is not mirrored here fails with a clear error instead of corrupting memory.
"""

from __future__ import annotations

import ctypes

# Array sizes of the mirrored structs; `library()` checks each against the C constant named in DIMENSIONS.
OBS_DIM = 8
ACTION_DIM = 1
BATCH_MAX_SAMPLES = 24
ACK_MAX_MISSING = 32
PUBLIC_KEY_BYTES = 65
DIMENSIONS = {
    "MM_OBS_DIM": OBS_DIM,
    "MM_ACTION_DIM": ACTION_DIM,
    "MM_BATCH_MAX_SAMPLES": BATCH_MAX_SAMPLES,
    "MM_ACK_MAX_MISSING": ACK_MAX_MISSING,
    "MM_PUBLIC_KEY_BYTES": PUBLIC_KEY_BYTES,
}

LOAD_FN = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_uint8,
    ctypes.POINTER(ctypes.c_uint8),
    ctypes.c_uint32,
    ctypes.c_uint32,
    ctypes.c_uint8,
)
INVOKE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_uint8, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)
)


class ObsParams(ctypes.Structure):
    """mm_obs_params_t: observation scales (servo contract section 3)."""

    _fields_ = [
        ("pos_scale_rad", ctypes.c_float),
        ("vel_scale_rad_s", ctypes.c_float),
        ("fine_gain_per_rad", ctypes.c_float),
        ("current_limit_a", ctypes.c_float),
        ("velocity_filter_tau_s", ctypes.c_float),
    ]


class PidGains(ctypes.Structure):
    """mm_pid_gains_t (servo contract section 8); decel_rad_s2 > 0 makes the position loop PTOS."""

    _fields_ = [
        ("kp_pos", ctypes.c_float),
        ("v_max", ctypes.c_float),
        ("kp_vel", ctypes.c_float),
        ("ki_vel", ctypes.c_float),
        ("gravity_ff_a", ctypes.c_float),
        ("decel_rad_s2", ctypes.c_float),
    ]


class Pid(ctypes.Structure):
    """mm_pid_t."""

    _fields_ = [("integrator_a", ctypes.c_float)]


class VelocityFilter(ctypes.Structure):
    """mm_velocity_filter_t."""

    _fields_ = [
        ("velocity_rad_s", ctypes.c_float),
        ("last_position_rad", ctypes.c_float),
        ("started", ctypes.c_bool),
    ]


class Backend(ctypes.Structure):
    """mm_backend_t: the inference backend's function pointers."""

    _fields_ = [("load", LOAD_FN), ("invoke", INVOKE_FN), ("ctx", ctypes.c_void_p)]


class Config(ctypes.Structure):
    """mm_config_t."""

    _fields_ = [
        ("current_limit_a", ctypes.c_float),
        ("overcurrent_a", ctypes.c_float),
        ("temperature_derate_c", ctypes.c_float),
        ("temperature_max_c", ctypes.c_float),
        ("undervoltage_v", ctypes.c_float),
        ("overvoltage_v", ctypes.c_float),
        ("position_min_rad", ctypes.c_float),
        ("position_max_rad", ctypes.c_float),
        ("heartbeat_timeout_s", ctypes.c_float),
        ("watchdog_mode", ctypes.c_uint8),
        ("policy_decimation", ctypes.c_uint16),
        ("velocity_filter_tau_s", ctypes.c_float),
        ("torque_constant_nm_per_a", ctypes.c_float),
        ("zero_offset_counts", ctypes.c_uint16),
        ("gains", PidGains),
        ("obs", ObsParams),
        ("max_policy_bytes", ctypes.c_uint32),
        ("transfer_timeout_s", ctypes.c_float),
        ("exploration_seed", ctypes.c_uint32),
        ("guard_error_rad", ctypes.c_float),
        ("guard_saturation_s", ctypes.c_float),
        ("policy_version_floor", ctypes.c_uint32),
        ("public_key", ctypes.c_uint8 * PUBLIC_KEY_BYTES),
        ("backend", Backend),
    ]


class Sensors(ctypes.Structure):
    """mm_sensors_t: one tick's readings."""

    _fields_ = [
        ("encoder_count", ctypes.c_uint16),
        ("encoder_ok", ctypes.c_bool),
        ("end_stop_low", ctypes.c_bool),
        ("end_stop_high", ctypes.c_bool),
        ("current_a", ctypes.c_float),
        ("bus_voltage_v", ctypes.c_float),
        ("temperature_c", ctypes.c_float),
        ("power_w", ctypes.c_float),
    ]


class Actuator(ctypes.Structure):
    """mm_actuator_t: what the hardware applies from the next tick."""

    _fields_ = [("current_cmd_a", ctypes.c_float), ("driver_enable", ctypes.c_bool), ("brake_on", ctypes.c_bool)]


class Command(ctypes.Structure):
    """mm_command_t (fields of mm_msgs/ServoCommand)."""

    _fields_ = [
        ("seq", ctypes.c_uint32),
        ("mode", ctypes.c_uint8),
        ("target", ctypes.c_float),
        ("target_velocity_rad_s", ctypes.c_float),
        ("max_velocity_rad_s", ctypes.c_float),
        ("current_limit_a", ctypes.c_float),
        ("kp_pos", ctypes.c_float),
        ("kp_vel", ctypes.c_float),
        ("ki_vel", ctypes.c_float),
        ("gravity_ff_a", ctypes.c_float),
        ("clear_faults", ctypes.c_bool),
        ("stream_transitions", ctypes.c_bool),
        ("exploration_std", ctypes.c_float),
        ("exploration_tau_s", ctypes.c_float),
    ]


class State(ctypes.Structure):
    """mm_state_t (fields of mm_msgs/ServoState)."""

    _fields_ = [
        ("tick", ctypes.c_uint32),
        ("mode", ctypes.c_uint8),
        ("fault_flags", ctypes.c_uint32),
        ("position_rad", ctypes.c_float),
        ("velocity_rad_s", ctypes.c_float),
        ("current_a", ctypes.c_float),
        ("current_cmd_a", ctypes.c_float),
        ("effort_nm", ctypes.c_float),
        ("bus_voltage_v", ctypes.c_float),
        ("power_w", ctypes.c_float),
        ("temperature_c", ctypes.c_float),
        ("target_rad", ctypes.c_float),
        ("policy_crc32", ctypes.c_uint32),
        ("dropped_samples", ctypes.c_uint32),
        ("exploration_std", ctypes.c_float),
    ]


class PolicyAck(ctypes.Structure):
    """mm_policy_ack_t (fields of mm_msgs/PolicyAck)."""

    _fields_ = [
        ("transfer_id", ctypes.c_uint32),
        ("status", ctypes.c_uint8),
        ("reason", ctypes.c_uint8),
        ("received_chunks", ctypes.c_uint16),
        ("total_chunks", ctypes.c_uint16),
        ("missing_count", ctypes.c_uint8),
        ("missing", ctypes.c_uint16 * ACK_MAX_MISSING),
        ("active_policy_crc32", ctypes.c_uint32),
    ]


class PolicyHeader(ctypes.Structure):
    """mm_policy_header_t."""

    _fields_ = [
        ("model_type", ctypes.c_uint8),
        ("obs_dim", ctypes.c_uint8),
        ("action_dim", ctypes.c_uint8),
        ("policy_decimation", ctypes.c_uint8),
        ("model_size", ctypes.c_uint32),
        ("scales", ObsParams),
        ("arena_bytes", ctypes.c_uint32),
        ("model_crc32", ctypes.c_uint32),
        ("schedule_range", ctypes.c_float),
        ("base_gains", PidGains),
        ("policy_version", ctypes.c_uint32),
    ]


class Batch(ctypes.Structure):
    """mm_batch_t (columns of mm_msgs/TransitionBatch)."""

    _fields_ = [
        ("first_tick", ctypes.c_uint32),
        ("dt_s", ctypes.c_float),
        ("policy_crc32", ctypes.c_uint32),
        ("dropped_samples", ctypes.c_uint32),
        ("count", ctypes.c_uint8),
        ("observations", ctypes.c_float * (BATCH_MAX_SAMPLES * OBS_DIM)),
        ("actions", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("position_rad", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("velocity_rad_s", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("current_a", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("target_rad", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("power_w", ctypes.c_float * BATCH_MAX_SAMPLES),
        ("flags", ctypes.c_uint8 * BATCH_MAX_SAMPLES),
    ]


class CanFrame(ctypes.Structure):
    """mm_can_frame_t: one classic CAN frame with a 29-bit id."""

    _fields_ = [("id", ctypes.c_uint32), ("dlc", ctypes.c_uint8), ("data", ctypes.c_uint8 * 8)]


class Tuning(ctypes.Structure):
    """mm_tuning_t."""

    _fields_ = [("gains", PidGains), ("current_limit_a", ctypes.c_float)]


MIRRORS: dict[str, type[ctypes.Structure]] = {
    "mm_config_t": Config,
    "mm_sensors_t": Sensors,
    "mm_actuator_t": Actuator,
    "mm_command_t": Command,
    "mm_state_t": State,
    "mm_policy_ack_t": PolicyAck,
    "mm_policy_header_t": PolicyHeader,
    "mm_batch_t": Batch,
    "mm_can_frame_t": CanFrame,
    "mm_velocity_filter_t": VelocityFilter,
    "mm_tuning_t": Tuning,
}
