/*
 * xport_recv.c - frames in.  Each connection reads a 40-byte header and
 * asks the layer above (on_header) for a sink: where the payload goes.
 * LAND writes it in place; STAGE reads it into the connection's staging
 * buffer and hands each run of whole units to the sink's consume (a
 * reduction, a dequantizer) while it is still in cache; KEEP reads it
 * into a heap buffer that on_frame hands over; PARK stops reading the
 * connection (TCP flow control then holds the sender) until
 * ccl__xport_unpark_all offers the header again.
 *
 * Receive states: RX_HDR (header bytes), RX_PAYLOAD, RX_TAG (frame MACs
 * or encrypt: the 16-byte tag).  With encrypt, payload bytes are
 * decrypted in place as soon as they land (before a STAGE sink consumes
 * them), and the AEAD's tag takes the MAC's place.  A frame reaches on_frame only after its tag checked
 * out; a frame without payload reaches on_header only then as well, so
 * nothing unauthenticated acts on the layer above.  (A payload's bytes
 * may already sit in their sink when its tag fails: the connection then
 * fails like any broken one, and the op above fails with it.)
 *
 * HEARTBEAT frames only prove liveness and BYE frames end the
 * connection: both stay inside the transport.
 */
#include "xport_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ensure_staging(xp_conn *k, size_t len)
{
    if (k->staging_cap >= len)
        return 0;
    size_t cap = len < XP_DISCARD_CHUNK ? XP_DISCARD_CHUNK : len;
    uint8_t *s = realloc(k->staging, cap);
    if (!s)
        return -1;
    k->staging = s;
    k->staging_cap = cap;
    return 0;
}

/* Asks where the payload of the header in k->h goes and gets ready to
 * read it (state RX_PAYLOAD), or parks the connection. */
static void rx_dispatch(xp_conn *k)
{
    ccl__xport *x = k->x;
    ccl__hdr *h = &k->h;
    k->rdone = k->rtaken = 0;
    k->rstate = RX_PAYLOAD;
    memset(&k->sink, 0, sizeof k->sink);
    if (h->type == CCL_FT_HEARTBEAT)
        return;
    if (h->type == CCL_FT_BYE) {
        ccl__xp_conn_bye(k);
        return;
    }
    x->ops->on_header(x->ctx, k->peer, h, &k->sink);
    if (k->fd < 0)
        return; /* the callee ended the connection */
    switch (k->sink.kind) {
    case CCL_SINK_PARK:
        k->parked = 1;
        k->rstate = RX_HDR;
        k->hpos = CCL_HDR_LEN; /* the header stays in k->h */
        ccl__xp_conn_events(k);
        return;
    case CCL_SINK_LAND:
        k->rdst = k->sink.dst;
        return;
    case CCL_SINK_STAGE:
        if (k->sink.unit == 0)
            k->sink.unit = 1;
        if (ensure_staging(k, h->length)) {
            ccl__xp_conn_failed(k, CCL_ERR_NOMEM, "out of memory for staging");
            return;
        }
        k->rdst = k->staging;
        return;
    case CCL_SINK_KEEP:
        k->keep = h->length ? malloc(h->length) : NULL;
        if (h->length && !k->keep) {
            ccl__xp_conn_failed(k, CCL_ERR_NOMEM, "out of memory keeping a frame");
            return;
        }
        k->rdst = k->keep;
        return;
    default:
        k->sink.kind = CCL_SINK_DISCARD;
        k->rdst = NULL;
        return;
    }
}

/* The frame is whole (and its tag checked). */
static void rx_complete(xp_conn *k)
{
    ccl__xport *x = k->x;
    k->rstate = RX_HDR;
    k->hpos = 0;
    if (k->h.type == CCL_FT_HEARTBEAT || k->h.type == CCL_FT_BYE)
        return;
    uint8_t *kept = k->sink.kind == CCL_SINK_KEEP ? k->keep : NULL;
    k->keep = NULL;
    ccl__sink sink = k->sink;
    k->sink.kind = CCL_SINK_DISCARD;
    x->ops->on_frame(x->ctx, k->peer, &k->h, &sink, kept);
}

