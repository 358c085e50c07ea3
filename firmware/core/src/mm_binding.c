/* Host-only: struct sizes for the ctypes binding (python/mm_firmware_core), which checks its mirrored layouts
 * against them at import so a changed header fails loudly instead of corrupting memory. */
#include <stddef.h>

#include "mm_core/mm_can.h"
#include "mm_core/mm_core.h"

size_t mm_binding_sizeof(const char *name);
int mm_binding_constant(const char *name, long *value);

static int same(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

size_t mm_binding_sizeof(const char *name)
{
    static const struct {
        const char *name;
        size_t size;
    } k_sizes[] = {
        {"mm_config_t", sizeof(mm_config_t)},     {"mm_sensors_t", sizeof(mm_sensors_t)},
        {"mm_actuator_t", sizeof(mm_actuator_t)}, {"mm_command_t", sizeof(mm_command_t)},
        {"mm_state_t", sizeof(mm_state_t)},       {"mm_policy_ack_t", sizeof(mm_policy_ack_t)},
        {"mm_policy_header_t", sizeof(mm_policy_header_t)}, {"mm_batch_t", sizeof(mm_batch_t)},
        {"mm_can_frame_t", sizeof(mm_can_frame_t)}, {"mm_can_t", sizeof(mm_can_t)},
        {"mm_velocity_filter_t", sizeof(mm_velocity_filter_t)}, {"mm_tuning_t", sizeof(mm_tuning_t)},
    };
    for (size_t i = 0; i < sizeof k_sizes / sizeof k_sizes[0]; ++i) {
        if (same(k_sizes[i].name, name)) {
            return k_sizes[i].size;
        }
    }
    return 0u;
}

/* The C values the mm_msgs constants must equal (firmware/core/test/test_constants.py compares them). */
#define MM_CONSTANT(n) {#n, (long)(n)}

int mm_binding_constant(const char *name, long *value)
{
    static const struct {
        const char *name;
        long value;
    } k_constants[] = {
        MM_CONSTANT(MM_MODE_IDLE), MM_CONSTANT(MM_MODE_HOLD), MM_CONSTANT(MM_MODE_TORQUE),
        MM_CONSTANT(MM_MODE_POSITION), MM_CONSTANT(MM_MODE_POLICY), MM_CONSTANT(MM_MODE_BRAKE),
        MM_CONSTANT(MM_FAULT_OVERCURRENT), MM_CONSTANT(MM_FAULT_OVERTEMPERATURE), MM_CONSTANT(MM_FAULT_UNDERVOLTAGE),
        MM_CONSTANT(MM_FAULT_OVERVOLTAGE), MM_CONSTANT(MM_FAULT_ENCODER), MM_CONSTANT(MM_FAULT_END_STOP),
        MM_CONSTANT(MM_FAULT_HEARTBEAT_LOST), MM_CONSTANT(MM_FAULT_POLICY),
        MM_CONSTANT(MM_ACK_RECEIVING), MM_CONSTANT(MM_ACK_ACCEPTED), MM_CONSTANT(MM_ACK_REJECTED),
        MM_CONSTANT(MM_REASON_NONE), MM_CONSTANT(MM_REASON_CRC), MM_CONSTANT(MM_REASON_FORMAT),
        MM_CONSTANT(MM_REASON_SHAPE), MM_CONSTANT(MM_REASON_SIGNATURE), MM_CONSTANT(MM_REASON_TOO_LARGE),
        MM_CONSTANT(MM_REASON_BACKEND), MM_CONSTANT(MM_REASON_TRUNCATED), MM_CONSTANT(MM_REASON_BUSY),
        MM_CONSTANT(MM_REASON_ROLLBACK),
        MM_CONSTANT(MM_SAMPLE_EPISODE_START), MM_CONSTANT(MM_SAMPLE_FAULT), MM_CONSTANT(MM_SAMPLE_POLICY), MM_CONSTANT(MM_SAMPLE_GUARD),
        MM_CONSTANT(MM_BATCH_MAX_SAMPLES), MM_CONSTANT(MM_OBS_DIM), MM_CONSTANT(MM_ACK_MAX_MISSING),
        MM_CONSTANT(MM_ACTION_DIM), MM_CONSTANT(MM_PUBLIC_KEY_BYTES), MM_CONSTANT(MM_CHUNK_HEADER_BYTES),
        MM_CONSTANT(MM_FAULTS_BLOCKING), MM_CONSTANT(MM_CAN_DEVICE_BITS), MM_CONSTANT(MM_CAN_DEVICE_MASK),
        MM_CONSTANT(MM_CAN_BROADCAST),
        MM_CONSTANT(MM_MAX_POLICY_BYTES), MM_CONSTANT(MM_SAMPLE_CAPACITY), MM_CONSTANT(MM_ISOTP_MAX_PAYLOAD),
        MM_CONSTANT(MM_CAN_MAX_REPLIES), MM_CONSTANT(MM_CAN_STATE_FRAMES), MM_CONSTANT(MM_ENCODER_COUNTS), MM_CONSTANT(MM_REG_RAW_ENCODER_COUNT),
        MM_CONSTANT(MM_REG_ZERO_OFFSET_COUNTS), MM_CONSTANT(MM_REG_OK), MM_CONSTANT(MM_REG_OUT_OF_RANGE),
        MM_CONSTANT(MM_REG_ACTIVE_MODE), MM_CONSTANT(MM_POLICY_HEADER_BYTES), MM_CONSTANT(MM_POLICY_SIGNATURE_BYTES),
        MM_CONSTANT(MM_POLICY_FORMAT_VERSION),
        MM_CONSTANT(MM_REG_KP_POS_MILLI), MM_CONSTANT(MM_REG_KP_VEL_MICRO),
        MM_CONSTANT(MM_REG_KI_VEL_MICRO), MM_CONSTANT(MM_REG_GRAVITY_FF_MA),
        MM_CONSTANT(MM_REG_FIRMWARE_VERSION), MM_CONSTANT(MM_REG_DEVICE_ID), MM_CONSTANT(MM_REG_FAULT_FLAGS),
        MM_CONSTANT(MM_REG_POLICY_CRC32), MM_CONSTANT(MM_REG_DROPPED_SAMPLES), MM_CONSTANT(MM_REG_HARD_CURRENT_LIMIT_MA),
        MM_CONSTANT(MM_REG_HEARTBEAT_TIMEOUT_MS), MM_CONSTANT(MM_REG_CURRENT_LIMIT_MA),
        MM_CONSTANT(MM_REG_MAX_VELOCITY_MRAD_S), MM_CONSTANT(MM_REG_UNKNOWN), MM_CONSTANT(MM_REG_READ_ONLY),
    };
    for (size_t i = 0; i < sizeof k_constants / sizeof k_constants[0]; ++i) {
        if (same(k_constants[i].name, name)) {
            *value = k_constants[i].value;
            return 1;
        }
    }
    return 0;
}
