/* Modes, limits, faults (latch and clear), watchdog, sensing and samples of mm_core_step. */
#include <math.h>
#include <string.h>

#include "test_support.h"

static const float DT = 0.001f;

static mm_config_t base_config(void)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f; /* tests of the watchdog enable it themselves */
    return cfg;
}

static mm_actuator_t step(mm_core_t *core, mm_sensors_t s)
{
    mm_actuator_t out;
    mm_core_step(core, &s, DT, &out);
    return out;
}

static mm_status_t command(mm_core_t *core, uint8_t mode, float target)
{
    const mm_command_t cmd = {.mode = mode, .target = target};
    return mm_core_command(core, &cmd);
}

static void idle_coasts_and_brake_brakes(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    mm_actuator_t out = step(core, test_sensors(100));
    assert_false(out.driver_enable);
    assert_false(out.brake_on);
    assert_true(out.current_cmd_a == 0.0f);
    assert_int_equal(command(core, MM_MODE_BRAKE, 0.0f), MM_OK);
    out = step(core, test_sensors(100));
    assert_false(out.driver_enable);
    assert_true(out.brake_on);
}

static void torque_is_clamped_to_the_limits(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.5f), MM_OK);
    mm_actuator_t out = step(core, test_sensors(0));
    assert_true(out.driver_enable);
    assert_float_equal(out.current_cmd_a, 1.5f, 1e-6);
    assert_int_equal(command(core, MM_MODE_TORQUE, -9.0f), MM_OK);
    assert_float_equal(step(core, test_sensors(0)).current_cmd_a, -cfg.current_limit_a, 1e-6);
    const mm_command_t limited = {.mode = MM_MODE_TORQUE, .target = 3.0f, .current_limit_a = 2.0f};
    assert_int_equal(mm_core_command(core, &limited), MM_OK);
    assert_float_equal(step(core, test_sensors(0)).current_cmd_a, 2.0f, 1e-6);
}

static void temperature_derates_then_trips(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 4.0f), MM_OK);
    mm_sensors_t s = test_sensors(0);
    s.temperature_c = 90.0f; /* halfway between 80 and 100 */
    assert_float_equal(step(core, s).current_cmd_a, 2.0f, 1e-5);
    assert_int_equal(test_state(core).fault_flags, 0);
    s.temperature_c = 100.0f;
    mm_actuator_t out = step(core, s);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_OVERTEMPERATURE);
    assert_false(out.driver_enable);
    assert_true(out.brake_on);
}

static void position_mode_runs_the_contract_pid(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    step(core, test_sensors(0));
    assert_int_equal(command(core, MM_MODE_POSITION, 0.5f), MM_OK);
    mm_pid_t ref = {0.0f};
    for (int k = 0; k < 5; ++k) {
        const float expected = mm_pid_step(&ref, &cfg.gains, cfg.current_limit_a, DT, 0.0f, 0.0f, 0.5f, 0.0f);
        assert_float_equal(step(core, test_sensors(0)).current_cmd_a, expected, 1e-7);
    }
}

/* PTOS (decel_rad_s2 > 0): kp_pos * e inside e_lin = decel / (2 kp_pos^2), the shifted braking curve beyond,
 * continuous at e_lin; POSITION mode runs it when the config sets decel. */
