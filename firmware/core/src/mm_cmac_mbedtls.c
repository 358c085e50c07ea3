/* AES-128-CMAC tag of the optional CAN command authentication (mm_can_auth_tag), with mbedTLS: the
 * mbedtls_cipher_cmac() one-shot is the same in 2.28 (Debian 12) and 3.x (ESP-IDF 5, CONFIG_MBEDTLS_CMAC_C). */
#include <mbedtls/cipher.h>
#include <mbedtls/cmac.h>
#include <string.h>

#include "mm_core/mm_can.h"

bool mm_can_auth_tag(const uint8_t key[MM_CAN_AUTH_KEY_BYTES], const mm_can_frame_t *frame, uint32_t freshness,
                     uint8_t tag[MM_CAN_AUTH_TAG_BYTES])
{
    if (frame->dlc > 8u) {
        return false;
    }
    uint8_t msg[4 + 1 + 8 + 4];
    size_t n = 0;
    for (unsigned i = 0; i < 4u; ++i) {
        msg[n++] = (uint8_t)(frame->id >> (8u * i));
    }
    msg[n++] = frame->dlc;
    memcpy(msg + n, frame->data, frame->dlc);
    n += frame->dlc;
    for (unsigned i = 0; i < 4u; ++i) {
        msg[n++] = (uint8_t)(freshness >> (8u * i));
    }
    const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(MBEDTLS_CIPHER_AES_128_ECB);
    uint8_t mac[16];
    if (info == NULL || mbedtls_cipher_cmac(info, key, 8u * MM_CAN_AUTH_KEY_BYTES, msg, n, mac) != 0) {
        return false;
    }
    memcpy(tag, mac, MM_CAN_AUTH_TAG_BYTES);
    return true;
}
