/**
 * @file mm_reassembly.h
 * @brief Chunked policy transfer reassembly (servo contract section 6): any order, duplicates ignored,
 *        gaps reported, image CRC-32 verified when complete.
 */
#ifndef MM_CORE_REASSEMBLY_H
#define MM_CORE_REASSEMBLY_H

#include <stdbool.h>
#include <stdint.h>

#include "mm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Outcome of one chunk. */
typedef enum {
    MM_CHUNK_STORED = 0,      /**< new chunk stored; transfer still incomplete */
    MM_CHUNK_DUPLICATE = 1,   /**< already had it (or the transfer already finished): ignored */
    MM_CHUNK_COMPLETE = 2,    /**< this chunk completed the image and its CRC-32 matches */
    MM_CHUNK_BAD_CRC = 3,     /**< complete, but the image CRC-32 does not match: transfer dropped */
    MM_CHUNK_TOO_LARGE = 4,   /**< total_size above the buffer or too many chunks: refused */
    MM_CHUNK_INVALID = 5,     /**< index/length/chunk_size inconsistent with the transfer: ignored */
} mm_chunk_result_t;

/** One transfer's bookkeeping; the bytes go to a caller-owned buffer. */
typedef struct {
    uint8_t *buffer;          /**< destination, capacity bytes */
    uint32_t capacity;
    bool active;              /**< a transfer has started (and may be finished) */
    bool finished;            /**< every chunk arrived (CRC checked) */
    uint32_t transfer_id;
    uint32_t total_size;
    uint32_t image_crc32;
    uint16_t chunk_size;
    uint16_t total_chunks;
    uint16_t received_chunks;
    uint32_t abandoned;       /**< transfers replaced by a new transfer_id before finishing */
    uint8_t received[(MM_MAX_CHUNKS + 7u) / 8u];
} mm_reassembly_t;

/** Bind a destination buffer; no transfer is active afterwards. */
void mm_reassembly_init(mm_reassembly_t *r, uint8_t *buffer, uint32_t capacity);

/**
 * Take one chunk. A chunk with a new transfer_id starts a new transfer (abandoning an unfinished one).
 * Every chunk except the last carries exactly chunk_size bytes; the last carries the rest.
 */
mm_chunk_result_t mm_reassembly_add(mm_reassembly_t *r, uint32_t transfer_id, uint32_t total_size,
                                    uint32_t image_crc32, uint16_t index, uint16_t chunk_size,
                                    const uint8_t *data, uint16_t len);

/** Write up to max missing chunk indices, lowest first; returns how many were written. */
uint16_t mm_reassembly_missing(const mm_reassembly_t *r, uint16_t *indices, uint16_t max);

/** Forget the current transfer (its bytes stay in the buffer but are no longer trusted). */
void mm_reassembly_abort(mm_reassembly_t *r);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_REASSEMBLY_H */
