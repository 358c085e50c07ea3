#include "mm_core/mm_core.h"

#include <math.h>
#include <string.h>

#include "mm_core/mm_crc32.h"
#include "mm_core/mm_reassembly.h"

/** Where a complete transfer stands between reassembly and activation. */
typedef enum { STAGED_NONE = 0, STAGED_RECEIVED = 1, STAGED_CHECKED = 2 } staged_t;

struct mm_core {
    mm_config_t cfg;
    bool ready;
    uint32_t tick;
    uint8_t mode;
    uint32_t faults;              /* latched */
    uint32_t conditions;          /* fault causes present at the last step */
    /* command state */
    float target_rad;
    float target_velocity_rad_s;
    float torque_current_a;
    float command_limit_a;        /* 0: none beyond the hard limit */
    mm_pid_gains_t gains;
    mm_pid_t pid;
    float hold_target_rad;
    bool capture_hold;            /* HOLD entered: take the position at the next step as its target */
    bool streaming;
    bool episode_start;
    /* sensing */
    mm_encoder_t encoder;
    mm_velocity_filter_t velocity;      /* state estimate, config tau */
    mm_velocity_filter_t obs_velocity;  /* observation estimate, tau of the active policy */
    mm_sensors_t sensors;
    float position_rad;
    float current_cmd_a;
    float last_dt_s;
    float since_heartbeat_s;
    /* policy */
    float obs[MM_OBS_DIM];
    float prev_action;
    float policy_action;          /* the policy's action in POLICY mode, noise included, held between runs: the whole
                                     action (in schedule mode, schedule_range > 0, the deceleration schedule a) */
    bool policy_noisy;            /* policy_action carries exploration noise (FLAG_POLICY clear) */
    mm_pid_t policy_base;         /* the base law's integrator in schedule mode (reset with the policy counter) */
    uint32_t policy_counter;
    /* guard of POLICY-mode moves (contract section 4), re-armed by start_episode */
    bool guard_armed;             /* the move's initial error is recorded (its first POLICY tick has run) */
    bool guard_tripped;           /* the move left its envelope: the classical controller drives the rest of it */
    float guard_e0_rad;           /* error target - position on the move's first POLICY tick (rad) */
    float guard_saturated_s;      /* how long the policy's current has been at the limit without a break (s) */
    uint32_t guard_trips;         /* moves handed to the classical controller since init */
    /* exploration (contract section 4): set by POLICY commands */
    float exploration_std;
    float exploration_tau_s;
    mm_noise_t noise;
    bool policy_active;
    uint8_t active_slot;
    mm_policy_header_t active_header;
    uint32_t active_crc32;
    staged_t staged;
    uint32_t staged_len;
    mm_policy_header_t staged_header;
    mm_policy_reason_t staged_reason;  /* outcome of mm_core_policy_verify, applied by commit */
    uint32_t version_floor;       /* highest policy_version accepted (anti-rollback), written only by commit */
    mm_reassembly_t reassembly;
    uint32_t ack_transfer_id;
    uint8_t ack_status;
    uint8_t ack_reason;
    float since_chunk_s;          /* control time since the last chunk, for transfer_timeout_s */
    bool truncated_due;           /* truncated_ack waits for mm_core_policy_truncated_ack() */
    mm_policy_ack_t truncated_ack;
    uint8_t slots[2][MM_MAX_POLICY_BYTES];
    mm_sample_ring_t samples;
};

void mm_core_config_default(mm_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->current_limit_a = 4.0f;
    cfg->overcurrent_a = 6.0f;
    cfg->temperature_derate_c = 80.0f;
    cfg->temperature_max_c = 100.0f;
    cfg->position_min_rad = 0.0f;
    cfg->position_max_rad = 0.0f;
    /* A wired host (CAN) heartbeats every 10-20 ms: 50 ms of silence is lost, and HOLD follows within 50 ms
     * (firmware/README.md; micro-ROS over Wi-Fi uses a longer Kconfig timeout). */
    cfg->heartbeat_timeout_s = 0.05f;
    cfg->watchdog_mode = MM_MODE_HOLD;
    cfg->policy_decimation = 1u;
    cfg->velocity_filter_tau_s = 0.005f;
    cfg->torque_constant_nm_per_a = 0.1f;
    cfg->gains = (mm_pid_gains_t){.kp_pos = 20.0f, .v_max = 20.0f, .kp_vel = 0.2f, .ki_vel = 2.0f, .gravity_ff_a = 0.0f};
    cfg->obs = (mm_obs_params_t){.pos_scale_rad = 3.14159265f, .vel_scale_rad_s = 50.0f, .fine_gain_per_rad = 20.0f,
                                 .current_limit_a = 4.0f, .velocity_filter_tau_s = 0.005f};
    cfg->max_policy_bytes = MM_MAX_POLICY_BYTES;
    /* Senders resend at least every ack timeout (mm_driver: 0.5 s), so 2 s of silence means they gave up. */
    cfg->transfer_timeout_s = 2.0f;
    /* Above what the tuned classical laws do, on the nominal twin and at the corner of its randomization (contract
     * section 4: the tuned PTOS laws pass the target by up to 1.1 rad and hold the limit up to 0.34 s there). */
    cfg->guard_error_rad = 1.5f;
    cfg->guard_saturation_s = 0.5f;
}

