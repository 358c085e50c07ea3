/* The control loop: a hardware timer wakes a high-priority task every period; it reads the sensors, steps
 * the core under the lock and applies the command. The core never reads a clock: dt comes from Kconfig. */
#include "app.h"
#include "as5047.h"
#include "driver/gptimer.h"
#include "esp_log.h"
#include "freertos/task.h"
#include "ina2xx.h"
#include "power_stage.h"
#include "sdkconfig.h"

static const char *TAG = "control";
static TaskHandle_t s_task;

static bool IRAM_ATTR on_alarm(gptimer_handle_t timer, const gptimer_alarm_event_data_t *edata, void *ctx)
{
    (void)timer;
    (void)edata;
    (void)ctx;
    BaseType_t woken = pdFALSE;
    vTaskNotifyGiveFromISR(s_task, &woken);
    return woken == pdTRUE;
}

static void control_task(void *arg)
{
    (void)arg;
    ina2xx_reading_t power = {.bus_voltage_v = 0.0f, .temperature_c = 25.0f};
    float last_cmd_a = 0.0f;
    for (;;) {
        ulTaskNotifyTake(pdTRUE, portMAX_DELAY);
        mm_sensors_t s = {0};
        s.encoder_ok = as5047_read(&s.encoder_count);
        (void)ina2xx_read(&power); /* on an I2C error the last reading stands */
        /* The shunt is in the supply line: magnitude only; the sign follows the commanded direction. */
        s.current_a = last_cmd_a >= 0.0f ? power.current_a : -power.current_a;
        s.bus_voltage_v = power.bus_voltage_v;
        s.temperature_c = power.temperature_c;
        s.power_w = power.power_w;
        power_stage_end_stops(&s.end_stop_low, &s.end_stop_high);
        mm_actuator_t out;
        xSemaphoreTake(g_app.lock, portMAX_DELAY);
        mm_core_step(g_app.core, &s, g_app.dt_s, &out);
        xSemaphoreGive(g_app.lock);
        power_stage_apply(out.current_cmd_a, out.driver_enable, out.brake_on);
        last_cmd_a = out.current_cmd_a;
    }
}

esp_err_t control_task_start(void)
{
    if (xTaskCreatePinnedToCore(control_task, "control", 4096, NULL, configMAX_PRIORITIES - 1, &s_task, 1) !=
        pdPASS) {
        return ESP_ERR_NO_MEM;
    }
    gptimer_handle_t timer = NULL;
    const gptimer_config_t cfg = {.clk_src = GPTIMER_CLK_SRC_DEFAULT, .direction = GPTIMER_COUNT_UP,
                                  .resolution_hz = 1000000};
    esp_err_t err = gptimer_new_timer(&cfg, &timer);
    if (err == ESP_OK) {
        const gptimer_event_callbacks_t cbs = {.on_alarm = on_alarm};
        const gptimer_alarm_config_t alarm = {.alarm_count = 1000000 / CONFIG_MM_CONTROL_RATE_HZ,
                                              .reload_count = 0, .flags.auto_reload_on_alarm = true};
        err = gptimer_register_event_callbacks(timer, &cbs, NULL);
        if (err == ESP_OK) err = gptimer_set_alarm_action(timer, &alarm);
        if (err == ESP_OK) err = gptimer_enable(timer);
        if (err == ESP_OK) err = gptimer_start(timer);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "control timer: %s", esp_err_to_name(err));
        if (timer != NULL) {
            gptimer_del_timer(timer);
        }
        /* The task only blocks on notifications: without the timer it never runs, outputs stay off. */
        vTaskDelete(s_task);
    }
    return err;
}
