/* Policy images: acceptance, every refusal with the last good policy still active, double buffering, chunked
 * transfer with loss, duplication and reordering, inference failure, schedule mode (the policy's action scales the
 * PTOS base law's braking deceleration) and the exploration noise of POLICY mode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mm_core/mm_crc32.h"
#include "test_support.h"

#define MODEL_BYTES 700u
#define IMAGE_BYTES (MM_POLICY_HEADER_BYTES + MODEL_BYTES + MM_POLICY_SIGNATURE_BYTES)

static test_key_t g_key;
static fake_backend_t g_fake;
static uint8_t g_model[MODEL_BYTES];
static uint8_t g_image[IMAGE_BYTES];
static uint8_t g_bad[IMAGE_BYTES + 16];

static mm_core_t *policy_core_seeded(uint16_t decimation, uint32_t exploration_seed)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f;
    cfg.policy_decimation = decimation;
    cfg.exploration_seed = exploration_seed;
    memcpy(cfg.public_key, g_key.public_key, sizeof g_key.public_key);
    memset(&g_fake, 0, sizeof g_fake);
    g_fake.gain = 0.5f;
    cfg.backend = fake_backend(&g_fake);
    return test_core(&cfg);
}

static mm_core_t *policy_core_decimated(uint16_t decimation)
{
    return policy_core_seeded(decimation, 0u);
}

static mm_core_t *policy_core(void)
{
    return policy_core_decimated(1u);
}

static int setup(void **state)
{
    (void)state;
    test_key_make(&g_key, 7u);
    for (unsigned i = 0; i < MODEL_BYTES; ++i) {
        g_model[i] = (uint8_t)(i * 31u + 7u);
    }
    assert_int_equal(test_image_make(g_image, &g_key, g_model, MODEL_BYTES, 2.0f), IMAGE_BYTES);
    return 0;
}

static void valid_image_becomes_active_and_drives(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    assert_int_equal(test_state(core).policy_crc32, mm_crc32(0u, g_image, IMAGE_BYTES));
    mm_policy_header_t h;
    assert_true(mm_core_policy_active(core, &h));
    assert_float_equal(h.scales.current_limit_a, 2.0f, 0.0);
    /* target 3 rad ahead = coarse error 1.0 -> action 0.5 -> 0.5 * 2 A */
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 3.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    mm_core_step(core, &s, 0.001f, &out);
    assert_float_equal(out.current_cmd_a, 1.0f, 1e-6);
    assert_int_equal(g_fake.invokes, 1);
}

/* Every corruption: refused with the given reason, the previous policy stays active and keeps running. */
static void check_refused(mm_core_t *core, uint32_t len, mm_policy_reason_t reason)
{
    const uint32_t before = test_state(core).policy_crc32;
    assert_int_equal(mm_core_policy_load(core, g_bad, len), reason);
    assert_int_equal(test_state(core).policy_crc32, before);
    mm_policy_ack_t ack;
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.status, MM_ACK_REJECTED);
    assert_int_equal(ack.reason, reason);
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    const int invokes = g_fake.invokes;
    mm_core_step(core, &s, 0.001f, &out);
    assert_int_equal(g_fake.invokes, invokes + 1);
    assert_float_equal(out.current_cmd_a, 1.0f, 1e-6);
}

static void corrupt_images_are_refused_keeping_the_last_good_policy(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 3.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[MM_POLICY_HEADER_BYTES + 10] ^= 0x01u; /* model byte: model CRC */
    check_refused(core, IMAGE_BYTES, MM_REASON_CRC);

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[IMAGE_BYTES - 1] ^= 0x01u; /* signature byte */
    check_refused(core, IMAGE_BYTES, MM_REASON_SIGNATURE);

    test_key_t other;
    test_key_make(&other, 99u);
    test_image_make(g_bad, &other, g_model, MODEL_BYTES, 2.0f); /* signed by someone else */
    check_refused(core, IMAGE_BYTES, MM_REASON_SIGNATURE);

    memcpy(g_bad, g_image, IMAGE_BYTES);
    check_refused(core, IMAGE_BYTES - 1u, MM_REASON_FORMAT); /* truncated */
    check_refused(core, 20u, MM_REASON_FORMAT);              /* shorter than a header */

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[0] = 'X';
    check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT); /* magic */

    for (uint8_t version = 1u; version <= 3u; version += 2u) {
        memcpy(g_bad, g_image, IMAGE_BYTES);
        g_bad[4] = version; /* format 1 (48-byte header) and anything newer than 2 */
        check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);
    }

    /* schedule_range and base gains: signed images whose header fields are out of range. schedule_range must be
     * finite and in [0, MM_MAX_SCHEDULE_RANGE = 2]; the base gains finite and >= 0 whether or not a base law runs. */
    const mm_pid_gains_t good = {.kp_pos = 2.0f, .v_max = 5.0f, .kp_vel = 0.1f, .ki_vel = 1.0f, .decel_rad_s2 = 30.0f};
    const float bad_ranges[] = {-0.1f, -1e-30f, nextafterf(MM_MAX_SCHEDULE_RANGE, 3.0f), 2.5f,
                                NAN,   INFINITY, -INFINITY};
    for (unsigned i = 0; i < sizeof bad_ranges / sizeof bad_ranges[0]; ++i) {
        test_image_make_schedule(g_bad, &g_key, g_model, MODEL_BYTES, 2.0f, 0u, bad_ranges[i], &good);
        check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);
    }
    for (unsigned field = 0; field < 6u; ++field) {
        const float bad_values[] = {-1.0f, NAN, INFINITY};
        for (unsigned j = 0; j < 3u; ++j) {
            for (int scheduled = 0; scheduled <= 1; ++scheduled) {
                mm_pid_gains_t g = good;
                ((float *)&g)[field] = bad_values[j];
                test_image_make_schedule(g_bad, &g_key, g_model, MODEL_BYTES, 2.0f, 0u, scheduled ? 0.5f : 0.0f, &g);
                check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);
            }
        }
    }
    /* Schedule mode needs a PTOS base law: a deceleration to scale (> 0) and its linear zone (kp_pos > 0). */
    mm_pid_gains_t no_linear_zone = good;
    no_linear_zone.kp_pos = 0.0f;
    test_image_make_schedule(g_bad, &g_key, g_model, MODEL_BYTES, 2.0f, 0u, 0.5f, &no_linear_zone);
    check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);
    mm_pid_gains_t linear = good;
    linear.decel_rad_s2 = 0.0f; /* a linear PID has no braking deceleration to schedule */
    const float scheduled_ranges[] = {nextafterf(0.0f, 1.0f), 0.5f, MM_MAX_SCHEDULE_RANGE};
    for (unsigned i = 0; i < sizeof scheduled_ranges / sizeof scheduled_ranges[0]; ++i) {
        test_image_make_schedule(g_bad, &g_key, g_model, MODEL_BYTES, 2.0f, 0u, scheduled_ranges[i], &linear);
        check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);
    }
    test_image_make_schedule(g_bad, &g_key, g_model, MODEL_BYTES, 2.0f, 0u, 0.5f, NULL); /* no base gains at all */
    check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT);

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[9] = 7;
    check_refused(core, IMAGE_BYTES, MM_REASON_SHAPE); /* obs_dim */

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[10] = 2;
    check_refused(core, IMAGE_BYTES, MM_REASON_SHAPE); /* action_dim */

    check_refused(core, MM_MAX_POLICY_BYTES + 1u, MM_REASON_TOO_LARGE);

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_fake.fail_load = 1;
    check_refused(core, IMAGE_BYTES, MM_REASON_BACKEND);
    g_fake.fail_load = 0;
}

static void new_policies_load_into_the_idle_slot(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const uint8_t first = g_fake.last_slot;
    uint8_t *second = g_bad;
    g_model[0] ^= 0xFFu;
    const uint32_t len = test_image_make(second, &g_key, g_model, MODEL_BYTES, 3.0f);
    g_model[0] ^= 0xFFu;
    assert_int_equal(mm_core_policy_load(core, second, len), MM_REASON_NONE);
    assert_int_not_equal(g_fake.last_slot, first);
    assert_int_equal(test_state(core).policy_crc32, mm_crc32(0u, second, len));
}