size_t mm_core_size(void)
{
    return sizeof(mm_core_t);
}

/* The gain bounds of mm_core.h for a hard current limit (A). */
static mm_pid_gains_t gain_limits(float current_limit_a)
{
    const float count_rad = 2.0f * 3.14159265f / (float)MM_ENCODER_COUNTS;
    return (mm_pid_gains_t){
        .kp_pos = MM_GAIN_RATE_HZ,
        .v_max = 3.14159265f * MM_GAIN_RATE_HZ,
        .kp_vel = MM_GAIN_MARGIN * current_limit_a / (count_rad * MM_GAIN_RATE_HZ),
        .ki_vel = MM_GAIN_MARGIN * current_limit_a / count_rad,
        .gravity_ff_a = current_limit_a,
    };
}

/* Every gain valid for the law (mm_pid_gains_valid) and within the bounds for this hard current limit (A). */
static bool gains_valid(const mm_pid_gains_t *g, float current_limit_a)
{
    if (!mm_pid_gains_valid(g)) {
        return false; /* non-finite, negative, or PTOS without a linear zone */
    }
    const mm_pid_gains_t max = gain_limits(current_limit_a);
    const float v[5] = {g->kp_pos, g->v_max, g->kp_vel, g->ki_vel, g->gravity_ff_a};
    const float hi[5] = {max.kp_pos, max.v_max, max.kp_vel, max.ki_vel, max.gravity_ff_a};
    for (unsigned i = 0; i < 5u; ++i) {
        if (!isfinite(v[i]) || v[i] < 0.0f || v[i] > hi[i]) {
            return false;
        }
    }
    return true;
}

static bool config_valid(const mm_config_t *cfg)
{
    return isfinite(cfg->current_limit_a) && cfg->current_limit_a > 0.0f && isfinite(cfg->overcurrent_a) &&
           cfg->overcurrent_a > 0.0f && cfg->temperature_derate_c < cfg->temperature_max_c &&
           cfg->undervoltage_v >= 0.0f && cfg->overvoltage_v >= 0.0f && isfinite(cfg->heartbeat_timeout_s) &&
           cfg->heartbeat_timeout_s >= 0.0f &&
           (cfg->watchdog_mode == MM_MODE_HOLD || cfg->watchdog_mode == MM_MODE_BRAKE) &&
           cfg->policy_decimation >= 1u && isfinite(cfg->velocity_filter_tau_s) &&
           cfg->velocity_filter_tau_s >= 0.0f && gains_valid(&cfg->gains, cfg->current_limit_a) && mm_obs_params_valid(&cfg->obs) &&
           cfg->max_policy_bytes <= MM_MAX_POLICY_BYTES && cfg->zero_offset_counts < MM_ENCODER_COUNTS &&
           isfinite(cfg->transfer_timeout_s) && cfg->transfer_timeout_s >= 0.0f && isfinite(cfg->guard_error_rad) &&
           isfinite(cfg->guard_saturation_s);
}

static uint8_t staging_slot(const mm_core_t *core)
{
    return (uint8_t)(1u - core->active_slot);
}

mm_status_t mm_core_init(mm_core_t *core, const mm_config_t *cfg)
{
    core->ready = false;
    if (!config_valid(cfg)) {
        return MM_ERR_ARGUMENT;
    }
    /* Clear everything but the two large policy slots, which need no initial value. */
    memset(core, 0, offsetof(mm_core_t, slots));
    core->cfg = *cfg;
    core->mode = MM_MODE_IDLE;
    core->gains = cfg->gains;
    core->version_floor = cfg->policy_version_floor;
    mm_encoder_reset(&core->encoder);
    mm_velocity_filter_reset(&core->velocity);
    mm_velocity_filter_reset(&core->obs_velocity);
    mm_samples_init(&core->samples);
    mm_noise_init(&core->noise, cfg->exploration_seed);
    mm_reassembly_init(&core->reassembly, core->slots[staging_slot(core)], cfg->max_policy_bytes);
    core->ready = true;
    return MM_OK;
}

static bool mode_is_active(uint8_t mode)
{
    return mode != MM_MODE_IDLE && mode != MM_MODE_BRAKE;
}

/* A new episode: its first sample is flagged, and the policy runs on its first tick (decisions start with it);
 * a scheduling policy's base law starts with an empty integrator, as the PID does on entering POSITION mode. It is
 * a new move for the guard, which re-arms (a tripped move gives the policy back). */
static void start_episode(mm_core_t *core)
{
    core->episode_start = true;
    core->policy_counter = 0u;
    mm_pid_reset(&core->policy_base);
    core->guard_armed = false;
    core->guard_tripped = false;
    core->guard_saturated_s = 0.0f;
}

static void enter_mode(mm_core_t *core, uint8_t mode)
{
    if (mode == core->mode) {
        return;
    }
    if (!mode_is_active(core->mode) && mode_is_active(mode)) {
        core->since_heartbeat_s = 0.0f; /* give the host a full timeout to start its heartbeat */
    }
    if (mode == MM_MODE_HOLD) {
        core->capture_hold = true;
    }
    if (mode == MM_MODE_HOLD || mode == MM_MODE_POSITION) {
        mm_pid_reset(&core->pid);
    }
    if (mode == MM_MODE_POLICY) {
        core->prev_action = 0.0f;
        core->policy_action = 0.0f;
        core->policy_noisy = false;
        mm_noise_reset(&core->noise);
    }
    core->mode = mode;
    start_episode(core);
}

