#include "mm_core/mm_pid.h"

#include <math.h>
#include <stdbool.h>

bool mm_pid_gains_valid(const mm_pid_gains_t *g)
{
    const float v[6] = {g->kp_pos, g->v_max, g->kp_vel, g->ki_vel, g->gravity_ff_a, g->decel_rad_s2};
    for (unsigned i = 0; i < 6u; ++i) {
        if (!isfinite(v[i]) || v[i] < 0.0f) {
            return false;
        }
    }
    /* PTOS needs a linear zone near the target: its width decel / (2 kp_pos^2) is undefined at kp_pos = 0. */
    return !(g->decel_rad_s2 > 0.0f) || g->kp_pos > 0.0f;
}

void mm_pid_reset(mm_pid_t *pid)
{
    pid->integrator_a = 0.0f;
}

static float clampf(float x, float lo, float hi)
{
    return fminf(fmaxf(x, lo), hi);
}

/* Same float32 operations, in the same order, as mm_sim.baselines.position_loop (parity test). */
float mm_pid_position_loop(float error_rad, float kp_pos, float decel_rad_s2)
{
    const float magnitude = fabsf(error_rad);
    if (decel_rad_s2 <= 0.0f || magnitude <= decel_rad_s2 / (2.0f * kp_pos * kp_pos)) {
        return kp_pos * error_rad;
    }
    const float demand = sqrtf(2.0f * decel_rad_s2 * magnitude) - decel_rad_s2 / (2.0f * kp_pos);
    return error_rad > 0.0f ? demand : -demand;
}

/* Same float32 operations, in the same order, as mm_sim.baselines.braking_error (parity test). */
float mm_pid_braking_error(float error_rad, float position_rad, float target_rad, float gravity_share)
{
    const float gravity = gravity_share * (cosf(position_rad) - cosf(target_rad));
    const float magnitude = fmaxf(fabsf(error_rad) + gravity, 0.0f);
    return error_rad > 0.0f ? magnitude : -magnitude;
}

float mm_pid_step(mm_pid_t *pid, const mm_pid_gains_t *gains, float current_limit_a, float dt_s,
                  float position_rad, float velocity_rad_s, float target_rad, float target_velocity_rad_s)
{
    float error_rad = target_rad - position_rad;
    if (gains->decel_rad_s2 > 0.0f && gains->gravity_ff_a > 0.0f) {
        /* PTOS brakes over the distance corrected for the work gravity does on the way (contract section 8). */
        error_rad = mm_pid_braking_error(error_rad, position_rad, target_rad, gains->gravity_ff_a / current_limit_a);
    }
    const float demand = mm_pid_position_loop(error_rad, gains->kp_pos, gains->decel_rad_s2);
    const float v_cmd = clampf(demand + target_velocity_rad_s, -gains->v_max, gains->v_max);
    const float v_error = v_cmd - velocity_rad_s;
    const float unclamped = gains->kp_vel * v_error + pid->integrator_a + gains->gravity_ff_a * sinf(position_rad);
    const float output = clampf(unclamped, -current_limit_a, current_limit_a);
    /* Conditional integration: winding up further into a saturated output only delays recovery. */
    const bool pushing_into_limit = fabsf(unclamped) > current_limit_a && ((v_error > 0.0f) == (unclamped > 0.0f));
    if (!pushing_into_limit) {
        pid->integrator_a = pid->integrator_a + gains->ki_vel * v_error * dt_s;
    }
    return output;
}