static uint8_t send_chunk(mm_core_t *core, uint32_t id, uint16_t index, uint16_t chunk, bool *ack_due)
{
    const uint32_t offset = (uint32_t)index * chunk;
    const uint16_t len = (uint16_t)((IMAGE_BYTES - offset) < chunk ? (IMAGE_BYTES - offset) : chunk);
    return mm_core_policy_chunk(core, id, IMAGE_BYTES, mm_crc32(0u, g_image, IMAGE_BYTES), index, chunk,
                                g_image + offset, len, ack_due);
}

static void chunks_reassemble_despite_loss_duplicates_and_reordering(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    const uint16_t chunk = 100u;
    const uint16_t n = (IMAGE_BYTES + chunk - 1u) / chunk; /* 9 */
    bool due = false;
    /* First pass, backwards, losing chunks 2 and 5, duplicating 7. */
    for (int i = n - 1; i >= 0; --i) {
        if (i == 2 || i == 5) {
            continue;
        }
        assert_int_equal(send_chunk(core, 42u, (uint16_t)i, chunk, &due), MM_ACK_RECEIVING);
        if (i == 7) {
            assert_int_equal(send_chunk(core, 42u, 7u, chunk, &due), MM_ACK_RECEIVING);
            assert_true(due); /* a retry: the sender should hear what is missing */
        }
    }
    mm_policy_ack_t ack;
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.transfer_id, 42u);
    assert_int_equal(ack.received_chunks, n - 2u);
    assert_int_equal(ack.total_chunks, n);
    assert_int_equal(ack.missing_count, 2);
    assert_int_equal(ack.missing[0], 2);
    assert_int_equal(ack.missing[1], 5);
    assert_int_equal(test_state(core).policy_crc32, 0u);
    /* Resend the gaps. */
    send_chunk(core, 42u, 5u, chunk, &due);
    send_chunk(core, 42u, 2u, chunk, &due);
    assert_false(due); /* the ack comes after verification */
    assert_true(mm_core_policy_verify_pending(core));
    assert_int_equal(mm_core_policy_verify(core), MM_REASON_NONE);
    assert_int_equal(test_state(core).policy_crc32, 0u); /* verified but not yet swapped in */
    assert_int_equal(mm_core_policy_commit(core), MM_OK);
    assert_int_equal(mm_core_policy_commit(core), MM_ERR_STATE);
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.status, MM_ACK_ACCEPTED);
    assert_int_equal(ack.active_policy_crc32, mm_crc32(0u, g_image, IMAGE_BYTES));
    /* A late duplicate changes nothing. */
    assert_int_equal(send_chunk(core, 42u, 1u, chunk, &due), MM_ACK_ACCEPTED);
}

static void assert_truncated_ack(mm_core_t *core, uint32_t transfer_id, uint16_t received, uint32_t active_crc)
{
    mm_policy_ack_t ack;
    assert_true(mm_core_policy_truncated_ack(core, &ack));
    assert_int_equal(ack.transfer_id, transfer_id);
    assert_int_equal(ack.status, MM_ACK_REJECTED);
    assert_int_equal(ack.reason, MM_REASON_TRUNCATED);
    assert_int_equal(ack.received_chunks, received);
    assert_int_equal(ack.total_chunks, (IMAGE_BYTES + 99u) / 100u);
    assert_int_equal(ack.active_policy_crc32, active_crc);
    assert_false(mm_core_policy_truncated_ack(core, &ack)); /* reported once */
    assert_int_equal(test_state(core).policy_crc32, active_crc);
}

static void a_new_transfer_id_truncates_the_unfinished_one(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const uint32_t good = test_state(core).policy_crc32;
    bool due = false;
    mm_policy_ack_t ack;
    for (uint16_t i = 0; i < 3u; ++i) {
        send_chunk(core, 50u, i, 100u, &due);
    }
    assert_false(mm_core_policy_truncated_ack(core, &ack));
    assert_int_equal(send_chunk(core, 51u, 0u, 100u, &due), MM_ACK_RECEIVING);
    assert_truncated_ack(core, 50u, 3u, good);
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.transfer_id, 51u);
    assert_int_equal(ack.status, MM_ACK_RECEIVING);
    /* The old sender carrying on starts its transfer again from scratch, truncating 51 in turn. */
    send_chunk(core, 50u, 3u, 100u, &due);
    assert_truncated_ack(core, 51u, 1u, good);
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.received_chunks, 1u);
    /* A direct load also abandons the transfer in progress. */
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    assert_truncated_ack(core, 50u, 1u, good);
    /* A finished transfer is not truncated by the next one. */
    for (uint16_t i = 0; i < (IMAGE_BYTES + 99u) / 100u; ++i) {
        send_chunk(core, 52u, i, 100u, &due);
    }
    assert_int_equal(mm_core_policy_finish(core), MM_REASON_NONE);
    send_chunk(core, 53u, 0u, 100u, &due);
    assert_false(mm_core_policy_truncated_ack(core, &ack));
}

static void a_silent_transfer_times_out_as_truncated(void **state)
{
    (void)state;
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    assert_float_equal(cfg.transfer_timeout_s, 2.0f, 0.0);
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const uint32_t good = test_state(core).policy_crc32;
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    bool due = false;
    mm_policy_ack_t ack;
    /* Chunks every 1.5 s keep a transfer alive; 2 s of silence ends it. */
    for (uint16_t i = 0; i < 4u; ++i) {
        send_chunk(core, 60u, i, 100u, &due);
        for (int k = 0; k < 1500; ++k) {
            mm_core_step(core, &s, 0.001f, &out);
        }
        assert_false(mm_core_policy_truncated_ack(core, &ack));
    }
    for (int k = 0; k < 499; ++k) {
        mm_core_step(core, &s, 0.001f, &out);
    }
    assert_false(mm_core_policy_truncated_ack(core, &ack));
    for (int k = 0; k < 3; ++k) {
        mm_core_step(core, &s, 0.001f, &out);
    }
    assert_truncated_ack(core, 60u, 4u, good);
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.transfer_id, 60u);
    assert_int_equal(ack.status, MM_ACK_REJECTED);
    assert_int_equal(ack.reason, MM_REASON_TRUNCATED);
    /* Nothing runs after that: no second report, and the previous policy still drives. */
    for (int k = 0; k < 3000; ++k) {
        mm_core_step(core, &s, 0.001f, &out);
    }
    assert_false(mm_core_policy_truncated_ack(core, &ack));
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 3.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    mm_core_step(core, &s, 0.001f, &out);
    assert_float_equal(out.current_cmd_a, 1.0f, 1e-6);
}

static void corrupted_chunk_fails_the_image_crc(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const uint32_t good = test_state(core).policy_crc32;
    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[150] ^= 0x40u;
    bool due = false;
    const uint16_t chunk = 400u;
    uint8_t status = 0;
    for (uint16_t i = 0; i < 3u; ++i) {
        const uint32_t off = (uint32_t)i * chunk;
        const uint16_t len = (uint16_t)(IMAGE_BYTES - off < chunk ? IMAGE_BYTES - off : chunk);
        status = mm_core_policy_chunk(core, 7u, IMAGE_BYTES, mm_crc32(0u, g_image, IMAGE_BYTES), i, chunk,
                                      g_bad + off, len, &due);
    }
    assert_int_equal(status, MM_ACK_REJECTED);
    mm_policy_ack_t ack;
    mm_core_policy_ack(core, &ack);
    assert_int_equal(ack.reason, MM_REASON_CRC);
    assert_int_equal(test_state(core).policy_crc32, good);
}

static void inference_failure_latches_policy_fault_and_holds(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    g_fake.fail_invoke = 1;
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    mm_core_step(core, &s, 0.001f, &out);
    mm_state_t st;
    mm_core_get_state(core, &st);
    assert_int_equal(st.fault_flags, MM_FAULT_POLICY);
    assert_int_equal(st.mode, MM_MODE_HOLD);
    assert_true(out.driver_enable);
}

static void policy_decimation_holds_the_action_between_runs(void **state)
{
    (void)state;
    mm_core_t *core = policy_core_decimated(4u);
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    for (int k = 0; k < 8; ++k) {
        mm_core_step(core, &s, 0.001f, &out);
    }
    assert_int_equal(g_fake.invokes, 2);
}

