#include "mm_core/mm_pid.h"

#include <math.h>
#include <stdbool.h>

void mm_pid_reset(mm_pid_t *pid)
{
    pid->integrator_a = 0.0f;
}

static float clampf(float x, float lo, float hi)
{
    return fminf(fmaxf(x, lo), hi);
}

float mm_pid_step(mm_pid_t *pid, const mm_pid_gains_t *gains, float current_limit_a, float dt_s,
                  float position_rad, float velocity_rad_s, float target_rad, float target_velocity_rad_s)
{
    const float error_rad = target_rad - position_rad;
    const float v_cmd = clampf(gains->kp_pos * error_rad + target_velocity_rad_s, -gains->v_max, gains->v_max);
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
