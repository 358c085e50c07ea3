/**
 * @file mm_samples.h
 * @brief Lock-free single-producer/single-consumer ring of transition samples (control step -> publisher),
 *        drained in batches of consecutive ticks that fit a TransitionBatch message.
 */
#ifndef MM_CORE_SAMPLES_H
#define MM_CORE_SAMPLES_H

#ifndef __cplusplus
#include <stdatomic.h>
#endif
#include <stdbool.h>
#include <stdint.h>

#include "mm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** TransitionBatch.FLAG_* */
enum {
    MM_SAMPLE_EPISODE_START = 1,  /**< first sample after a new target, reset or mode change */
    MM_SAMPLE_FAULT = 2,          /**< a fault was active on this tick */
    MM_SAMPLE_POLICY = 4,         /**< the action came from the active policy */
    MM_SAMPLE_GUARD = 8,          /**< the guard drove this tick: the policy's action was not applied (contract
                                       section 4) */
};

/** One control tick. */
typedef struct {
    uint32_t tick;
    float observation[MM_OBS_DIM];
    float action;                 /**< normalised current command applied, [-1, 1] */
    float position_rad;
    float velocity_rad_s;
    float current_a;
    float target_rad;
    float power_w;                /**< electrical power drawn from the bus (W) */
    uint8_t flags;                /**< MM_SAMPLE_* */
} mm_sample_t;

/** A batch of consecutive ticks, laid out as the columns of TransitionBatch. */
typedef struct {
    uint32_t first_tick;
    float dt_s;
    uint32_t policy_crc32;
    uint32_t dropped_samples;
    uint8_t count;
    float observations[MM_BATCH_MAX_SAMPLES * MM_OBS_DIM];
    float actions[MM_BATCH_MAX_SAMPLES];
    float position_rad[MM_BATCH_MAX_SAMPLES];
    float velocity_rad_s[MM_BATCH_MAX_SAMPLES];
    float current_a[MM_BATCH_MAX_SAMPLES];
    float target_rad[MM_BATCH_MAX_SAMPLES];
    float power_w[MM_BATCH_MAX_SAMPLES];
    uint8_t flags[MM_BATCH_MAX_SAMPLES];
} mm_batch_t;

/** An index of the ring: atomic in C. C++ (gnu++17 has no <stdatomic.h>) sees a plain integer of the same size and
 *  alignment (mm_samples.c checks it), so the layout matches; C++ code must use the functions below only. */
#ifdef __cplusplus
typedef uint_fast32_t mm_ring_index_t;
#else
typedef atomic_uint_fast32_t mm_ring_index_t;
#endif

/** The ring; head is written only by the producer, tail only by the consumer. */
typedef struct {
    mm_ring_index_t head;
    mm_ring_index_t tail;
    mm_ring_index_t dropped;
    mm_sample_t slots[MM_SAMPLE_CAPACITY];
} mm_sample_ring_t;

void mm_samples_init(mm_sample_ring_t *ring);

/** Producer: append one sample; when full the new sample is dropped and counted (the queued ones stay). */
bool mm_samples_push(mm_sample_ring_t *ring, const mm_sample_t *sample);

/** Samples waiting. */
uint32_t mm_samples_available(const mm_sample_ring_t *ring);

/** Samples lost because the ring was full, since init. */
uint32_t mm_samples_dropped(const mm_sample_ring_t *ring);

/**
 * Consumer: move up to max (<= MM_BATCH_MAX_SAMPLES) queued samples of consecutive ticks into batch (a batch
 * ends early at a gap in the tick sequence, so sample i+1 is always the tick after sample i). Fills first_tick,
 * count, the columns and dropped_samples; returns count.
 */
uint8_t mm_samples_pop_batch(mm_sample_ring_t *ring, mm_batch_t *batch, uint8_t max);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_SAMPLES_H */
