/* INA219 / INA237 current, bus voltage, power and (INA237) die temperature over I2C. */
#pragma once

#include <stdbool.h>

#include "esp_err.h"

typedef struct {
    float current_a;
    float bus_voltage_v;
    float power_w;
    float temperature_c;  /* INA237 die temperature; 25 with an INA219 (no sensor) */
} ina2xx_reading_t;

esp_err_t ina2xx_init(void);

/** Read all values; false on an I2C error (the previous reading stays in *out). */
bool ina2xx_read(ina2xx_reading_t *out);
