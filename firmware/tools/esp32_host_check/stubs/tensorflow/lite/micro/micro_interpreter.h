// Declaration-only stand-in for tflite::MicroInterpreter (the members policy_tflm.cc uses). Host check only.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c_common_stub.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace tflite {
class MicroInterpreter {
public:
    MicroInterpreter(const Model *model, const MicroOpResolver &op_resolver, uint8_t *tensor_arena,
                     size_t tensor_arena_size);
    ~MicroInterpreter();
    TfLiteStatus AllocateTensors();
    TfLiteStatus Invoke();
    TfLiteTensor *input(size_t index);
    TfLiteTensor *output(size_t index);
    size_t arena_used_bytes() const;

private:
    void *impl_[16];
};
}  // namespace tflite
