#include "mm_core/mm_can.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mm_servo.h"

static uint32_t frame_id(uint32_t type_id, uint16_t device_id)
{
    return type_id | device_id;
}

bool mm_can_init(mm_can_t *can, uint16_t device_id, uint8_t block_size, uint8_t st_min, float timeout_s)
{
    memset(can, 0, sizeof *can);
    if (device_id == 0u || device_id >= MM_CAN_BROADCAST) {
        return false;
    }
    can->device_id = device_id;
    mm_isotp_rx_init(&can->isotp, block_size, st_min, timeout_s);
    return true;
}

/* value * scale rounded to the nearest int32, saturated at its ends (a float beyond them has no defined int32
 * conversion: large gains in micro-units reach 1e12); NaN reads 0. */
static int32_t scaled(float value, float scale)
{
    const float x = value * scale;
    if (isnan(x)) {
        return 0;
    }
    if (x >= 2147483648.0f) { /* 2^31: INT32_MAX itself is not a float */
        return INT32_MAX;
    }
    if (x <= -2147483648.0f) {
        return INT32_MIN;
    }
    return (int32_t)(x >= 0.0f ? x + 0.5f : x - 0.5f);
}

uint8_t mm_can_register_read(const mm_can_t *can, const mm_core_t *core, uint16_t reg, int32_t *value)
{
    mm_tuning_t t;
    mm_state_t s;
    mm_core_get_tuning(core, &t);
    mm_core_get_state(core, &s);
    const mm_config_t *cfg = mm_core_config(core);
    switch (reg) {
    case MM_REG_FIRMWARE_VERSION: *value = MM_FIRMWARE_VERSION; break;
    case MM_REG_DEVICE_ID: *value = can->device_id; break;
    case MM_REG_FAULT_FLAGS: *value = (int32_t)s.fault_flags; break;
    case MM_REG_POLICY_CRC32: memcpy(value, &s.policy_crc32, sizeof *value); break;
    case MM_REG_DROPPED_SAMPLES: *value = (int32_t)s.dropped_samples; break;
    case MM_REG_HARD_CURRENT_LIMIT_MA: *value = scaled(cfg->current_limit_a, 1e3f); break;
    case MM_REG_HEARTBEAT_TIMEOUT_MS: *value = scaled(cfg->heartbeat_timeout_s, 1e3f); break;
    case MM_REG_RAW_ENCODER_COUNT: *value = mm_core_raw_encoder_count(core); break;
    case MM_REG_ZERO_OFFSET_COUNTS: *value = cfg->zero_offset_counts; break;
    case MM_REG_CURRENT_LIMIT_MA: *value = scaled(t.current_limit_a, 1e3f); break;
    case MM_REG_MAX_VELOCITY_MRAD_S: *value = scaled(t.gains.v_max, 1e3f); break;
    case MM_REG_KP_POS_MILLI: *value = scaled(t.gains.kp_pos, 1e3f); break;
    case MM_REG_KP_VEL_MICRO: *value = scaled(t.gains.kp_vel, 1e6f); break;
    case MM_REG_KI_VEL_MICRO: *value = scaled(t.gains.ki_vel, 1e6f); break;
    case MM_REG_GRAVITY_FF_MA: *value = scaled(t.gains.gravity_ff_a, 1e3f); break;
    default: return MM_REG_UNKNOWN;
    }
    return MM_REG_OK;
}

