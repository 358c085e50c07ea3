#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
struct uxrCustomTransport;
typedef bool (*open_custom_func)(struct uxrCustomTransport *);
typedef bool (*close_custom_func)(struct uxrCustomTransport *);
typedef size_t (*write_custom_func)(struct uxrCustomTransport *, const uint8_t *, size_t, uint8_t *);
typedef size_t (*read_custom_func)(struct uxrCustomTransport *, uint8_t *, size_t, int, uint8_t *);
