#pragma once
#include <stdint.h>
#include <stddef.h>
#include "esp_err.h"
typedef enum { SPI1_HOST = 0, SPI2_HOST = 1, SPI3_HOST = 2 } spi_host_device_t;
typedef enum { SPI_DMA_DISABLED = 0, SPI_DMA_CH_AUTO = 3 } spi_dma_chan_t;
typedef struct { int mosi_io_num; int miso_io_num; int sclk_io_num; int quadwp_io_num; int quadhd_io_num;
                 int max_transfer_sz; uint32_t flags; } spi_bus_config_t;
typedef struct { uint8_t command_bits, address_bits, dummy_bits, mode; int clock_speed_hz; int spics_io_num;
                 uint32_t flags; int queue_size; } spi_device_interface_config_t;
typedef struct spi_device_t *spi_device_handle_t;
#define SPI_TRANS_USE_RXDATA (1 << 2)
#define SPI_TRANS_USE_TXDATA (1 << 3)
typedef struct { uint32_t flags; uint16_t cmd; uint64_t addr; size_t length; size_t rxlength; void *user;
                 union { const void *tx_buffer; uint8_t tx_data[4]; };
                 union { void *rx_buffer; uint8_t rx_data[4]; }; } spi_transaction_t;
esp_err_t spi_bus_initialize(spi_host_device_t host, const spi_bus_config_t *bus, spi_dma_chan_t dma);
esp_err_t spi_bus_free(spi_host_device_t host);
esp_err_t spi_bus_add_device(spi_host_device_t host, const spi_device_interface_config_t *dev,
                             spi_device_handle_t *handle);
esp_err_t spi_device_polling_transmit(spi_device_handle_t handle, spi_transaction_t *trans);