/* Reads a frame's tag and, if it checks out, lets the frame act: a frame
 * without payload is dispatched only now.  0 while tag bytes are missing
 * or when the connection ended. */
static int read_tag(xp_conn *k)
{
    ccl__xport *x = k->x;
    xp_mac *m = k->mac;
    char err[160];
    long n = ccl__xp_read_some(k, m->rx_tag + m->rx_tag_have,
                               CCL_FRAME_MAC_TAG_LEN - m->rx_tag_have, err,
                               sizeof err);
    if (n < 0) {
        ccl__xp_conn_failed(k, (int)-n, err);
        return 0;
    }
    __atomic_fetch_add(&x->rx_bytes, (uint64_t)n, __ATOMIC_RELAXED);
    ccl__stats_rx(&x->stats, k->peer, (uint64_t)n);
    x->peers[k->peer].rx_bytes += (uint64_t)n;
    m->rx_tag_have += (size_t)n;
    if (m->rx_tag_have < CCL_FRAME_MAC_TAG_LEN)
        return 0;
    x->peers[k->peer].last_rx_ms = ccl__now_ms();
    if (m->rx_aead ? ccl__aead_open(m->rx_aead, m->rx_tag) != CCL_OK
                   : !ccl__frame_mac_final_verify(&m->rx, m->rx_tag)) {
        char why[200];
        if (m->rx_aead)
            snprintf(why, sizeof why, "frame %llu failed its authentication "
                     "(AES-256-GCM tag): the bytes were changed on the way, or "
                     "did not come from this peer",
                     (unsigned long long)(ccl__aead_counter(m->rx_aead) - 1));
        else
            snprintf(why, sizeof why, "frame %llu failed its MAC check: the "
                     "bytes were changed on the way, or did not come from this "
                     "peer", (unsigned long long)(m->rx_seq - 1));
        ccl__xp_conn_failed(k, CCL_ERR_AUTH, why);
        return 0;
    }
    if (k->h.length == 0) {
        rx_dispatch(k);
        if (k->fd < 0 || k->rstate != RX_PAYLOAD)
            return k->fd >= 0;
    }
    rx_complete(k);
    return k->fd >= 0;
}

/* A whole header is in k->hbuf. */
static void on_header_bytes(xp_conn *k)
{
    if (ccl__hdr_decode(k->hbuf, &k->h) != 0) {
        ccl__xp_conn_failed(k, CCL_ERR_PROTOCOL, "malformed frame header");
        return;
    }
    k->hpos = 0;
    /* A large DATA frame starts: its arrival rate is the link's (stats.h). */
    k->rx_t0_ns = k->h.type == CCL_FT_DATA && k->h.length >= CCL__STATS_MIN_FRAME
                      ? ccl__stats_now_ns() : 0;
    k->rx_b0 = k->x->peers[k->peer].rx_bytes;
    if (k->h.epoch > k->x->epoch) {
        ccl__xp_conn_failed(k, CCL_ERR_PROTOCOL, "frame from a future epoch");
        return;
    }
    if (k->mac)
        k->mac->rx_on = ccl__xp_macd(k->mac, k->h.type);
    if (k->mac && k->mac->rx_aead) {
        int rc = ccl__aead_start(k->mac->rx_aead, k->hbuf, CCL_HDR_LEN);
        if (rc) {
            ccl__xp_conn_failed(k, rc, rc == CCL_ERR_PROTOCOL
                                ? "the connection's frame counter is spent "
                                  "(2^64 - 1 frames): it must close"
                                : "decrypting a frame failed");
            return;
        }
    } else if (k->mac && k->mac->rx_on) {
        ccl__frame_mac_init(&k->mac->rx, &k->mac->rx_key, k->mac->rx_seq++);
        ccl__frame_mac_update(&k->mac->rx, k->hbuf, CCL_HDR_LEN);
    }
    if (k->mac && k->mac->rx_on) {
        k->mac->rx_tag_have = 0;
        if (k->h.length == 0) {
            /* Nothing to place: the frame acts after its tag. */
            k->rstate = RX_TAG;
            return;
        }
    }
    rx_dispatch(k);
    if (k->fd >= 0 && k->rstate == RX_PAYLOAD && k->h.length == 0)
        rx_complete(k);
}

