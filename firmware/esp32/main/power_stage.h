/* A4954 power stage: current reference (DAC or PWM + RC), direction, enable; brake and end-stop GPIOs. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"

esp_err_t power_stage_init(void);

/** Apply a signed current command (A), enable and brake; safe to call from the control task every tick. */
void power_stage_apply(float current_a, bool enable, bool brake_on);

/** End-stop switches (active low inputs); false when not fitted. */
void power_stage_end_stops(bool *low, bool *high);
