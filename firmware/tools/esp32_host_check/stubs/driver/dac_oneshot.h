#pragma once
#include <stdint.h>
#include "esp_err.h"
typedef enum { DAC_CHAN_0 = 0, DAC_CHAN_1 = 1 } dac_channel_t;
typedef struct { dac_channel_t chan_id; } dac_oneshot_config_t;
typedef struct dac_oneshot_s *dac_oneshot_handle_t;
esp_err_t dac_oneshot_new_channel(const dac_oneshot_config_t *cfg, dac_oneshot_handle_t *ret);
esp_err_t dac_oneshot_output_voltage(dac_oneshot_handle_t handle, uint8_t digi_value);
