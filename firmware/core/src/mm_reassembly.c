#include "mm_core/mm_reassembly.h"

#include <string.h>

#include "mm_core/mm_crc32.h"

void mm_reassembly_init(mm_reassembly_t *r, uint8_t *buffer, uint32_t capacity)
{
    memset(r, 0, sizeof *r);
    r->buffer = buffer;
    r->capacity = capacity;
}

void mm_reassembly_abort(mm_reassembly_t *r)
{
    r->active = false;
    r->finished = false;
    r->received_chunks = 0;
    memset(r->received, 0, sizeof r->received);
}

static bool has_chunk(const mm_reassembly_t *r, uint16_t index)
{
    return (r->received[index / 8u] & (uint8_t)(1u << (index % 8u))) != 0u;
}

static mm_chunk_result_t start(mm_reassembly_t *r, uint32_t transfer_id, uint32_t total_size, uint32_t image_crc32,
                               uint16_t chunk_size)
{
    if (r->active && !r->finished) {
        r->abandoned += 1u;
    }
    mm_reassembly_abort(r);
    r->transfer_id = transfer_id;
    r->total_size = total_size;
    r->image_crc32 = image_crc32;
    r->chunk_size = chunk_size;
    r->active = true;
    if (chunk_size == 0u || total_size == 0u) {
        r->total_chunks = 0u;
        return MM_CHUNK_INVALID;
    }
    const uint32_t chunks = (total_size + chunk_size - 1u) / chunk_size;
    if (total_size > r->capacity || chunks > MM_MAX_CHUNKS) {
        r->total_chunks = 0u;
        return MM_CHUNK_TOO_LARGE;
    }
    r->total_chunks = (uint16_t)chunks;
    return MM_CHUNK_STORED;
}

mm_chunk_result_t mm_reassembly_add(mm_reassembly_t *r, uint32_t transfer_id, uint32_t total_size,
                                    uint32_t image_crc32, uint16_t index, uint16_t chunk_size,
                                    const uint8_t *data, uint16_t len)
{
    if (!r->active || transfer_id != r->transfer_id) {
        const mm_chunk_result_t started = start(r, transfer_id, total_size, image_crc32, chunk_size);
        if (started != MM_CHUNK_STORED) {
            return started;
        }
    } else if (r->total_chunks == 0u) {
        /* This transfer was refused at its first chunk; keep refusing the rest the same way. */
        return (total_size > r->capacity) ? MM_CHUNK_TOO_LARGE : MM_CHUNK_INVALID;
    }
    if (r->finished) {
        return MM_CHUNK_DUPLICATE;
    }
    if (total_size != r->total_size || image_crc32 != r->image_crc32 || chunk_size != r->chunk_size ||
        index >= r->total_chunks) {
        return MM_CHUNK_INVALID;
    }
    const uint32_t offset = (uint32_t)index * chunk_size;
    const uint32_t expected = (index + 1u == r->total_chunks) ? (r->total_size - offset) : chunk_size;
    if (len != expected) {
        return MM_CHUNK_INVALID;
    }
    if (has_chunk(r, index)) {
        return MM_CHUNK_DUPLICATE;
    }
    memcpy(r->buffer + offset, data, len);
    r->received[index / 8u] |= (uint8_t)(1u << (index % 8u));
    r->received_chunks += 1u;
    if (r->received_chunks < r->total_chunks) {
        return MM_CHUNK_STORED;
    }
    if (mm_crc32(0u, r->buffer, r->total_size) != r->image_crc32) {
        /* Some chunk was corrupted on the way: forget them all, so the sender can resend every chunk. */
        mm_reassembly_abort(r);
        return MM_CHUNK_BAD_CRC;
    }
    r->finished = true;
    return MM_CHUNK_COMPLETE;
}

uint16_t mm_reassembly_missing(const mm_reassembly_t *r, uint16_t *indices, uint16_t max)
{
    uint16_t n = 0u;
    if (!r->active || r->finished) {
        return 0u;
    }
    for (uint16_t i = 0u; i < r->total_chunks && n < max; ++i) {
        if (!has_chunk(r, i)) {
            indices[n++] = i;
        }
    }
    return n;
}
