#include "mm_core/mm_samples.h"

#include <string.h>

/* C++ sees the indices as plain uint_fast32_t (mm_samples.h): the layouts must agree. */
_Static_assert(sizeof(atomic_uint_fast32_t) == sizeof(uint_fast32_t), "atomic index size differs from C++'s");
_Static_assert(_Alignof(atomic_uint_fast32_t) == _Alignof(uint_fast32_t), "atomic index alignment differs");

void mm_samples_init(mm_sample_ring_t *ring)
{
    atomic_init(&ring->head, 0u);
    atomic_init(&ring->tail, 0u);
    atomic_init(&ring->dropped, 0u);
}

bool mm_samples_push(mm_sample_ring_t *ring, const mm_sample_t *sample)
{
    const uint_fast32_t head = atomic_load_explicit(&ring->head, memory_order_relaxed);
    const uint_fast32_t tail = atomic_load_explicit(&ring->tail, memory_order_acquire);
    if ((uint32_t)(head - tail) >= MM_SAMPLE_CAPACITY) {
        /* Only the producer writes the count, so load + store suffices: no read-modify-write atomic, which
         * rv32imc (ESP32-C3, no A extension) would have to emulate. */
        const uint_fast32_t dropped = atomic_load_explicit(&ring->dropped, memory_order_relaxed);
        atomic_store_explicit(&ring->dropped, dropped + 1u, memory_order_relaxed);
        return false;
    }
    ring->slots[head & (MM_SAMPLE_CAPACITY - 1u)] = *sample;
    /* Release: the consumer that sees the new head also sees the sample written above. */
    atomic_store_explicit(&ring->head, head + 1u, memory_order_release);
    return true;
}

uint32_t mm_samples_available(const mm_sample_ring_t *ring)
{
    const uint_fast32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    const uint_fast32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    return (uint32_t)(head - tail);
}

uint32_t mm_samples_dropped(const mm_sample_ring_t *ring)
{
    return (uint32_t)atomic_load_explicit(&ring->dropped, memory_order_relaxed);
}

uint8_t mm_samples_pop_batch(mm_sample_ring_t *ring, mm_batch_t *batch, uint8_t max)
{
    if (max > MM_BATCH_MAX_SAMPLES) {
        max = MM_BATCH_MAX_SAMPLES;
    }
    const uint_fast32_t head = atomic_load_explicit(&ring->head, memory_order_acquire);
    uint_fast32_t tail = atomic_load_explicit(&ring->tail, memory_order_relaxed);
    uint8_t n = 0u;
    while (tail != head && n < max) {
        const mm_sample_t *s = &ring->slots[tail & (MM_SAMPLE_CAPACITY - 1u)];
        if (n == 0u) {
            batch->first_tick = s->tick;
        } else if (s->tick != batch->first_tick + n) {
            break; /* a gap (dropped samples): the next batch starts at it */
        }
        memcpy(&batch->observations[n * MM_OBS_DIM], s->observation, sizeof s->observation);
        batch->actions[n] = s->action;
        batch->position_rad[n] = s->position_rad;
        batch->velocity_rad_s[n] = s->velocity_rad_s;
        batch->current_a[n] = s->current_a;
        batch->target_rad[n] = s->target_rad;
        batch->power_w[n] = s->power_w;
        batch->flags[n] = s->flags;
        ++n;
        ++tail;
    }
    atomic_store_explicit(&ring->tail, tail, memory_order_release);
    batch->count = n;
    batch->dropped_samples = mm_samples_dropped(ring);
    return n;
}
