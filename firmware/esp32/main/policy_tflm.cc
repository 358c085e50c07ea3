// TFLite Micro inference backend of the core (mm_backend_t): two slots (double buffering), each with its own
// tensor arena and interpreter; int8 or int16x8 models with an [1, 8] input and an [1, 1] output.
#include <cmath>
#include <new>

#include "app.h"
#include "esp_log.h"
#include "sdkconfig.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

const char *TAG = "tflm";

struct Slot {
    alignas(16) uint8_t arena[CONFIG_MM_TFLM_ARENA_BYTES];
    alignas(tflite::MicroInterpreter) uint8_t storage[sizeof(tflite::MicroInterpreter)];
    tflite::MicroInterpreter *interpreter = nullptr;
};

Slot g_slots[2];
tflite::MicroMutableOpResolver<8> g_resolver;
bool g_resolver_ready = false;

// The ops an MLP actor exported by mm_learning needs (see shared/docs/ml-stack-notes.md).
bool init_resolver()
{
    if (g_resolver_ready) {
        return true;
    }
    g_resolver_ready = g_resolver.AddFullyConnected() == kTfLiteOk && g_resolver.AddTanh() == kTfLiteOk &&
                       g_resolver.AddRelu() == kTfLiteOk && g_resolver.AddLogistic() == kTfLiteOk &&
                       g_resolver.AddQuantize() == kTfLiteOk && g_resolver.AddDequantize() == kTfLiteOk &&
                       g_resolver.AddReshape() == kTfLiteOk;
    return g_resolver_ready;
}

void drop(Slot &slot)
{
    if (slot.interpreter != nullptr) {
        slot.interpreter->~MicroInterpreter();
        slot.interpreter = nullptr;
    }
}

int load(void *, uint8_t index, const uint8_t *model_bytes, uint32_t, uint32_t arena_bytes, uint8_t)
{
    if (index > 1 || !init_resolver()) {
        return 1;
    }
    Slot &slot = g_slots[index];
    drop(slot);
    if (arena_bytes > sizeof slot.arena) {
        ESP_LOGE(TAG, "model needs a %u-byte arena, slot has %u", (unsigned)arena_bytes, (unsigned)sizeof slot.arena);
        return 2;
    }
    const tflite::Model *model = tflite::GetModel(model_bytes);
    if (model->version() != TFLITE_SCHEMA_VERSION) {
        return 3;
    }
    slot.interpreter = new (slot.storage) tflite::MicroInterpreter(model, g_resolver, slot.arena, sizeof slot.arena);
    if (slot.interpreter->AllocateTensors() != kTfLiteOk) {
        drop(slot);
        return 4;  // an op is missing or the arena is too small
    }
    const TfLiteTensor *in = slot.interpreter->input(0);
    const TfLiteTensor *out = slot.interpreter->output(0);
    const bool shapes_ok = in->dims->size == 2 && in->dims->data[1] == MM_OBS_DIM && out->dims->size == 2 &&
                           out->dims->data[1] == MM_ACTION_DIM;
    if (!shapes_ok) {
        drop(slot);
        return 5;
    }
    ESP_LOGI(TAG, "slot %u: %u arena bytes used", index, (unsigned)slot.interpreter->arena_used_bytes());
    return 0;
}

int invoke(void *, uint8_t index, const float *obs, float *action)
{
    if (index > 1 || g_slots[index].interpreter == nullptr) {
        return 1;
    }
    tflite::MicroInterpreter *it = g_slots[index].interpreter;
    TfLiteTensor *in = it->input(0);
    const float scale = in->params.scale;
    const int32_t zero = in->params.zero_point;
    for (unsigned i = 0; i < MM_OBS_DIM; ++i) {
        const float q = obs[i] / scale + (float)zero;
        if (in->type == kTfLiteInt8) {
            in->data.int8[i] = (int8_t)(q > 127.0f ? 127 : q < -128.0f ? -128 : (int)std::lround(q));
        } else if (in->type == kTfLiteInt16) {
            in->data.i16[i] = (int16_t)(q > 32767.0f ? 32767 : q < -32768.0f ? -32768 : (int)std::lround(q));
        } else {
            in->data.f[i] = obs[i];
        }
    }
    if (it->Invoke() != kTfLiteOk) {
        return 2;
    }
    const TfLiteTensor *out = it->output(0);
    if (out->type == kTfLiteInt8) {
        action[0] = (float)(out->data.int8[0] - out->params.zero_point) * out->params.scale;
    } else if (out->type == kTfLiteInt16) {
        action[0] = (float)(out->data.i16[0] - out->params.zero_point) * out->params.scale;
    } else {
        action[0] = out->data.f[0];
    }
    return 0;
}

}  // namespace

extern "C" mm_backend_t policy_tflm_backend(void)
{
    return mm_backend_t{load, invoke, nullptr};
}
