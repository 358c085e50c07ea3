/* CAN endpoint: addressing, commands with their exploration, heartbeat, registers, state and fault frames. */
#include <string.h>

#include "mm_core/mm_can.h"
#include "mm_servo.h"
#include "test_support.h"

static mm_can_t g_can;

static mm_core_t *can_core(void)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f;
    mm_core_t *core = test_core(&cfg);
    assert_true(mm_can_init(&g_can, 5u, 0u, 0u, 1.0f));
    return core;
}

static mm_can_frame_t command_frame(uint16_t device, uint8_t mode, float target)
{
    const struct mm_servo_command_t msg = {.mode = mode, .target = target};
    mm_can_frame_t f = {.id = MM_SERVO_COMMAND_FRAME_ID | device};
    f.dlc = (uint8_t)mm_servo_command_pack(f.data, &msg, 8u);
    return f;
}

static void commands_reach_only_this_device_or_broadcast(void **state)
{
    (void)state;
    mm_core_t *core = can_core();
    mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
    mm_can_frame_t f = command_frame(6u, MM_MODE_TORQUE, 1.0f);
    assert_int_equal(mm_can_receive(&g_can, core, &f, tx), 0);
    assert_int_equal(test_state(core).mode, MM_MODE_IDLE);
    f = command_frame(5u, MM_MODE_TORQUE, 1.0f);
    mm_can_receive(&g_can, core, &f, tx);
    assert_int_equal(test_state(core).mode, MM_MODE_TORQUE);
    f = command_frame(MM_CAN_BROADCAST, MM_MODE_BRAKE, 0.0f);
    mm_can_receive(&g_can, core, &f, tx);
    assert_int_equal(test_state(core).mode, MM_MODE_BRAKE);
    assert_false(mm_can_init(&g_can, MM_CAN_BROADCAST, 0u, 0u, 1.0f));
}

static mm_can_frame_t exploration_frame(uint16_t device, float std, float tau_s)
{
    const struct mm_servo_exploration_t msg = {.exploration_std = std, .exploration_tau = tau_s};
    mm_can_frame_t f = {.id = MM_SERVO_EXPLORATION_FRAME_ID | device};
    f.dlc = (uint8_t)mm_servo_exploration_pack(f.data, &msg, 8u);
    return f;
}

/* EXPLORATION then COMMAND: the noise applies to that command only, for this device or broadcast. */
static void exploration_frames_arm_the_next_command_only(void **state)
{
    (void)state;
    static fake_backend_t fake;
    static test_key_t key;
    static uint8_t model[64];
    static uint8_t image[MM_POLICY_HEADER_BYTES + sizeof model + MM_POLICY_SIGNATURE_BYTES];
    test_key_make(&key, 3u);
    const uint32_t len = test_image_make(image, &key, model, sizeof model, 2.0f);
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.heartbeat_timeout_s = 0.0f;
    memcpy(cfg.public_key, key.public_key, sizeof key.public_key);
    cfg.backend = fake_backend(&fake);
    mm_core_t *core = test_core(&cfg);
    assert_true(mm_can_init(&g_can, 5u, 0u, 0u, 1.0f));
    assert_int_equal(mm_core_policy_load(core, image, len), MM_REASON_NONE);

    mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
    const mm_can_frame_t frames[][2] = {
        {exploration_frame(5u, 0.3f, 0.02f), command_frame(5u, MM_MODE_POLICY, 1.0f)},
        {exploration_frame(6u, 0.4f, 0.0f), command_frame(5u, MM_MODE_POLICY, 2.0f)},   /* another servo's */
        {exploration_frame(MM_CAN_BROADCAST, 0.5f, 0.0f), command_frame(MM_CAN_BROADCAST, MM_MODE_POLICY, 1.0f)},
        {exploration_frame(5u, 1.5f, 0.0f), command_frame(5u, MM_MODE_POLICY, 2.0f)},  /* refused: std > 1 */
    };
    const float expected_std[] = {0.3f, 0.0f, 0.5f, 0.5f};
    for (unsigned i = 0; i < sizeof expected_std / sizeof expected_std[0]; ++i) {
        assert_int_equal(mm_can_receive(&g_can, core, &frames[i][0], tx), 0);
        assert_int_equal(mm_can_receive(&g_can, core, &frames[i][1], tx), 0);
        assert_true(test_state(core).exploration_std == expected_std[i]);
    }
    assert_true(test_state(core).target_rad == 1.0f); /* the refused command changed nothing */
    /* The EXPLORATION frame was used once: the next command alone explores not at all. */
    const mm_can_frame_t again = command_frame(5u, MM_MODE_POLICY, 2.0f);
    mm_can_receive(&g_can, core, &frames[0][0], tx);
    mm_can_receive(&g_can, core, &frames[0][1], tx);
    mm_can_receive(&g_can, core, &again, tx);
    assert_true(test_state(core).exploration_std == 0.0f);
    assert_int_equal(test_state(core).mode, MM_MODE_POLICY);
}