uint8_t mm_can_register_write(mm_can_t *can, mm_core_t *core, uint16_t reg, int32_t value)
{
    if (reg == MM_REG_ZERO_OFFSET_COUNTS) {
        if (value < 0 || value >= (int32_t)MM_ENCODER_COUNTS) {
            return MM_REG_OUT_OF_RANGE;
        }
        return mm_core_set_zero_offset(core, (uint16_t)value) == MM_OK ? MM_REG_OK : MM_REG_ACTIVE_MODE;
    }
    mm_tuning_t t;
    mm_core_get_tuning(core, &t);
    const float v = (float)value;
    switch (reg) {
    case MM_REG_CURRENT_LIMIT_MA: t.current_limit_a = v * 1e-3f; break;
    case MM_REG_MAX_VELOCITY_MRAD_S: t.gains.v_max = v * 1e-3f; break;
    case MM_REG_KP_POS_MILLI: t.gains.kp_pos = v * 1e-3f; break;
    case MM_REG_KP_VEL_MICRO: t.gains.kp_vel = v * 1e-6f; break;
    case MM_REG_KI_VEL_MICRO: t.gains.ki_vel = v * 1e-6f; break;
    case MM_REG_GRAVITY_FF_MA: t.gains.gravity_ff_a = v * 1e-3f; break;
    default: {
        int32_t ignored;
        return mm_can_register_read(can, core, reg, &ignored) == MM_REG_OK ? MM_REG_READ_ONLY : MM_REG_UNKNOWN;
    }
    }
    return mm_core_set_tuning(core, &t) == MM_OK ? MM_REG_OK : MM_REG_OUT_OF_RANGE;
}

static void register_request(mm_can_t *can, mm_core_t *core, const mm_can_frame_t *rx, mm_can_frame_t *tx)
{
    struct mm_servo_register_request_t req;
    struct mm_servo_register_response_t resp;
    mm_servo_register_response_init(&resp);
    (void)mm_servo_register_request_unpack(&req, rx->data, rx->dlc);
    resp.op = req.op;
    resp.register_id = req.register_id;
    if (req.op == MM_SERVO_REGISTER_REQUEST_OP_WRITE_CHOICE) {
        resp.status = mm_can_register_write(can, core, req.register_id, req.value);
    } else if (req.op != MM_SERVO_REGISTER_REQUEST_OP_READ_CHOICE) {
        resp.status = MM_REG_UNKNOWN;
    }
    /* A write answers with the value now in effect, so the host sees any rounding. */
    const uint8_t read_status = mm_can_register_read(can, core, req.register_id, &resp.value);
    if (req.op == MM_SERVO_REGISTER_REQUEST_OP_READ_CHOICE) {
        resp.status = read_status;
    }
    tx->id = frame_id(MM_SERVO_REGISTER_RESPONSE_FRAME_ID, can->device_id);
    tx->dlc = (uint8_t)mm_servo_register_response_pack(tx->data, &resp, sizeof tx->data);
}

static void exploration(mm_can_t *can, const mm_can_frame_t *rx)
{
    struct mm_servo_exploration_t msg;
    if (mm_servo_exploration_unpack(&msg, rx->data, rx->dlc) == 0) {
        can->exploration_std = msg.exploration_std;
        can->exploration_tau_s = msg.exploration_tau;
    }
}

static void command(mm_can_t *can, mm_core_t *core, const mm_can_frame_t *rx)
{
    struct mm_servo_command_t msg;
    if (mm_servo_command_unpack(&msg, rx->data, rx->dlc) != 0) {
        return;
    }
    /* Limits and gains stay as the registers set them (zero means "keep" in mm_command_t); the exploration is the
     * preceding EXPLORATION frame's, used by this command only (out of range: the core refuses the command). */
    const mm_command_t cmd = {
        .mode = msg.mode,
        .target = msg.target,
        .target_velocity_rad_s = mm_servo_command_target_velocity_decode(msg.target_velocity),
        .clear_faults = msg.clear_faults != 0u,
        .stream_transitions = msg.stream_transitions != 0u,
        .exploration_std = can->exploration_std,
        .exploration_tau_s = can->exploration_tau_s,
    };
    can->exploration_std = 0.0f;
    can->exploration_tau_s = 0.0f;
    (void)mm_core_command(core, &cmd);
}