/* Policy invocations in n ticks of POLICY mode. */
static int invokes_in(mm_core_t *core, int n)
{
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    const int before = g_fake.invokes;
    for (int k = 0; k < n; ++k) {
        mm_core_step(core, &s, 0.001f, &out);
    }
    return g_fake.invokes - before;
}

static void an_image_carries_its_own_decimation_counted_from_each_episode(void **state)
{
    (void)state;
    mm_core_t *core = policy_core_decimated(4u);
    static uint8_t own[IMAGE_BYTES];
    assert_int_equal(test_image_make_decimated(own, &g_key, g_model, MODEL_BYTES, 2.0f, 10u), IMAGE_BYTES);
    assert_int_equal(mm_core_policy_load(core, own, IMAGE_BYTES), MM_REASON_NONE);
    mm_policy_header_t header;
    assert_true(mm_core_policy_active(core, &header));
    assert_int_equal(header.policy_decimation, 10);
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    assert_int_equal(invokes_in(core, 3), 1); /* ticks 0, 1, 2: only tick 0 runs the policy */
    /* A new target is a new episode: the policy decides on its first tick. */
    const mm_command_t next = {.mode = MM_MODE_POLICY, .target = 2.0f};
    assert_int_equal(mm_core_command(core, &next), MM_OK);
    assert_int_equal(invokes_in(core, 1), 1);
    /* An image without its own decimation (0) runs at the firmware's (4), phase restarted at the swap. */
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    assert_int_equal(invokes_in(core, 8), 2);
    assert_int_equal(mm_core_policy_load(core, own, IMAGE_BYTES), MM_REASON_NONE);
    assert_int_equal(invokes_in(core, 20), 2);
}

/* ---- schedule policies (contract sections 4, 5 and 8) ---- */

#define DT_S 0.001f
#define LIMIT_A 2.0f /* the schedule images' current_limit_a */

static uint8_t g_schedule[IMAGE_BYTES];

/* The base law of the schedule tests: PTOS whose linear zone (decel / (2 kp_pos^2) = 37.5 mrad at a = 0, 0.28 rad at
 * decel * e^2) is far smaller than the errors below, so the braking curve, and with it the schedule, acts on every
 * tick; v_max is above every demand, so the clip never hides a change of deceleration. Unlike the config's gains
 * (decel 0, kp_vel 0.2): a schedule on the wrong law cannot pass. */
static const mm_pid_gains_t k_base = {
    .kp_pos = 20.0f, .v_max = 30.0f, .kp_vel = 0.1f, .ki_vel = 1.0f, .gravity_ff_a = 0.05f, .decel_rad_s2 = 30.0f};

/* Signed schedule images at the edges of the rules are accepted: schedule_range 0 (any finite gains >= 0, even PTOS
 * without kp_pos or a linear PID: no base law runs) and up to MM_MAX_SCHEDULE_RANGE with a PTOS base law. */
static void schedule_fields_within_the_rules_are_accepted(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    mm_pid_gains_t no_linear_zone = k_base;
    no_linear_zone.kp_pos = 0.0f;
    mm_pid_gains_t linear = k_base;
    linear.decel_rad_s2 = 0.0f;
    const struct {
        float range;
        const mm_pid_gains_t *base;
    } ok[] = {{0.0f, NULL}, {0.0f, &k_base}, {0.0f, &no_linear_zone}, {0.0f, &linear}, {-0.0f, &linear},
              {nextafterf(0.0f, 1.0f), &k_base}, {0.5f, &k_base}, {1.5f, &k_base}, {MM_MAX_SCHEDULE_RANGE, &k_base}};
    for (unsigned i = 0; i < sizeof ok / sizeof ok[0]; ++i) {
        test_image_make_schedule(g_schedule, &g_key, g_model, MODEL_BYTES, LIMIT_A, 0u, ok[i].range, ok[i].base);
        assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
        mm_policy_header_t h;
        assert_true(mm_core_policy_active(core, &h));
        assert_true(h.schedule_range == ok[i].range);
        if (ok[i].base != NULL) {
            assert_true(h.base_gains.decel_rad_s2 == ok[i].base->decel_rad_s2);
            assert_true(h.base_gains.kp_pos == ok[i].base->kp_pos);
        }
    }
}

/* A core running a schedule image (current limit 2 A) whose stub outputs the constant `a`, in POLICY mode to
 * target_rad, streaming samples. */
static mm_core_t *schedule_core(uint8_t decimation, float schedule_range, const mm_pid_gains_t *base, float a,
                                float target_rad, float std)
{
    mm_core_t *core = policy_core_seeded(1u, 11u);
    assert_int_equal(test_image_make_schedule(g_schedule, &g_key, g_model, MODEL_BYTES, LIMIT_A, decimation,
                                              schedule_range, base),
                     IMAGE_BYTES);
    assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
    g_fake.gain = 0.0f;
    g_fake.bias = a;
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = target_rad, .stream_transitions = true,
                              .exploration_std = std, .exploration_tau_s = 0.01f};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    return core;
}

/* The reference of schedule mode, outside the core: its own PID state and a velocity filter with the image's tau.
 * `moved` counts the ticks on which the scheduled law's current differs from the unscheduled base law's (from the
 * same integrator), so a test can show the schedule acted. */
typedef struct {
    mm_pid_t pid;
    mm_velocity_filter_t velocity;
    float schedule_range;
    mm_pid_gains_t base;
    int moved;
} schedule_ref_t;

static void ref_init(schedule_ref_t *ref, float schedule_range, const mm_pid_gains_t *base)
{
    mm_pid_reset(&ref->pid);
    mm_velocity_filter_reset(&ref->velocity);
    ref->schedule_range = schedule_range;
    ref->base = *base;
    ref->moved = 0;
}

/* The reference current for the policy action a on the position the core measured: the base law with its braking
 * deceleration scaled by expf(schedule_range * a), the image's current limit as its clamp, nothing added. */
static float ref_current(schedule_ref_t *ref, float position, float velocity, float target_rad, float a)
{
    mm_pid_gains_t gains = ref->base;
    gains.decel_rad_s2 = ref->base.decel_rad_s2 * expf(ref->schedule_range * a);
    mm_pid_t unscheduled = ref->pid;
    const float plain = mm_pid_step(&unscheduled, &ref->base, LIMIT_A, DT_S, position, velocity, target_rad, 0.0f);
    const float current = mm_pid_step(&ref->pid, &gains, LIMIT_A, DT_S, position, velocity, target_rad, 0.0f);
    ref->moved += current != plain;
    return current;
}

/* The shaft moves 5 counts per tick from count 100: position and velocity change every tick. */
static uint16_t moving_count(int k)
{
    return (uint16_t)(100 + 5 * k);
}

/* One tick: step the core at encoder count, then the reference on the position the core measured; returns the
 * sample's action a and checks the current is exactly the scheduled base law's. */
static float schedule_tick(mm_core_t *core, schedule_ref_t *ref, uint16_t count, float target_rad, float *current)
{
    const mm_sensors_t s = test_sensors(count);
    mm_actuator_t out;
    mm_core_step(core, &s, DT_S, &out);
    mm_batch_t batch;
    assert_int_equal(mm_core_pop_batch(core, &batch, 1u), 1u);
    const float a = batch.actions[0];
    const float position = test_state(core).position_rad;
    const float velocity = mm_velocity_filter_update(&ref->velocity, position, DT_S, 0.004f);
    const float expected = ref_current(ref, position, velocity, target_rad, a);
    assert_true(out.current_cmd_a == expected);
    assert_true(fabsf(out.current_cmd_a) <= LIMIT_A);
    *current = out.current_cmd_a;
    return a;
}

