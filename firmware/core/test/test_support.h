/* Helpers shared by the cmocka tests: signing keys, image building, a fake inference backend, sensors. */
#ifndef MM_TEST_SUPPORT_H
#define MM_TEST_SUPPORT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mm_core/mm_core.h"

/** A P-256 key pair for signing test images (deterministic per seed). */
typedef struct {
    uint8_t public_key[MM_PUBLIC_KEY_BYTES];
    uint8_t private_key[32];
} test_key_t;

void test_key_make(test_key_t *key, unsigned seed);

/** Build a signed image around model (model_size bytes); returns its length. buf must hold
 *  MM_POLICY_HEADER_BYTES + size + MM_POLICY_SIGNATURE_BYTES. */
uint32_t test_image_make(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                         float current_limit_a);

/** test_image_make with the header's policy_decimation (0: the firmware's configured one). */
uint32_t test_image_make_decimated(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                                   float current_limit_a, uint8_t policy_decimation);

/** test_image_make_decimated with the header's schedule_range (offset 44) and the base law's gains (offsets 48-68;
 *  NULL: all 0), written as given, so out-of-range values make images the core must refuse. */
uint32_t test_image_make_schedule(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                                  float current_limit_a, uint8_t policy_decimation, float schedule_range,
                                  const mm_pid_gains_t *base_gains);

/** The fake backend: action = obs[0] * gain + bias (or an error when fail_invoke), load fails when fail_load. */
typedef struct {
    float gain;
    float bias;
    int fail_load;
    int fail_invoke;
    int loads;
    int invokes;
    uint8_t last_slot;
} fake_backend_t;

mm_backend_t fake_backend(fake_backend_t *fake);

/** A calm sensor reading at encoder count. */
mm_sensors_t test_sensors(uint16_t count);

/** The reported state (ServoState fields). */
mm_state_t test_state(const mm_core_t *core);

/** A core with the default config, the given key and backend (static storage, one per test process). */
mm_core_t *test_core(const mm_config_t *cfg);

#endif