static const mm_obs_params_t *obs_params(const mm_core_t *core)
{
    return core->policy_active ? &core->active_header.scales : &core->cfg.obs;
}

static void set_ack(mm_core_t *core, uint32_t transfer_id, uint8_t status, uint8_t reason)
{
    core->ack_transfer_id = transfer_id;
    core->ack_status = status;
    core->ack_reason = reason;
}

/* A transfer is partly received: what a new transfer_id, the transfer timeout or a direct load abandons. (A
 * complete transfer waiting for verification has finished reassembly, so this never races with
 * mm_core_policy_verify(), which runs unlocked.) */
static bool transfer_receiving(const mm_core_t *core)
{
    const mm_reassembly_t *r = &core->reassembly;
    return core->ack_status == MM_ACK_RECEIVING && r->active && !r->finished && r->total_chunks > 0u &&
           r->transfer_id == core->ack_transfer_id;
}

/* Abandon the transfer in progress: REJECTED/TRUNCATED, kept for mm_core_policy_truncated_ack() with the chunks it
 * had; its bytes are dropped, so a sender that carries on starts it again from scratch. */
static void truncate_transfer(mm_core_t *core)
{
    set_ack(core, core->ack_transfer_id, MM_ACK_REJECTED, MM_REASON_TRUNCATED);
    mm_core_policy_ack(core, &core->truncated_ack);
    core->truncated_due = true;
    mm_reassembly_abort(&core->reassembly);
}

static void policy_transfer_timeout(mm_core_t *core, float dt_s)
{
    if (core->cfg.transfer_timeout_s > 0.0f && transfer_receiving(core)) {
        core->since_chunk_s += dt_s;
        if (core->since_chunk_s > core->cfg.transfer_timeout_s) {
            truncate_transfer(core);
        }
    }
}

/* The gains a command leaves in effect: v_max when it gives one, the four loop gains when any is non-zero;
 * decel_rad_s2 is not a command field and stays as configured. */
static mm_pid_gains_t command_gains(const mm_core_t *core, const mm_command_t *cmd)
{
    mm_pid_gains_t g = core->gains;
    if (cmd->max_velocity_rad_s > 0.0f) {
        g.v_max = cmd->max_velocity_rad_s;
    }
    if (cmd->kp_pos != 0.0f || cmd->kp_vel != 0.0f || cmd->ki_vel != 0.0f || cmd->gravity_ff_a != 0.0f) {
        g.kp_pos = cmd->kp_pos;
        g.kp_vel = cmd->kp_vel;
        g.ki_vel = cmd->ki_vel;
        g.gravity_ff_a = cmd->gravity_ff_a;
    }
    return g;
}

/* Every field in range: the mode, finite targets, limits >= 0, v_max and the gains within gain_limits(), and the
 * gains the command leaves in effect valid together (PTOS needs kp_pos > 0). */
static bool command_valid(const mm_core_t *core, const mm_command_t *cmd)
{
    const mm_pid_gains_t fields = {cmd->kp_pos, cmd->max_velocity_rad_s, cmd->kp_vel, cmd->ki_vel, cmd->gravity_ff_a,
                                   0.0f};
    const mm_pid_gains_t result = command_gains(core, cmd);
    return cmd->mode <= MM_MODE_BRAKE && isfinite(cmd->target) && isfinite(cmd->target_velocity_rad_s) &&
           isfinite(cmd->current_limit_a) && cmd->current_limit_a >= 0.0f &&
           gains_valid(&fields, core->cfg.current_limit_a) && gains_valid(&result, core->cfg.current_limit_a) &&
           cmd->exploration_std >= 0.0f && cmd->exploration_std <= 1.0f && isfinite(cmd->exploration_tau_s) &&
           cmd->exploration_tau_s >= 0.0f;
}

mm_status_t mm_core_command(mm_core_t *core, const mm_command_t *cmd)
{
    if (!core->ready || !command_valid(core, cmd)) {
        return MM_ERR_ARGUMENT;
    }
    /* Clearing faults whose cause is gone is its own request: it happens even when the mode is then refused (the
     * state shows what is still latched). Nothing else changes before every check has passed. */
    if (cmd->clear_faults) {
        uint32_t present = core->conditions;
        if (!(core->since_heartbeat_s > core->cfg.heartbeat_timeout_s)) {
            present &= ~(uint32_t)MM_FAULT_HEARTBEAT_LOST; /* a heartbeat arrived since the last step */
        }
        core->faults &= present;
        core->conditions = present;
    }
    if ((core->faults & MM_FAULTS_BLOCKING) != 0u && mode_is_active(cmd->mode)) {
        return MM_ERR_FAULTED;
    }
    if (cmd->mode == MM_MODE_POLICY && !core->policy_active) {
        return MM_ERR_NO_POLICY;
    }
    if (cmd->stream_transitions && !core->streaming) {
        start_episode(core);
    }
    core->streaming = cmd->stream_transitions;
    core->gains = command_gains(core, cmd);
    if (cmd->current_limit_a > 0.0f) {
        core->command_limit_a = cmd->current_limit_a;
    }
    if (cmd->mode == MM_MODE_TORQUE) {
        core->torque_current_a = cmd->target;
    } else if (cmd->mode == MM_MODE_POSITION || cmd->mode == MM_MODE_POLICY) {
        if (cmd->target != core->target_rad || cmd->target_velocity_rad_s != core->target_velocity_rad_s) {
            start_episode(core);
            mm_noise_reset(&core->noise); /* a new episode explores from n = 0 */
        }
        core->target_rad = cmd->target;
        core->target_velocity_rad_s = cmd->target_velocity_rad_s;
    }
    const bool policy = cmd->mode == MM_MODE_POLICY;
    core->exploration_std = policy ? cmd->exploration_std : 0.0f;
    core->exploration_tau_s = policy ? cmd->exploration_tau_s : 0.0f;
    enter_mode(core, cmd->mode);
    return MM_OK;
}