static void schedule_range_zero_behaves_exactly_as_a_plain_policy(void **state)
{
    (void)state;
    const mm_sensors_t s0 = test_sensors(0);
    float current[2][300];
    float obs[2][MM_OBS_DIM];
    for (int variant = 0; variant < 2; ++variant) {
        mm_core_t *core = policy_core();
        /* schedule_range 0 with (ignored) base gains vs the image without any */
        test_image_make_schedule(g_schedule, &g_key, g_model, MODEL_BYTES, LIMIT_A, 0u, 0.0f, variant ? &k_base : NULL);
        assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
        const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f};
        assert_int_equal(mm_core_command(core, &cmd), MM_OK);
        for (int k = 0; k < 300; ++k) {
            const mm_sensors_t s = test_sensors(moving_count(k));
            mm_actuator_t out;
            mm_core_step(core, k == 0 ? &s0 : &s, DT_S, &out);
            current[variant][k] = out.current_cmd_a;
        }
        mm_core_get_observation(core, obs[variant]);
    }
    assert_memory_equal(current[0], current[1], sizeof current[0]);
    assert_memory_equal(obs[0], obs[1], sizeof obs[0]);
    /* the plain policy: 0.5 * coarse error, times 2 A */
    assert_true(current[0][0] == mm_clip_unit(0.5f * (1.0f / 3.0f)) * LIMIT_A);
}

/* At a = 0 schedule mode is the classical PTOS controller: bit for bit what POSITION mode applies with the same gains,
 * current limit and velocity filter, tick for tick on a moving shaft, integrator included. */
static void schedule_at_zero_action_is_the_ptos_position_mode(void **state)
{
    (void)state;
    float current[2][400];
    for (int variant = 0; variant < 2; ++variant) {
        mm_config_t cfg;
        mm_core_config_default(&cfg);
        cfg.heartbeat_timeout_s = 0.0f;
        cfg.gains = k_base;
        cfg.velocity_filter_tau_s = 0.004f; /* the image's tau: POSITION filters the velocity as the observation */
        memcpy(cfg.public_key, g_key.public_key, sizeof g_key.public_key);
        memset(&g_fake, 0, sizeof g_fake); /* the stub's action: 0 */
        cfg.backend = fake_backend(&g_fake);
        mm_core_t *core = test_core(&cfg);
        mm_command_t cmd = {.mode = MM_MODE_POSITION, .target = 1.0f, .current_limit_a = LIMIT_A};
        if (variant == 1) {
            test_image_make_schedule(g_schedule, &g_key, g_model, MODEL_BYTES, LIMIT_A, 0u, 1.0f, &k_base);
            assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
            cmd.mode = MM_MODE_POLICY;
        }
        assert_int_equal(mm_core_command(core, &cmd), MM_OK);
        for (int k = 0; k < 400; ++k) {
            const mm_sensors_t s = test_sensors(moving_count(k));
            mm_actuator_t out;
            mm_core_step(core, &s, DT_S, &out);
            current[variant][k] = out.current_cmd_a;
        }
    }
    assert_memory_equal(current[0], current[1], sizeof current[0]);
    assert_true(current[0][399] != current[0][0]);
}

/* The schedule scales the braking deceleration by exp(schedule_range * a): on the first tick (at rest, empty
 * integrator) the current is the PTOS braking curve written out with that deceleration, and it grows with a (a
 * target ahead, in the braking zone: a harder brake allows a faster approach, a < 0 brakes earlier). */
static void schedule_scales_the_braking_deceleration_by_exp(void **state)
{
    (void)state;
    const float ranges[] = {0.3f, 1.0f, MM_MAX_SCHEDULE_RANGE};
    const float actions[] = {-1.0f, -0.5f, -0.1f, 0.0f, 0.1f, 0.5f, 1.0f};
    for (unsigned i = 0; i < sizeof ranges / sizeof ranges[0]; ++i) {
        float previous = -INFINITY;
        for (unsigned j = 0; j < sizeof actions / sizeof actions[0]; ++j) {
            mm_core_t *core = schedule_core(1u, ranges[i], &k_base, actions[j], 1.0f, 0.0f);
            const mm_sensors_t s = test_sensors(100);
            mm_actuator_t out;
            mm_core_step(core, &s, DT_S, &out);
            const float position = test_state(core).position_rad;
            const float decel = k_base.decel_rad_s2 * expf(ranges[i] * actions[j]);
            /* the braking distance: the error corrected for the work of gravity (contract section 8) */
            const float error = (1.0f - position) + (k_base.gravity_ff_a / LIMIT_A) * (cosf(position) - cosf(1.0f));
            assert_true(error > decel / (2.0f * k_base.kp_pos * k_base.kp_pos)); /* the braking zone */
            const float demand = sqrtf(2.0f * decel * error) - decel / (2.0f * k_base.kp_pos);
            const float expected = k_base.kp_vel * demand + k_base.gravity_ff_a * sinf(position);
            assert_float_equal(out.current_cmd_a, expected, 1e-6);
            assert_true(out.current_cmd_a > previous);
            previous = out.current_cmd_a;
        }
    }
}

static void schedule_runs_the_base_law_with_the_scheduled_deceleration(void **state)
{
    (void)state;
    schedule_ref_t ref;
    float current = 0.0f;
    /* Moderate: a = 0.5 brakes at 30 e^0.15; the current never reaches the limit. */
    mm_core_t *core = schedule_core(1u, 0.3f, &k_base, 0.5f, 1.0f, 0.0f);
    ref_init(&ref, 0.3f, &k_base);
    for (int k = 0; k < 400; ++k) {
        assert_true(schedule_tick(core, &ref, moving_count(k), 1.0f, &current) == 0.5f);
        assert_true(fabsf(current) < LIMIT_A);
    }
    assert_true(ref.pid.integrator_a != 0.0f);
    assert_int_equal(ref.moved, 400); /* the schedule changed the current on every tick */
    /* Strong base, the largest range, a = 0.9 (braking at 30 e^1.8): the PID's own clamp holds the output at 2 A
     * on the first ticks (nothing is added after it), the scheduled braking curve then takes it below the limit. */
    const mm_pid_gains_t strong = {.kp_pos = 20.0f, .v_max = 20.0f, .kp_vel = 0.5f, .ki_vel = 2.0f,
                                   .decel_rad_s2 = 30.0f};
    core = schedule_core(1u, MM_MAX_SCHEDULE_RANGE, &strong, 0.9f, 0.5f, 0.0f);
    ref_init(&ref, MM_MAX_SCHEDULE_RANGE, &strong);
    int clamped = 0;
    int inside = 0;
    for (int k = 0; k < 400; ++k) {
        schedule_tick(core, &ref, moving_count(k), 0.5f, &current);
        clamped += fabsf(current) == LIMIT_A;
        inside += fabsf(current) < LIMIT_A;
    }
    assert_true(clamped > 0 && inside > 0);
    assert_true(ref.moved > 0);
    /* A stub output outside [-1, 1] is clipped to a = 1 first, as any policy action: the schedule is exp(0.25). */
    core = schedule_core(1u, 0.25f, &k_base, 3.0f, 1.0f, 0.0f);
    ref_init(&ref, 0.25f, &k_base);
    for (int k = 0; k < 50; ++k) {
        assert_true(schedule_tick(core, &ref, moving_count(k), 1.0f, &current) == 1.0f);
    }
    assert_int_equal(ref.moved, 50);
}

static void schedule_base_integrator_restarts_with_each_episode(void **state)
{
    (void)state;
    schedule_ref_t ref;
    float current = 0.0f;
    mm_core_t *core = schedule_core(1u, 0.3f, &k_base, 0.2f, 1.0f, 0.0f);
    ref_init(&ref, 0.3f, &k_base);
    int k = 0;
    for (; k < 200; ++k) {
        schedule_tick(core, &ref, moving_count(k), 1.0f, &current);
    }
    assert_true(ref.pid.integrator_a != 0.0f);
    /* A new target: a new episode, the base starts from an empty integrator (the reference too). */
    const mm_command_t next = {.mode = MM_MODE_POLICY, .target = 1.5f, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &next), MM_OK);
    mm_pid_reset(&ref.pid);
    for (const int end = k + 200; k < end; ++k) {
        schedule_tick(core, &ref, moving_count(k), 1.5f, &current);
    }
    assert_true(ref.pid.integrator_a != 0.0f);
    /* POLICY entered again from HOLD, same target. */
    const mm_command_t hold = {.mode = MM_MODE_HOLD, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &hold), MM_OK);
    const mm_sensors_t s = test_sensors(moving_count(k++));
    mm_actuator_t out;
    mm_core_step(core, &s, DT_S, &out);
    mm_velocity_filter_update(&ref.velocity, test_state(core).position_rad, DT_S, 0.004f);
    mm_batch_t batch;
    (void)mm_core_pop_batch(core, &batch, 1u);
    assert_int_equal(mm_core_command(core, &next), MM_OK);
    mm_pid_reset(&ref.pid);
    for (const int end = k + 100; k < end; ++k) {
        schedule_tick(core, &ref, moving_count(k), 1.5f, &current);
    }
    /* A new policy becoming active (the same image again). */
    assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
    mm_pid_reset(&ref.pid);
    for (const int end = k + 100; k < end; ++k) {
        schedule_tick(core, &ref, moving_count(k), 1.5f, &current);
    }
    assert_int_equal(ref.moved, k - 1); /* every POLICY tick (not the HOLD one) */
}

