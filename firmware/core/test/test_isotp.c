/* ISO-TP receiver: single/first/consecutive frames, flow control, sequence errors, overflow, timeout. */
#include <string.h>

#include "mm_core/mm_isotp.h"
#include "test_support.h"

static mm_isotp_rx_t g_rx;

static mm_isotp_status_t feed(const uint8_t *frame, uint8_t dlc, uint8_t fc[8], bool *send)
{
    return mm_isotp_rx_frame(&g_rx, frame, dlc, fc, send);
}

static void single_frame_completes_at_once(void **state)
{
    (void)state;
    mm_isotp_rx_init(&g_rx, 0u, 0u, 1.0f);
    const uint8_t sf[] = {0x03, 'a', 'b', 'c'};
    uint8_t fc[8];
    bool send = true;
    assert_int_equal(feed(sf, 4u, fc, &send), MM_ISOTP_COMPLETE);
    assert_false(send);
    assert_int_equal(g_rx.length, 3u);
    assert_memory_equal(g_rx.buffer, "abc", 3);
}

/* 20 bytes: FF carries 6, then CFs of 7, 7. Block size 1: a flow control after every CF but the last. */
static void multi_frame_with_block_size_sends_flow_control(void **state)
{
    (void)state;
    mm_isotp_rx_init(&g_rx, 1u, 5u, 1.0f);
    uint8_t msg[20];
    for (unsigned i = 0; i < 20; ++i) {
        msg[i] = (uint8_t)i;
    }
    uint8_t frame[8] = {0x10, 20};
    memcpy(frame + 2, msg, 6);
    uint8_t fc[8];
    bool send = false;
    assert_int_equal(feed(frame, 8u, fc, &send), MM_ISOTP_IN_PROGRESS);
    assert_true(send);
    assert_int_equal(fc[0], 0x30);
    assert_int_equal(fc[1], 1);
    assert_int_equal(fc[2], 5);
    frame[0] = 0x21;
    memcpy(frame + 1, msg + 6, 7);
    assert_int_equal(feed(frame, 8u, fc, &send), MM_ISOTP_IN_PROGRESS);
    assert_true(send);
    frame[0] = 0x22;
    memcpy(frame + 1, msg + 13, 7);
    assert_int_equal(feed(frame, 8u, fc, &send), MM_ISOTP_COMPLETE);
    assert_false(send);
    assert_memory_equal(g_rx.buffer, msg, 20);
}

static void out_of_sequence_frame_drops_the_message(void **state)
{
    (void)state;
    mm_isotp_rx_init(&g_rx, 0u, 0u, 1.0f);
    uint8_t ff[8] = {0x10, 30, 0, 1, 2, 3, 4, 5};
    uint8_t fc[8];
    bool send = false;
    assert_int_equal(feed(ff, 8u, fc, &send), MM_ISOTP_IN_PROGRESS);
    const uint8_t cf2[8] = {0x22};
    assert_int_equal(feed(cf2, 8u, fc, &send), MM_ISOTP_ERR_SEQUENCE);
    const uint8_t cf1[8] = {0x21};
    assert_int_equal(feed(cf1, 8u, fc, &send), MM_ISOTP_IDLE);
}

static void too_long_messages_get_an_overflow_flow_control(void **state)
{
    (void)state;
    mm_isotp_rx_init(&g_rx, 0u, 0u, 1.0f);
    const uint32_t big = MM_ISOTP_MAX_PAYLOAD + 1u;
    const uint8_t ff[8] = {(uint8_t)(0x10 | (big >> 8)), (uint8_t)big};
    uint8_t fc[8];
    bool send = false;
    assert_int_equal(feed(ff, 8u, fc, &send), MM_ISOTP_ERR_OVERFLOW);
    assert_true(send);
    assert_int_equal(fc[0], 0x32);
    const uint8_t escaped[8] = {0x10, 0x00, 0x00, 0x01, 0x00, 0x00};
    assert_int_equal(feed(escaped, 8u, fc, &send), MM_ISOTP_ERR_OVERFLOW);
}

static void silence_times_the_message_out(void **state)
{
    (void)state;
    mm_isotp_rx_init(&g_rx, 0u, 0u, 0.010f);
    const uint8_t ff[8] = {0x10, 30};
    uint8_t fc[8];
    bool send = false;
    feed(ff, 8u, fc, &send);
    assert_int_equal(mm_isotp_rx_tick(&g_rx, 0.006f), MM_ISOTP_IN_PROGRESS);
    assert_int_equal(mm_isotp_rx_tick(&g_rx, 0.006f), MM_ISOTP_ERR_TIMEOUT);
    assert_int_equal(mm_isotp_rx_tick(&g_rx, 0.006f), MM_ISOTP_IDLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_frame_completes_at_once),
        cmocka_unit_test(multi_frame_with_block_size_sends_flow_control),
        cmocka_unit_test(out_of_sequence_frame_drops_the_message),
        cmocka_unit_test(too_long_messages_get_an_overflow_flow_control),
        cmocka_unit_test(silence_times_the_message_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
