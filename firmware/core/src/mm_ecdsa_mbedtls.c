/* ECDSA P-256 verification with mbedTLS, written against the API subset that 2.28 (Debian 12) and 3.x
 * (ESP-IDF 5) share; the SHA-256 calls are the only ones whose names changed between the two. */
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>
#include <string.h>

#include "mm_core/mm_policy_image.h"

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#define MM_SHA256_STARTS mbedtls_sha256_starts
#define MM_SHA256_UPDATE mbedtls_sha256_update
#define MM_SHA256_FINISH mbedtls_sha256_finish
#else
#define MM_SHA256_STARTS mbedtls_sha256_starts_ret
#define MM_SHA256_UPDATE mbedtls_sha256_update_ret
#define MM_SHA256_FINISH mbedtls_sha256_finish_ret
#endif

/* n/2 for P-256 (n = the group order), big-endian: a low-S signature has s <= n/2. Fixed-width big-endian byte
 * strings compare like the numbers they hold, so memcmp is the comparison (no mbedTLS struct internals needed). */
static const uint8_t k_half_order[32] = {
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};

static bool sha256(const uint8_t *message, uint32_t len, uint8_t digest[32])
{
    mbedtls_sha256_context ctx;
    mbedtls_sha256_init(&ctx);
    const bool ok = MM_SHA256_STARTS(&ctx, 0) == 0 && MM_SHA256_UPDATE(&ctx, message, len) == 0 &&
                    MM_SHA256_FINISH(&ctx, digest) == 0;
    mbedtls_sha256_free(&ctx);
    return ok;
}

bool mm_ecdsa_p256_verify(const uint8_t public_key[MM_PUBLIC_KEY_BYTES], const uint8_t *message, uint32_t len,
                          const uint8_t signature[MM_POLICY_SIGNATURE_BYTES])
{
    /* Low-S only: (r, n - s) verifies as well as (r, s), and the policy id covers the signature bytes, so
     * accepting both would let anyone give a signed policy a second id (servo contract section 5). */
    if (memcmp(signature + 32, k_half_order, sizeof k_half_order) > 0) {
        return false;
    }
    uint8_t digest[32];
    if (!sha256(message, len, digest)) {
        return false;
    }
    mbedtls_ecp_group group;
    mbedtls_ecp_point key;
    mbedtls_mpi r;
    mbedtls_mpi s;
    mbedtls_ecp_group_init(&group);
    mbedtls_ecp_point_init(&key);
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    const bool ok = mbedtls_ecp_group_load(&group, MBEDTLS_ECP_DP_SECP256R1) == 0 &&
                    mbedtls_ecp_point_read_binary(&group, &key, public_key, MM_PUBLIC_KEY_BYTES) == 0 &&
                    mbedtls_ecp_check_pubkey(&group, &key) == 0 &&
                    mbedtls_mpi_read_binary(&r, signature, 32) == 0 &&
                    mbedtls_mpi_read_binary(&s, signature + 32, 32) == 0 &&
                    mbedtls_ecdsa_verify(&group, digest, sizeof digest, &key, &r, &s) == 0;
    mbedtls_mpi_free(&s);
    mbedtls_mpi_free(&r);
    mbedtls_ecp_point_free(&key);
    mbedtls_ecp_group_free(&group);
    return ok;
}
