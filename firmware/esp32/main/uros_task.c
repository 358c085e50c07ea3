/* micro-ROS: publishes `state` (best effort, decimated), `transitions` (reliable, TransitionBatch) and
 * `policy_ack` (reliable); subscribes `command` (reliable), `heartbeat` (best effort), `policy_chunk` (reliable).
 * Every message fits the 512-byte MTU (src/mm_msgs/test checks the bounds). Entities are created in order and
 * destroyed in reverse on any failure, so the task never exits holding resources. */
#include <string.h>

#include <mm_msgs/msg/heartbeat.h>
#include <mm_msgs/msg/policy_ack.h>
#include <mm_msgs/msg/policy_chunk.h>
#include <mm_msgs/msg/servo_command.h>
#include <mm_msgs/msg/servo_state.h>
#include <mm_msgs/msg/transition_batch.h>
#include <rcl/rcl.h>
#include <rclc/executor.h>
#include <rclc/rclc.h>
#include <rmw_microros/rmw_microros.h>

#include "app.h"
#include "esp_log.h"
#include "freertos/task.h"
#include "sdkconfig.h"
#if CONFIG_MM_TRANSPORT_UART
#include "uart_transport.h"
#else
#include "uros_network_interfaces.h"
/* Wi-Fi UDP needs the micro-ROS library built for the udp transport (app-colcon.meta); one built for the custom
 * (UART) transport would accept the agent address and then never reach it. */
#ifndef RMW_UXRCE_TRANSPORT_UDP
#error "MM_TRANSPORT_UDP needs micro-ROS built with RMW_UXRCE_TRANSPORT=udp (firmware/esp32/app-colcon.meta)"
#endif
#endif

static const char *TAG = "uros";

static rcl_publisher_t s_state_pub, s_batch_pub, s_ack_pub;
static rcl_subscription_t s_cmd_sub, s_hb_sub, s_chunk_sub;
static mm_msgs__msg__ServoCommand s_cmd;
static mm_msgs__msg__Heartbeat s_hb;
static mm_msgs__msg__PolicyChunk s_chunk;
static uint8_t s_chunk_data[mm_msgs__msg__PolicyChunk__MAX_DATA];
static mm_msgs__msg__ServoState s_state;
static mm_msgs__msg__PolicyAck s_ack;
static uint16_t s_ack_missing[MM_ACK_MAX_MISSING];
static mm_msgs__msg__TransitionBatch s_batch_msg;
static mm_batch_t s_batch;
static bool s_ack_due;

static void on_command(const void *msg)
{
    const mm_msgs__msg__ServoCommand *c = msg;
    const mm_command_t cmd = {
        .seq = c->seq, .mode = c->mode, .target = c->target, .target_velocity_rad_s = c->target_velocity_rad_s,
        .max_velocity_rad_s = c->max_velocity_rad_s, .current_limit_a = c->current_limit_a, .kp_pos = c->kp_pos,
        .kp_vel = c->kp_vel, .ki_vel = c->ki_vel, .gravity_ff_a = c->gravity_ff_a,
        .clear_faults = c->clear_faults, .stream_transitions = c->stream_transitions,
        .exploration_std = c->exploration_std, .exploration_tau_s = c->exploration_tau_s,
    };
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    const mm_status_t st = mm_core_command(g_app.core, &cmd);
    xSemaphoreGive(g_app.lock);
    if (st != MM_OK) {
        ESP_LOGW(TAG, "command %u refused: status %d", (unsigned)c->seq, (int)st);
    }
}

static void on_heartbeat(const void *msg)
{
    const mm_msgs__msg__Heartbeat *hb = msg;
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    mm_core_heartbeat(g_app.core, hb->seq);
    xSemaphoreGive(g_app.lock);
}

