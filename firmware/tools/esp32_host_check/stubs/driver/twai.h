#pragma once
#include <stdint.h>
#include "esp_err.h"
#include "freertos/FreeRTOS.h"
typedef enum { TWAI_MODE_NORMAL = 0 } twai_mode_t;
typedef struct { twai_mode_t mode; int tx_io; int rx_io; int clkout_io; int bus_off_io; uint32_t tx_queue_len;
                 uint32_t rx_queue_len; uint32_t alerts_enabled; int clkout_divider; int intr_flags; }
    twai_general_config_t;
typedef struct { uint32_t brp; uint8_t tseg_1; uint8_t tseg_2; uint8_t sjw; bool triple_sampling; }
    twai_timing_config_t;
typedef struct { uint32_t acceptance_code; uint32_t acceptance_mask; bool single_filter; } twai_filter_config_t;
typedef struct { union { struct { uint32_t extd : 1; uint32_t rtr : 1; uint32_t ss : 1; uint32_t self : 1;
                                  uint32_t dlc_non_comp : 1; uint32_t reserved : 27; }; uint32_t flags; };
                 uint32_t identifier; uint8_t data_length_code; uint8_t data[8]; } twai_message_t;
#define TWAI_GENERAL_CONFIG_DEFAULT(tx, rx, m) {.mode = (m), .tx_io = (tx), .rx_io = (rx), .clkout_io = -1, \
    .bus_off_io = -1, .tx_queue_len = 5, .rx_queue_len = 5, .alerts_enabled = 0, .clkout_divider = 0, .intr_flags = 0}
#define TWAI_TIMING_CONFIG_125KBITS() {.brp = 32, .tseg_1 = 15, .tseg_2 = 4, .sjw = 3, .triple_sampling = false}
#define TWAI_TIMING_CONFIG_250KBITS() {.brp = 16, .tseg_1 = 15, .tseg_2 = 4, .sjw = 3, .triple_sampling = false}
#define TWAI_TIMING_CONFIG_500KBITS() {.brp = 8, .tseg_1 = 15, .tseg_2 = 4, .sjw = 3, .triple_sampling = false}
#define TWAI_TIMING_CONFIG_1MBITS() {.brp = 4, .tseg_1 = 15, .tseg_2 = 4, .sjw = 3, .triple_sampling = false}
#define TWAI_FILTER_CONFIG_ACCEPT_ALL() {.acceptance_code = 0, .acceptance_mask = 0xFFFFFFFF, .single_filter = true}
esp_err_t twai_driver_install(const twai_general_config_t *g, const twai_timing_config_t *t,
                              const twai_filter_config_t *f);
esp_err_t twai_driver_uninstall(void);
esp_err_t twai_start(void);
esp_err_t twai_stop(void);
esp_err_t twai_transmit(const twai_message_t *message, TickType_t ticks_to_wait);
esp_err_t twai_receive(twai_message_t *message, TickType_t ticks_to_wait);