void mm_core_heartbeat(mm_core_t *core, uint32_t seq)
{
    (void)seq; /* ordering does not matter to the watchdog: any heartbeat proves the host is alive */
    core->since_heartbeat_s = 0.0f;
}

/* Fault causes visible in this tick's readings. */
static uint32_t fault_conditions(mm_core_t *core, const mm_sensors_t *s, float dt_s)
{
    const mm_config_t *cfg = &core->cfg;
    uint32_t cond = 0u;
    if (!s->encoder_ok || s->encoder_count >= MM_ENCODER_COUNTS) {
        cond |= MM_FAULT_ENCODER;
    }
    if (!(fabsf(s->current_a) <= cfg->overcurrent_a)) {
        cond |= MM_FAULT_OVERCURRENT;
    }
    if (!(s->temperature_c < cfg->temperature_max_c)) {
        cond |= MM_FAULT_OVERTEMPERATURE;
    }
    if (cfg->undervoltage_v > 0.0f && !(s->bus_voltage_v >= cfg->undervoltage_v)) {
        cond |= MM_FAULT_UNDERVOLTAGE;
    }
    if (cfg->overvoltage_v > 0.0f && !(s->bus_voltage_v <= cfg->overvoltage_v)) {
        cond |= MM_FAULT_OVERVOLTAGE;
    }
    if (s->end_stop_low || s->end_stop_high) {
        cond |= MM_FAULT_END_STOP;
    }
    if (cfg->position_min_rad < cfg->position_max_rad &&
        (core->position_rad <= cfg->position_min_rad || core->position_rad >= cfg->position_max_rad)) {
        cond |= MM_FAULT_END_STOP;
    }
    if (cfg->heartbeat_timeout_s > 0.0f && mode_is_active(core->mode)) {
        core->since_heartbeat_s += dt_s;
    }
    /* Lost once the gap reaches the timeout to within half a period (summed float periods fall short of it). */
    if (cfg->heartbeat_timeout_s > 0.0f && core->since_heartbeat_s + 0.5f * dt_s > cfg->heartbeat_timeout_s) {
        cond |= MM_FAULT_HEARTBEAT_LOST;
    }
    return cond;
}

static void latch_faults(mm_core_t *core, uint32_t cond)
{
    const uint32_t fresh = cond & ~core->faults;
    core->faults |= cond;
    core->conditions = cond;
    if ((core->faults & MM_FAULTS_POWER_OFF) != 0u) {
        enter_mode(core, MM_MODE_BRAKE);
    } else if ((fresh & MM_FAULT_HEARTBEAT_LOST) != 0u && mode_is_active(core->mode)) {
        enter_mode(core, core->cfg.watchdog_mode);
    }
}

static float derating(const mm_config_t *cfg, float temperature_c)
{
    if (temperature_c <= cfg->temperature_derate_c) {
        return 1.0f;
    }
    const float f = (cfg->temperature_max_c - temperature_c) / (cfg->temperature_max_c - cfg->temperature_derate_c);
    return fmaxf(f, 0.0f);
}

/* Ticks per policy run: the active image's own decimation, or the firmware's configured one when it has none. */
static uint16_t policy_decimation(const mm_core_t *core)
{
    const uint8_t own = core->active_header.policy_decimation;
    return own != 0u ? (uint16_t)own : core->cfg.policy_decimation;
}

/* Run the policy (every policy_decimation ticks, dt_s apart) and add the exploration noise, updated at the same
 * rate (contract section 4); false when inference failed. */
static bool run_policy(mm_core_t *core, float dt_s)
{
    const uint16_t decimation = policy_decimation(core);
    if (core->policy_counter % decimation == 0u) {
        float action[MM_ACTION_DIM] = {0.0f};
        const int rc = core->cfg.backend.invoke(core->cfg.backend.ctx, core->active_slot, core->obs, action);
        if (rc != 0 || !isfinite(action[0])) {
            return false;
        }
        core->policy_action = mm_clip_unit(action[0]);
        core->policy_noisy = core->exploration_std > 0.0f;
        if (core->policy_noisy) {
            const float period_s = dt_s * (float)decimation;
            const float n = mm_noise_step(&core->noise, core->exploration_std, core->exploration_tau_s, period_s);
            core->policy_action = mm_clip_unit(core->policy_action + n);
        }
    }
    core->policy_counter += 1u;
    return true;
}

/* The active image schedules a classical base law (schedule_range > 0) rather than commanding the current. */
static bool policy_scheduled(const mm_core_t *core)
{
    return core->active_header.schedule_range > 0.0f;
}