static void ptos_position_loop_and_position_mode(void **state)
{
    (void)state;
    const float kp = 10.0f;
    const float decel = 40.0f; /* e_lin = 0.2 rad */
    assert_true(mm_pid_position_loop(0.1f, kp, decel) == kp * 0.1f);
    assert_true(mm_pid_position_loop(-0.1f, kp, decel) == -(kp * 0.1f));
    const float far = sqrtf(2.0f * decel * 1.0f) - decel / (2.0f * kp);
    assert_true(mm_pid_position_loop(1.0f, kp, decel) == far);
    assert_true(mm_pid_position_loop(-1.0f, kp, decel) == -far);
    assert_float_equal(mm_pid_position_loop(0.2001f, kp, decel), kp * 0.2001f, 1e-3);
    assert_true(mm_pid_position_loop(1.0f, kp, 0.0f) == kp);

    mm_config_t cfg = base_config();
    cfg.gains.decel_rad_s2 = 30.0f;
    mm_core_t *core = test_core(&cfg);
    step(core, test_sensors(0));
    assert_int_equal(command(core, MM_MODE_POSITION, 2.0f), MM_OK);
    mm_pid_t ref = {0.0f};
    for (int k = 0; k < 5; ++k) {
        const float expected = mm_pid_step(&ref, &cfg.gains, cfg.current_limit_a, DT, 0.0f, 0.0f, 2.0f, 0.0f);
        assert_true(step(core, test_sensors(0)).current_cmd_a == expected);
    }
    mm_tuning_t tuning;
    mm_core_get_tuning(core, &tuning);
    assert_true(tuning.gains.decel_rad_s2 == 30.0f);
}

/* PTOS with a gravity feed-forward brakes over |e| + (ff / limit) (cos(position) - cos(target)): longer when moving
 * up (gravity helps braking), shorter when moving down, |e| without feed-forward; mm_pid_step applies it. */
static void ptos_braking_distance_is_corrected_for_gravity(void **state)
{
    (void)state;
    const float share = 0.3f;
    const float up = mm_pid_braking_error(1.0f, 0.0f, 1.0f, share);
    assert_true(up == fmaxf(fabsf(1.0f) + share * (cosf(0.0f) - cosf(1.0f)), 0.0f));
    assert_true(up > 1.1f);
    const float down = mm_pid_braking_error(-1.0f, 1.0f, 0.0f, share);
    assert_true(down == -(1.0f + share * (cosf(1.0f) - cosf(0.0f))));
    assert_true(down > -0.9f && down < 0.0f);
    assert_true(mm_pid_braking_error(0.7f, 0.2f, 0.9f, 0.0f) == 0.7f);
    /* a feed-forward beyond the current limit (share > 1) cannot make the distance negative */
    assert_true(mm_pid_braking_error(-1.0f, 1.0f, 0.0f, 3.0f) == -0.0f);

    const mm_pid_gains_t gains = {.kp_pos = 10.0f, .v_max = 50.0f, .kp_vel = 0.2f, .ki_vel = 0.0f,
                                  .gravity_ff_a = 0.6f, .decel_rad_s2 = 40.0f};
    const float limit = 2.0f;
    mm_pid_t pid = {0.0f};
    const float demand = mm_pid_position_loop(mm_pid_braking_error(1.0f, 0.0f, 1.0f, 0.6f / limit), 10.0f, 40.0f);
    assert_true(mm_pid_step(&pid, &gains, limit, DT, 0.0f, 0.0f, 1.0f, 0.0f) == 0.2f * demand);
    mm_pid_gains_t pid_gains = gains;
    pid_gains.decel_rad_s2 = 0.0f; /* the linear loop has no braking distance: kp_pos * e */
    assert_true(mm_pid_step(&pid, &pid_gains, limit, DT, 0.0f, 0.0f, 0.5f, 0.0f) == 0.2f * (10.0f * 0.5f));
}

