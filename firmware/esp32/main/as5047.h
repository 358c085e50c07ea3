/* AS5047P absolute magnetic encoder over SPI (mode 1, 16-bit frames, up to 10 MHz). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"

/** Set up the SPI bus and device from the Kconfig pins. */
esp_err_t as5047_init(void);

/**
 * Read ANGLECOM (14-bit, 0..16383 per revolution). Returns false on an SPI error, a parity error or the
 * error flag set in the reply: the core then latches FAULT_ENCODER.
 */
bool as5047_read(uint16_t *count);