static void schedule_mode_observes_and_records_the_policys_own_action(void **state)
{
    (void)state;
    schedule_ref_t ref;
    float current = 0.0f;
    float obs[MM_OBS_DIM];
    /* Without noise: a = 0.5 in the sample (FLAG_POLICY set) and in the next observation, not the applied current. */
    mm_core_t *core = schedule_core(1u, 0.3f, &k_base, 0.5f, 1.0f, 0.0f);
    ref_init(&ref, 0.3f, &k_base);
    for (int k = 0; k < 100; ++k) {
        const float a = schedule_tick(core, &ref, moving_count(k), 1.0f, &current);
        assert_true(a == 0.5f);
        assert_true(current / LIMIT_A != a);
        mm_core_get_observation(core, obs);
        assert_true(obs[6] == (k == 0 ? 0.0f : 0.5f));
    }
    /* With noise: the sample's a carries the noise (FLAG_POLICY clear), the next observation shows it, and the
     * current is the base law braking at decel * exp(schedule_range * a) for that noisy a (schedule_tick checks it). */
    core = schedule_core(1u, 0.3f, &k_base, 0.5f, 1.0f, 0.2f);
    ref_init(&ref, 0.3f, &k_base);
    float previous = 0.0f;
    int differing = 0;
    for (int k = 0; k < 200; ++k) {
        const mm_sensors_t s = test_sensors(moving_count(k));
        mm_actuator_t out;
        mm_core_step(core, &s, DT_S, &out);
        mm_batch_t batch;
        assert_int_equal(mm_core_pop_batch(core, &batch, 1u), 1u);
        const float a = batch.actions[0];
        assert_true((batch.flags[0] & MM_SAMPLE_POLICY) == 0u);
        assert_true(batch.observations[6] == previous);
        const float position = test_state(core).position_rad;
        const float velocity = mm_velocity_filter_update(&ref.velocity, position, DT_S, 0.004f);
        assert_true(out.current_cmd_a == ref_current(&ref, position, velocity, 1.0f, a));
        differing += a != 0.5f;
        previous = a;
    }
    assert_true(differing > 190);
}

static void schedule_decimation_holds_a_while_the_base_runs_every_tick(void **state)
{
    (void)state;
    schedule_ref_t ref;
    float current[40];
    float a[40];
    mm_core_t *core = schedule_core(4u, 0.5f, &k_base, 0.0f, 1.0f, 0.3f); /* a is the noise alone */
    ref_init(&ref, 0.5f, &k_base);
    const int invokes = g_fake.invokes;
    for (int k = 0; k < 40; ++k) {
        a[k] = schedule_tick(core, &ref, moving_count(k), 1.0f, &current[k]);
    }
    assert_int_equal(g_fake.invokes - invokes, 10);
    int held_changes = 0;
    int decisions = 0;
    for (int k = 1; k < 40; ++k) {
        if (k % 4 != 0) {
            assert_true(a[k] == a[k - 1]);                /* a held between runs */
            held_changes += current[k] != current[k - 1]; /* ... while the base moves the current */
        } else {
            decisions += a[k] != a[k - 1];
        }
    }
    assert_int_equal(held_changes, 30);
    assert_true(decisions >= 8); /* the noise changes a at the runs */
    assert_true(ref.moved >= 36);  /* and the held, non-zero a schedules every tick it is held */
}

/* ---- exploration noise (contract section 4) ---- */

#define EXPLORE_TICKS 20000

static float g_actions[EXPLORE_TICKS];
static uint8_t g_flags[EXPLORE_TICKS];

/* An active policy in POLICY mode to target_rad with the given noise, streaming one sample per tick. */
static mm_core_t *exploring_core(uint16_t decimation, uint32_t seed, float gain, float target_rad, float std,
                                 float tau_s)
{
    mm_core_t *core = policy_core_seeded(decimation, seed);
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    g_fake.gain = gain;
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = target_rad, .stream_transitions = true,
                              .exploration_std = std, .exploration_tau_s = tau_s};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    return core;
}

/* Step n ticks, recording each tick's transition sample (applied action and flags). */
static void record(mm_core_t *core, int n)
{
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    mm_batch_t batch;
    for (int k = 0; k < n; ++k) {
        mm_core_step(core, &s, DT_S, &out);
        assert_int_equal(mm_core_pop_batch(core, &batch, 1u), 1u);
        g_actions[k] = batch.actions[0];
        g_flags[k] = batch.flags[0];
    }
}

/* Mean, standard deviation and lag-1 autocorrelation of the series x[0], x[stride], x[2 stride], ... below n. */
typedef struct {
    double mean, std, autocorrelation;
} stats_t;

static stats_t statistics(const float *x, int n, int stride)
{
    double sum = 0.0;
    int count = 0;
    for (int k = 0; k < n; k += stride, ++count) {
        sum += x[k];
    }
    const double mean = sum / count;
    double var = 0.0;
    double cov = 0.0;
    for (int k = 0; k < n; k += stride) {
        var += (x[k] - mean) * (x[k] - mean);
        if (k + stride < n) {
            cov += (x[k] - mean) * (x[k + stride] - mean);
        }
    }
    return (stats_t){.mean = mean, .std = sqrt(var / count), .autocorrelation = cov / var};
}

/* With a policy that outputs exactly 0 the applied action is the noise itself: an AR(1) process with the given
 * std and lag-1 autocorrelation a = exp(-dt/tau) (0 for white noise). Tolerances: about 4 standard errors for
 * EXPLORE_TICKS samples. */
static void check_noise_statistics(float std, float tau_s)
{
    mm_core_t *core = exploring_core(1u, 42u, 0.0f, 1.0f, std, tau_s);
    record(core, EXPLORE_TICKS);
    const double a = tau_s > 0.0f ? exp(-DT_S / tau_s) : 0.0;
    const stats_t st = statistics(g_actions, EXPLORE_TICKS, 1);
    const double mean_se = std * sqrt((1.0 + a) / (1.0 - a) / EXPLORE_TICKS);
    assert_true(fabs(st.mean) < 4.0 * mean_se);
    assert_true(fabs(st.std - std) < 0.05 * std);
    assert_true(fabs(st.autocorrelation - a) < 0.03);
    assert_true(test_state(core).exploration_std == std);
}

static void exploration_noise_is_white_with_the_commanded_std(void **state)
{
    (void)state;
    check_noise_statistics(0.2f, 0.0f);
}

static void exploration_noise_is_correlated_over_tau(void **state)
{
    (void)state;
    check_noise_statistics(0.2f, 0.005f);  /* a = exp(-1 ms / 5 ms) = 0.82 */
    check_noise_statistics(0.1f, 0.05f);   /* a = 0.98 */
}

static void exploration_noise_follows_the_policy_decimation(void **state)
{
    (void)state;
    const uint16_t decimation = 4u;
    const float tau_s = 0.01f;
    mm_core_t *core = exploring_core(decimation, 3u, 0.0f, 1.0f, 0.3f, tau_s);
    record(core, EXPLORE_TICKS);
    for (int k = 0; k < EXPLORE_TICKS; ++k) {
        if (k % decimation != 0) {
            assert_true(g_actions[k] == g_actions[k - 1]);  /* held between policy runs */
        }
    }
    const stats_t st = statistics(g_actions, EXPLORE_TICKS, decimation);
    assert_true(fabs(st.std - 0.3) < 0.05 * 0.3);
    /* One update per policy period: a = exp(-4 ms / 10 ms) = 0.67 between runs. */
    assert_true(fabs(st.autocorrelation - exp(-decimation * DT_S / tau_s)) < 0.04);
}

