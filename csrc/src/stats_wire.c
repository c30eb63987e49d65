/*
 * stats_wire.c - encode and decode the STATS payload (stats_wire.h).
 * Every length is checked before a byte is read; reserved bytes must be
 * zero so a later payload version can use them.
 */
#include "stats_wire.h"

#include "ccl.h"
#include "wire.h"

#include <string.h>

size_t ccl__stats_msg_encode(uint8_t *out, size_t cap, const ccl__stats_msg *m)
{
    if (m->nlinks > CCL_STATS_MAX_LINKS)
        return 0;
    size_t len = CCL_STATS_FIXED_LEN + (size_t)m->nlinks * CCL_STATS_LINK_LEN;
    if (len > cap)
        return 0;
    memset(out, 0, len);
    out[0] = CCL_STATS_MSG_VERSION;
    ccl__put_u16(out + 2, m->nlinks);
    ccl__put_u32(out + 4, m->epoch);
    ccl__put_u32(out + 8, m->rank);
    ccl__put_u32(out + 12, m->size);
    ccl__put_u64(out + 16, m->ops_ok);
    ccl__put_u64(out + 24, m->ops_failed);
    ccl__put_u64(out + 32, m->tx_bytes);
    ccl__put_u64(out + 40, m->rx_bytes);
    ccl__put_u64(out + 48, m->op_bytes);
    ccl__put_u64(out + 56, m->op_time_us);
    ccl__put_u64(out + 64, m->tx_peak);
    for (int i = 0; i < m->nlinks; i++) {
        uint8_t *p = out + CCL_STATS_FIXED_LEN + (size_t)i * CCL_STATS_LINK_LEN;
        const ccl__stats_link_msg *l = &m->links[i];
        ccl__put_u32(p, l->peer);
        ccl__put_u32(p + 4, l->rate_kbs);
        ccl__put_u32(p + 8, l->rtt_us);
        ccl__put_u32(p + 12, l->samples);
        ccl__put_u64(p + 16, l->rx_bytes);
        p[24] = l->flags;
    }
    return len;
}

int ccl__stats_msg_decode(const uint8_t *in, size_t len, ccl__stats_msg *m)
{
    if (len < 1)
        return CCL_ERR_PROTOCOL;
    m->version = in[0];
    if (m->version != CCL_STATS_MSG_VERSION)
        return CCL_ERR_VERSION;
    if (len < CCL_STATS_FIXED_LEN || in[1] != 0)
        return CCL_ERR_PROTOCOL;
    m->nlinks = ccl__get_u16(in + 2);
    if (m->nlinks > CCL_STATS_MAX_LINKS ||
        len != CCL_STATS_FIXED_LEN + (size_t)m->nlinks * CCL_STATS_LINK_LEN)
        return CCL_ERR_PROTOCOL;
    m->epoch = ccl__get_u32(in + 4);
    m->rank = ccl__get_u32(in + 8);
    m->size = ccl__get_u32(in + 12);
    if (m->size > CCL_MAX_WORLD || m->rank >= m->size)
        return CCL_ERR_PROTOCOL;
    m->ops_ok = ccl__get_u64(in + 16);
    m->ops_failed = ccl__get_u64(in + 24);
    m->tx_bytes = ccl__get_u64(in + 32);
    m->rx_bytes = ccl__get_u64(in + 40);
    m->op_bytes = ccl__get_u64(in + 48);
    m->op_time_us = ccl__get_u64(in + 56);
    m->tx_peak = ccl__get_u64(in + 64);
    for (int i = 0; i < m->nlinks; i++) {
        const uint8_t *p = in + CCL_STATS_FIXED_LEN + (size_t)i * CCL_STATS_LINK_LEN;
        ccl__stats_link_msg *l = &m->links[i];
        l->peer = ccl__get_u32(p);
        l->rate_kbs = ccl__get_u32(p + 4);
        l->rtt_us = ccl__get_u32(p + 8);
        l->samples = ccl__get_u32(p + 12);
        l->rx_bytes = ccl__get_u64(p + 16);
        l->flags = p[24];
        if (l->peer >= m->size || l->peer == m->rank ||
            (l->flags & ~CCL_STATS_LINK_SLOW) || p[25] || p[26] || p[27])
            return CCL_ERR_PROTOCOL;
    }
    return 0;
}
