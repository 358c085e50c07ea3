#include "mm_core/mm_noise.h"

#include <math.h>

/* PCG32 (M. E. O'Neill, pcg-basic: XSH RR output, 64-bit LCG state), on one fixed stream. */
#define PCG_MULTIPLIER 6364136223846793005ull
#define PCG_STREAM 0xda3e39cb94b95bdbull

static uint32_t rng_next(mm_rng_t *rng)
{
    const uint64_t old = rng->state;
    rng->state = old * PCG_MULTIPLIER + rng->inc;
    const uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    const uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((0u - rot) & 31u));
}

void mm_noise_init(mm_noise_t *noise, uint32_t seed)
{
    mm_rng_t *rng = &noise->rng;
    rng->state = 0u;
    rng->inc = (PCG_STREAM << 1u) | 1u;
    (void)rng_next(rng);
    rng->state += seed;
    (void)rng_next(rng);
    rng->has_spare = false;
    rng->spare = 0.0f;
    noise->value = 0.0f;
}

void mm_noise_reset(mm_noise_t *noise)
{
    noise->value = 0.0f;
}

float mm_rng_normal(mm_rng_t *rng)
{
    if (rng->has_spare) {
        rng->has_spare = false;
        return rng->spare;
    }
    /* 24-bit uniforms: u1 in (0, 1] keeps the logarithm finite, u2 in [0, 1). */
    const float step = 1.0f / 16777216.0f;
    const float u1 = (float)((rng_next(rng) >> 8u) + 1u) * step;
    const float u2 = (float)(rng_next(rng) >> 8u) * step;
    const float r = sqrtf(-2.0f * logf(u1));
    const float theta = 6.28318530718f * u2;
    rng->spare = r * sinf(theta);
    rng->has_spare = true;
    return r * cosf(theta);
}

float mm_noise_step(mm_noise_t *noise, float std, float tau_s, float dt_s)
{
    const float a = tau_s > 0.0f ? expf(-dt_s / tau_s) : 0.0f;
    noise->value = a * noise->value + sqrtf(1.0f - a * a) * std * mm_rng_normal(&noise->rng);
    return noise->value;
}
