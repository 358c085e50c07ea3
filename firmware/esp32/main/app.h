/* What the tasks share: one core behind one mutex (see the threading note in mm_core.h). */
#pragma once

#include "esp_err.h"
#include "freertos/FreeRTOS.h"
#include "freertos/semphr.h"
#include "mm_core/mm_core.h"

typedef struct {
    mm_core_t *core;            /* static storage in main.c */
    SemaphoreHandle_t lock;     /* every mm_core_* call except mm_core_policy_verify() */
    float dt_s;                 /* control period (s) */
} app_t;

extern app_t g_app;

esp_err_t control_task_start(void);
esp_err_t uros_task_start(void);
esp_err_t can_task_start(void);

/** The TFLite Micro inference backend (policy_tflm.cc). */
mm_backend_t policy_tflm_backend(void);

/** Verify a complete staged policy without the lock (slow: signature), then commit it under the lock. */
void app_finish_policy(void);
