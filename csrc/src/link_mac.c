/*
 * link_mac.c - the control link's frame MAC (link_mac.h).
 */
#include "link_mac.h"

#include <stdlib.h>

ccl__link_mac *ccl__link_mac_new(const uint8_t seed_tx[CCL_FRAME_MAC_SEED_LEN],
                                 const uint8_t seed_rx[CCL_FRAME_MAC_SEED_LEN])
{
    ccl__link_mac *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    ccl__frame_mac_key_init(&m->tx_key, seed_tx);
    ccl__frame_mac_key_init(&m->rx_key, seed_rx);
    return m;
}

void ccl__link_mac_free(ccl__link_mac *m)
{
    if (!m)
        return;
    ccl__frame_mac_key_wipe(&m->tx_key);
    ccl__frame_mac_key_wipe(&m->rx_key);
    free(m);
}

void ccl__link_mac_seal(ccl__link_mac *m, const uint8_t *hdr, size_t hdr_len,
                        const uint8_t *payload, size_t len,
                        uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    ccl__frame_mac_ctx c;
    ccl__frame_mac_init(&c, &m->tx_key, m->tx_seq++);
    ccl__frame_mac_update(&c, hdr, hdr_len);
    ccl__frame_mac_update(&c, payload, len);
    ccl__frame_mac_final(&c, tag);
}

int ccl__link_mac_check(ccl__link_mac *m, const uint8_t *hdr, size_t hdr_len,
                        const uint8_t *payload, size_t len,
                        const uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    ccl__frame_mac_ctx c;
    ccl__frame_mac_init(&c, &m->rx_key, m->rx_seq++);
    ccl__frame_mac_update(&c, hdr, hdr_len);
    ccl__frame_mac_update(&c, payload, len);
    return ccl__frame_mac_final_verify(&c, tag);
}
