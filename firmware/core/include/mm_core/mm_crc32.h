/**
 * @file mm_crc32.h
 * @brief CRC-32/ISO-HDLC (the zlib.crc32 of Python), incremental.
 */
#ifndef MM_CORE_CRC32_H
#define MM_CORE_CRC32_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Continue a CRC-32 over more bytes. Start with crc = 0; the result of one call feeds the next, so
 * mm_crc32(mm_crc32(0, a, n), b, m) == zlib.crc32(a + b).
 */
uint32_t mm_crc32(uint32_t crc, const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_CRC32_H */
