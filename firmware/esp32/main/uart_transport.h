/* micro-ROS custom transport over a UART (used when CONFIG_MM_TRANSPORT_UART is set). */
#pragma once

#include "esp_err.h"

/** Register the UART transport with rmw_microros (call before rclc_support_init). */
esp_err_t uart_transport_register(void);