/* POLICY mode's current from the action a (contract section 4). Schedule mode (the image's schedule_range rho > 0):
 * the image's base law (PTOS) runs every tick with its braking deceleration scaled by exp(rho * a), so the policy
 * schedules how hard the classical law brakes; its output is the current. */
static float policy_current(mm_core_t *core, float action, float dt_s)
{
    const mm_policy_header_t *h = &core->active_header;
    const float limit_a = h->scales.current_limit_a;
    if (!policy_scheduled(core)) {
        return action * limit_a;
    }
    mm_pid_gains_t gains = h->base_gains;
    gains.decel_rad_s2 = h->base_gains.decel_rad_s2 * expf(h->schedule_range * action);
    const float base_a = mm_pid_step(&core->policy_base, &gains, limit_a, dt_s, core->position_rad,
                                     core->obs_velocity.velocity_rad_s, core->target_rad, core->target_velocity_rad_s);
    return base_a;
}

/* POSITION mode's law: the cascaded PID with the gains in effect to the commanded target, clamped to limit_a (A). */
static float position_current(mm_core_t *core, float limit_a, float dt_s)
{
    return mm_pid_step(&core->pid, &core->gains, limit_a, dt_s, core->position_rad, core->velocity.velocity_rad_s,
                       core->target_rad, core->target_velocity_rad_s);
}

/* The guard of this POLICY-mode move (contract section 4): true once the move left its envelope. The move's initial
 * error e0 is taken on its first POLICY tick; on every later tick the error e = target - position trips it when
 * |e| > |e0| + guard_error_rad or when the load passed the target by more than guard_error_rad, and the time the
 * previous ticks held the current at the limit (counted by mm_core_step) trips it past guard_saturation_s. */
static bool guard_check(mm_core_t *core)
{
    if (core->guard_tripped) {
        return true;
    }
    const float e = core->target_rad - core->position_rad;
    if (!core->guard_armed) {
        core->guard_armed = true;
        core->guard_e0_rad = e;
        core->guard_saturated_s = 0.0f;
        return false;
    }
    const float margin_rad = core->cfg.guard_error_rad;
    const float e0 = core->guard_e0_rad;
    const bool passed = (e > 0.0f) != (e0 > 0.0f); /* the load is on the other side of the target */
    const bool error_out =
        margin_rad > 0.0f && (fabsf(e) > fabsf(e0) + margin_rad || (passed && fabsf(e) > margin_rad));
    const bool current_out =
        core->cfg.guard_saturation_s > 0.0f && core->guard_saturated_s > core->cfg.guard_saturation_s;
    if (error_out || current_out) {
        core->guard_tripped = true;
        core->guard_trips += 1u;
        mm_pid_reset(&core->pid); /* the PID fallback starts as POSITION mode does */
    }
    return core->guard_tripped;
}

/* The guard drives this POLICY-mode tick: the move tripped. */
static bool guard_driving(const mm_core_t *core)
{
    return core->mode == MM_MODE_POLICY && core->guard_tripped;
}

/* The classical controller of a tripped move: a schedule image's base law unscheduled (a = 0: exp(0) = 1, the
 * plain PTOS), else the POSITION PID to the move's target. */
static float guard_current(mm_core_t *core, float limit_a, float dt_s)
{
    return policy_scheduled(core) ? policy_current(core, 0.0f, dt_s) : position_current(core, limit_a, dt_s);
}

static float mode_current(mm_core_t *core, float limit_a, float dt_s)
{
    switch (core->mode) {
    case MM_MODE_HOLD:
        return mm_pid_step(&core->pid, &core->gains, limit_a, dt_s, core->position_rad, core->velocity.velocity_rad_s,
                           core->hold_target_rad, 0.0f);
    case MM_MODE_TORQUE:
        return core->torque_current_a;
    case MM_MODE_POSITION:
        return position_current(core, limit_a, dt_s);
    case MM_MODE_POLICY:
        if (guard_check(core)) {
            return guard_current(core, limit_a, dt_s); /* the policy is not invoked until the next move */
        }
        if (!run_policy(core, dt_s)) {
            core->faults |= MM_FAULT_POLICY;
            enter_mode(core, MM_MODE_HOLD);
            core->hold_target_rad = core->position_rad;
            core->capture_hold = false;
            return mode_current(core, limit_a, dt_s);
        }
        return policy_current(core, core->policy_action, dt_s);
    default:
        return 0.0f;
    }
}

