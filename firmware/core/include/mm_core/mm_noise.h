/**
 * @file mm_noise.h
 * @brief Exploration noise of POLICY mode (docs/servo-contract.md section 4): a small deterministic PRNG (PCG32),
 *        standard normal draws by Box-Muller, and the AR(1) / Ornstein-Uhlenbeck process built on them.
 *
 * No libc rand(): the sequence depends only on the seed, so a run is reproducible on the host and the servo.
 */
#ifndef MM_CORE_NOISE_H
#define MM_CORE_NOISE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** PCG32 state (pcg-basic) plus the second Box-Muller draw, kept for the next call. */
typedef struct {
    uint64_t state;
    uint64_t inc;
    float spare;                  /**< cached standard normal draw */
    bool has_spare;
} mm_rng_t;

/** The exploration noise: its PRNG and the process value n (normalised action units). */
typedef struct {
    mm_rng_t rng;
    float value;                  /**< n_k; 0 after reset */
} mm_noise_t;

/** Seed the generator and set n = 0; the same seed gives the same sequence. */
void mm_noise_init(mm_noise_t *noise, uint32_t seed);

/** n = 0 (a new episode); the generator carries on. */
void mm_noise_reset(mm_noise_t *noise);

/** One standard normal draw, N(0, 1). */
float mm_rng_normal(mm_rng_t *rng);

/**
 * One update of the process, n_k = a n_{k-1} + sqrt(1 - a^2) std eps_k with a = exp(-dt_s / tau_s) (a = 0 when
 * tau_s = 0: white noise) and eps_k ~ N(0, 1); returns n_k. std in [0, 1], tau_s >= 0 (s), dt_s > 0 the period
 * between updates (s).
 */
float mm_noise_step(mm_noise_t *noise, float std, float tau_s, float dt_s);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_NOISE_H */