/* The gains rule (finite, >= 0, kp_pos > 0 under PTOS) wherever gains enter; a refused call changes nothing. */
static void bad_gains_are_refused_everywhere(void **state)
{
    (void)state;
    mm_config_t good = base_config();
    good.gains.decel_rad_s2 = 30.0f;
    mm_core_t *core = test_core(&good);
    /* config */
    const float bad_decel[] = {-1.0f, NAN, INFINITY};
    for (unsigned i = 0; i < 3u; ++i) {
        mm_config_t cfg = good;
        cfg.gains.decel_rad_s2 = bad_decel[i];
        assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
    }
    mm_config_t no_kp = good;
    no_kp.gains.kp_pos = 0.0f;
    assert_int_equal(mm_core_init(core, &no_kp), MM_ERR_ARGUMENT);
    no_kp.gains.decel_rad_s2 = 0.0f; /* the linear loop may have kp_pos 0 */
    assert_int_equal(mm_core_init(core, &no_kp), MM_OK);

    /* tuning (what the CAN registers write) */
    core = test_core(&good);
    mm_tuning_t before;
    mm_core_get_tuning(core, &before);
    for (unsigned i = 0; i < 3u; ++i) {
        mm_tuning_t t = before;
        t.gains.decel_rad_s2 = bad_decel[i];
        assert_int_equal(mm_core_set_tuning(core, &t), MM_ERR_ARGUMENT);
    }
    mm_tuning_t t = before;
    t.gains.kp_pos = 0.0f;
    assert_int_equal(mm_core_set_tuning(core, &t), MM_ERR_ARGUMENT);
    mm_tuning_t after;
    mm_core_get_tuning(core, &after);
    assert_memory_equal(&before, &after, sizeof before);

    /* commands: kp_pos 0 with other gains would leave PTOS without its linear zone */
    const mm_command_t cmd = {.mode = MM_MODE_POSITION, .target = 1.0f, .kp_pos = 0.0f, .kp_vel = 0.3f};
    assert_int_equal(mm_core_command(core, &cmd), MM_ERR_ARGUMENT);
    mm_core_get_tuning(core, &after);
    assert_memory_equal(&before, &after, sizeof before);
    assert_int_equal(test_state(core).mode, MM_MODE_IDLE);
    /* a command's gains keep the configured decel */
    const mm_command_t ok = {.mode = MM_MODE_POSITION, .target = 1.0f, .kp_pos = 5.0f, .kp_vel = 0.3f};
    assert_int_equal(mm_core_command(core, &ok), MM_OK);
    mm_core_get_tuning(core, &after);
    assert_true(after.gains.kp_pos == 5.0f && after.gains.decel_rad_s2 == 30.0f);
}

static void pid_antiwindup_stops_integrating_into_saturation(void **state)
{
    (void)state;
    const mm_pid_gains_t g = {.kp_pos = 100.0f, .v_max = 50.0f, .kp_vel = 1.0f, .ki_vel = 10.0f, .gravity_ff_a = 0.0f};
    mm_pid_t pid = {0.0f};
    for (int k = 0; k < 100; ++k) {
        assert_float_equal(mm_pid_step(&pid, &g, 2.0f, DT, 0.0f, 0.0f, 10.0f, 0.0f), 2.0f, 1e-6);
    }
    assert_true(pid.integrator_a == 0.0f);
    /* Not saturated: integrates ki * error * dt per tick. */
    mm_pid_reset(&pid);
    mm_pid_step(&pid, &g, 100.0f, DT, 0.0f, 0.0f, 0.01f, 0.0f);
    assert_float_equal(pid.integrator_a, 10.0f * 1.0f * DT, 1e-7);
}

static void hold_keeps_the_position_at_entry(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    step(core, test_sensors(4096)); /* a quarter turn */
    assert_int_equal(command(core, MM_MODE_HOLD, 0.0f), MM_OK);
    assert_float_equal(step(core, test_sensors(4096)).current_cmd_a, 0.0f, 1e-6);
    mm_state_t s;
    mm_core_get_state(core, &s);
    assert_float_equal(s.target_rad, 1.5707964f, 1e-6);
    /* Pushed forward: the PID pulls back (negative current). */
    assert_true(step(core, test_sensors(4200)).current_cmd_a < 0.0f);
}

static void encoder_unwraps_turns_and_faults_on_error(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    const uint16_t counts[] = {16000, 16383, 100, 5000, 10000, 15000, 16380, 200};
    for (unsigned i = 0; i < sizeof counts / sizeof counts[0]; ++i) {
        step(core, test_sensors(counts[i]));
    }
    mm_state_t s;
    mm_core_get_state(core, &s);
    assert_float_equal(s.position_rad, 2.0f * 6.2831853f + 200.0f * 6.2831853f / 16384.0f, 1e-4);
    mm_sensors_t bad = test_sensors(300);
    bad.encoder_ok = false;
    assert_true(step(core, bad).brake_on);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_ENCODER);
    mm_core_get_state(core, &s);
    assert_float_equal(s.position_rad, 2.0f * 6.2831853f + 200.0f * 6.2831853f / 16384.0f, 1e-4);
}