/* Payload bytes [rdone - n, rdone) have just arrived at dst (NULL: they
 * were checked, decrypted and consumed on the way: stage_from_ring). */
static void payload_arrived(xp_conn *k, uint8_t *dst, size_t n)
{
    int on = k->mac && k->mac->rx_on;
    if (!dst) {
        /* only the frame's end below */
    } else if (k->mac && k->mac->rx_aead) {
        /* In place, while the bytes are in cache.  They count as received
         * only once the tag checks (a tampered frame fails the op). */
        if (ccl__aead_update(k->mac->rx_aead, dst, dst, n)) {
            ccl__xp_conn_failed(k, CCL_ERR_INTERNAL, "decrypting a frame failed");
            return;
        }
    } else if (on) {
        ccl__frame_mac_update(&k->mac->rx, dst, n);
    }
    if (k->sink.kind == CCL_SINK_STAGE) {
        size_t ready = k->rdone - k->rdone % k->sink.unit;
        if (ready > k->rtaken) {
            k->sink.consume(&k->sink, k->staging + k->rtaken, k->rtaken,
                            ready - k->rtaken);
            k->rtaken = ready;
        }
    }
    if (k->rdone == k->h.length) {
        if (k->rx_t0_ns) {
            /* Every byte the peer delivered while this frame arrived, on
             * all its connections: the link's rate, whether the op's
             * frames came side by side (each at a share of the link) or
             * one after another (stats.h). */
            ccl__stats_frame_in(&k->x->stats, k->peer,
                                k->x->peers[k->peer].rx_bytes - k->rx_b0,
                                ccl__stats_now_ns() - k->rx_t0_ns);
            k->rx_t0_ns = 0;
        }
        if (on)
            k->rstate = RX_TAG; /* it completes once the tag checks */
        else
            rx_complete(k);
    }
}

/* Same host (sock_shm.h) and a STAGE sink: whole units go to consume
 * straight out of the ring, without the copy into staging (a ring's
 * bytes stay put until released, unlike a socket's); a frame MAC reads
 * them there too, and with encrypt they are decrypted from the ring into
 * staging, the decryption's output being the copy.  1 if it moved bytes;
 * 0 leaves them to the copying path (none waiting, a unit cut by the
 * ring's end, a frame's last partial unit). */
static int stage_from_ring(xp_conn *k, size_t *budget)
{
    if (!k->shm || k->rstate != RX_PAYLOAD || k->sink.kind != CCL_SINK_STAGE ||
        k->rtaken != k->rdone)
        return 0;
    const uint8_t *p;
    size_t n = ccl__shm_peek(k->shm, &p), want = k->h.length - k->rdone;
    if (n > want)
        n = want;
    if (n > *budget)
        n = *budget;
    n -= n % k->sink.unit;
    if (n == 0)
        return 0;
    if (k->mac && k->mac->rx_aead) {
        uint8_t *plain = k->staging + k->rdone; /* staging holds the frame */
        if (ccl__aead_update(k->mac->rx_aead, plain, p, n)) {
            ccl__xp_conn_failed(k, CCL_ERR_INTERNAL, "decrypting a frame failed");
            return 1;
        }
        p = plain;
    } else if (k->mac && k->mac->rx_on) {
        ccl__frame_mac_update(&k->mac->rx, p, n);
    }
    k->sink.consume(&k->sink, p, k->rtaken, n);
    char err[160];
    if (ccl__shm_release(k->shm, k->fd, n, err, sizeof err)) {
        ccl__xp_conn_failed(k, CCL_ERR_PEER_LOST, err);
        return 1;
    }
    ccl__xport *x = k->x;
    __atomic_fetch_add(&x->rx_bytes, (uint64_t)n, __ATOMIC_RELAXED);
    ccl__stats_rx(&x->stats, k->peer, (uint64_t)n);
    x->peers[k->peer].rx_bytes += (uint64_t)n;
    x->peers[k->peer].last_rx_ms = ccl__now_ms();
    *budget -= n;
    k->rdone += n;
    k->rtaken += n;
    payload_arrived(k, NULL, n); /* consumed already: only the frame's end */
    return 1;
}

