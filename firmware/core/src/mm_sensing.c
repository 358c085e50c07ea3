#include "mm_core/mm_sensing.h"

#include <math.h>

#define MM_TWO_PI_F 6.28318530717958647692f
#define MM_HALF_TURN_COUNTS ((int32_t)(MM_ENCODER_COUNTS / 2u))

void mm_encoder_reset(mm_encoder_t *enc)
{
    enc->turns = 0;
    enc->last_count = 0;
    enc->started = false;
}

float mm_encoder_update(mm_encoder_t *enc, uint16_t count)
{
    count = (uint16_t)(count & (MM_ENCODER_COUNTS - 1u));
    if (enc->started) {
        const int32_t delta = (int32_t)count - (int32_t)enc->last_count;
        if (delta > MM_HALF_TURN_COUNTS) {
            enc->turns -= 1;
        } else if (delta < -MM_HALF_TURN_COUNTS) {
            enc->turns += 1;
        }
    }
    enc->last_count = count;
    enc->started = true;
    return (float)enc->turns * MM_TWO_PI_F + (float)count * (MM_TWO_PI_F / (float)MM_ENCODER_COUNTS);
}

uint16_t mm_encoder_calibrate(uint16_t raw_count, uint16_t zero_offset_counts)
{
    /* Unsigned wrap-around then the 14-bit mask: the modulo for any offset, without a branch. */
    return (uint16_t)((uint32_t)(raw_count - zero_offset_counts) & (MM_ENCODER_COUNTS - 1u));
}

void mm_velocity_filter_reset(mm_velocity_filter_t *filter)
{
    filter->velocity_rad_s = 0.0f;
    filter->last_position_rad = 0.0f;
    filter->started = false;
}

float mm_velocity_filter_update(mm_velocity_filter_t *filter, float position_rad, float dt_s, float tau_s)
{
    if (!filter->started) {
        filter->last_position_rad = position_rad;
        filter->velocity_rad_s = 0.0f;
        filter->started = true;
    }
    const float v_raw = (position_rad - filter->last_position_rad) / dt_s;
    const float alpha = dt_s / (tau_s + dt_s);
    filter->velocity_rad_s = filter->velocity_rad_s + alpha * (v_raw - filter->velocity_rad_s);
    filter->last_position_rad = position_rad;
    return filter->velocity_rad_s;
}

float mm_clip_unit(float x)
{
    if (!(x == x)) {
        return 0.0f;
    }
    return fminf(fmaxf(x, -1.0f), 1.0f);
}

void mm_observation_build(const mm_obs_params_t *params, float position_rad, float velocity_rad_s,
                          float current_a, float target_rad, float target_velocity_rad_s, float prev_action,
                          float obs[MM_OBS_DIM])
{
    const float error_rad = target_rad - position_rad;
    obs[MM_OBS_COARSE_ERROR] = mm_clip_unit(error_rad / params->pos_scale_rad);
    obs[MM_OBS_FINE_ERROR] = mm_clip_unit(error_rad * params->fine_gain_per_rad);
    obs[MM_OBS_VELOCITY] = mm_clip_unit(velocity_rad_s / params->vel_scale_rad_s);
    obs[MM_OBS_SIN_POSITION] = sinf(position_rad);
    obs[MM_OBS_COS_POSITION] = cosf(position_rad);
    obs[MM_OBS_REF_VELOCITY] = mm_clip_unit(target_velocity_rad_s / params->vel_scale_rad_s);
    obs[MM_OBS_PREV_ACTION] = mm_clip_unit(prev_action);
    obs[MM_OBS_CURRENT] = mm_clip_unit(current_a / params->current_limit_a);
}

static bool positive_finite(float x)
{
    return isfinite(x) && x > 0.0f;
}

bool mm_obs_params_valid(const mm_obs_params_t *params)
{
    return positive_finite(params->pos_scale_rad) && positive_finite(params->vel_scale_rad_s) &&
           positive_finite(params->fine_gain_per_rad) && positive_finite(params->current_limit_a) &&
           isfinite(params->velocity_filter_tau_s) && params->velocity_filter_tau_s >= 0.0f;
}
