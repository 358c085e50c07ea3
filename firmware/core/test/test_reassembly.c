/* Chunk reassembly bookkeeping: lengths, limits, restarts. */
#include <string.h>

#include "mm_core/mm_crc32.h"
#include "mm_core/mm_reassembly.h"
#include "test_support.h"

static uint8_t g_buf[1000];
static uint8_t g_src[250];

static void wrong_lengths_and_indices_are_ignored(void **state)
{
    (void)state;
    mm_reassembly_t r;
    mm_reassembly_init(&r, g_buf, sizeof g_buf);
    const uint32_t crc = mm_crc32(0u, g_src, sizeof g_src);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 0u, 100u, g_src, 99u), MM_CHUNK_INVALID);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 3u, 100u, g_src, 100u), MM_CHUNK_INVALID);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 2u, 100u, g_src + 200, 49u), MM_CHUNK_INVALID);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 2u, 100u, g_src + 200, 50u), MM_CHUNK_STORED);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 1u, 50u, g_src + 100, 50u), MM_CHUNK_INVALID);
    uint16_t missing[4];
    assert_int_equal(mm_reassembly_missing(&r, missing, 4u), 2u);
    assert_int_equal(missing[0], 0u);
    assert_int_equal(missing[1], 1u);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 0u, 100u, g_src, 100u), MM_CHUNK_STORED);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 1u, 100u, g_src + 100, 100u), MM_CHUNK_COMPLETE);
    assert_memory_equal(g_buf, g_src, sizeof g_src);
    assert_int_equal(mm_reassembly_add(&r, 1u, 250u, crc, 1u, 100u, g_src + 100, 100u), MM_CHUNK_DUPLICATE);
}

static void oversized_transfers_are_refused(void **state)
{
    (void)state;
    mm_reassembly_t r;
    mm_reassembly_init(&r, g_buf, sizeof g_buf);
    assert_int_equal(mm_reassembly_add(&r, 2u, 1001u, 0u, 0u, 100u, g_src, 100u), MM_CHUNK_TOO_LARGE);
    assert_int_equal(mm_reassembly_add(&r, 2u, 1001u, 0u, 1u, 100u, g_src, 100u), MM_CHUNK_TOO_LARGE);
    mm_reassembly_init(&r, g_buf, sizeof g_buf);
    assert_int_equal(mm_reassembly_add(&r, 3u, 1000u, 0u, 0u, 0u, g_src, 0u), MM_CHUNK_INVALID);
}

static void a_new_transfer_abandons_the_old_one(void **state)
{
    (void)state;
    mm_reassembly_t r;
    mm_reassembly_init(&r, g_buf, sizeof g_buf);
    const uint32_t crc = mm_crc32(0u, g_src, sizeof g_src);
    assert_int_equal(mm_reassembly_add(&r, 5u, 250u, crc, 0u, 100u, g_src, 100u), MM_CHUNK_STORED);
    assert_int_equal(mm_reassembly_add(&r, 6u, 250u, crc, 0u, 125u, g_src, 125u), MM_CHUNK_STORED);
    assert_int_equal(r.abandoned, 1u);
    assert_int_equal(mm_reassembly_add(&r, 6u, 250u, crc, 1u, 125u, g_src + 125, 125u), MM_CHUNK_COMPLETE);
}

int main(void)
{
    for (unsigned i = 0; i < sizeof g_src; ++i) {
        g_src[i] = (uint8_t)(i ^ 0x5Au);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wrong_lengths_and_indices_are_ignored),
        cmocka_unit_test(oversized_transfers_are_refused),
        cmocka_unit_test(a_new_transfer_abandons_the_old_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