/* Reads what is available on a connection, within a budget. */
void ccl__xp_read(xp_conn *k)
{
    ccl__xport *x = k->x;
    char err[160];
    size_t budget = XP_READ_BUDGET;
    while (k->fd >= 0 && !k->parked && budget > 0) {
        if (k->rstate == RX_TAG) {
            if (!read_tag(k))
                return;
            continue;
        }
        if (stage_from_ring(k, &budget))
            continue;
        uint8_t *dst;
        size_t want;
        if (k->rstate == RX_HDR) {
            dst = k->hbuf + k->hpos;
            want = CCL_HDR_LEN - k->hpos;
        } else if (k->sink.kind == CCL_SINK_DISCARD) {
            if (ensure_staging(k, XP_DISCARD_CHUNK)) {
                ccl__xp_conn_failed(k, CCL_ERR_NOMEM, "out of memory");
                return;
            }
            dst = k->staging;
            want = k->h.length - k->rdone;
            if (want > k->staging_cap)
                want = k->staging_cap;
        } else {
            dst = k->rdst + k->rdone;
            want = k->h.length - k->rdone;
        }
        if (want > budget)
            want = budget;
        long n = ccl__xp_read_some(k, dst, want, err, sizeof err);
        if (n < 0) {
            ccl__xp_conn_failed(k, (int)-n, err);
            return;
        }
        if (n == 0)
            return;
        __atomic_fetch_add(&x->rx_bytes, (uint64_t)n, __ATOMIC_RELAXED);
        ccl__stats_rx(&x->stats, k->peer, (uint64_t)n);
        x->peers[k->peer].rx_bytes += (uint64_t)n;
        x->peers[k->peer].last_rx_ms = ccl__now_ms();
        budget -= (size_t)n;
        if (k->rstate == RX_HDR) {
            k->hpos += (size_t)n;
            if (k->hpos == CCL_HDR_LEN)
                on_header_bytes(k);
            continue;
        }
        k->rdone += (size_t)n;
        payload_arrived(k, dst, (size_t)n);
    }
    /* A socket says again that it has bytes; a ring does not: come back
     * for the rest on the loop's next turn (ccl__xport_resume). */
    if (k->shm && k->fd >= 0 && !k->parked && budget == 0) {
        k->rx_more = 1;
        x->rx_more = 1;
    }
}

/* Lets a parked connection read again, starting with its saved header. */
void ccl__xp_unpark(xp_conn *k)
{
    k->parked = 0;
    if (k->rx_t0_ns) { /* time parked is ours, not the link's */
        k->rx_t0_ns = ccl__stats_now_ns();
        k->rx_b0 = k->x->peers[k->peer].rx_bytes;
    }
    k->hpos = 0;
    ccl__xp_conn_events(k);
    rx_dispatch(k);
    if (k->fd < 0 || k->parked)
        return;
    if (k->rstate == RX_PAYLOAD && k->h.length == 0)
        rx_complete(k);
    if (k->fd >= 0)
        ccl__xp_read(k);
}