static void exploration_noise_is_deterministic_by_seed(void **state)
{
    (void)state;
    static float first[500];
    record(exploring_core(1u, 7u, 0.5f, 1.0f, 0.3f, 0.01f), 500);
    memcpy(first, g_actions, sizeof first);
    record(exploring_core(1u, 7u, 0.5f, 1.0f, 0.3f, 0.01f), 500);
    assert_memory_equal(first, g_actions, sizeof first);
    record(exploring_core(1u, 8u, 0.5f, 1.0f, 0.3f, 0.01f), 500);
    assert_memory_not_equal(first, g_actions, sizeof first);
}

static void zero_std_applies_exactly_the_policy_action_with_the_policy_flag(void **state)
{
    (void)state;
    /* target 1 rad: coarse error 1/3 -> action 0.5 / 3 */
    const float policy_action = mm_clip_unit((1.0f / 3.0f) * 0.5f);
    mm_core_t *core = exploring_core(1u, 1u, 0.5f, 1.0f, 0.0f, 0.02f);
    record(core, 50);
    for (int k = 0; k < 50; ++k) {
        assert_true(g_actions[k] == policy_action);
        assert_true((g_flags[k] & MM_SAMPLE_POLICY) != 0u);
    }
    assert_true(test_state(core).exploration_std == 0.0f);
    core = exploring_core(1u, 1u, 0.5f, 1.0f, 0.25f, 0.02f);
    record(core, 50);
    for (int k = 0; k < 50; ++k) {
        assert_true(g_actions[k] != policy_action);
        assert_true((g_flags[k] & MM_SAMPLE_POLICY) == 0u);
    }
    /* The observation's previous action is the applied (noisy) one. */
    float obs[MM_OBS_DIM];
    record(core, 1);
    const float applied = g_actions[0];
    record(core, 1);
    mm_core_get_observation(core, obs);
    assert_true(obs[6] == applied);
}

static void noisy_actions_are_clipped_to_the_unit_range(void **state)
{
    (void)state;
    for (int sign = -1; sign <= 1; sign += 2) {
        /* target 3 rad away: coarse error +-1 -> policy action +-1; every positive-going draw is clipped */
        record(exploring_core(1u, 5u, 1.0f, 3.0f * (float)sign, 0.5f, 0.0f), 2000);
        int at_bound = 0;
        for (int k = 0; k < 2000; ++k) {
            assert_true(fabsf(g_actions[k]) <= 1.0f);
            at_bound += g_actions[k] == (float)sign;
        }
        assert_true(at_bound > 800 && at_bound < 1200);  /* about half of the draws push past the bound */
    }
}

/* Mean |n| over ticks just after a reset versus just before it, for a slow process (tau 1 s, so n builds up to
 * ~std over a few seconds and a reset is visible as a near-zero value). */
static void exploration_noise_restarts_from_zero_each_episode(void **state)
{
    (void)state;
    const mm_sensors_t s = test_sensors(0);
    mm_actuator_t out;
    mm_core_t *core = exploring_core(1u, 9u, 0.0f, 1.0f, 0.5f, 1.0f);
    mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f, .exploration_std = 0.5f, .exploration_tau_s = 1.0f};
    const mm_command_t hold = {.mode = MM_MODE_HOLD};
    double before = 0.0;
    double after = 0.0;
    const int episodes = 20;
    for (int e = 0; e < episodes; ++e) {
        for (int k = 0; k < 3000; ++k) {
            mm_core_step(core, &s, DT_S, &out);
        }
        before += fabsf(out.current_cmd_a);
        if (e % 2 == 1) {
            /* the same target, but POLICY entered again */
            assert_int_equal(mm_core_command(core, &hold), MM_OK);
            mm_core_step(core, &s, DT_S, &out);
        } else {
            cmd.target += 0.1f; /* a new episode in POLICY mode */
        }
        assert_int_equal(mm_core_command(core, &cmd), MM_OK);
        mm_core_step(core, &s, DT_S, &out);
        after += fabsf(out.current_cmd_a);
    }
    /* Just after a reset |n| ~ sqrt(1 - a^2) std = 0.045 std; before it, ~ std. */
    assert_true(after < 0.15 * before);
    assert_true(before / episodes > 0.2 * 0.5 * 2.0);  /* in A: the process had built up (limit 2 A) */
}

static void exploration_fields_are_validated_and_ignored_outside_policy_mode(void **state)
{
    (void)state;
    mm_core_t *core = policy_core();
    assert_int_equal(mm_core_policy_load(core, g_image, IMAGE_BYTES), MM_REASON_NONE);
    const float bad_std[] = {-0.1f, 1.01f, NAN, INFINITY};
    for (unsigned i = 0; i < sizeof bad_std / sizeof bad_std[0]; ++i) {
        const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f, .exploration_std = bad_std[i]};
        assert_int_equal(mm_core_command(core, &cmd), MM_ERR_ARGUMENT);
    }
    const float bad_tau[] = {-0.001f, NAN, INFINITY};
    for (unsigned i = 0; i < sizeof bad_tau / sizeof bad_tau[0]; ++i) {
        const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f, .exploration_std = 0.1f,
                                  .exploration_tau_s = bad_tau[i]};
        assert_int_equal(mm_core_command(core, &cmd), MM_ERR_ARGUMENT);
    }
    assert_int_equal(test_state(core).mode, MM_MODE_IDLE);  /* refused commands change nothing */
    const mm_command_t edge = {.mode = MM_MODE_POLICY, .target = 1.0f, .exploration_std = 1.0f};
    assert_int_equal(mm_core_command(core, &edge), MM_OK);
    assert_true(test_state(core).exploration_std == 1.0f);

    /* POSITION with noise fields: the same current as without, and no std reported. */
    const mm_sensors_t s = test_sensors(0);
    float current[2][100];
    for (int variant = 0; variant < 2; ++variant) {
        core = policy_core();
        const mm_command_t cmd = {.mode = MM_MODE_POSITION, .target = 1.0f,
                                  .exploration_std = variant ? 0.5f : 0.0f, .exploration_tau_s = 0.01f};
        assert_int_equal(mm_core_command(core, &cmd), MM_OK);
        assert_true(test_state(core).exploration_std == 0.0f);
        for (int k = 0; k < 100; ++k) {
            mm_actuator_t out;
            mm_core_step(core, &s, DT_S, &out);
            current[variant][k] = out.current_cmd_a;
        }
    }
    assert_memory_equal(current[0], current[1], sizeof current[0]);
}

/* ---- the guard of POLICY-mode moves (contract section 4) ---- */

#define GUARD_TICKS 1200
static float g_guard_current[2][GUARD_TICKS];

/* A core with the guard's margins (rad, s), the runaway stub (action = bias) and the 2 A full-current image or, when
 * base is given, a schedule image of range 2 over base; POLICY mode to target_rad, streaming samples. */
static mm_core_t *guard_core(float error_rad, float saturation_s, float bias, float target_rad,
                             const mm_pid_gains_t *base)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f;
    cfg.guard_error_rad = error_rad;
    cfg.guard_saturation_s = saturation_s;
    memcpy(cfg.public_key, g_key.public_key, sizeof g_key.public_key);
    memset(&g_fake, 0, sizeof g_fake);
    g_fake.bias = bias;
    cfg.backend = fake_backend(&g_fake);
    mm_core_t *core = test_core(&cfg);
    test_image_make_schedule(g_schedule, &g_key, g_model, MODEL_BYTES, LIMIT_A, 0u, base != NULL ? 2.0f : 0.0f, base);
    assert_int_equal(mm_core_policy_load(core, g_schedule, IMAGE_BYTES), MM_REASON_NONE);
    const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = target_rad, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &cmd), MM_OK);
    return core;
}

/* A shaft running away from count 0 in the positive direction, 10 counts (3.8 mrad) per tick, whatever the current. */
static uint16_t runaway_count(int k)
{
    return (uint16_t)(10 * k);
}

