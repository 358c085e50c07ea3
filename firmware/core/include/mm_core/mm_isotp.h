/**
 * @file mm_isotp.h
 * @brief ISO 15765-2 (ISO-TP) receiver for classic CAN, normal addressing: single, first and consecutive frames
 *        in, flow-control frames out. Time is passed in (mm_isotp_rx_tick), never read.
 */
#ifndef MM_CORE_ISOTP_H
#define MM_CORE_ISOTP_H

#include <stdbool.h>
#include <stdint.h>

#include "mm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Result of feeding one CAN frame or one tick. */
typedef enum {
    MM_ISOTP_IDLE = 0,          /**< nothing in progress (frame ignored, e.g. a stray consecutive frame) */
    MM_ISOTP_IN_PROGRESS = 1,   /**< multi-frame message under way */
    MM_ISOTP_COMPLETE = 2,      /**< a whole message is in rx->buffer, rx->length bytes */
    MM_ISOTP_ERR_SEQUENCE = 3,  /**< consecutive frame out of sequence: message dropped */
    MM_ISOTP_ERR_OVERFLOW = 4,  /**< message larger than MM_ISOTP_MAX_PAYLOAD: refused with FC overflow */
    MM_ISOTP_ERR_FRAME = 5,     /**< malformed frame */
    MM_ISOTP_ERR_TIMEOUT = 6,   /**< no consecutive frame within the N_Cr timeout: message dropped */
} mm_isotp_status_t;

/** Receiver state with its own message buffer. */
typedef struct {
    uint8_t block_size;          /**< BS sent in flow control (0: the sender never waits) */
    uint8_t st_min;              /**< STmin sent in flow control (ISO encoding: 0..127 ms, 0xF1..0xF9 = 100..900 us) */
    uint8_t padding;             /**< byte used to pad flow-control frames to 8 bytes */
    float timeout_s;             /**< N_Cr: longest gap between consecutive frames (s) */
    bool active;
    uint8_t next_sequence;
    uint8_t frames_in_block;
    float idle_s;
    uint32_t length;             /**< announced length of the message */
    uint32_t received;           /**< bytes received so far */
    uint8_t buffer[MM_ISOTP_MAX_PAYLOAD];
} mm_isotp_rx_t;

/** Set the flow-control parameters and clear the state. */
void mm_isotp_rx_init(mm_isotp_rx_t *rx, uint8_t block_size, uint8_t st_min, float timeout_s);

/**
 * Feed one received CAN frame (data, dlc 1..8). When *send_fc is set on return, the 8 bytes in fc must be sent
 * on the flow-control CAN id before more frames can arrive.
 */
mm_isotp_status_t mm_isotp_rx_frame(mm_isotp_rx_t *rx, const uint8_t *data, uint8_t dlc, uint8_t fc[8],
                                    bool *send_fc);

/** Advance the receiver's clock by dt_s; returns MM_ISOTP_ERR_TIMEOUT once when a message times out. */
mm_isotp_status_t mm_isotp_rx_tick(mm_isotp_rx_t *rx, float dt_s);

#ifdef __cplusplus
}
#endif

#endif /* MM_CORE_ISOTP_H */
