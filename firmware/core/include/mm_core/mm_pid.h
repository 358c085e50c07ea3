/**
 * @file mm_pid.h
 * @brief The cascaded position/velocity PID of servo contract section 8 (same law as mm_sim.baselines).
 */
#ifndef MM_CORE_PID_H
#define MM_CORE_PID_H

#ifdef __cplusplus
extern "C" {
#endif

/** Gains; the names travel in ServoCommand. */
typedef struct {
    float kp_pos;        /**< outer position gain (1/s) */
    float v_max;         /**< velocity command limit (rad/s) */
    float kp_vel;        /**< inner velocity proportional gain (A s/rad) */
    float ki_vel;        /**< inner velocity integral gain (A/rad) */
    float gravity_ff_a;  /**< gravity feed-forward (A), times sin(position) */
} mm_pid_gains_t;

/** Controller state. */
typedef struct {
    float integrator_a;  /**< I (A) */
} mm_pid_t;

/** Clear the integrator (on entering POSITION or HOLD). */
void mm_pid_reset(mm_pid_t *pid);

/**
 * One tick of the cascaded PID; returns the current command (A) within +-current_limit_a.
 * The output uses the integrator as it was before this tick; the integrator is then updated unless the
 * unclamped output is saturated and the velocity error pushes further into the saturation (anti-windup).
 */
float mm_pid_step(mm_pid_t *pid, const mm_pid_gains_t *gains, float current_limit_a, float dt_s,
                  float position_rad, float velocity_rad_s, float target_rad, float target_velocity_rad_s);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_PID_H */