/* One tick at count; returns the sample's flags and fills the applied action and the current. */
static uint8_t guard_tick(mm_core_t *core, uint16_t count, float *action, float *current)
{
    const mm_sensors_t s = test_sensors(count);
    mm_actuator_t out;
    assert_int_equal(mm_core_step(core, &s, DT_S, &out), MM_OK);
    mm_batch_t batch;
    assert_int_equal(mm_core_pop_batch(core, &batch, 1u), 1u);
    *action = batch.actions[0];
    *current = out.current_cmd_a;
    return batch.flags[0];
}

/* Runs the runaway policy (a = +1, 2 A) to target_rad on the runaway shaft until the guard trips, checking every tick
 * against the envelope written out (e0 = target_rad at count 0; margin 1.5 rad, the current check off); returns the
 * tick it tripped on, after which the rest of the run is recorded into g_guard_current[0]. */
static int runaway_trips_where_the_envelope_says(float target_rad)
{
    mm_core_t *core = guard_core(1.5f, 0.0f, 1.0f, target_rad, NULL);
    const float e0 = target_rad;
    int tripped_at = -1;
    for (int k = 0; k < GUARD_TICKS; ++k) {
        const int invokes = g_fake.invokes;
        float action;
        float current;
        const uint8_t flags = guard_tick(core, runaway_count(k), &action, &current);
        const float e = target_rad - test_state(core).position_rad;
        const bool out = fabsf(e) > fabsf(e0) + 1.5f || ((e > 0.0f) != (e0 > 0.0f) && fabsf(e) > 1.5f);
        if (tripped_at < 0 && out) {
            tripped_at = k;
        }
        g_guard_current[0][k] = current;
        if (tripped_at < 0) { /* the policy drives: its action, its full current, FLAG_POLICY */
            assert_int_equal(g_fake.invokes, invokes + 1);
            assert_true(action == 1.0f && current == LIMIT_A);
            assert_int_equal(flags & (MM_SAMPLE_POLICY | MM_SAMPLE_GUARD), MM_SAMPLE_POLICY);
        } else { /* the PID drives: the policy is not invoked, the sample says so and carries the PID's current */
            assert_int_equal(g_fake.invokes, invokes);
            assert_int_equal(flags & (MM_SAMPLE_POLICY | MM_SAMPLE_GUARD), MM_SAMPLE_GUARD);
            assert_true(action == mm_clip_unit(current / LIMIT_A));
            const float toward = target_rad - test_state(core).position_rad;
            assert_true(current * toward > 0.0f); /* toward the target */
        }
    }
    assert_true(tripped_at > 0);
    assert_int_equal(mm_core_guard_trips(core), 1u);
    const mm_state_t st = test_state(core);
    assert_int_equal(st.mode, MM_MODE_POLICY); /* not a fault: the servo stays in POLICY mode */
    assert_int_equal(st.fault_flags, 0u);
    return tripped_at;
}

/* The classical fallback of a full-current policy is exactly POSITION mode's PID to the move's target from the trip
 * on: a POSITION command at the trip tick on the same shaft applies the same currents, bit for bit. */
static void check_fallback_is_position_mode(float target_rad, int tripped_at)
{
    mm_core_t *core = guard_core(1.5f, 0.0f, 1.0f, target_rad, NULL);
    const mm_command_t idle = {.mode = MM_MODE_IDLE, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &idle), MM_OK);
    for (int k = 0; k < GUARD_TICKS; ++k) {
        if (k == tripped_at) {
            const mm_command_t position = {.mode = MM_MODE_POSITION, .target = target_rad, .stream_transitions = true};
            assert_int_equal(mm_core_command(core, &position), MM_OK);
        }
        float action;
        guard_tick(core, runaway_count(k), &action, &g_guard_current[1][k]);
    }
    assert_memory_equal(&g_guard_current[0][tripped_at], &g_guard_current[1][tripped_at],
                        (size_t)(GUARD_TICKS - tripped_at) * sizeof(float));
}

/* A runaway full-current policy driving the load away from the target trips on |e| > |e0| + margin (target -1 rad
 * behind the shaft: at 1.5 rad), and one driving it past the target trips once it is more than the margin beyond it
 * (target 1 rad ahead: at 2.5 rad, long before |e| would exceed |e0| + margin at 3.5 rad). */
static void guard_trips_a_runaway_policy_on_the_error_and_hands_over_to_the_pid(void **state)
{
    (void)state;
    const float targets[] = {-1.0f, 1.0f};
    const float trip_positions[] = {1.5f, 2.5f};
    for (unsigned i = 0; i < 2u; ++i) {
        const int tripped_at = runaway_trips_where_the_envelope_says(targets[i]);
        const float position_at_trip = (float)runaway_count(tripped_at) * 2.0f * 3.14159265f / 16384.0f;
        assert_true(fabsf(position_at_trip - trip_positions[i]) < 0.01f);
        check_fallback_is_position_mode(targets[i], tripped_at);
    }
}

/* The current check: a policy holding the current at the limit in effect (the image's 2 A, or a lower commanded
 * limit) trips once it held it for longer than guard_saturation_s, counted in control time as the core sums it; a
 * policy just below the limit never trips. The shaft stands still, so the error never leaves its envelope. */
static void guard_trips_a_policy_saturating_the_current(void **state)
{
    (void)state;
    const struct {
        float bias;
        float command_limit_a; /* 0: the hard limit (4 A), above the image's 2 A */
        bool trips;
    } cases[] = {{1.0f, 0.0f, true}, {-1.0f, 0.0f, true}, {0.95f, 0.0f, false}, {0.8f, 1.5f, true}};
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        mm_core_t *core = guard_core(1.5f, 0.25f, cases[i].bias, 1.0f, NULL);
        if (cases[i].command_limit_a > 0.0f) {
            const mm_command_t cmd = {.mode = MM_MODE_POLICY, .target = 1.0f, .stream_transitions = true,
                                      .current_limit_a = cases[i].command_limit_a};
            assert_int_equal(mm_core_command(core, &cmd), MM_OK);
        }
        float saturated_s = 0.0f;
        bool tripped = false;
        for (int k = 0; k < GUARD_TICKS; ++k) {
            tripped = tripped || saturated_s > 0.25f;
            float action;
            float current;
            const uint8_t flags = guard_tick(core, 0u, &action, &current);
            assert_int_equal((flags & MM_SAMPLE_GUARD) != 0, tripped);
            if (!tripped) {
                saturated_s = fabsf(current) >= fminf(LIMIT_A, cases[i].command_limit_a > 0.0f
                                                                    ? cases[i].command_limit_a
                                                                    : LIMIT_A)
                                  ? saturated_s + DT_S
                                  : 0.0f;
            } else {
                assert_true(current > 0.0f); /* the PID toward the target 1 rad ahead */
            }
        }
        assert_int_equal(tripped, cases[i].trips);
        assert_int_equal(mm_core_guard_trips(core), cases[i].trips ? 1u : 0u);
        if (cases[i].trips) {
            assert_true(saturated_s > 0.25f && saturated_s < 0.25f + 2.0f * DT_S);
        }
    }
}

/* A tripped move gives the policy back at the next episode start: a new target, or re-entering POLICY mode. The
 * first tick of the new move runs the policy again (flags EPISODE_START | POLICY, no GUARD). */
