#include "uart_transport.h"

#include "sdkconfig.h"
#if CONFIG_MM_TRANSPORT_UART
#include <uxr/client/transport.h>
#include <rmw_microros/rmw_microros.h>

#include "driver/uart.h"
#include "freertos/FreeRTOS.h"

/* rmw_uros_set_custom_transport() exists only in a micro-ROS library built for the custom transport: the
 * micro-ROS component reads the transport from app-colcon.meta (udp), so the UART build needs app-colcon-uart.meta
 * in its place (firmware/README.md). */
#ifndef RMW_UXRCE_TRANSPORT_CUSTOM
#error "MM_TRANSPORT_UART needs micro-ROS built with RMW_UXRCE_TRANSPORT=custom: copy app-colcon-uart.meta to app-colcon.meta and rebuild micro-ROS"
#endif

#define UART_BUFFER_BYTES 2048

static bool uart_open(struct uxrCustomTransport *transport)
{
    (void)transport;
    const uart_config_t cfg = {.baud_rate = CONFIG_MM_UART_BAUD, .data_bits = UART_DATA_8_BITS,
                               .parity = UART_PARITY_DISABLE, .stop_bits = UART_STOP_BITS_1,
                               .flow_ctrl = UART_HW_FLOWCTRL_DISABLE, .source_clk = UART_SCLK_DEFAULT};
    return uart_param_config(CONFIG_MM_UART_PORT, &cfg) == ESP_OK &&
           uart_set_pin(CONFIG_MM_UART_PORT, CONFIG_MM_UART_TX, CONFIG_MM_UART_RX, UART_PIN_NO_CHANGE,
                        UART_PIN_NO_CHANGE) == ESP_OK &&
           uart_driver_install(CONFIG_MM_UART_PORT, UART_BUFFER_BYTES, 0, 0, NULL, 0) == ESP_OK;
}

static bool uart_close(struct uxrCustomTransport *transport)
{
    (void)transport;
    return uart_driver_delete(CONFIG_MM_UART_PORT) == ESP_OK;
}

static size_t uart_write(struct uxrCustomTransport *transport, const uint8_t *buf, size_t len, uint8_t *err)
{
    (void)transport;
    const int n = uart_write_bytes(CONFIG_MM_UART_PORT, (const char *)buf, len);
    *err = n < 0 ? 1 : 0;
    return n < 0 ? 0 : (size_t)n;
}

static size_t uart_read(struct uxrCustomTransport *transport, uint8_t *buf, size_t len, int timeout_ms, uint8_t *err)
{
    (void)transport;
    const int n = uart_read_bytes(CONFIG_MM_UART_PORT, buf, len, pdMS_TO_TICKS(timeout_ms));
    *err = n < 0 ? 1 : 0;
    return n < 0 ? 0 : (size_t)n;
}

esp_err_t uart_transport_register(void)
{
    return rmw_uros_set_custom_transport(true, NULL, uart_open, uart_close, uart_write, uart_read) == RMW_RET_OK
               ? ESP_OK
               : ESP_FAIL;
}
#else
esp_err_t uart_transport_register(void)
{
    return ESP_ERR_NOT_SUPPORTED;
}
#endif