static uint32_t read_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* One ISO-TP message = one chunk: 16-byte header then data. True when the sender is due an ack. */
static bool policy_chunk(mm_core_t *core, const uint8_t *msg, uint32_t len)
{
    if (len < MM_CHUNK_HEADER_BYTES) {
        return false;
    }
    bool ack_due = false;
    (void)mm_core_policy_chunk(core, read_le32(msg), read_le32(msg + 4), read_le32(msg + 8),
                               (uint16_t)(msg[12] | (msg[13] << 8)), (uint16_t)(msg[14] | (msg[15] << 8)),
                               msg + MM_CHUNK_HEADER_BYTES, (uint16_t)(len - MM_CHUNK_HEADER_BYTES), &ack_due);
    return ack_due;
}

static uint8_t mm_can_dispatch(mm_can_t *can, mm_core_t *core, const mm_can_frame_t *rx, mm_can_frame_t *tx);

void mm_can_auth_enable(mm_can_t *can, const uint8_t key[MM_CAN_AUTH_KEY_BYTES], uint32_t freshness)
{
    memset(&can->auth, 0, sizeof can->auth);
    memcpy(can->auth.key, key, MM_CAN_AUTH_KEY_BYTES);
    can->auth.freshness = freshness;
    can->auth.enabled = true;
}

void mm_can_auth_stats(const mm_can_t *can, uint32_t *accepted, uint32_t *refused, uint32_t *freshness)
{
    *accepted = can->auth.accepted;
    *refused = can->auth.refused;
    *freshness = can->auth.freshness;
}

/* The frame types that act on the servo: with authentication on they wait for their COMMAND_AUTH. */
static bool auth_protected(uint32_t type_id)
{
    return type_id == MM_SERVO_COMMAND_FRAME_ID || type_id == MM_SERVO_EXPLORATION_FRAME_ID ||
           type_id == MM_SERVO_HEARTBEAT_FRAME_ID || type_id == MM_SERVO_REGISTER_REQUEST_FRAME_ID;
}

/* A COMMAND_AUTH frame: true (and *out = the held frame) when it authenticates the held frame. */
static bool auth_check(mm_can_t *can, const mm_can_frame_t *rx, mm_can_frame_t *out)
{
    mm_can_auth_t *a = &can->auth;
    const bool held = a->pending;
    a->pending = false;
    if (!held || rx->dlc != MM_SERVO_COMMAND_AUTH_LENGTH ||
        (a->frame.id & MM_CAN_DEVICE_MASK) != (rx->id & MM_CAN_DEVICE_MASK)) {
        a->refused++;
        return false;
    }
    const uint32_t freshness = (uint32_t)rx->data[0] | ((uint32_t)rx->data[1] << 8) | ((uint32_t)rx->data[2] << 16) |
                               ((uint32_t)rx->data[3] << 24);
    uint8_t tag[MM_CAN_AUTH_TAG_BYTES];
    if (!mm_can_auth_tag(a->key, &a->frame, freshness, tag)) {
        a->refused++;
        return false;
    }
    uint8_t diff = 0u; /* constant time: no early exit that would time the tag out byte by byte */
    for (unsigned i = 0; i < MM_CAN_AUTH_TAG_BYTES; ++i) {
        diff |= (uint8_t)(tag[i] ^ rx->data[4u + i]);
    }
    if (diff != 0u || freshness <= a->freshness) {
        a->refused++;
        return false;
    }
    a->freshness = freshness;
    a->accepted++;
    *out = a->frame;
    return true;
}

uint8_t mm_can_receive(mm_can_t *can, mm_core_t *core, const mm_can_frame_t *rx, mm_can_frame_t *tx)
{
    const uint16_t device = (uint16_t)(rx->id & MM_CAN_DEVICE_MASK);
    const uint32_t type_id = rx->id & ~(uint32_t)MM_CAN_DEVICE_MASK & 0x1FFFFFFFu;
    const bool broadcast = device == MM_CAN_BROADCAST;
    if (device != can->device_id && !broadcast) {
        return 0u;
    }
    if (can->auth.enabled) {
        if (auth_protected(type_id)) {
            if (can->auth.pending) {
                can->auth.refused++; /* the frame held before never got its tag */
            }
            can->auth.frame = *rx;
            can->auth.frame.dlc = rx->dlc > 8u ? 8u : rx->dlc;
            can->auth.pending = rx->dlc <= 8u;
            if (rx->dlc > 8u) {
                can->auth.refused++;
            }
            return 0u;
        }
        if (type_id == MM_SERVO_COMMAND_AUTH_FRAME_ID) {
            mm_can_frame_t frame; /* the held frame, handled as if it had just arrived */
            return auth_check(can, rx, &frame) ? mm_can_dispatch(can, core, &frame, tx) : 0u;
        }
    }
    return mm_can_dispatch(can, core, rx, tx);
}

