// Declaration-only stand-in for tflite::Model / GetModel (schema_generated.h). Host check only.
#pragma once
#include <stdint.h>

#define TFLITE_SCHEMA_VERSION (3)

namespace tflite {
struct Model {
    uint32_t version() const;
};
const Model *GetModel(const void *buf);
}  // namespace tflite
