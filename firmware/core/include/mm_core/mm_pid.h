/**
 * @file mm_pid.h
 * @brief The cascaded position/velocity PID of servo contract section 8, with the PTOS position loop when
 *        decel_rad_s2 > 0, its braking distance corrected for gravity (same law as mm_sim.baselines).
 */
#ifndef MM_CORE_PID_H
#define MM_CORE_PID_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Gains; the first five names travel in ServoCommand (decel_rad_s2 comes from the config or a policy image). */
typedef struct {
    float kp_pos;        /**< outer position gain (1/s) */
    float v_max;         /**< velocity command limit (rad/s) */
    float kp_vel;        /**< inner velocity proportional gain (A s/rad) */
    float ki_vel;        /**< inner velocity integral gain (A/rad) */
    float gravity_ff_a;  /**< gravity feed-forward (A), times sin(position) */
    float decel_rad_s2;  /**< deceleration the position loop plans with (rad/s^2); 0: the linear loop kp_pos * e,
                              > 0: PTOS (braking curve far from the target, kp_pos * e near it; needs kp_pos > 0) */
} mm_pid_gains_t;

/** Controller state. */
typedef struct {
    float integrator_a;  /**< I (A) */
} mm_pid_t;

/** The gains rule of contract section 8: every gain finite and >= 0, and kp_pos > 0 when decel_rad_s2 > 0.
 *  Everything that lets gains into the core (config, commands, tuning, policy images) checks it. */
bool mm_pid_gains_valid(const mm_pid_gains_t *gains);

/** Clear the integrator (on entering POSITION or HOLD). */
void mm_pid_reset(mm_pid_t *pid);

/**
 * The outer loop's velocity demand (rad/s) for a position error (rad), before v_ref and the v_max clamp:
 * kp_pos * e when decel_rad_s2 = 0; PTOS otherwise: kp_pos * e within decel / (2 kp_pos^2) of the target, beyond
 * it sign(e) * (sqrt(2 decel |e|) - decel / (2 kp_pos)).
 */
float mm_pid_position_loop(float error_rad, float kp_pos, float decel_rad_s2);

/**
 * The error PTOS brakes over (rad): |e| + gravity_share * (cos(position) - cos(target)), at least 0, with the sign
 * of e; gravity_share = gravity_ff_a / current_limit_a. The correction is the integral of the feed-forward's sin over
 * the path in units of the current limit: gravity that helps braking lengthens the braking distance, gravity that
 * hurts shortens it, so one deceleration fits every angle of a pendulum. mm_pid_step applies it when
 * decel_rad_s2 > 0 and gravity_ff_a > 0, before mm_pid_position_loop.
 */
float mm_pid_braking_error(float error_rad, float position_rad, float target_rad, float gravity_share);

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