static uint8_t mm_can_dispatch(mm_can_t *can, mm_core_t *core, const mm_can_frame_t *rx, mm_can_frame_t *tx)
{
    const uint16_t device = (uint16_t)(rx->id & MM_CAN_DEVICE_MASK);
    const uint32_t type_id = rx->id & ~(uint32_t)MM_CAN_DEVICE_MASK & 0x1FFFFFFFu;
    const bool broadcast = device == MM_CAN_BROADCAST;
    switch (type_id) {
    case MM_SERVO_HEARTBEAT_FRAME_ID: {
        struct mm_servo_heartbeat_t hb;
        if (mm_servo_heartbeat_unpack(&hb, rx->data, rx->dlc) == 0) {
            mm_core_heartbeat(core, hb.seq);
        }
        return 0u;
    }
    case MM_SERVO_EXPLORATION_FRAME_ID:
        exploration(can, rx);
        return 0u;
    case MM_SERVO_COMMAND_FRAME_ID:
        command(can, core, rx);
        return 0u;
    case MM_SERVO_REGISTER_REQUEST_FRAME_ID:
        if (broadcast || rx->dlc < MM_SERVO_REGISTER_REQUEST_LENGTH) {
            return 0u;
        }
        register_request(can, core, rx, tx);
        return 1u;
    case MM_SERVO_POLICY_TP_DATA_FRAME_ID: {
        if (broadcast) {
            return 0u;
        }
        uint8_t n = 0u;
        bool send_fc = false;
        const mm_isotp_status_t st = mm_isotp_rx_frame(&can->isotp, rx->data, rx->dlc, tx[0].data, &send_fc);
        if (send_fc) {
            tx[n].id = frame_id(MM_SERVO_POLICY_TP_FLOW_FRAME_ID, can->device_id);
            tx[n].dlc = 8u;
            ++n;
        }
        if (st != MM_ISOTP_COMPLETE) {
            return n;
        }
        const bool ack_due = policy_chunk(core, can->isotp.buffer, can->isotp.length);
        if (mm_can_truncated_ack_frame(can, core, &tx[n])) {
            ++n; /* this chunk abandoned the previous transfer: its sender hears it before the new ack */
        }
        if (ack_due && !mm_core_policy_verify_pending(core)) {
            mm_can_policy_ack_frame(can, core, &tx[n]);
            ++n;
        }
        return n;
    }
    default:
        return 0u;
    }
}

void mm_can_tick(mm_can_t *can, float dt_s)
{
    (void)mm_isotp_rx_tick(&can->isotp, dt_s);
}

/* A reading saturated to a signal's physical range before its integer encoding: a sensor can report NaN or a
 * value beyond the range, and converting such a float to the signal's integer type is undefined behaviour
 * (found by firmware/tools/fuzz.sh). NaN reads 0. */
static float saturate(float value, float lo, float hi)
{
    if (isnan(value)) {
        return 0.0f;
    }
    return fminf(fmaxf(value, lo), hi);
}

