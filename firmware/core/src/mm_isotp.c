/* ISO 15765-2 receiver, classic CAN, normal addressing. Frame types by the high nibble of byte 0 (PCI):
 * 0 single frame, 1 first frame, 2 consecutive frame, 3 flow control (never received here). */
#include "mm_core/mm_isotp.h"

#include <string.h>

enum { PCI_SINGLE = 0x0, PCI_FIRST = 0x1, PCI_CONSECUTIVE = 0x2 };
enum { FC_CONTINUE = 0x30, FC_OVERFLOW = 0x32 };

void mm_isotp_rx_init(mm_isotp_rx_t *rx, uint8_t block_size, uint8_t st_min, float timeout_s)
{
    memset(rx, 0, sizeof *rx);
    rx->block_size = block_size;
    rx->st_min = st_min;
    rx->padding = 0xCCu;
    rx->timeout_s = timeout_s;
}

static void flow_control(const mm_isotp_rx_t *rx, uint8_t status, uint8_t fc[8], bool *send_fc)
{
    memset(fc, rx->padding, 8);
    fc[0] = status;
    fc[1] = rx->block_size;
    fc[2] = rx->st_min;
    *send_fc = true;
}

static mm_isotp_status_t first_frame(mm_isotp_rx_t *rx, const uint8_t *data, uint8_t dlc, uint8_t fc[8],
                                     bool *send_fc)
{
    if (dlc != 8u) {
        return MM_ISOTP_ERR_FRAME;
    }
    uint32_t length = ((uint32_t)(data[0] & 0x0Fu) << 8) | data[1];
    uint8_t header = 2u;
    if (length == 0u) {
        /* ISO 15765-2:2016 escape: a 32-bit length follows for messages above 4095 bytes. */
        length = ((uint32_t)data[2] << 24) | ((uint32_t)data[3] << 16) | ((uint32_t)data[4] << 8) | data[5];
        header = 6u;
    }
    rx->active = false;
    if (length > MM_ISOTP_MAX_PAYLOAD) {
        flow_control(rx, FC_OVERFLOW, fc, send_fc);
        return MM_ISOTP_ERR_OVERFLOW;
    }
    if (length <= (uint32_t)(8u - header)) {
        return MM_ISOTP_ERR_FRAME; /* would have fitted a single frame */
    }
    rx->length = length;
    rx->received = 8u - header;
    memcpy(rx->buffer, data + header, rx->received);
    rx->next_sequence = 1u;
    rx->frames_in_block = 0u;
    rx->idle_s = 0.0f;
    rx->active = true;
    flow_control(rx, FC_CONTINUE, fc, send_fc);
    return MM_ISOTP_IN_PROGRESS;
}

static mm_isotp_status_t consecutive_frame(mm_isotp_rx_t *rx, const uint8_t *data, uint8_t dlc, uint8_t fc[8],
                                           bool *send_fc)
{
    if (!rx->active) {
        return MM_ISOTP_IDLE;
    }
    if ((data[0] & 0x0Fu) != rx->next_sequence) {
        rx->active = false;
        return MM_ISOTP_ERR_SEQUENCE;
    }
    const uint32_t remaining = rx->length - rx->received;
    const uint32_t take = remaining < 7u ? remaining : 7u;
    if ((uint32_t)(dlc - 1u) < take) {
        rx->active = false;
        return MM_ISOTP_ERR_FRAME;
    }
    memcpy(rx->buffer + rx->received, data + 1, take);
    rx->received += take;
    rx->next_sequence = (uint8_t)((rx->next_sequence + 1u) & 0x0Fu);
    rx->idle_s = 0.0f;
    if (rx->received == rx->length) {
        rx->active = false;
        return MM_ISOTP_COMPLETE;
    }
    rx->frames_in_block += 1u;
    if (rx->block_size != 0u && rx->frames_in_block == rx->block_size) {
        rx->frames_in_block = 0u;
        flow_control(rx, FC_CONTINUE, fc, send_fc);
    }
    return MM_ISOTP_IN_PROGRESS;
}

mm_isotp_status_t mm_isotp_rx_frame(mm_isotp_rx_t *rx, const uint8_t *data, uint8_t dlc, uint8_t fc[8],
                                    bool *send_fc)
{
    *send_fc = false;
    if (dlc == 0u || dlc > 8u) {
        return MM_ISOTP_ERR_FRAME;
    }
    switch (data[0] >> 4) {
    case PCI_SINGLE: {
        const uint8_t length = data[0] & 0x0Fu;
        if (length == 0u || length > dlc - 1u) {
            return MM_ISOTP_ERR_FRAME;
        }
        /* A new single frame interrupts a message in progress, as the standard requires. */
        rx->active = false;
        memcpy(rx->buffer, data + 1, length);
        rx->length = length;
        rx->received = length;
        return MM_ISOTP_COMPLETE;
    }
    case PCI_FIRST:
        return first_frame(rx, data, dlc, fc, send_fc);
    case PCI_CONSECUTIVE:
        return consecutive_frame(rx, data, dlc, fc, send_fc);
    default:
        return MM_ISOTP_ERR_FRAME;
    }
}

mm_isotp_status_t mm_isotp_rx_tick(mm_isotp_rx_t *rx, float dt_s)
{
    if (!rx->active) {
        return MM_ISOTP_IDLE;
    }
    rx->idle_s += dt_s;
    if (rx->idle_s > rx->timeout_s) {
        rx->active = false;
        return MM_ISOTP_ERR_TIMEOUT;
    }
    return MM_ISOTP_IN_PROGRESS;
}
