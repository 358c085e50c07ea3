/* TWAI (CAN 2.0B, 29-bit ids) endpoint of firmware/core/can/mm_servo.dbc: receives commands, heartbeats,
 * register requests and ISO-TP policy frames; sends replies, state frames (decimated) and fault frames. */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "driver/twai.h"
#include "esp_log.h"
#include "freertos/task.h"
#include "mm_core/mm_can.h"
#include "mm_servo.h"
#include "sdkconfig.h"

static const char *TAG = "can";
static mm_can_t s_can;

static void send(const mm_can_frame_t *f)
{
    twai_message_t msg = {.extd = 1, .identifier = f->id, .data_length_code = f->dlc};
    for (uint8_t i = 0; i < f->dlc; ++i) {
        msg.data[i] = f->data[i];
    }
    if (twai_transmit(&msg, pdMS_TO_TICKS(2)) != ESP_OK) {
        ESP_LOGD(TAG, "tx dropped (bus busy or off)");
    }
}

static void can_task(void *arg)
{
    (void)arg;
    const TickType_t period = pdMS_TO_TICKS(1000 * CONFIG_MM_STATE_DECIMATION / CONFIG_MM_CONTROL_RATE_HZ);
    TickType_t next_state = xTaskGetTickCount();
    TickType_t last_tick = next_state;
    for (;;) {
        twai_message_t msg;
        if (twai_receive(&msg, pdMS_TO_TICKS(1)) == ESP_OK && msg.extd && !msg.rtr) {
            mm_can_frame_t rx = {.id = msg.identifier, .dlc = msg.data_length_code};
            for (uint8_t i = 0; i < rx.dlc && i < 8; ++i) {
                rx.data[i] = msg.data[i];
            }
            mm_can_frame_t tx[MM_CAN_MAX_REPLIES];
            xSemaphoreTake(g_app.lock, portMAX_DELAY);
            if ((rx.id & ~(uint32_t)MM_CAN_DEVICE_MASK) == MM_SERVO_POLICY_TP_DATA_FRAME_ID) {
                g_app.policy_link = APP_LINK_CAN;
            }
            const uint8_t n = mm_can_receive(&s_can, g_app.core, &rx, tx);
            xSemaphoreGive(g_app.lock);
            for (uint8_t i = 0; i < n; ++i) {
                send(&tx[i]);
            }
            if (mm_core_policy_verify_pending(g_app.core)) {
                app_finish_policy();
                mm_can_frame_t ack;
                xSemaphoreTake(g_app.lock, portMAX_DELAY);
                mm_can_policy_ack_frame(&s_can, g_app.core, &ack);
                xSemaphoreGive(g_app.lock);
                send(&ack);
            }
        }
        /* ISO-TP N_Cr timeout: pass the time that really elapsed (a loop may take longer than the 1-tick wait). */
        const TickType_t now = xTaskGetTickCount();
        mm_can_tick(&s_can, (float)((now - last_tick) * portTICK_PERIOD_MS) / 1000.0f); /* s_can is ours alone */
        last_tick = now;
        if (xTaskGetTickCount() - next_state >= period) {
            next_state = xTaskGetTickCount();
            mm_can_frame_t frames[MM_CAN_STATE_FRAMES];
            mm_can_frame_t fault;
            mm_can_frame_t truncated;
            xSemaphoreTake(g_app.lock, portMAX_DELAY);
            const uint8_t n = mm_can_state_frames(&s_can, g_app.core, frames);
            const bool has_fault = mm_can_fault_frame(&s_can, g_app.core, &fault);
            /* The transfer timeout runs in the control step: its TRUNCATED ack goes out with the state. */
            const bool has_truncated =
                g_app.policy_link == APP_LINK_CAN && mm_can_truncated_ack_frame(&s_can, g_app.core, &truncated);
            xSemaphoreGive(g_app.lock);
            if (has_fault) {
                send(&fault);
            }
            if (has_truncated) {
                send(&truncated);
            }
            for (uint8_t i = 0; i < n; ++i) {
                send(&frames[i]);
            }
        }
    }
}

/* The optional fleet key (Kconfig, 32 hex digits); false when empty or malformed. */
static bool parse_auth_key(const char *hex, uint8_t key[MM_CAN_AUTH_KEY_BYTES])
{
    if (strlen(hex) != 2u * MM_CAN_AUTH_KEY_BYTES) {
        return false;
    }
    for (unsigned i = 0; i < MM_CAN_AUTH_KEY_BYTES; ++i) {
        unsigned byte;
        if (sscanf(hex + 2u * i, "%2x", &byte) != 1) {
            return false;
        }
        key[i] = (uint8_t)byte;
    }
    return true;
}

esp_err_t can_task_start(void)
{
    if (!mm_can_init(&s_can, CONFIG_MM_CAN_DEVICE_ID, 0u, 0u, 1.0f)) {
        ESP_LOGE(TAG, "device id %d outside 1..1022", CONFIG_MM_CAN_DEVICE_ID);
        return ESP_ERR_INVALID_ARG;
    }
    uint8_t key[MM_CAN_AUTH_KEY_BYTES];
    if (parse_auth_key(CONFIG_MM_CAN_AUTH_KEY, key)) {
        /* The counter restarts at 0 with each boot: the host's counter only grows, so it stays ahead. */
        mm_can_auth_enable(&s_can, key, 0u);
        memset(key, 0, sizeof key);
        ESP_LOGI(TAG, "authenticated CAN commands on");
    } else if (CONFIG_MM_CAN_AUTH_KEY[0] != '\0') {
        ESP_LOGE(TAG, "MM_CAN_AUTH_KEY is not 32 hex digits: refusing to start CAN unauthenticated");
        return ESP_ERR_INVALID_ARG;
    }
    const twai_general_config_t g = TWAI_GENERAL_CONFIG_DEFAULT(CONFIG_MM_PIN_CAN_TX, CONFIG_MM_PIN_CAN_RX,
                                                                TWAI_MODE_NORMAL);
    twai_timing_config_t t;
    switch (CONFIG_MM_CAN_BITRATE_K) {
    case 125: t = (twai_timing_config_t)TWAI_TIMING_CONFIG_125KBITS(); break;
    case 250: t = (twai_timing_config_t)TWAI_TIMING_CONFIG_250KBITS(); break;
    case 1000: t = (twai_timing_config_t)TWAI_TIMING_CONFIG_1MBITS(); break;
    default: t = (twai_timing_config_t)TWAI_TIMING_CONFIG_500KBITS(); break;
    }
    const twai_filter_config_t f = TWAI_FILTER_CONFIG_ACCEPT_ALL();
    esp_err_t err = twai_driver_install(&g, &t, &f);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "twai_driver_install: %s", esp_err_to_name(err));
        return err;
    }
    err = twai_start();
    if (err != ESP_OK) {
        twai_driver_uninstall();
        return err;
    }
    if (xTaskCreate(can_task, "can", 4096, NULL, 6, NULL) != pdPASS) {
        twai_stop();
        twai_driver_uninstall();
        return ESP_ERR_NO_MEM;
    }
    return ESP_OK;
}
