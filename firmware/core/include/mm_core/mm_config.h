/**
 * @file mm_config.h
 * @brief Compile-time sizes of the core's static buffers and the fixed interface dimensions.
 *
 * Every buffer of the core is static and sized here, so the control path never allocates. Override the sizes
 * with -D on the compiler command line (the ESP-IDF build passes the Kconfig values).
 */
#ifndef MM_CORE_CONFIG_H
#define MM_CORE_CONFIG_H

/** Largest policy image (header + model + signature) the core stores, bytes. Two such slots exist. */
#ifndef MM_MAX_POLICY_BYTES
#define MM_MAX_POLICY_BYTES 65536u
#endif

/** Most chunks one transfer may have (bounds the received-chunk bitmap). */
#ifndef MM_MAX_CHUNKS
#define MM_MAX_CHUNKS 1024u
#endif

/** Transition samples buffered between the control step and the publisher; a power of two. */
#ifndef MM_SAMPLE_CAPACITY
#define MM_SAMPLE_CAPACITY 256u
#endif

/** Largest ISO-TP message the CAN receiver reassembles: one chunk header (16 B) + chunk data. */
#ifndef MM_ISOTP_MAX_PAYLOAD
#define MM_ISOTP_MAX_PAYLOAD 1040u
#endif

#if (MM_SAMPLE_CAPACITY & (MM_SAMPLE_CAPACITY - 1u)) != 0u
#error "MM_SAMPLE_CAPACITY must be a power of two"
#endif

/* Interface dimensions fixed by docs/servo-contract.md and the mm_msgs messages. */
#define MM_OBS_DIM 8u                 /**< observation features (contract section 3) */
#define MM_ACTION_DIM 1u              /**< action dimension (contract section 4) */
#define MM_BATCH_MAX_SAMPLES 24u      /**< TransitionBatch.MAX_SAMPLES */
#define MM_ACK_MAX_MISSING 32u        /**< PolicyAck.missing bound */
#define MM_CHUNK_HEADER_BYTES 16u     /**< CAN chunk header: transfer_id, total_size, image_crc32, index, chunk_size */
#define MM_ENCODER_COUNTS 16384u      /**< AS5047 counts per output revolution */
#define MM_PUBLIC_KEY_BYTES 65u       /**< uncompressed P-256 point 0x04 || X || Y */

#endif /* MM_CORE_CONFIG_H */