/* The load hanging straight down reads raw count `offset` (magnet glued anywhere): with zero_offset_counts = offset
 * that is position 0, the magnet's own wrap is no turn, and the gravity feed-forward sees the calibrated angle. */
static void zero_offset_makes_the_hanging_load_position_zero(void **state)
{
    (void)state;
    const uint16_t offset = 12000u;
    mm_config_t cfg = base_config();
    cfg.zero_offset_counts = offset;
    cfg.gains = (mm_pid_gains_t){.kp_pos = 0.0f, .v_max = 10.0f, .kp_vel = 0.0f, .ki_vel = 0.0f, .gravity_ff_a = 1.0f};
    mm_core_t *core = test_core(&cfg);
    step(core, test_sensors(offset));
    assert_true(test_state(core).position_rad == 0.0f);
    /* A quarter turn up passes the magnet's raw wrap (16383 -> 0) without a turn jump: 12000 + 4096 = 16096,
     * then 12000 + 4500 wraps to 116. */
    step(core, test_sensors(16096u));
    assert_float_equal(test_state(core).position_rad, 1.5707964f, 1e-6);
    step(core, test_sensors(116u));
    assert_float_equal(test_state(core).position_rad, 4500.0f * 6.2831853f / 16384.0f, 1e-5);
    /* Horizontal (a quarter turn from hanging): the feed-forward is gravity_ff * sin(pi/2) = 1 A. */
    step(core, test_sensors(16096u));
    assert_int_equal(command(core, MM_MODE_POSITION, 1.5707964f), MM_OK);
    assert_float_equal(step(core, test_sensors(16096u)).current_cmd_a, 1.0f, 1e-6);
    /* Hanging: no feed-forward. */
    assert_float_equal(step(core, test_sensors(offset)).current_cmd_a, 0.0f, 1e-6);
    cfg.zero_offset_counts = MM_ENCODER_COUNTS;
    assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
}

static void zero_offset_is_recalibrated_only_when_stopped(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    for (uint16_t c = 0u; c < 16384u * 2u - 1u; c = (uint16_t)(c + 1000u)) {
        step(core, test_sensors((uint16_t)(c & 16383u))); /* up to 15616 in the second turn */
    }
    step(core, test_sensors(3000u)); /* third turn */
    assert_float_equal(test_state(core).position_rad, 2.0f * 6.2831853f + 3000.0f * 6.2831853f / 16384.0f, 1e-4);
    assert_int_equal(mm_core_raw_encoder_count(core), 3000u);
    assert_int_equal(command(core, MM_MODE_HOLD, 0.0f), MM_OK);
    assert_int_equal(mm_core_set_zero_offset(core, 3000u), MM_ERR_STATE);
    assert_int_equal(command(core, MM_MODE_IDLE, 0.0f), MM_OK);
    assert_int_equal(mm_core_set_zero_offset(core, MM_ENCODER_COUNTS), MM_ERR_ARGUMENT);
    assert_int_equal(mm_core_set_zero_offset(core, 3000u), MM_OK);
    assert_int_equal(mm_core_config(core)->zero_offset_counts, 3000u);
    /* The new frame starts at turn 0 and the jump is no velocity. */
    step(core, test_sensors(3000u));
    assert_true(test_state(core).position_rad == 0.0f);
    assert_true(test_state(core).velocity_rad_s == 0.0f);
}

static void velocity_filter_follows_the_contract(void **state)
{
    (void)state;
    mm_velocity_filter_t f;
    mm_velocity_filter_reset(&f);
    assert_true(mm_velocity_filter_update(&f, 1.0f, DT, 0.004f) == 0.0f);
    const float alpha = DT / (0.004f + DT);
    const float v1 = mm_velocity_filter_update(&f, 1.001f, DT, 0.004f);
    assert_float_equal(v1, alpha * (0.001f / DT), 1e-4);
}