mm_status_t mm_core_step(mm_core_t *core, const mm_sensors_t *s, float dt_s, mm_actuator_t *out)
{
    *out = (mm_actuator_t){.current_cmd_a = 0.0f, .driver_enable = false, .brake_on = true};
    if (!core->ready || !isfinite(dt_s) || !(dt_s > 0.0f)) {
        return MM_ERR_ARGUMENT;
    }
    core->tick += 1u;
    core->last_dt_s = dt_s;
    core->sensors = *s;
    const mm_obs_params_t *params = obs_params(core);
    if (s->encoder_ok && s->encoder_count < MM_ENCODER_COUNTS) {
        core->position_rad =
            mm_encoder_update(&core->encoder, mm_encoder_calibrate(s->encoder_count, core->cfg.zero_offset_counts));
        mm_velocity_filter_update(&core->velocity, core->position_rad, dt_s, core->cfg.velocity_filter_tau_s);
        mm_velocity_filter_update(&core->obs_velocity, core->position_rad, dt_s, params->velocity_filter_tau_s);
    }
    latch_faults(core, fault_conditions(core, s, dt_s));
    policy_transfer_timeout(core, dt_s);
    if (core->capture_hold) {
        core->hold_target_rad = core->position_rad;
        core->capture_hold = false;
    }
    const bool observe = core->streaming || core->mode == MM_MODE_POLICY;
    if (observe) {
        const bool holding = core->mode == MM_MODE_HOLD;
        mm_observation_build(params, core->position_rad, core->obs_velocity.velocity_rad_s, s->current_a,
                             holding ? core->hold_target_rad : core->target_rad,
                             holding ? 0.0f : core->target_velocity_rad_s, core->prev_action, core->obs);
    }

    mm_tuning_t tuning;
    mm_core_get_tuning(core, &tuning);
    const float limit_a = tuning.current_limit_a * derating(&core->cfg, s->temperature_c);
    float current_a = mode_current(core, limit_a, dt_s);
    /* The PID clamps its own output, which turns a NaN into the negative limit: a PID mode's current is only as
     * good as its velocity input and its integrator, so judge those too (the guard's PID fallback included). */
    const bool pid_mode = core->mode == MM_MODE_HOLD || core->mode == MM_MODE_POSITION ||
                          (guard_driving(core) && !policy_scheduled(core));
    const bool pid_sane = isfinite(core->velocity.velocity_rad_s) && isfinite(core->pid.integrator_a);
    if (!isfinite(current_a) || (pid_mode && !pid_sane)) {
        /* Clamping would turn NaN into a full-scale current: latch, brake, and forget the PID's poisoned state. */
        core->faults |= MM_FAULT_POLICY;
        mm_pid_reset(&core->pid);
        if (!isfinite(core->velocity.velocity_rad_s) || !isfinite(core->obs_velocity.velocity_rad_s)) {
            mm_velocity_filter_reset(&core->velocity); /* restart the estimates from the next reading */
            mm_velocity_filter_reset(&core->obs_velocity);
        }
        enter_mode(core, MM_MODE_BRAKE);
        current_a = 0.0f;
    }
    current_a = fminf(fmaxf(current_a, -limit_a), limit_a);
    /* End stops: never push further into a stop; moving away stays possible. */
    const bool at_low = s->end_stop_low || (core->cfg.position_min_rad < core->cfg.position_max_rad &&
                                            core->position_rad <= core->cfg.position_min_rad);
    const bool at_high = s->end_stop_high || (core->cfg.position_min_rad < core->cfg.position_max_rad &&
                                              core->position_rad >= core->cfg.position_max_rad);
    if ((at_low && current_a < 0.0f) || (at_high && current_a > 0.0f)) {
        current_a = 0.0f;
    }
    const bool powered = mode_is_active(core->mode) && (core->faults & MM_FAULTS_POWER_OFF) == 0u;
    if (!powered) {
        current_a = 0.0f;
    }
    core->current_cmd_a = current_a;
    out->current_cmd_a = current_a;
    out->driver_enable = powered;
    out->brake_on = core->mode == MM_MODE_BRAKE;

    /* The guard counts how long the policy holds the current at the limit in effect for it (the derated limit, or
     * the image's own when lower). */
    if (core->mode == MM_MODE_POLICY && !core->guard_tripped) {
        const float policy_limit_a = fminf(limit_a, core->active_header.scales.current_limit_a);
        const bool saturated = policy_limit_a > 0.0f && fabsf(current_a) >= policy_limit_a;
        core->guard_saturated_s = saturated ? core->guard_saturated_s + dt_s : 0.0f;
    }

    /* A guarded tick applied the classical controller: a = 0 of a schedule image, or the PID's current. */
    const bool guard_tick = guard_driving(core);
    const bool from_policy = core->mode == MM_MODE_POLICY && !guard_tick;
    float applied = mm_clip_unit(current_a / params->current_limit_a);
    if (from_policy) {
        applied = core->policy_action;
    } else if (guard_tick && policy_scheduled(core)) {
        applied = 0.0f;
    }
    if (core->streaming) {
        mm_sample_t sample = {
            .tick = core->tick,
            .action = applied,
            .position_rad = core->position_rad,
            .velocity_rad_s = core->velocity.velocity_rad_s,
            .current_a = s->current_a,
            .target_rad = core->mode == MM_MODE_HOLD ? core->hold_target_rad : core->target_rad,
            .power_w = s->power_w,
            .flags = (uint8_t)((core->episode_start ? MM_SAMPLE_EPISODE_START : 0u) |
                               (core->faults != 0u ? MM_SAMPLE_FAULT : 0u) |
                               (from_policy && !core->policy_noisy ? MM_SAMPLE_POLICY : 0u) |
                               (guard_tick ? MM_SAMPLE_GUARD : 0u)),
        };
        memcpy(sample.observation, core->obs, sizeof sample.observation);
        mm_samples_push(&core->samples, &sample);
        core->episode_start = false;
    }
    core->prev_action = applied;
    return MM_OK;
}

