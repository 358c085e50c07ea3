/* Policy images: acceptance, every refusal with the last good policy still active, double buffering, chunked
 * transfer with loss, duplication and reordering, and inference failure. */
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

static mm_core_t *policy_core_decimated(uint16_t decimation)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f;
    cfg.policy_decimation = decimation;
    memcpy(cfg.public_key, g_key.public_key, sizeof g_key.public_key);
    memset(&g_fake, 0, sizeof g_fake);
    g_fake.gain = 0.5f;
    cfg.backend = fake_backend(&g_fake);
    return test_core(&cfg);
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

    memcpy(g_bad, g_image, IMAGE_BYTES);
    g_bad[4] = 2;
    check_refused(core, IMAGE_BYTES, MM_REASON_FORMAT); /* version */

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
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