static void faults_latch_until_cleared_when_the_cause_is_gone(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    cfg.undervoltage_v = 10.0f;
    cfg.overvoltage_v = 60.0f;
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_OK);
    mm_sensors_t s = test_sensors(0);
    s.current_a = 7.0f;
    s.bus_voltage_v = 8.0f;
    mm_actuator_t out = step(core, s);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_OVERCURRENT | MM_FAULT_UNDERVOLTAGE);
    assert_false(out.driver_enable);
    assert_int_equal(test_state(core).mode, MM_MODE_BRAKE);
    /* Latched: still there with good readings, and active modes are refused. */
    s = test_sensors(0);
    step(core, s);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_OVERCURRENT | MM_FAULT_UNDERVOLTAGE);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_ERR_FAULTED);
    assert_int_equal(command(core, MM_MODE_IDLE, 0.0f), MM_OK);
    /* Clearing keeps what is still present. */
    s.bus_voltage_v = 70.0f;
    step(core, s);
    const mm_command_t clear = {.mode = MM_MODE_TORQUE, .target = 1.0f, .clear_faults = true};
    assert_int_equal(mm_core_command(core, &clear), MM_ERR_FAULTED);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_OVERVOLTAGE);
    step(core, test_sensors(0));
    assert_int_equal(mm_core_command(core, &clear), MM_OK);
    assert_int_equal(test_state(core).fault_flags, 0);
    assert_float_equal(step(core, test_sensors(0)).current_cmd_a, 1.0f, 1e-6);
}

static void end_stop_blocks_current_into_the_stop_only(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, -1.0f), MM_OK);
    mm_sensors_t s = test_sensors(0);
    s.end_stop_low = true;
    assert_true(step(core, s).current_cmd_a == 0.0f);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_END_STOP);
    /* Driving away stays allowed while the stop is latched. */
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_OK);
    assert_float_equal(step(core, s).current_cmd_a, 1.0f, 1e-6);
}

static void soft_end_stops_use_the_position(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    cfg.position_min_rad = -1.0f;
    cfg.position_max_rad = 1.0f;
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_OK);
    assert_float_equal(step(core, test_sensors(1000)).current_cmd_a, 1.0f, 1e-6); /* 0.38 rad */
    assert_true(step(core, test_sensors(3000)).current_cmd_a == 0.0f);             /* 1.15 rad */
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_END_STOP);
}

static void watchdog_holds_when_heartbeats_stop(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    cfg.heartbeat_timeout_s = 0.010f;
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_OK);
    for (int k = 0; k < 30; ++k) {
        if (k % 5 == 0) {
            mm_core_heartbeat(core, (uint32_t)k);
        }
        step(core, test_sensors(0));
    }
    assert_int_equal(test_state(core).fault_flags, 0);
    for (int k = 0; k < 11; ++k) {
        step(core, test_sensors(0));
    }
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_HEARTBEAT_LOST);
    assert_int_equal(test_state(core).mode, MM_MODE_HOLD);
    /* The cause stays until a heartbeat arrives. */
    const mm_command_t clear = {.mode = MM_MODE_TORQUE, .target = 1.0f, .clear_faults = true};
    assert_int_equal(mm_core_command(core, &clear), MM_ERR_FAULTED);
    mm_core_heartbeat(core, 99u); /* the host is back: clearing works at once, before the next step */
    assert_int_equal(mm_core_command(core, &clear), MM_OK);
    assert_int_equal(test_state(core).fault_flags, 0);
}

static void watchdog_can_brake_instead(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    cfg.heartbeat_timeout_s = 0.005f;
    cfg.watchdog_mode = MM_MODE_BRAKE;
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_POSITION, 1.0f), MM_OK);
    mm_actuator_t out = {0};
    for (int k = 0; k < 10; ++k) {
        out = step(core, test_sensors(0));
    }
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_HEARTBEAT_LOST);
    assert_true(out.brake_on);
    assert_false(out.driver_enable);
}