static void guard_re_arms_at_a_new_target_and_on_re_entering_policy_mode(void **state)
{
    (void)state;
    mm_core_t *core = guard_core(1.5f, 0.0f, 1.0f, -1.0f, NULL);
    int k = 0;
    float action;
    float current;
    while (mm_core_guard_trips(core) == 0u) {
        guard_tick(core, runaway_count(k++), &action, &current);
        assert_true(k < GUARD_TICKS);
    }
    for (int i = 0; i < 3; ++i) {
        assert_true((guard_tick(core, runaway_count(k++), &action, &current) & MM_SAMPLE_GUARD) != 0);
    }
    const mm_command_t same = {.mode = MM_MODE_POLICY, .target = -1.0f, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &same), MM_OK); /* the same target: the same move, still guarded */
    assert_true((guard_tick(core, runaway_count(k++), &action, &current) & MM_SAMPLE_GUARD) != 0);

    const mm_command_t next = {.mode = MM_MODE_POLICY, .target = -1.2f, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &next), MM_OK);
    int invokes = g_fake.invokes;
    uint8_t flags = guard_tick(core, runaway_count(k++), &action, &current);
    assert_int_equal(flags, MM_SAMPLE_EPISODE_START | MM_SAMPLE_POLICY);
    assert_int_equal(g_fake.invokes, invokes + 1);
    assert_true(action == 1.0f && current == LIMIT_A);
    /* the new move's envelope starts where it started: it trips again once 1.5 rad further away */
    const float e0 = -1.2f - test_state(core).position_rad;
    while (mm_core_guard_trips(core) == 1u) {
        guard_tick(core, runaway_count(k++), &action, &current);
        assert_true(k < GUARD_TICKS);
    }
    assert_true(fabsf(-1.2f - test_state(core).position_rad) > fabsf(e0) + 1.5f);

    const mm_command_t hold = {.mode = MM_MODE_HOLD, .stream_transitions = true};
    assert_int_equal(mm_core_command(core, &hold), MM_OK);
    guard_tick(core, runaway_count(k++), &action, &current);
    assert_int_equal(mm_core_command(core, &next), MM_OK); /* back to POLICY, same target */
    invokes = g_fake.invokes;
    flags = guard_tick(core, runaway_count(k++), &action, &current);
    assert_int_equal(flags, MM_SAMPLE_EPISODE_START | MM_SAMPLE_POLICY);
    assert_int_equal(g_fake.invokes, invokes + 1);
    assert_int_equal(mm_core_guard_trips(core), 2u);
}

/* A schedule image's fallback is its base law unscheduled (a = 0: the plain PTOS), bit for bit what a policy that
 * outputs 0 applies on the same shaft (base law without integral action, so the currents do not depend on what the
 * integrator saw before the trip); the samples carry a = 0 and FLAG_GUARD. */
static void guard_falls_back_to_the_unscheduled_base_law_of_a_schedule_image(void **state)
{
    (void)state;
    mm_pid_gains_t base = k_base;
    base.ki_vel = 0.0f;
    int tripped_at = -1;
    for (int variant = 0; variant < 2; ++variant) {
        /* variant 0: the runaway schedule (a = +1, 7.4 x decel) with the guard; 1: a = 0, no guard */
        mm_core_t *core = variant == 0 ? guard_core(1.5f, 0.0f, 1.0f, -1.0f, &base)
                                       : guard_core(0.0f, 0.0f, 0.0f, -1.0f, &base);
        for (int k = 0; k < GUARD_TICKS; ++k) {
            float action;
            const uint8_t flags = guard_tick(core, runaway_count(k), &action, &g_guard_current[variant][k]);
            if (variant == 0 && tripped_at < 0 && (flags & MM_SAMPLE_GUARD) != 0) {
                tripped_at = k;
            }
            if (variant == 0 && tripped_at >= 0) {
                assert_true(action == 0.0f);
                assert_int_equal(flags & (MM_SAMPLE_POLICY | MM_SAMPLE_GUARD), MM_SAMPLE_GUARD);
            }
        }
        assert_int_equal(mm_core_guard_trips(core), variant == 0 ? 1u : 0u);
    }
    assert_true(tripped_at > 0);
    assert_memory_equal(&g_guard_current[0][tripped_at], &g_guard_current[1][tripped_at],
                        (size_t)(GUARD_TICKS - tripped_at) * sizeof(float));
    assert_true(g_guard_current[0][tripped_at - 1] != g_guard_current[1][tripped_at - 1]); /* a acted before */
}

/* guard_error_rad <= 0 disables the error check and guard_saturation_s <= 0 the current check: the runaway policy
 * then drives every tick of the run. */
static void guard_is_off_with_margins_of_zero(void **state)
{
    (void)state;
    const float off[] = {0.0f, -1.0f};
    for (unsigned i = 0; i < 2u; ++i) {
        mm_core_t *core = guard_core(off[i], off[i], 1.0f, -1.0f, NULL);
        for (int k = 0; k < GUARD_TICKS; ++k) {
            float action;
            float current;
            const uint8_t flags = guard_tick(core, runaway_count(k), &action, &current);
            assert_int_equal(flags & MM_SAMPLE_GUARD, 0);
            assert_true(current == LIMIT_A);
        }
        assert_int_equal(g_fake.invokes, GUARD_TICKS);
        assert_int_equal(mm_core_guard_trips(core), 0u);
    }
}

/* Non-finite margins are refused like every other bad config value. */
static void guard_margins_must_be_finite(void **state)
{
    (void)state;
    const float bad[] = {NAN, INFINITY, -INFINITY};
    static mm_core_t *core;
    if (core == NULL) {
        core = aligned_alloc(16, (mm_core_size() + 15u) & ~(size_t)15u);
    }
    for (unsigned i = 0; i < 3u; ++i) {
        for (int field = 0; field < 2; ++field) {
            mm_config_t cfg;
            mm_core_config_default(&cfg);
            *(field == 0 ? &cfg.guard_error_rad : &cfg.guard_saturation_s) = bad[i];
            assert_int_equal(mm_core_init(core, &cfg), MM_ERR_ARGUMENT);
        }
    }
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    assert_true(cfg.guard_error_rad > 0.0f && cfg.guard_saturation_s > 0.0f); /* on by default */
    assert_int_equal(mm_core_init(core, &cfg), MM_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_image_becomes_active_and_drives),
        cmocka_unit_test(corrupt_images_are_refused_keeping_the_last_good_policy),
        cmocka_unit_test(new_policies_load_into_the_idle_slot),
        cmocka_unit_test(chunks_reassemble_despite_loss_duplicates_and_reordering),
        cmocka_unit_test(a_new_transfer_id_truncates_the_unfinished_one),
        cmocka_unit_test(a_silent_transfer_times_out_as_truncated),
        cmocka_unit_test(corrupted_chunk_fails_the_image_crc),
        cmocka_unit_test(inference_failure_latches_policy_fault_and_holds),
        cmocka_unit_test(policy_decimation_holds_the_action_between_runs),
        cmocka_unit_test(an_image_carries_its_own_decimation_counted_from_each_episode),
        cmocka_unit_test(schedule_fields_within_the_rules_are_accepted),
        cmocka_unit_test(schedule_range_zero_behaves_exactly_as_a_plain_policy),
        cmocka_unit_test(schedule_at_zero_action_is_the_ptos_position_mode),
        cmocka_unit_test(schedule_scales_the_braking_deceleration_by_exp),
        cmocka_unit_test(schedule_runs_the_base_law_with_the_scheduled_deceleration),
        cmocka_unit_test(schedule_base_integrator_restarts_with_each_episode),
        cmocka_unit_test(schedule_mode_observes_and_records_the_policys_own_action),
        cmocka_unit_test(schedule_decimation_holds_a_while_the_base_runs_every_tick),
        cmocka_unit_test(exploration_noise_is_white_with_the_commanded_std),
        cmocka_unit_test(exploration_noise_is_correlated_over_tau),
        cmocka_unit_test(exploration_noise_follows_the_policy_decimation),
        cmocka_unit_test(exploration_noise_is_deterministic_by_seed),
        cmocka_unit_test(zero_std_applies_exactly_the_policy_action_with_the_policy_flag),
        cmocka_unit_test(noisy_actions_are_clipped_to_the_unit_range),
        cmocka_unit_test(exploration_noise_restarts_from_zero_each_episode),
        cmocka_unit_test(exploration_fields_are_validated_and_ignored_outside_policy_mode),
        cmocka_unit_test(guard_trips_a_runaway_policy_on_the_error_and_hands_over_to_the_pid),
        cmocka_unit_test(guard_trips_a_policy_saturating_the_current),
        cmocka_unit_test(guard_re_arms_at_a_new_target_and_on_re_entering_policy_mode),
        cmocka_unit_test(guard_falls_back_to_the_unscheduled_base_law_of_a_schedule_image),
        cmocka_unit_test(guard_is_off_with_margins_of_zero),
        cmocka_unit_test(guard_margins_must_be_finite),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
