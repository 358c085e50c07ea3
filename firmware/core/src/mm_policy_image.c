#include "mm_core/mm_policy_image.h"

#include <math.h>
#include <string.h>

#include "mm_core/mm_crc32.h"

/* Little-endian field readers, independent of the host's byte order. */
static uint16_t read_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t read_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float read_f32(const uint8_t *p)
{
    const uint32_t bits = read_u32(p);
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

bool mm_policy_header_decode(const uint8_t *image, uint32_t len, mm_policy_header_t *out)
{
    if (len < MM_POLICY_HEADER_BYTES) {
        return false;
    }
    out->model_type = image[8];
    out->obs_dim = image[9];
    out->action_dim = image[10];
    out->policy_decimation = image[11];
    out->model_size = read_u32(image + 12);
    out->scales.pos_scale_rad = read_f32(image + 16);
    out->scales.vel_scale_rad_s = read_f32(image + 20);
    out->scales.fine_gain_per_rad = read_f32(image + 24);
    out->scales.current_limit_a = read_f32(image + 28);
    out->scales.velocity_filter_tau_s = read_f32(image + 32);
    out->arena_bytes = read_u32(image + 36);
    out->model_crc32 = read_u32(image + 40);
    out->schedule_range = read_f32(image + 44);
    out->base_gains.kp_pos = read_f32(image + 48);
    out->base_gains.v_max = read_f32(image + 52);
    out->base_gains.kp_vel = read_f32(image + 56);
    out->base_gains.ki_vel = read_f32(image + 60);
    out->base_gains.gravity_ff_a = read_f32(image + 64);
    out->base_gains.decel_rad_s2 = read_f32(image + 68);
    out->policy_version = read_u32(image + 72);
    /* 76: reserved */
    return true;
}

/* schedule_range in [0, MM_MAX_SCHEDULE_RANGE]; base gains finite and >= 0; in schedule mode a PTOS base law
 * (decel_rad_s2 > 0, which a schedule scales) that passes mm_pid_gains_valid. */
static bool schedule_valid(const mm_policy_header_t *h)
{
    const float range = h->schedule_range;
    const float decel = h->base_gains.decel_rad_s2;
    mm_pid_gains_t linear = h->base_gains;
    linear.decel_rad_s2 = 0.0f; /* PTOS's kp_pos > 0 only binds a base law that runs */
    return isfinite(range) && range >= 0.0f && range <= MM_MAX_SCHEDULE_RANGE && isfinite(decel) && decel >= 0.0f &&
           mm_pid_gains_valid(&linear) && (!(range > 0.0f) || (decel > 0.0f && mm_pid_gains_valid(&h->base_gains)));
}

mm_policy_reason_t mm_policy_image_check(const uint8_t *image, uint32_t len, uint32_t max_bytes,
                                         const uint8_t public_key[MM_PUBLIC_KEY_BYTES], mm_policy_header_t *out)
{
    if (len > max_bytes) {
        return MM_REASON_TOO_LARGE;
    }
    mm_policy_header_t header;
    if (!mm_policy_header_decode(image, len, &header) || memcmp(image, "MMPL", 4) != 0 ||
        read_u16(image + 4) != MM_POLICY_FORMAT_VERSION || read_u16(image + 6) != MM_POLICY_HEADER_BYTES) {
        return MM_REASON_FORMAT;
    }
    /* Compare in 64 bits: a forged model_size near 2^32 must not wrap the sum into a plausible length. */
    const uint64_t expected = (uint64_t)MM_POLICY_HEADER_BYTES + header.model_size + MM_POLICY_SIGNATURE_BYTES;
    if (expected != len || header.model_size == 0u ||
        (header.model_type != MM_POLICY_MODEL_INT8 && header.model_type != MM_POLICY_MODEL_INT16X8) ||
        !mm_obs_params_valid(&header.scales) || !schedule_valid(&header)) {
        return MM_REASON_FORMAT;
    }
    if (header.obs_dim != MM_OBS_DIM || header.action_dim != MM_ACTION_DIM) {
        return MM_REASON_SHAPE;
    }
    if (mm_crc32(0u, image + MM_POLICY_HEADER_BYTES, header.model_size) != header.model_crc32) {
        return MM_REASON_CRC;
    }
    const uint32_t signed_len = MM_POLICY_HEADER_BYTES + header.model_size;
    if (!mm_ecdsa_p256_verify(public_key, image, signed_len, image + signed_len)) {
        return MM_REASON_SIGNATURE;
    }
    *out = header;
    return MM_REASON_NONE;
}
