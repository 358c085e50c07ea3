/**
 * @file mm_sensing.h
 * @brief Encoder unwrapping, the velocity filter and the 8-feature observation (servo contract sections 2-3).
 *
 * All arithmetic is float32 in the contract's order, so the Python twin (mm_contract.observation) computes the same
 * numbers; firmware/core/test/test_observation_parity.py compares them.
 */
#ifndef MM_CORE_SENSING_H
#define MM_CORE_SENSING_H

#include <stdbool.h>
#include <stdint.h>

#include "mm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Multi-turn position from a 14-bit absolute encoder. */
typedef struct {
    int32_t turns;          /**< whole output turns since the first reading */
    uint16_t last_count;    /**< previous count, 0..16383 */
    bool started;           /**< false until the first count arrived */
} mm_encoder_t;

/** First-order low-pass velocity estimate: v_k = v_{k-1} + alpha (v_raw - v_{k-1}), alpha = dt / (tau + dt). */
typedef struct {
    float velocity_rad_s;   /**< current estimate v_k (rad/s) */
    float last_position_rad;/**< theta_{k-1} (rad) */
    bool started;           /**< false until the first position: theta_{-1} = theta_0, v_0 = 0 */
} mm_velocity_filter_t;

/** The scales the observation needs; they travel in the policy image (contract section 5). */
typedef struct {
    float pos_scale_rad;          /**< coarse error scale (rad) */
    float vel_scale_rad_s;        /**< velocity scale (rad/s) */
    float fine_gain_per_rad;      /**< fine error gain (1/rad) */
    float current_limit_a;        /**< current scale and action scale (A) */
    float velocity_filter_tau_s;  /**< velocity filter time constant (s) */
} mm_obs_params_t;

/** Indices of the observation features (contract section 3). */
enum {
    MM_OBS_COARSE_ERROR = 0,
    MM_OBS_FINE_ERROR = 1,
    MM_OBS_VELOCITY = 2,
    MM_OBS_SIN_POSITION = 3,
    MM_OBS_COS_POSITION = 4,
    MM_OBS_REF_VELOCITY = 5,
    MM_OBS_PREV_ACTION = 6,
    MM_OBS_CURRENT = 7,
};

/** Forget the history; the next count defines turn 0. */
void mm_encoder_reset(mm_encoder_t *enc);

/**
 * Unwrap one 14-bit count (0..16383) into a multi-turn position (rad):
 * turns * 2 pi + count * 2 pi / 16384. A jump of more than half a turn between ticks counts as a wrap.
 */
float mm_encoder_update(mm_encoder_t *enc, uint16_t count);

/**
 * A raw 14-bit count in the calibrated frame: (raw - zero_offset_counts) mod 16384, so count 0 is the load hanging
 * straight down (contract section 2). Applied before mm_encoder_update().
 */
uint16_t mm_encoder_calibrate(uint16_t raw_count, uint16_t zero_offset_counts);

/** Forget the history; the next update sets theta_{-1} = theta_0 and v = 0. */
void mm_velocity_filter_reset(mm_velocity_filter_t *filter);

/** Feed the position of this tick (rad) with period dt_s (s) and time constant tau_s (s); returns v_k (rad/s). */
float mm_velocity_filter_update(mm_velocity_filter_t *filter, float position_rad, float dt_s, float tau_s);

/** clip(x) to [-1, 1]; NaN maps to 0 so a bad input can never saturate an actuator command. */
float mm_clip_unit(float x);

/**
 * Build the observation of contract section 3.
 * @param params scales
 * @param position_rad measured unwrapped position (rad)
 * @param velocity_rad_s filtered velocity estimate (rad/s)
 * @param current_a measured current (A)
 * @param target_rad position target (rad)
 * @param target_velocity_rad_s reference velocity (rad/s), 0 for step moves
 * @param prev_action previous action a_{k-1} (clipped here)
 * @param obs output, MM_OBS_DIM floats, each in [-1, 1]
 */
void mm_observation_build(const mm_obs_params_t *params, float position_rad, float velocity_rad_s,
                          float current_a, float target_rad, float target_velocity_rad_s, float prev_action,
                          float obs[MM_OBS_DIM]);

/** True when every scale is finite and > 0 (tau may be 0: no filtering). */
bool mm_obs_params_valid(const mm_obs_params_t *params);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_SENSING_H */
