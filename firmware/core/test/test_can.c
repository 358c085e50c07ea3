/* CAN endpoint: addressing, commands, heartbeat, registers, state and fault frames. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commands_reach_only_this_device_or_broadcast),
        cmocka_unit_test(registers_read_write_and_refuse),
        cmocka_unit_test(zero_offset_register_calibrates_while_stopped),
        cmocka_unit_test(fault_frames_announce_new_faults_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
