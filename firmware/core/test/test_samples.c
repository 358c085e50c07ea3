/* Sample ring: batches of consecutive ticks, drops counted, gaps split batches. */
#include "mm_core/mm_samples.h"
#include "test_support.h"

static mm_sample_ring_t g_ring;
static mm_batch_t g_batch;

static void push_tick(uint32_t tick)
{
    const mm_sample_t s = {.tick = tick, .action = (float)tick};
    mm_samples_push(&g_ring, &s);
}

static void batches_stop_at_gaps(void **state)
{
    (void)state;
    mm_samples_init(&g_ring);
    for (uint32_t t = 10; t < 15; ++t) {
        push_tick(t);
    }
    for (uint32_t t = 20; t < 23; ++t) {
        push_tick(t);
    }
    assert_int_equal(mm_samples_pop_batch(&g_ring, &g_batch, 24), 5);
    assert_int_equal(g_batch.first_tick, 10);
    assert_float_equal(g_batch.actions[4], 14.0f, 0.0);
    assert_int_equal(mm_samples_pop_batch(&g_ring, &g_batch, 2), 2);
    assert_int_equal(g_batch.first_tick, 20);
    assert_int_equal(mm_samples_pop_batch(&g_ring, &g_batch, 24), 1);
    assert_int_equal(mm_samples_pop_batch(&g_ring, &g_batch, 24), 0);
}

static void a_full_ring_drops_new_samples(void **state)
{
    (void)state;
    mm_samples_init(&g_ring);
    for (uint32_t t = 0; t < MM_SAMPLE_CAPACITY + 3u; ++t) {
        push_tick(t);
    }
    assert_int_equal(mm_samples_available(&g_ring), MM_SAMPLE_CAPACITY);
    assert_int_equal(mm_samples_dropped(&g_ring), 3);
    uint32_t total = 0;
    uint8_t n;
    while ((n = mm_samples_pop_batch(&g_ring, &g_batch, 24)) > 0) {
        assert_int_equal(g_batch.first_tick, total);
        assert_int_equal(g_batch.dropped_samples, 3);
        total += n;
    }
    assert_int_equal(total, MM_SAMPLE_CAPACITY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batches_stop_at_gaps),
        cmocka_unit_test(a_full_ring_drops_new_samples),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
