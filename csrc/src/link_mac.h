/*
 * link_mac.h - the MAC of every frame on a control link (peer <-> master)
 * once the handshake proved the key (protocol 4).
 *
 * A control link carries few, small frames, read and written whole, so
 * this is the frame MAC of mac.h applied to a whole frame at once: the
 * tag covers the 40-byte header and the payload, and follows the payload.
 * Each direction has its own key (the handshake's seeds) and counts its
 * frames from 0; the count is the MAC's sequence number, so a frame that
 * is changed, dropped, replayed or reordered fails the check of that or
 * the next frame.  Pure functions over memory.
 */
#ifndef CCL_LINK_MAC_H
#define CCL_LINK_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "mac.h"

typedef struct ccl__link_mac {
    ccl__frame_mac_key tx_key, rx_key;
    uint64_t tx_seq, rx_seq;
} ccl__link_mac;

/* A heap link MAC keyed from the handshake's seeds (which the caller
 * wipes), or NULL without memory. */
ccl__link_mac *ccl__link_mac_new(const uint8_t seed_tx[CCL_FRAME_MAC_SEED_LEN],
                                 const uint8_t seed_rx[CCL_FRAME_MAC_SEED_LEN]);
/* Wipes and frees (NULL is fine). */
void ccl__link_mac_free(ccl__link_mac *m);
/* The tag of the next frame we send: header then payload. */
void ccl__link_mac_seal(ccl__link_mac *m, const uint8_t *hdr, size_t hdr_len,
                        const uint8_t *payload, size_t len,
                        uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);
/* 1 if tag is right for the next frame we receive, else 0 (constant
 * time).  Either way the frame's number is used up: after a failure the
 * link must be closed. */
int ccl__link_mac_check(ccl__link_mac *m, const uint8_t *hdr, size_t hdr_len,
                        const uint8_t *payload, size_t len,
                        const uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);

#endif