static void on_chunk(const void *msg)
{
    const mm_msgs__msg__PolicyChunk *c = msg;
    bool due = false;
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    g_app.policy_link = APP_LINK_ROS;
    (void)mm_core_policy_chunk(g_app.core, c->transfer_id, c->total_size, c->image_crc32, c->index, c->chunk_size,
                               c->data.data, (uint16_t)c->data.size, &due);
    xSemaphoreGive(g_app.lock);
    if (mm_core_policy_verify_pending(g_app.core)) {
        app_finish_policy();
        due = true;
    }
    s_ack_due = s_ack_due || due;
}

static void publish_ack(const mm_policy_ack_t *ack)
{
    s_ack.transfer_id = ack->transfer_id;
    s_ack.status = ack->status;
    s_ack.reason = ack->reason;
    s_ack.received_chunks = ack->received_chunks;
    s_ack.total_chunks = ack->total_chunks;
    memcpy(s_ack_missing, ack->missing, sizeof s_ack_missing);
    s_ack.missing.size = ack->missing_count;
    s_ack.active_policy_crc32 = ack->active_policy_crc32;
    (void)rcl_publish(&s_ack_pub, &s_ack, NULL);
}

/* A transfer the core abandoned (superseded, or silent for the transfer timeout) is reported REJECTED/TRUNCATED
 * first, then the current transfer's ack when one is due. */
static void publish_acks(void)
{
    mm_policy_ack_t truncated;
    mm_policy_ack_t current;
    const bool current_due = s_ack_due; /* s_ack_due belongs to this task (on_chunk runs in its executor) */
    s_ack_due = false;
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    const bool has_truncated =
        g_app.policy_link == APP_LINK_ROS && mm_core_policy_truncated_ack(g_app.core, &truncated);
    if (current_due) {
        mm_core_policy_ack(g_app.core, &current);
    }
    xSemaphoreGive(g_app.lock);
    if (has_truncated) {
        publish_ack(&truncated);
    }
    if (current_due) {
        publish_ack(&current);
    }
}

/* Agent-synchronised wall time (rmw_uros_sync_session at startup). */
static void stamp_now(builtin_interfaces__msg__Time *stamp)
{
    const int64_t ns = rmw_uros_epoch_nanos();
    stamp->sec = (int32_t)(ns / 1000000000);
    stamp->nanosec = (uint32_t)(ns % 1000000000);
}

static void publish_state(uint32_t seq)
{
    mm_state_t st;
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    mm_core_get_state(g_app.core, &st);
    xSemaphoreGive(g_app.lock);
    stamp_now(&s_state.stamp);
    s_state.seq = seq;
    s_state.tick = st.tick;
    s_state.mode = st.mode;
    s_state.fault_flags = st.fault_flags;
    s_state.position_rad = st.position_rad;
    s_state.velocity_rad_s = st.velocity_rad_s;
    s_state.current_a = st.current_a;
    s_state.current_cmd_a = st.current_cmd_a;
    s_state.effort_nm = st.effort_nm;
    s_state.bus_voltage_v = st.bus_voltage_v;
    s_state.power_w = st.power_w;
    s_state.temperature_c = st.temperature_c;
    s_state.target_rad = st.target_rad;
    s_state.policy_crc32 = st.policy_crc32;
    s_state.dropped_samples = st.dropped_samples;
    (void)rcl_publish(&s_state_pub, &s_state, NULL);
}

static void publish_batches(void)
{
    for (;;) {
        /* Locked although the ring itself is lock-free: the batch also carries dt and the active policy id. */
        xSemaphoreTake(g_app.lock, portMAX_DELAY);
        const uint8_t n = mm_core_samples_available(g_app.core) >= MM_BATCH_MAX_SAMPLES
                              ? mm_core_pop_batch(g_app.core, &s_batch, MM_BATCH_MAX_SAMPLES)
                              : 0u;
        xSemaphoreGive(g_app.lock);
        if (n == 0u) {
            return;
        }
        /* Stamped when published (the samples are a few ms older); first_tick gives their exact tick. */
        stamp_now(&s_batch_msg.stamp);
        s_batch_msg.first_tick = s_batch.first_tick;
        s_batch_msg.dt_s = s_batch.dt_s;
        s_batch_msg.policy_crc32 = s_batch.policy_crc32;
        s_batch_msg.dropped_samples = s_batch.dropped_samples;
        s_batch_msg.count = n;
        s_batch_msg.observations.size = (size_t)n * MM_OBS_DIM;
        s_batch_msg.actions.size = s_batch_msg.position_rad.size = s_batch_msg.velocity_rad_s.size = n;
        s_batch_msg.current_a.size = s_batch_msg.target_rad.size = s_batch_msg.power_w.size = n;
        s_batch_msg.flags.size = n;
        (void)rcl_publish(&s_batch_pub, &s_batch_msg, NULL);
    }
}

