#include "power_stage.h"

#include <math.h>

#include "driver/gpio.h"
#include "esp_log.h"
#include "sdkconfig.h"
#if CONFIG_MM_CURRENT_REF_PWM
#include "driver/ledc.h"
#else
#include "driver/dac_oneshot.h"
#endif

static const char *TAG = "power_stage";
#if !CONFIG_MM_CURRENT_REF_PWM
static dac_oneshot_handle_t s_dac;
#endif

/* A4954: I_trip = V_ref / (10 x R_sense); the DAC spans 0..3.3 V in 256 steps. */
#define VREF_FULL_SCALE_V 3.3f

esp_err_t power_stage_init(void)
{
    const gpio_config_t out = {
        .pin_bit_mask = (1ULL << CONFIG_MM_PIN_DIR) | (1ULL << CONFIG_MM_PIN_ENABLE) | (1ULL << CONFIG_MM_PIN_BRAKE),
        .mode = GPIO_MODE_OUTPUT,
    };
    esp_err_t err = gpio_config(&out);
    if (err != ESP_OK) {
        return err;
    }
    /* Safe state first: outputs off, brake engaged. */
    gpio_set_level(CONFIG_MM_PIN_ENABLE, 0);
    gpio_set_level(CONFIG_MM_PIN_BRAKE, 1);
    uint64_t inputs = 0;
    if (CONFIG_MM_PIN_END_STOP_LOW >= 0) {
        inputs |= 1ULL << CONFIG_MM_PIN_END_STOP_LOW;
    }
    if (CONFIG_MM_PIN_END_STOP_HIGH >= 0) {
        inputs |= 1ULL << CONFIG_MM_PIN_END_STOP_HIGH;
    }
    if (inputs != 0) {
        const gpio_config_t in = {.pin_bit_mask = inputs, .mode = GPIO_MODE_INPUT, .pull_up_en = GPIO_PULLUP_ENABLE};
        err = gpio_config(&in);
        if (err != ESP_OK) {
            return err;
        }
    }
#if CONFIG_MM_CURRENT_REF_PWM
    const ledc_timer_config_t timer = {.speed_mode = LEDC_LOW_SPEED_MODE, .duty_resolution = LEDC_TIMER_10_BIT,
                                       .timer_num = LEDC_TIMER_0, .freq_hz = 40000, .clk_cfg = LEDC_AUTO_CLK};
    err = ledc_timer_config(&timer);
    if (err == ESP_OK) {
        const ledc_channel_config_t ch = {.gpio_num = CONFIG_MM_PIN_DAC_VREF, .speed_mode = LEDC_LOW_SPEED_MODE,
                                          .channel = LEDC_CHANNEL_0, .timer_sel = LEDC_TIMER_0, .duty = 0};
        err = ledc_channel_config(&ch);
    }
#else
    const dac_oneshot_config_t dac = {
        .chan_id = CONFIG_MM_PIN_DAC_VREF == 26 ? DAC_CHAN_1 : DAC_CHAN_0,
    };
    err = dac_oneshot_new_channel(&dac, &s_dac);
#endif
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "current reference init: %s", esp_err_to_name(err));
    }
    return err;
}

void power_stage_apply(float current_a, bool enable, bool brake_on)
{
    const float amps_per_volt = (float)CONFIG_MM_AMPS_PER_VOLT_VREF / 1000.0f;
    float fraction = fabsf(current_a) / (amps_per_volt * VREF_FULL_SCALE_V);
    fraction = fraction > 1.0f ? 1.0f : fraction;
    gpio_set_level(CONFIG_MM_PIN_DIR, current_a >= 0.0f ? 1 : 0);
#if CONFIG_MM_CURRENT_REF_PWM
    ledc_set_duty(LEDC_LOW_SPEED_MODE, LEDC_CHANNEL_0, (uint32_t)(fraction * 1023.0f));
    ledc_update_duty(LEDC_LOW_SPEED_MODE, LEDC_CHANNEL_0);
#else
    dac_oneshot_output_voltage(s_dac, (uint8_t)(fraction * 255.0f));
#endif
    gpio_set_level(CONFIG_MM_PIN_ENABLE, enable ? 1 : 0);
    gpio_set_level(CONFIG_MM_PIN_BRAKE, brake_on ? 1 : 0);
}

void power_stage_end_stops(bool *low, bool *high)
{
    *low = CONFIG_MM_PIN_END_STOP_LOW >= 0 && gpio_get_level(CONFIG_MM_PIN_END_STOP_LOW) == 0;
    *high = CONFIG_MM_PIN_END_STOP_HIGH >= 0 && gpio_get_level(CONFIG_MM_PIN_END_STOP_HIGH) == 0;
}
