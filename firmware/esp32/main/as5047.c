#include "as5047.h"

#include "driver/spi_master.h"
#include "esp_log.h"
#include "sdkconfig.h"

static const char *TAG = "as5047";
static spi_device_handle_t s_dev;

#define AS5047_ANGLECOM 0x3FFFu
#define AS5047_READ 0x4000u

static uint16_t with_parity(uint16_t frame)
{
    /* Even parity over bits 0..14 goes to bit 15. */
    return (uint16_t)(frame | ((uint16_t)(__builtin_parity(frame & 0x7FFFu)) << 15));
}

esp_err_t as5047_init(void)
{
    const spi_bus_config_t bus = {
        .sclk_io_num = CONFIG_MM_PIN_SPI_SCLK,
        .miso_io_num = CONFIG_MM_PIN_SPI_MISO,
        .mosi_io_num = CONFIG_MM_PIN_SPI_MOSI,
        .quadwp_io_num = -1,
        .quadhd_io_num = -1,
        .max_transfer_sz = 4,
    };
    esp_err_t err = spi_bus_initialize(SPI2_HOST, &bus, SPI_DMA_DISABLED);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "spi_bus_initialize: %s", esp_err_to_name(err));
        return err;
    }
    const spi_device_interface_config_t dev = {
        .mode = 1,
        .clock_speed_hz = 10 * 1000 * 1000,
        .spics_io_num = CONFIG_MM_PIN_SPI_CS,
        .queue_size = 1,
    };
    err = spi_bus_add_device(SPI2_HOST, &dev, &s_dev);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "spi_bus_add_device: %s", esp_err_to_name(err));
        spi_bus_free(SPI2_HOST);
    }
    return err;
}

bool as5047_read(uint16_t *count)
{
    /* The reply to a read command arrives in the next frame, so the command is sent every tick and each
     * reply belongs to the previous tick's command: one frame of latency, the same register every time. */
    const uint16_t cmd = with_parity(AS5047_READ | AS5047_ANGLECOM);
    spi_transaction_t t = {.length = 16, .flags = SPI_TRANS_USE_TXDATA | SPI_TRANS_USE_RXDATA};
    t.tx_data[0] = (uint8_t)(cmd >> 8);
    t.tx_data[1] = (uint8_t)cmd;
    if (spi_device_polling_transmit(s_dev, &t) != ESP_OK) {
        return false;
    }
    const uint16_t reply = (uint16_t)((t.rx_data[0] << 8) | t.rx_data[1]);
    const bool parity_ok = __builtin_parity(reply) == 0;
    const bool error_flag = (reply & 0x4000u) != 0u;
    *count = reply & AS5047_ANGLECOM;
    return parity_ok && !error_flag;
}
