/* What the tasks share: one core behind one mutex (see the threading note in mm_core.h). */
#pragma once

#include "esp_err.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "mm_core/mm_core.h"

#ifdef __cplusplus
extern "C" { /* policy_tflm.cc defines policy_tflm_backend with C linkage */
#endif

/** Which transport sent the last policy chunk: the one that reports a transfer the core abandoned. */
enum { APP_LINK_ROS = 0, APP_LINK_CAN = 1 };

typedef struct {
    mm_core_t *core;            /* static storage in main.c */
    SemaphoreHandle_t lock;     /* every mm_core_* call except mm_core_policy_verify() */
    float dt_s;                 /* control period (s) */
    uint8_t policy_link;        /* APP_LINK_*, written and read under the lock */
} app_t;

extern app_t g_app;

esp_err_t control_task_start(void);
esp_err_t uros_task_start(void);
esp_err_t can_task_start(void);

/** The TFLite Micro inference backend (policy_tflm.cc). */
mm_backend_t policy_tflm_backend(void);

/** Verify a complete staged policy without the lock (slow: signature), then commit it under the lock. */
void app_finish_policy(void);

#ifdef __cplusplus
}
#endif