static void default_watchdog_holds_within_50_ticks_at_1_khz(void **state)
{
    (void)state;
    mm_config_t cfg;
    mm_core_config_default(&cfg); /* the firmware default, which the CAN build ships */
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 0.5f), MM_OK);
    for (int k = 0; k < 100; ++k) {
        mm_core_heartbeat(core, (uint32_t)k);
        step(core, test_sensors(0));
    }
    const uint32_t k_last = test_state(core).tick; /* the last heartbeat arrived before this tick */
    uint32_t lost_at = 0u;
    for (int k = 0; k < 100 && lost_at == 0u; ++k) {
        step(core, test_sensors(0));
        if ((test_state(core).fault_flags & MM_FAULT_HEARTBEAT_LOST) != 0u) {
            lost_at = test_state(core).tick;
        }
    }
    assert_true(lost_at != 0u);
    assert_true(lost_at - k_last <= 50u);
    assert_int_equal(test_state(core).mode, MM_MODE_HOLD);
}

static void non_finite_periods_and_timeouts_are_refused(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_TORQUE, 1.0f), MM_OK);
    step(core, test_sensors(0));
    const uint32_t tick = test_state(core).tick;
    const float bad[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.001f};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        mm_actuator_t out;
        const mm_sensors_t s = test_sensors(0);
        assert_int_equal(mm_core_step(core, &s, bad[i], &out), MM_ERR_ARGUMENT);
        assert_false(out.driver_enable);
        assert_int_equal(test_state(core).tick, tick);
    }
    assert_float_equal(step(core, test_sensors(0)).current_cmd_a, 1.0f, 1e-6);
    cfg.heartbeat_timeout_s = INFINITY;
    assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
    cfg.heartbeat_timeout_s = NAN;
    assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
}

static void non_finite_current_latches_and_brakes(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    assert_int_equal(command(core, MM_MODE_POSITION, 0.0f), MM_OK);
    step(core, test_sensors(0));
    mm_actuator_t out;
    const mm_sensors_t s = test_sensors(1);
    /* A denormal period: the velocity estimate is infinite, the PID's current -inf (clamped to -limit before). */
    assert_int_equal(mm_core_step(core, &s, 1e-45f, &out), MM_OK);
    assert_true(out.current_cmd_a == 0.0f);
    assert_false(out.driver_enable);
    assert_true(out.brake_on);
    assert_int_equal(test_state(core).fault_flags, MM_FAULT_POLICY);
    assert_int_equal(test_state(core).mode, MM_MODE_BRAKE);
    /* Cleared, the servo works again: the velocity estimate restarted. */
    const mm_command_t clear = {.mode = MM_MODE_POSITION, .target = 0.0f, .clear_faults = true};
    assert_int_equal(mm_core_command(core, &clear), MM_OK);
    out = step(core, test_sensors(1));
    assert_true(out.driver_enable);
    assert_true(isfinite(out.current_cmd_a) && fabsf(out.current_cmd_a) < cfg.current_limit_a);
    assert_int_equal(test_state(core).fault_flags, 0);
}

static void gains_beyond_the_bounds_are_refused(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    mm_pid_gains_t max;
    mm_core_gain_limits(core, &max);
    const mm_command_t too_much = {.mode = MM_MODE_POSITION, .kp_pos = 20.0f, .kp_vel = 0.2f, .ki_vel = 3e38f};
    assert_int_equal(mm_core_command(core, &too_much), MM_ERR_ARGUMENT);
    const mm_command_t at_bound = {.mode = MM_MODE_POSITION, .kp_pos = max.kp_pos, .kp_vel = max.kp_vel,
                                   .ki_vel = max.ki_vel, .gravity_ff_a = max.gravity_ff_a,
                                   .max_velocity_rad_s = max.v_max};
    assert_int_equal(mm_core_command(core, &at_bound), MM_OK);
    cfg.gains.ki_vel = 3e38f;
    assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
}