mm_status_t mm_core_set_zero_offset(mm_core_t *core, uint16_t counts)
{
    if (counts >= MM_ENCODER_COUNTS) {
        return MM_ERR_ARGUMENT;
    }
    if (mode_is_active(core->mode)) {
        return MM_ERR_STATE;
    }
    core->cfg.zero_offset_counts = counts;
    /* A new frame: the next reading starts turn 0 and both velocity estimates, so the jump is no velocity. */
    mm_encoder_reset(&core->encoder);
    mm_velocity_filter_reset(&core->velocity);
    mm_velocity_filter_reset(&core->obs_velocity);
    return MM_OK;
}

uint16_t mm_core_raw_encoder_count(const mm_core_t *core)
{
    return core->sensors.encoder_count;
}

void mm_core_get_state(const mm_core_t *core, mm_state_t *out)
{
    out->tick = core->tick;
    out->mode = core->mode;
    out->fault_flags = core->faults;
    out->position_rad = core->position_rad;
    out->velocity_rad_s = core->velocity.velocity_rad_s;
    out->current_a = core->sensors.current_a;
    out->current_cmd_a = core->current_cmd_a;
    out->effort_nm = core->sensors.current_a * core->cfg.torque_constant_nm_per_a;
    out->bus_voltage_v = core->sensors.bus_voltage_v;
    out->power_w = core->sensors.power_w;
    out->temperature_c = core->sensors.temperature_c;
    out->target_rad = core->mode == MM_MODE_HOLD ? core->hold_target_rad : core->target_rad;
    out->policy_crc32 = core->policy_active ? core->active_crc32 : 0u;
    out->dropped_samples = mm_samples_dropped(&core->samples);
    out->exploration_std = core->mode == MM_MODE_POLICY ? core->exploration_std : 0.0f;
}

void mm_core_get_observation(const mm_core_t *core, float obs[MM_OBS_DIM])
{
    memcpy(obs, core->obs, sizeof core->obs);
}

/* ---- policies ---- */

uint8_t mm_core_policy_chunk(mm_core_t *core, uint32_t transfer_id, uint32_t total_size, uint32_t image_crc32,
                             uint16_t index, uint16_t chunk_size, const uint8_t *data, uint16_t len,
                             bool *ack_due)
{
    *ack_due = true;
    if (core->staged != STAGED_NONE) {
        /* A complete image waits for verification in this buffer: it must not be overwritten. */
        if (transfer_id != core->ack_transfer_id) {
            set_ack(core, transfer_id, MM_ACK_REJECTED, MM_REASON_BUSY);
        }
        return core->ack_status;
    }
    if (transfer_id == core->ack_transfer_id && core->ack_status == MM_ACK_ACCEPTED) {
        return MM_ACK_ACCEPTED; /* a late duplicate of the transfer that is already running */
    }
    if (transfer_id != core->ack_transfer_id || core->ack_status == MM_ACK_REJECTED) {
        /* A new transfer, or the sender retrying a refused one from scratch. */
        if (transfer_receiving(core)) {
            truncate_transfer(core);
        }
        set_ack(core, transfer_id, MM_ACK_RECEIVING, MM_REASON_NONE);
    }
    core->since_chunk_s = 0.0f;
    const mm_chunk_result_t result =
        mm_reassembly_add(&core->reassembly, transfer_id, total_size, image_crc32, index, chunk_size, data, len);
    switch (result) {
    case MM_CHUNK_STORED:
        *ack_due = index + 1u == core->reassembly.total_chunks;
        break;
    case MM_CHUNK_COMPLETE:
        core->staged = STAGED_RECEIVED;
        core->staged_len = total_size;
        *ack_due = false; /* the ack follows verification */
        break;
    case MM_CHUNK_BAD_CRC:
        set_ack(core, transfer_id, MM_ACK_REJECTED, MM_REASON_CRC);
        break;
    case MM_CHUNK_TOO_LARGE:
        set_ack(core, transfer_id, MM_ACK_REJECTED, MM_REASON_TOO_LARGE);
        break;
    case MM_CHUNK_DUPLICATE:
    case MM_CHUNK_INVALID:
    default:
        break;
    }
    return core->ack_status;
}

bool mm_core_policy_verify_pending(const mm_core_t *core)
{
    return core->staged == STAGED_RECEIVED;
}

mm_policy_reason_t mm_core_policy_verify(mm_core_t *core)
{
    if (core->staged != STAGED_RECEIVED) {
        return MM_REASON_NONE;
    }
    /* Only the staging slot and staged_* fields are touched here (see the threading note in mm_core.h). */
    const uint8_t slot = staging_slot(core);
    const uint8_t *image = core->slots[slot];
    mm_policy_reason_t reason =
        mm_policy_image_check(image, core->staged_len, core->cfg.max_policy_bytes, core->cfg.public_key,
                              &core->staged_header);
    /* Anti-rollback, after the signature so only genuinely signed images are called rollbacks. Equal versions
     * pass: the same release must stay deployable (and loadable from flash at boot). */
    if (reason == MM_REASON_NONE && core->staged_header.policy_version < core->version_floor) {
        reason = MM_REASON_ROLLBACK;
    }
    if (reason == MM_REASON_NONE) {
        const mm_backend_t *b = &core->cfg.backend;
        if (b->load == NULL || b->invoke == NULL ||
            b->load(b->ctx, slot, image + MM_POLICY_HEADER_BYTES, core->staged_header.model_size,
                    core->staged_header.arena_bytes, core->staged_header.model_type) != 0) {
            reason = MM_REASON_BACKEND;
        }
    }
    core->staged_reason = reason;
    core->staged = STAGED_CHECKED;
    return reason;
}