static void registers_read_write_and_refuse(void **state)
{
    (void)state;
    mm_core_t *core = can_core();
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_KP_POS_MILLI, 12500), MM_REG_OK);
    int32_t v = 0;
    assert_int_equal(mm_can_register_read(&g_can, core, MM_REG_KP_POS_MILLI, &v), MM_REG_OK);
    assert_int_equal(v, 12500);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_CURRENT_LIMIT_MA, 9000), MM_REG_OUT_OF_RANGE);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_DEVICE_ID, 3), MM_REG_READ_ONLY);
    assert_int_equal(mm_can_register_write(&g_can, core, 0x7777, 3), MM_REG_UNKNOWN);
    /* Over the bus: a request frame gets one response frame. */
    const struct mm_servo_register_request_t req = {.op = 1, .register_id = MM_REG_DEVICE_ID};
    mm_can_frame_t f = {.id = MM_SERVO_REGISTER_REQUEST_FRAME_ID | 5u};
    f.dlc = (uint8_t)mm_servo_register_request_pack(f.data, &req, 8u);
    mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
    assert_int_equal(mm_can_receive(&g_can, core, &f, tx), 1);
    struct mm_servo_register_response_t resp;
    assert_int_equal(mm_servo_register_response_unpack(&resp, tx[0].data, tx[0].dlc), 0);
    assert_int_equal(tx[0].id, MM_SERVO_REGISTER_RESPONSE_FRAME_ID | 5u);
    assert_int_equal(resp.value, 5);
    assert_int_equal(resp.status, MM_REG_OK);
}

static void zero_offset_register_calibrates_while_stopped(void **state)
{
    (void)state;
    mm_core_t *core = can_core();
    mm_actuator_t out;
    const mm_sensors_t hanging = test_sensors(9000u);
    mm_core_step(core, &hanging, 0.001f, &out);
    int32_t raw = 0;
    assert_int_equal(mm_can_register_read(&g_can, core, MM_REG_RAW_ENCODER_COUNT, &raw), MM_REG_OK);
    assert_int_equal(raw, 9000);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_RAW_ENCODER_COUNT, 1), MM_REG_READ_ONLY);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_ZERO_OFFSET_COUNTS, 16384), MM_REG_OUT_OF_RANGE);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_ZERO_OFFSET_COUNTS, -1), MM_REG_OUT_OF_RANGE);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_ZERO_OFFSET_COUNTS, raw), MM_REG_OK);
    int32_t v = 0;
    assert_int_equal(mm_can_register_read(&g_can, core, MM_REG_ZERO_OFFSET_COUNTS, &v), MM_REG_OK);
    assert_int_equal(v, 9000);
    mm_core_step(core, &hanging, 0.001f, &out);
    assert_true(test_state(core).position_rad == 0.0f);
    /* Under control the frame must not move. */
    const mm_command_t hold = {.mode = MM_MODE_HOLD};
    assert_int_equal(mm_core_command(core, &hold), MM_OK);
    assert_int_equal(mm_can_register_write(&g_can, core, MM_REG_ZERO_OFFSET_COUNTS, 100), MM_REG_ACTIVE_MODE);
    assert_int_equal(MM_REG_ACTIVE_MODE, MM_SERVO_REGISTER_RESPONSE_STATUS_ACTIVE_MODE_CHOICE);
    assert_int_equal(mm_core_config(core)->zero_offset_counts, 9000u);
}

static void fault_frames_announce_new_faults_once(void **state)
{
    (void)state;
    mm_core_t *core = can_core();
    mm_sensors_t s = test_sensors(0);
    s.current_a = 50.0f;
    mm_actuator_t out;
    mm_core_step(core, &s, 0.001f, &out);
    mm_can_frame_t f;
    assert_true(mm_can_fault_frame(&g_can, core, &f));
    struct mm_servo_fault_t msg;
    assert_int_equal(mm_servo_fault_unpack(&msg, f.data, f.dlc), 0);
    assert_int_equal(msg.new_faults, MM_FAULT_OVERCURRENT);
    assert_false(mm_can_fault_frame(&g_can, core, &f));
}

/* The measured power travels in the state (ServoState.power_w) and in its own frame, STATE_STATUS last. */
static void state_frames_carry_the_measured_power(void **state)
{
    (void)state;
    mm_core_t *core = can_core();
    mm_sensors_t s = test_sensors(0);
    s.power_w = -37.625f;
    mm_actuator_t out;
    mm_core_step(core, &s, 0.001f, &out);
    assert_true(test_state(core).power_w == -37.625f);
    mm_can_frame_t tx[MM_CAN_STATE_FRAMES];
    assert_int_equal(mm_can_state_frames(&g_can, core, tx), MM_CAN_STATE_FRAMES);
    const uint32_t order[MM_CAN_STATE_FRAMES] = {MM_SERVO_STATE_MOTION_FRAME_ID, MM_SERVO_STATE_ELECTRICAL_FRAME_ID,
                                                 MM_SERVO_STATE_POWER_FRAME_ID, MM_SERVO_STATE_STATUS_FRAME_ID};
    for (uint32_t i = 0u; i < MM_CAN_STATE_FRAMES; ++i) {
        assert_int_equal(tx[i].id, order[i] | 5u);
    }
    struct mm_servo_state_power_t msg;
    assert_int_equal(tx[2].dlc, MM_SERVO_STATE_POWER_LENGTH);
    assert_int_equal(mm_servo_state_power_unpack(&msg, tx[2].data, tx[2].dlc), 0);
    assert_true(msg.power == -37.625f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commands_reach_only_this_device_or_broadcast),
        cmocka_unit_test(exploration_frames_arm_the_next_command_only),
        cmocka_unit_test(registers_read_write_and_refuse),
        cmocka_unit_test(zero_offset_register_calibrates_while_stopped),
        cmocka_unit_test(fault_frames_announce_new_faults_once),
        cmocka_unit_test(state_frames_carry_the_measured_power),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