/* The batch message's sequences point straight at the batch columns: no copy per sample. */
static void bind_batch_columns(void)
{
    s_batch_msg.observations.data = s_batch.observations;
    s_batch_msg.observations.capacity = MM_BATCH_MAX_SAMPLES * MM_OBS_DIM;
    s_batch_msg.actions.data = s_batch.actions;
    s_batch_msg.position_rad.data = s_batch.position_rad;
    s_batch_msg.velocity_rad_s.data = s_batch.velocity_rad_s;
    s_batch_msg.current_a.data = s_batch.current_a;
    s_batch_msg.target_rad.data = s_batch.target_rad;
    s_batch_msg.power_w.data = s_batch.power_w;
    s_batch_msg.flags.data = s_batch.flags;
    s_batch_msg.actions.capacity = s_batch_msg.position_rad.capacity = MM_BATCH_MAX_SAMPLES;
    s_batch_msg.velocity_rad_s.capacity = s_batch_msg.current_a.capacity = MM_BATCH_MAX_SAMPLES;
    s_batch_msg.target_rad.capacity = s_batch_msg.power_w.capacity = s_batch_msg.flags.capacity = MM_BATCH_MAX_SAMPLES;
    s_chunk.data.data = s_chunk_data;
    s_chunk.data.capacity = sizeof s_chunk_data;
    s_ack.missing.data = s_ack_missing;
    s_ack.missing.capacity = MM_ACK_MAX_MISSING;
}

