/* Muscle Memory servo firmware: configuration from Kconfig, the core, then the control, micro-ROS and CAN
 * tasks. Hardware is brought up in a safe state (outputs off, brake on) before anything can drive it. */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "as5047.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "ina2xx.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "power_stage.h"
#include "sdkconfig.h"

static const char *TAG = "mm_servo";
app_t g_app;
static mm_core_t *s_core_storage;

static bool parse_public_key(const char *hex, uint8_t out[MM_PUBLIC_KEY_BYTES])
{
    if (strlen(hex) != 2u * MM_PUBLIC_KEY_BYTES) {
        return false;
    }
    for (unsigned i = 0; i < MM_PUBLIC_KEY_BYTES; ++i) {
        unsigned byte;
        if (sscanf(hex + 2u * i, "%2x", &byte) != 1) {
            return false;
        }
        out[i] = (uint8_t)byte;
    }
    return out[0] == 0x04u;
}

/* Anti-rollback floor (servo contract section 5): the highest policy_version accepted, kept in NVS so a reboot
 * cannot reopen the door to an older signed image. Missing (first boot, erased NVS): 0, nothing accepted yet. */
#define NVS_NAMESPACE "mm_servo"
#define NVS_KEY_POLICY_VERSION "policy_ver"

static uint32_t load_policy_version_floor(void)
{
    uint32_t floor = 0u;
    nvs_handle_t nvs;
    if (nvs_open(NVS_NAMESPACE, NVS_READONLY, &nvs) == ESP_OK) {
        if (nvs_get_u32(nvs, NVS_KEY_POLICY_VERSION, &floor) != ESP_OK) {
            floor = 0u;
        }
        nvs_close(nvs);
    }
    return floor;
}

static void store_policy_version_floor(uint32_t floor)
{
    nvs_handle_t nvs;
    esp_err_t err = nvs_open(NVS_NAMESPACE, NVS_READWRITE, &nvs);
    if (err == ESP_OK) {
        err = nvs_set_u32(nvs, NVS_KEY_POLICY_VERSION, floor);
        if (err == ESP_OK) {
            err = nvs_commit(nvs);
        }
        nvs_close(nvs);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "could not persist policy version floor %u (%s): a reboot forgets it",
                 (unsigned)floor, esp_err_to_name(err));
    }
}

static esp_err_t core_init(void)
{
    mm_config_t cfg;
    mm_core_config_default(&cfg);
    cfg.current_limit_a = CONFIG_MM_CURRENT_LIMIT_MA / 1000.0f;
    cfg.overcurrent_a = CONFIG_MM_OVERCURRENT_MA / 1000.0f;
    cfg.undervoltage_v = CONFIG_MM_UNDERVOLTAGE_MV / 1000.0f;
    cfg.overvoltage_v = CONFIG_MM_OVERVOLTAGE_MV / 1000.0f;
#if CONFIG_MM_CAN_ENABLE
    cfg.heartbeat_timeout_s = CONFIG_MM_HEARTBEAT_TIMEOUT_MS / 1000.0f;       /* wired host: hold within 50 ms */
#else
    cfg.heartbeat_timeout_s = CONFIG_MM_UROS_HEARTBEAT_TIMEOUT_MS / 1000.0f;  /* micro-ROS over Wi-Fi */
#endif
#if CONFIG_MM_WATCHDOG_BRAKE
    cfg.watchdog_mode = MM_MODE_BRAKE;
#else
    cfg.watchdog_mode = MM_MODE_HOLD;
#endif
    cfg.policy_decimation = CONFIG_MM_POLICY_DECIMATION;
    cfg.obs.current_limit_a = cfg.current_limit_a;
    cfg.max_policy_bytes = CONFIG_MM_MAX_POLICY_BYTES;
    cfg.transfer_timeout_s = CONFIG_MM_POLICY_TRANSFER_TIMEOUT_MS / 1000.0f;
    cfg.zero_offset_counts = CONFIG_MM_ZERO_OFFSET_COUNTS;
    cfg.exploration_seed = (uint32_t)CONFIG_MM_EXPLORATION_SEED;
    cfg.guard_error_rad = CONFIG_MM_GUARD_ERROR_MRAD / 1000.0f;
    cfg.guard_saturation_s = CONFIG_MM_GUARD_SATURATION_MS / 1000.0f;
    cfg.backend = policy_tflm_backend();
    cfg.policy_version_floor = load_policy_version_floor();
    if (!parse_public_key(CONFIG_MM_POLICY_PUBLIC_KEY, cfg.public_key)) {
        ESP_LOGW(TAG, "no valid policy public key configured: every policy will be refused (REASON_SIGNATURE)");
    }
    s_core_storage = heap_caps_aligned_alloc(16, mm_core_size(), MALLOC_CAP_8BIT);
    if (s_core_storage == NULL) {
        ESP_LOGE(TAG, "no memory for the core (%u bytes): lower MM_MAX_POLICY_BYTES", (unsigned)mm_core_size());
        return ESP_ERR_NO_MEM;
    }
    if (mm_core_init(s_core_storage, &cfg) != MM_OK) {
        ESP_LOGE(TAG, "the core refused the Kconfig values (limits, temperatures, decimation)");
        heap_caps_free(s_core_storage);
        return ESP_ERR_INVALID_ARG;
    }
    g_app.core = s_core_storage;
    g_app.dt_s = 1.0f / (float)CONFIG_MM_CONTROL_RATE_HZ;
    g_app.lock = xSemaphoreCreateMutex();
    return g_app.lock != NULL ? ESP_OK : ESP_ERR_NO_MEM;
}

void app_finish_policy(void)
{
    /* verify() reads the staged image and writes only staging state, so the control loop keeps running the
     * active policy (and taking the lock) during the slow signature check; commit() applies the outcome. */
    if (!mm_core_policy_verify_pending(g_app.core)) {
        return;
    }
    const mm_policy_reason_t reason = mm_core_policy_verify(g_app.core);
    xSemaphoreTake(g_app.lock, portMAX_DELAY);
    const uint32_t floor_before = mm_core_policy_version_floor(g_app.core);
    (void)mm_core_policy_commit(g_app.core);
    const uint32_t floor_after = mm_core_policy_version_floor(g_app.core);
    xSemaphoreGive(g_app.lock);
    if (floor_after != floor_before) {
        store_policy_version_floor(floor_after); /* outside the lock: a flash write takes milliseconds */
    }
    ESP_LOGI(TAG, "policy transfer finished: reason %d, version floor %u", (int)reason, (unsigned)floor_after);
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    /* Hardware and core before any task: a failure here leaves the outputs off and nothing running. */
    if (err != ESP_OK || power_stage_init() != ESP_OK || as5047_init() != ESP_OK || ina2xx_init() != ESP_OK ||
        core_init() != ESP_OK) {
        ESP_LOGE(TAG, "setup failed; outputs stay off");
        return;
    }
    if (control_task_start() != ESP_OK) {
        ESP_LOGE(TAG, "control task failed to start; outputs stay off");
        return;
    }
    if (uros_task_start() != ESP_OK) {
        ESP_LOGE(TAG, "micro-ROS task failed to start (the watchdog will hold or brake active modes)");
    }
#if CONFIG_MM_CAN_ENABLE
    if (can_task_start() != ESP_OK) {
        ESP_LOGE(TAG, "CAN task failed to start");
    }
#endif
    ESP_LOGI(TAG, "servo up: %d Hz control, core %u bytes", CONFIG_MM_CONTROL_RATE_HZ, (unsigned)mm_core_size());
}
