/**
 * @file mm_backend.h
 * @brief The inference backend interface: TFLite Micro on the ESP32 (firmware/esp32/main/policy_tflm.cc),
 *        a caller-supplied backend on the host (e.g. Python's tflite-micro runtime through a ctypes callback).
 *
 * Plain C with no atomics, so C++ backends can include it. The core double-buffers policies, so a backend
 * keeps two models (slots 0 and 1): a new model is loaded into the idle slot while the other one keeps running.
 */
#ifndef MM_CORE_BACKEND_H
#define MM_CORE_BACKEND_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Backend functions return 0 on success and a non-zero error code otherwise. */
typedef struct {
    /**
     * Load a model into slot (0 or 1). The model bytes stay valid and unchanged until the slot is loaded again,
     * so a backend may keep pointers into them (TFLite Micro does).
     * @param arena_bytes tensor arena the exporter measured (bytes); refuse if it does not fit
     * @param model_type MM_POLICY_MODEL_* of the image header
     */
    int (*load)(void *ctx, uint8_t slot, const uint8_t *model, uint32_t model_size, uint32_t arena_bytes,
                uint8_t model_type);
    /** Run the model in slot on obs (MM_OBS_DIM floats) and write the action (MM_ACTION_DIM floats). */
    int (*invoke)(void *ctx, uint8_t slot, const float *obs, float *action);
    void *ctx;  /**< passed back to every call */
} mm_backend_t;

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_BACKEND_H */