mm_status_t mm_core_policy_commit(mm_core_t *core)
{
    if (core->staged != STAGED_CHECKED) {
        return MM_ERR_STATE;
    }
    core->staged = STAGED_NONE;
    if (core->staged_reason != MM_REASON_NONE) {
        mm_reassembly_abort(&core->reassembly);
        set_ack(core, core->ack_transfer_id, MM_ACK_REJECTED, (uint8_t)core->staged_reason);
        return MM_OK;
    }
    const uint8_t slot = staging_slot(core);
    core->active_crc32 = mm_crc32(0u, core->slots[slot], core->staged_len);
    core->active_header = core->staged_header;
    if (core->staged_header.policy_version > core->version_floor) {
        core->version_floor = core->staged_header.policy_version;
    }
    core->active_slot = slot;
    core->policy_active = true;
    start_episode(core); /* the new policy runs on the next tick, at its own decimation */
    /* The next transfer goes to the slot that just became idle. */
    const uint32_t abandoned = core->reassembly.abandoned;
    mm_reassembly_init(&core->reassembly, core->slots[staging_slot(core)], core->cfg.max_policy_bytes);
    core->reassembly.abandoned = abandoned;
    set_ack(core, core->ack_transfer_id, MM_ACK_ACCEPTED, MM_REASON_NONE);
    return MM_OK;
}

uint32_t mm_core_policy_version_floor(const mm_core_t *core)
{
    return core->version_floor;
}

mm_policy_reason_t mm_core_policy_finish(mm_core_t *core)
{
    const mm_policy_reason_t reason = mm_core_policy_verify(core);
    (void)mm_core_policy_commit(core);
    return reason;
}

mm_policy_reason_t mm_core_policy_load(mm_core_t *core, const uint8_t *image, uint32_t len)
{
    if (core->staged != STAGED_NONE) {
        return MM_REASON_BUSY;
    }
    if (transfer_receiving(core)) {
        truncate_transfer(core);
    }
    set_ack(core, 0u, MM_ACK_RECEIVING, MM_REASON_NONE);
    if (len > core->cfg.max_policy_bytes) {
        set_ack(core, 0u, MM_ACK_REJECTED, MM_REASON_TOO_LARGE);
        return MM_REASON_TOO_LARGE;
    }
    mm_reassembly_abort(&core->reassembly);
    memcpy(core->slots[staging_slot(core)], image, len);
    core->staged_len = len;
    core->staged = STAGED_RECEIVED;
    return mm_core_policy_finish(core);
}

void mm_core_policy_ack(const mm_core_t *core, mm_policy_ack_t *out)
{
    memset(out, 0, sizeof *out);
    out->transfer_id = core->ack_transfer_id;
    out->status = core->ack_status;
    out->reason = core->ack_reason;
    if (core->reassembly.transfer_id == core->ack_transfer_id) {
        out->received_chunks = core->reassembly.received_chunks;
        out->total_chunks = core->reassembly.total_chunks;
        if (out->status == MM_ACK_RECEIVING) {
            out->missing_count = (uint8_t)mm_reassembly_missing(&core->reassembly, out->missing, MM_ACK_MAX_MISSING);
        }
    }
    out->active_policy_crc32 = core->policy_active ? core->active_crc32 : 0u;
}

bool mm_core_policy_truncated_ack(mm_core_t *core, mm_policy_ack_t *out)
{
    if (!core->truncated_due) {
        return false;
    }
    *out = core->truncated_ack;
    core->truncated_due = false;
    return true;
}

bool mm_core_policy_active(const mm_core_t *core, mm_policy_header_t *out)
{
    if (core->policy_active && out != NULL) {
        *out = core->active_header;
    }
    return core->policy_active;
}

uint8_t mm_core_pop_batch(mm_core_t *core, mm_batch_t *batch, uint8_t max)
{
    const uint8_t n = mm_samples_pop_batch(&core->samples, batch, max);
    batch->dt_s = core->last_dt_s;
    batch->policy_crc32 = core->policy_active ? core->active_crc32 : 0u;
    return n;
}

uint32_t mm_core_samples_available(const mm_core_t *core)
{
    return mm_samples_available(&core->samples);
}

void mm_core_get_tuning(const mm_core_t *core, mm_tuning_t *out)
{
    out->gains = core->gains;
    out->current_limit_a = core->command_limit_a > 0.0f ? fminf(core->command_limit_a, core->cfg.current_limit_a)
                                                        : core->cfg.current_limit_a;
}

mm_status_t mm_core_set_tuning(mm_core_t *core, const mm_tuning_t *tuning)
{
    if (!gains_valid(&tuning->gains, core->cfg.current_limit_a) || !(tuning->current_limit_a > 0.0f) ||
        tuning->current_limit_a > core->cfg.current_limit_a) {
        return MM_ERR_ARGUMENT;
    }
    core->gains = tuning->gains;
    core->command_limit_a = tuning->current_limit_a;
    return MM_OK;
}

void mm_core_gain_limits(const mm_core_t *core, mm_pid_gains_t *max)
{
    *max = gain_limits(core->cfg.current_limit_a);
}

const mm_config_t *mm_core_config(const mm_core_t *core)
{
    return &core->cfg;
}

uint32_t mm_core_guard_trips(const mm_core_t *core)
{
    return core->guard_trips;
}
