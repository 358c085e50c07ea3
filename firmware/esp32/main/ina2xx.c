#include "ina2xx.h"

#include "driver/i2c_master.h"
#include "esp_log.h"
#include "sdkconfig.h"

static const char *TAG = "ina2xx";
static i2c_master_bus_handle_t s_bus;
static i2c_master_dev_handle_t s_dev;

#define INA_ADDRESS 0x40
#define I2C_TIMEOUT_MS 2

static bool read_reg(uint8_t reg, int32_t *value, bool is_signed)
{
    uint8_t rx[2];
    if (i2c_master_transmit_receive(s_dev, &reg, 1, rx, sizeof rx, I2C_TIMEOUT_MS) != ESP_OK) {
        return false;
    }
    const uint16_t raw = (uint16_t)((rx[0] << 8) | rx[1]);
    *value = is_signed ? (int16_t)raw : (int32_t)raw;
    return true;
}

esp_err_t ina2xx_init(void)
{
    const i2c_master_bus_config_t bus = {
        .i2c_port = I2C_NUM_0,
        .sda_io_num = CONFIG_MM_PIN_I2C_SDA,
        .scl_io_num = CONFIG_MM_PIN_I2C_SCL,
        .clk_source = I2C_CLK_SRC_DEFAULT,
        .glitch_ignore_cnt = 7,
        .flags.enable_internal_pullup = true,
    };
    esp_err_t err = i2c_new_master_bus(&bus, &s_bus);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "i2c bus: %s", esp_err_to_name(err));
        return err;
    }
    const i2c_device_config_t dev = {.dev_addr_length = I2C_ADDR_BIT_LEN_7, .device_address = INA_ADDRESS,
                                     .scl_speed_hz = 400000};
    err = i2c_master_bus_add_device(s_bus, &dev, &s_dev);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "i2c device: %s", esp_err_to_name(err));
        i2c_del_master_bus(s_bus);
    }
    return err;
}

bool ina2xx_read(ina2xx_reading_t *out)
{
    const float shunt_ohm = (float)CONFIG_MM_SHUNT_MILLIOHM / 1000.0f;
    int32_t shunt, bus;
#if CONFIG_MM_SENSE_INA237
    /* INA237: VSHUNT 0x04 (5 uV/LSB at ADCRANGE=0), VBUS 0x05 (3.125 mV/LSB), DIETEMP 0x06 (125 m degC/LSB, <<4). */
    int32_t temp;
    if (!read_reg(0x04, &shunt, true) || !read_reg(0x05, &bus, false) || !read_reg(0x06, &temp, true)) {
        return false;
    }
    out->current_a = (float)shunt * 5e-6f / shunt_ohm;
    out->bus_voltage_v = (float)bus * 3.125e-3f;
    out->temperature_c = (float)(temp >> 4) * 0.125f;
#else
    /* INA219: shunt voltage 0x01 (10 uV/LSB), bus voltage 0x02 (bits 15..3, 4 mV/LSB). No temperature sensor. */
    if (!read_reg(0x01, &shunt, true) || !read_reg(0x02, &bus, false)) {
        return false;
    }
    out->current_a = (float)shunt * 10e-6f / shunt_ohm;
    out->bus_voltage_v = (float)(bus >> 3) * 4e-3f;
    out->temperature_c = 25.0f;
#endif
    out->power_w = out->current_a * out->bus_voltage_v;
    return true;
}