static void bad_config_and_commands_are_refused(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    const mm_command_t nan_target = {.mode = MM_MODE_POSITION, .target = NAN};
    assert_int_equal(mm_core_command(core, &nan_target), MM_ERR_ARGUMENT);
    assert_int_equal(command(core, 9, 0.0f), MM_ERR_ARGUMENT);
    assert_int_equal(command(core, MM_MODE_POLICY, 0.0f), MM_ERR_NO_POLICY);
    cfg.current_limit_a = -1.0f;
    assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
    mm_actuator_t out;
    const mm_sensors_t s = test_sensors(0);
    mm_core_step(core, &s, DT, &out);
    assert_false(out.driver_enable); /* an uninitialised core never drives */
}

static void samples_stream_consecutive_ticks_with_flags(void **state)
{
    (void)state;
    mm_config_t cfg = base_config();
    mm_core_t *core = test_core(&cfg);
    const mm_command_t cmd = {.mode = MM_MODE_TORQUE, .target = 2.0f, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    for (int k = 0; k < 30; ++k) {
        step(core, test_sensors((uint16_t)(10 * k)));
    }
    assert_int_equal(mm_core_samples_available(core), 30);
    static mm_batch_t batch;
    assert_int_equal(mm_core_pop_batch(core, &batch, MM_BATCH_MAX_SAMPLES), MM_BATCH_MAX_SAMPLES);
    assert_int_equal(batch.first_tick, 1);
    assert_true(batch.flags[0] & MM_SAMPLE_EPISODE_START);
    assert_false(batch.flags[1] & MM_SAMPLE_EPISODE_START);
    assert_float_equal(batch.actions[3], 2.0f / cfg.obs.current_limit_a, 1e-6);
    assert_float_equal(batch.dt_s, DT, 1e-9);
    /* observation row 3, feature 6 = previous action */
    assert_float_equal(batch.observations[3 * MM_OBS_DIM + MM_OBS_PREV_ACTION], 0.5f, 1e-6);
    assert_int_equal(mm_core_pop_batch(core, &batch, MM_BATCH_MAX_SAMPLES), 6);
    assert_int_equal(batch.first_tick, 25);
    /* Overfill the ring: the overflow is counted as dropped. */
    for (unsigned k = 0; k < MM_SAMPLE_CAPACITY + 5u; ++k) {
        step(core, test_sensors(0));
    }
    mm_state_t s;
    mm_core_get_state(core, &s);
    assert_int_equal(s.dropped_samples, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_coasts_and_brake_brakes),
        cmocka_unit_test(torque_is_clamped_to_the_limits),
        cmocka_unit_test(temperature_derates_then_trips),
        cmocka_unit_test(position_mode_runs_the_contract_pid),
        cmocka_unit_test(pid_antiwindup_stops_integrating_into_saturation),
        cmocka_unit_test(hold_keeps_the_position_at_entry),
        cmocka_unit_test(encoder_unwraps_turns_and_faults_on_error),
        cmocka_unit_test(zero_offset_makes_the_hanging_load_position_zero),
        cmocka_unit_test(zero_offset_is_recalibrated_only_when_stopped),
        cmocka_unit_test(velocity_filter_follows_the_contract),
        cmocka_unit_test(faults_latch_until_cleared_when_the_cause_is_gone),
        cmocka_unit_test(end_stop_blocks_current_into_the_stop_only),
        cmocka_unit_test(soft_end_stops_use_the_position),
        cmocka_unit_test(watchdog_holds_when_heartbeats_stop),
        cmocka_unit_test(watchdog_can_brake_instead),
        cmocka_unit_test(default_watchdog_holds_within_50_ticks_at_1_khz),
        cmocka_unit_test(non_finite_periods_and_timeouts_are_refused),
        cmocka_unit_test(non_finite_current_latches_and_brakes),
        cmocka_unit_test(gains_beyond_the_bounds_are_refused),
        cmocka_unit_test(bad_config_and_commands_are_refused),
        cmocka_unit_test(ptos_position_loop_and_position_mode),
        cmocka_unit_test(ptos_braking_distance_is_corrected_for_gravity),
        cmocka_unit_test(bad_gains_are_refused_everywhere),
        cmocka_unit_test(samples_stream_consecutive_ticks_with_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
