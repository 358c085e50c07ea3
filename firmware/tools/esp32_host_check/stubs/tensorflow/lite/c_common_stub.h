// Declaration-only stand-in for the TfLiteTensor/TfLiteStatus subset of TensorFlow Lite Micro (esp-tflite-micro)
// that policy_tflm.cc uses (c/common.h). Host check only: see ../../README.txt.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt8 = 9, kTfLiteInt16 = 7 } TfLiteType;
typedef struct {
    int size;
    int data[4];
} TfLiteIntArray;
typedef struct {
    float scale;
    int32_t zero_point;
} TfLiteQuantizationParams;
typedef union {
    int32_t *i32;
    float *f;
    int8_t *int8;
    int16_t *i16;
    uint8_t *uint8;
} TfLitePtrUnion;
typedef struct {
    TfLiteType type;
    TfLitePtrUnion data;
    TfLiteIntArray *dims;
    TfLiteQuantizationParams params;
} TfLiteTensor;
