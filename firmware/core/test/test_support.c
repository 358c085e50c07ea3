#include "test_support.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#include "mm_core/mm_crc32.h"

static int test_rng(void *ctx, unsigned char *out, size_t len)
{
    unsigned *state = ctx;
    for (size_t i = 0; i < len; ++i) {
        *state = *state * 1103515245u + 12345u;
        out[i] = (unsigned char)(*state >> 16);
    }
    return 0;
}

static unsigned g_rng_state = 1u;

void test_key_make(test_key_t *key, unsigned seed)
{
    g_rng_state = seed;
    mbedtls_ecp_group grp;
    mbedtls_mpi d;
    mbedtls_ecp_point q;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_ecp_point_init(&q);
    assert_int_equal(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1), 0);
    assert_int_equal(mbedtls_ecp_gen_keypair(&grp, &d, &q, test_rng, &g_rng_state), 0);
    size_t olen = 0;
    assert_int_equal(mbedtls_ecp_point_write_binary(&grp, &q, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, key->public_key,
                                                    sizeof key->public_key), 0);
    assert_int_equal(olen, MM_PUBLIC_KEY_BYTES);
    assert_int_equal(mbedtls_mpi_write_binary(&d, key->private_key, 32), 0);
    mbedtls_ecp_point_free(&q);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}

uint32_t test_image_make(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                         float current_limit_a)
{
    return test_image_make_decimated(buf, key, model, model_size, current_limit_a, 0u);
}

uint32_t test_image_make_decimated(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                                   float current_limit_a, uint8_t policy_decimation)
{
    return test_image_make_schedule(buf, key, model, model_size, current_limit_a, policy_decimation, 0.0f, NULL);
}

uint32_t test_image_make_schedule(uint8_t *buf, const test_key_t *key, const uint8_t *model, uint32_t model_size,
                                  float current_limit_a, uint8_t policy_decimation, float schedule_range,
                                  const mm_pid_gains_t *base_gains)
{
    const mm_pid_gains_t none = {0};
    const mm_pid_gains_t *g = base_gains != NULL ? base_gains : &none;
    memset(buf, 0, MM_POLICY_HEADER_BYTES);
    memcpy(buf, "MMPL", 4);
    buf[4] = MM_POLICY_FORMAT_VERSION;
    buf[6] = MM_POLICY_HEADER_BYTES;
    buf[8] = MM_POLICY_MODEL_INT8;
    buf[9] = MM_OBS_DIM;
    buf[10] = MM_ACTION_DIM;
    buf[11] = policy_decimation;
    put_u32(buf + 12, model_size);
    put_f32(buf + 16, 3.0f);
    put_f32(buf + 20, 40.0f);
    put_f32(buf + 24, 25.0f);
    put_f32(buf + 28, current_limit_a);
    put_f32(buf + 32, 0.004f);
    put_u32(buf + 36, 3000u);
    put_u32(buf + 40, mm_crc32(0u, model, model_size));
    put_f32(buf + 44, schedule_range);
    put_f32(buf + 48, g->kp_pos);
    put_f32(buf + 52, g->v_max);
    put_f32(buf + 56, g->kp_vel);
    put_f32(buf + 60, g->ki_vel);
    put_f32(buf + 64, g->gravity_ff_a);
    put_f32(buf + 68, g->decel_rad_s2);
    memcpy(buf + MM_POLICY_HEADER_BYTES, model, model_size);
    const uint32_t signed_len = MM_POLICY_HEADER_BYTES + model_size;
    uint8_t hash[32];
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    assert_int_equal(mbedtls_sha256(buf, signed_len, hash, 0), 0);
#else
    assert_int_equal(mbedtls_sha256_ret(buf, signed_len, hash, 0), 0);
#endif
    mbedtls_ecp_group grp;
    mbedtls_mpi d, r, s;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    assert_int_equal(mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_SECP256R1), 0);
    assert_int_equal(mbedtls_mpi_read_binary(&d, key->private_key, 32), 0);
    assert_int_equal(mbedtls_ecdsa_sign(&grp, &r, &s, &d, hash, 32, test_rng, &g_rng_state), 0);
    /* Low-S, as the core requires (servo contract section 5): s > n/2 becomes n - s, the same signature. */
    mbedtls_mpi half;
    mbedtls_mpi_init(&half);
    assert_int_equal(mbedtls_mpi_copy(&half, &grp.N), 0);
    assert_int_equal(mbedtls_mpi_shift_r(&half, 1), 0);
    if (mbedtls_mpi_cmp_mpi(&s, &half) > 0) {
        assert_int_equal(mbedtls_mpi_sub_mpi(&s, &grp.N, &s), 0);
    }
    mbedtls_mpi_free(&half);
    assert_int_equal(mbedtls_mpi_write_binary(&r, buf + signed_len, 32), 0);
    assert_int_equal(mbedtls_mpi_write_binary(&s, buf + signed_len + 32, 32), 0);
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&d);
    mbedtls_ecp_group_free(&grp);
    return signed_len + MM_POLICY_SIGNATURE_BYTES;
}

static int fake_load(void *ctx, uint8_t slot, const uint8_t *model, uint32_t size, uint32_t arena, uint8_t type)
{
    (void)model;
    (void)size;
    (void)arena;
    (void)type;
    fake_backend_t *f = ctx;
    f->loads += 1;
    f->last_slot = slot;
    return f->fail_load;
}

static int fake_invoke(void *ctx, uint8_t slot, const float *obs, float *action)
{
    fake_backend_t *f = ctx;
    (void)slot;
    f->invokes += 1;
    action[0] = obs[0] * f->gain + f->bias;
    return f->fail_invoke;
}

mm_backend_t fake_backend(fake_backend_t *fake)
{
    return (mm_backend_t){.load = fake_load, .invoke = fake_invoke, .ctx = fake};
}

mm_sensors_t test_sensors(uint16_t count)
{
    return (mm_sensors_t){.encoder_count = count, .encoder_ok = true, .current_a = 0.0f, .bus_voltage_v = 24.0f,
                          .temperature_c = 30.0f, .power_w = 0.0f};
}

mm_core_t *test_core(const mm_config_t *cfg)
{
    static mm_core_t *core;
    if (core == NULL) {
        core = aligned_alloc(16, (mm_core_size() + 15u) & ~(size_t)15u);
    }
    assert_int_equal(mm_core_init(core, cfg), MM_OK);
    return core;
}

mm_state_t test_state(const mm_core_t *core)
{
    mm_state_t s;
    mm_core_get_state(core, &s);
    return s;
}
