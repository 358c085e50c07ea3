/**
 * @file mm_policy_image.h
 * @brief Parse and verify a policy image (servo contract section 5):
 *        header (80 B) || model (.tflite) || signature (64 B, ECDSA P-256 over SHA-256(header || model)).
 */
#ifndef MM_CORE_POLICY_IMAGE_H
#define MM_CORE_POLICY_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "mm_config.h"
#include "mm_pid.h"
#include "mm_sensing.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MM_POLICY_HEADER_BYTES 80u
#define MM_POLICY_SIGNATURE_BYTES 64u
#define MM_POLICY_FORMAT_VERSION 2u
#define MM_POLICY_MODEL_INT8 1u   /**< TFLite full-int8 */
#define MM_POLICY_MODEL_INT16X8 2u/**< TFLite int16 activations x int8 weights */

/** Why an image or transfer was refused; the values equal PolicyAck.REASON_*. */
typedef enum {
    MM_REASON_NONE = 0,
    MM_REASON_CRC = 1,        /**< image CRC-32 or model CRC-32 mismatch */
    MM_REASON_FORMAT = 2,     /**< bad magic, version, header or size fields (scales, schedule_range, base gains) */
    MM_REASON_SHAPE = 3,      /**< obs/action dimensions this firmware does not run */
    MM_REASON_SIGNATURE = 4,  /**< signature does not verify */
    MM_REASON_TOO_LARGE = 5,  /**< image larger than the policy buffer */
    MM_REASON_BACKEND = 6,    /**< the inference backend cannot load the model */
    MM_REASON_TRUNCATED = 7,  /**< transfer abandoned before all chunks arrived */
    MM_REASON_BUSY = 8,       /**< another transfer is in progress */
    MM_REASON_ROLLBACK = 9,   /**< policy_version below the highest version this servo accepted (anti-rollback) */
} mm_policy_reason_t;

/** Largest schedule_range: the policy scales the base law's deceleration by at most exp(+-2), 0.14x to 7.4x. */
#define MM_MAX_SCHEDULE_RANGE 2.0f

/** The decoded header fields. */
typedef struct {
    uint8_t model_type;        /**< MM_POLICY_MODEL_* */
    uint8_t obs_dim;
    uint8_t action_dim;
    uint8_t policy_decimation; /**< run the policy every N control ticks; 0: the firmware's configured default */
    uint32_t model_size;       /**< bytes of .tflite model */
    mm_obs_params_t scales;    /**< observation scales and velocity filter tau */
    uint32_t arena_bytes;      /**< TFLite Micro tensor arena the model needs (bytes) */
    uint32_t model_crc32;      /**< CRC-32 of the model bytes */
    float schedule_range;      /**< 0: the policy's output is the whole action; in (0, MM_MAX_SCHEDULE_RANGE]: the
                                    policy's action a schedules the base law's braking deceleration,
                                    decel_rad_s2 * exp(schedule_range * a) (contract section 4) */
    mm_pid_gains_t base_gains; /**< the base law of schedule mode, PTOS (contract section 8); all 0 without */
    uint32_t policy_version;   /**< monotonic release number (offset 72, signed with the header); 0: unversioned */
} mm_policy_header_t;

/**
 * Check everything about an image except the inference backend, in the contract's order: sizes and format
 * (including the scales, schedule_range in [0, MM_MAX_SCHEDULE_RANGE] and base gains finite and >= 0, a PTOS law
 * passing mm_pid_gains_valid in schedule mode),
 * shape, model CRC, then the signature against public_key (65-byte uncompressed P-256 point).
 * @param max_bytes the largest image accepted (<= MM_MAX_POLICY_BYTES)
 * @param out filled on success (MM_REASON_NONE)
 */
mm_policy_reason_t mm_policy_image_check(const uint8_t *image, uint32_t len, uint32_t max_bytes,
                                         const uint8_t public_key[MM_PUBLIC_KEY_BYTES], mm_policy_header_t *out);

/** Decode only the header fields (no size, CRC or signature checks); false when shorter than the header. */
bool mm_policy_header_decode(const uint8_t *image, uint32_t len, mm_policy_header_t *out);

/**
 * Verify an ECDSA P-256 signature (raw r || s, big-endian, 32 B each) over SHA-256(message) against a
 * 65-byte uncompressed public key. Implemented with mbedTLS (2.28 on the host, 3.x in ESP-IDF 5).
 * Only low-S signatures verify (1 <= s <= n/2): (r, n - s) is as valid as (r, s) mathematically, and since the
 * policy id is the CRC of the whole image, accepting both would give one signed content two ids.
 */
bool mm_ecdsa_p256_verify(const uint8_t public_key[MM_PUBLIC_KEY_BYTES], const uint8_t *message, uint32_t len,
                          const uint8_t signature[MM_POLICY_SIGNATURE_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_POLICY_IMAGE_H */