uint8_t mm_can_state_frames(const mm_can_t *can, const mm_core_t *core, mm_can_frame_t tx[MM_CAN_STATE_FRAMES])
{
    mm_state_t s;
    mm_core_get_state(core, &s);
    const struct mm_servo_state_motion_t motion = {.position = s.position_rad, .velocity = s.velocity_rad_s};
    const struct mm_servo_state_electrical_t electrical = {
        .current = mm_servo_state_electrical_current_encode(saturate(s.current_a, -32.768f, 32.767f)),
        .current_cmd = mm_servo_state_electrical_current_cmd_encode(saturate(s.current_cmd_a, -32.768f, 32.767f)),
        .bus_voltage = mm_servo_state_electrical_bus_voltage_encode(saturate(s.bus_voltage_v, 0.0f, 655.35f)),
        .temperature = (int8_t)fminf(fmaxf(s.temperature_c, -128.0f), 127.0f),
        .mode = s.mode,
    };
    const struct mm_servo_state_power_t power = {.power = s.power_w};
    const struct mm_servo_state_status_t status = {
        .policy_crc32 = s.policy_crc32,
        .fault_flags = (uint8_t)s.fault_flags,
        .dropped_samples = (uint16_t)(s.dropped_samples > 0xFFFFu ? 0xFFFFu : s.dropped_samples),
    };
    tx[0].id = frame_id(MM_SERVO_STATE_MOTION_FRAME_ID, can->device_id);
    tx[0].dlc = (uint8_t)mm_servo_state_motion_pack(tx[0].data, &motion, 8u);
    tx[1].id = frame_id(MM_SERVO_STATE_ELECTRICAL_FRAME_ID, can->device_id);
    tx[1].dlc = (uint8_t)mm_servo_state_electrical_pack(tx[1].data, &electrical, 8u);
    tx[2].id = frame_id(MM_SERVO_STATE_POWER_FRAME_ID, can->device_id);
    tx[2].dlc = (uint8_t)mm_servo_state_power_pack(tx[2].data, &power, 8u);
    tx[3].id = frame_id(MM_SERVO_STATE_STATUS_FRAME_ID, can->device_id);
    tx[3].dlc = (uint8_t)mm_servo_state_status_pack(tx[3].data, &status, 8u);
    return MM_CAN_STATE_FRAMES;
}

bool mm_can_fault_frame(mm_can_t *can, const mm_core_t *core, mm_can_frame_t *tx)
{
    mm_state_t s;
    mm_core_get_state(core, &s);
    const uint32_t fresh = s.fault_flags & ~can->last_faults;
    can->last_faults = s.fault_flags;
    if (fresh == 0u) {
        return false;
    }
    const struct mm_servo_fault_t fault = {
        .fault_flags = (uint8_t)s.fault_flags, .new_faults = (uint8_t)fresh, .mode = s.mode, .tick = s.tick};
    tx->id = frame_id(MM_SERVO_FAULT_FRAME_ID, can->device_id);
    tx->dlc = (uint8_t)mm_servo_fault_pack(tx->data, &fault, 8u);
    return true;
}

static void ack_frame(const mm_can_t *can, const mm_policy_ack_t *ack, mm_can_frame_t *tx)
{
    /* Every missing chunk is counted (saturating); only the lowest index fits the frame. */
    const uint32_t missing =
        ack->status == MM_ACK_RECEIVING ? (uint32_t)ack->total_chunks - ack->received_chunks : 0u;
    const struct mm_servo_policy_ack_t msg = {
        .transfer_id = ack->transfer_id,
        .status = ack->status,
        .reason = ack->reason,
        .missing_count = (uint8_t)(missing > 255u ? 255u : missing),
        .first_missing = missing > 0u ? ack->missing[0] : 0xFFFFu,
    };
    tx->id = frame_id(MM_SERVO_POLICY_ACK_FRAME_ID, can->device_id);
    tx->dlc = (uint8_t)mm_servo_policy_ack_pack(tx->data, &msg, 8u);
}

void mm_can_policy_ack_frame(const mm_can_t *can, const mm_core_t *core, mm_can_frame_t *tx)
{
    mm_policy_ack_t ack;
    mm_core_policy_ack(core, &ack);
    ack_frame(can, &ack, tx);
}

bool mm_can_truncated_ack_frame(const mm_can_t *can, mm_core_t *core, mm_can_frame_t *tx)
{
    mm_policy_ack_t ack;
    if (!mm_core_policy_truncated_ack(core, &ack)) {
        return false;
    }
    ack_frame(can, &ack, tx);
    return true;
}
