#pragma once
#include "esp_err.h"
esp_err_t uros_network_interface_initialize(void);
