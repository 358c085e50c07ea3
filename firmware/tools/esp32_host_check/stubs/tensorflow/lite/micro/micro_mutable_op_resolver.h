// Declaration-only stand-in for tflite::MicroMutableOpResolver (the Add* calls policy_tflm.cc makes).
#pragma once
#include "tensorflow/lite/c_common_stub.h"

namespace tflite {
class MicroOpResolver {
public:
    virtual ~MicroOpResolver();
};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
public:
    TfLiteStatus AddFullyConnected();
    TfLiteStatus AddTanh();
    TfLiteStatus AddRelu();
    TfLiteStatus AddLogistic();
    TfLiteStatus AddQuantize();
    TfLiteStatus AddDequantize();
    TfLiteStatus AddReshape();
};
}  // namespace tflite
