#pragma once
#include <stddef.h>
#define MALLOC_CAP_8BIT (1 << 2)
void *heap_caps_aligned_alloc(size_t alignment, size_t size, unsigned caps);
void heap_caps_free(void *ptr);