static void uros_task(void *arg)
{
    (void)arg;
    rcl_allocator_t allocator = rcl_get_default_allocator();
    rclc_support_t support;
    rcl_init_options_t options = rcl_get_zero_initialized_init_options();
    rcl_node_t node = rcl_get_zero_initialized_node();
    rclc_executor_t executor = rclc_executor_get_zero_initialized_executor();
    int created = 0; /* how far setup got, for the reverse teardown below */
    bind_batch_columns();
    if (rcl_init_options_init(&options, allocator) != RCL_RET_OK) {
        goto done;
    }
#if CONFIG_MM_TRANSPORT_UDP
    rmw_init_options_t *rmw = rcl_init_options_get_rmw_init_options(&options);
    if (rmw_uros_options_set_udp_address(CONFIG_MM_AGENT_IP, CONFIG_MM_AGENT_PORT, rmw) != RMW_RET_OK) {
        goto fini_options;
    }
#endif
    if (rclc_support_init_with_options(&support, 0, NULL, &options, &allocator) != RCL_RET_OK) {
        ESP_LOGE(TAG, "no micro-ROS agent reachable");
        goto fini_options;
    }
    created = 1;
    if (rclc_node_init_default(&node, "mm_servo", CONFIG_MM_ROS_NAMESPACE, &support) != RCL_RET_OK) goto teardown;
    created = 2;
    const rosidl_message_type_support_t *ts_state = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, ServoState);
    const rosidl_message_type_support_t *ts_batch = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, TransitionBatch);
    const rosidl_message_type_support_t *ts_ack = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, PolicyAck);
    const rosidl_message_type_support_t *ts_cmd = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, ServoCommand);
    const rosidl_message_type_support_t *ts_hb = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, Heartbeat);
    const rosidl_message_type_support_t *ts_chunk = ROSIDL_GET_MSG_TYPE_SUPPORT(mm_msgs, msg, PolicyChunk);
    if (rclc_publisher_init_best_effort(&s_state_pub, &node, ts_state, "state") != RCL_RET_OK) goto teardown;
    created = 3;
    if (rclc_publisher_init_default(&s_batch_pub, &node, ts_batch, "transitions") != RCL_RET_OK) goto teardown;
    created = 4;
    if (rclc_publisher_init_default(&s_ack_pub, &node, ts_ack, "policy_ack") != RCL_RET_OK) goto teardown;
    created = 5;
    if (rclc_subscription_init_default(&s_cmd_sub, &node, ts_cmd, "command") != RCL_RET_OK) goto teardown;
    created = 6;
    if (rclc_subscription_init_best_effort(&s_hb_sub, &node, ts_hb, "heartbeat") != RCL_RET_OK) goto teardown;
    created = 7;
    if (rclc_subscription_init_default(&s_chunk_sub, &node, ts_chunk, "policy_chunk") != RCL_RET_OK) goto teardown;
    created = 8;
    if (rclc_executor_init(&executor, &support.context, 3, &allocator) != RCL_RET_OK) goto teardown;
    created = 9;
    if (rclc_executor_add_subscription(&executor, &s_cmd_sub, &s_cmd, on_command, ON_NEW_DATA) != RCL_RET_OK ||
        rclc_executor_add_subscription(&executor, &s_hb_sub, &s_hb, on_heartbeat, ON_NEW_DATA) != RCL_RET_OK ||
        rclc_executor_add_subscription(&executor, &s_chunk_sub, &s_chunk, on_chunk, ON_NEW_DATA) != RCL_RET_OK) {
        goto teardown;
    }
    (void)rmw_uros_sync_session(1000);
    ESP_LOGI(TAG, "micro-ROS up in /%s", CONFIG_MM_ROS_NAMESPACE);
    const TickType_t period = pdMS_TO_TICKS(1000 * CONFIG_MM_STATE_DECIMATION / CONFIG_MM_CONTROL_RATE_HZ);
    TickType_t wake = xTaskGetTickCount();
    for (uint32_t seq = 0;; ++seq) {
        (void)rclc_executor_spin_some(&executor, RCL_MS_TO_NS(1));
        publish_state(seq);
        publish_batches();
        publish_acks();
        vTaskDelayUntil(&wake, period > 0 ? period : 1);
    }

teardown:
    ESP_LOGE(TAG, "micro-ROS setup failed at step %d", created);
    if (created >= 9) (void)rclc_executor_fini(&executor);
    if (created >= 8) (void)rcl_subscription_fini(&s_chunk_sub, &node);
    if (created >= 7) (void)rcl_subscription_fini(&s_hb_sub, &node);
    if (created >= 6) (void)rcl_subscription_fini(&s_cmd_sub, &node);
    if (created >= 5) (void)rcl_publisher_fini(&s_ack_pub, &node);
    if (created >= 4) (void)rcl_publisher_fini(&s_batch_pub, &node);
    if (created >= 3) (void)rcl_publisher_fini(&s_state_pub, &node);
    if (created >= 2) (void)rcl_node_fini(&node);
    if (created >= 1) (void)rclc_support_fini(&support);
fini_options:
    (void)rcl_init_options_fini(&options);
done:
    vTaskDelete(NULL);
}

esp_err_t uros_task_start(void)
{
#if CONFIG_MM_TRANSPORT_UART
    if (uart_transport_register() != ESP_OK) {
        return ESP_FAIL;
    }
#else
    if (uros_network_interface_initialize() != ESP_OK) {
        return ESP_FAIL;
    }
#endif
    return xTaskCreate(uros_task, "uros", CONFIG_MICRO_ROS_APP_STACK, NULL, CONFIG_MICRO_ROS_APP_TASK_PRIO, NULL) ==
                   pdPASS
               ? ESP_OK
               : ESP_ERR_NO_MEM;
}
