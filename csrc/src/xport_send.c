/*
 * xport_send.c - frames out.  The layer above queues frames per peer; the
 * peer's K connections pull from that queue whenever their socket can
 * take more, so one op is striped over the pool in proportion to each
 * connection's progress.  Writes are nonblocking; a connection that would
 * block waits for EPOLLOUT.  With frame MACs the MAC is computed over the
 * bytes as they are written, and the tag follows the payload.  With
 * encrypt the payload is encrypted a piece (XP_SEAL_CHUNK) at a time into
 * the connection's buffer just before the socket takes it, and the AEAD's
 * tag follows; the caller's memory is only read, never changed.
 */
#include "xport_int.h"

#include <stdlib.h>
#include <string.h>

static void peer_push(xp_peer *p, xp_req *r)
{
    r->next = NULL;
    p->last_tx_ms = ccl__now_ms();
    if (p->qtail)
        p->qtail->next = r;
    else
        p->qhead = r;
    p->qtail = r;
}

/* A frame is written whole: tell its owner. */
static void req_sent(ccl__xport *x, xp_req *r)
{
    void *cookie = r->cookie;
    ccl__xp_req_free(x, r);
    if (cookie)
        x->ops->on_sent(x->ctx, cookie);
}

/* Feeds bytes [from, to) of a frame's header + payload, just written, to
 * its MAC while they are still in cache. */
static void mac_written(xp_mac *m, const xp_req *r, size_t from, size_t to)
{
    if (from < CCL_HDR_LEN) {
        size_t end = to < CCL_HDR_LEN ? to : CCL_HDR_LEN;
        ccl__frame_mac_update(&m->tx, r->hdr + from, end - from);
        from = end;
    }
    size_t body = CCL_HDR_LEN + r->len;
    if (to > body)
        to = body;
    if (from < to)
        ccl__frame_mac_update(&m->tx, r->data + (from - CCL_HDR_LEN), to - from);
}

/* encrypt: the next piece of the current frame's payload into m->ct (its
 * bytes [ct_to, ct_to + piece)), and the tag once the last piece is in.
 * Called when the header and every encrypted byte so far are written. */
static int seal_more(xp_mac *m, const xp_req *r)
{
    size_t piece = r->len - m->ct_to;
    if (piece > XP_SEAL_CHUNK)
        piece = XP_SEAL_CHUNK;
    if (piece > m->ct_cap) {
        uint8_t *ct = realloc(m->ct, piece);
        if (!ct)
            return CCL_ERR_NOMEM;
        m->ct = ct;
        m->ct_cap = piece;
    }
    int rc = piece ? ccl__aead_update(m->tx_aead, m->ct, r->data + m->ct_to,
                                      piece)
                   : CCL_OK;
    if (rc)
        return rc;
    m->ct_from = m->ct_to;
    m->ct_to += piece;
    if (m->ct_to == r->len) {
        rc = ccl__aead_seal(m->tx_aead, m->tx_tag);
        m->tx_sealed = rc == CCL_OK;
    }
    return rc;
}

/* encrypt: starts sealing a frame that a connection took (the header is
 * the associated data), with its first piece ready. */
static int seal_start(xp_mac *m, const xp_req *r)
{
    m->ct_from = m->ct_to = 0;
    /* CCL_ERR_PROTOCOL: the counter is spent. */
    int rc = ccl__aead_start(m->tx_aead, r->hdr, CCL_HDR_LEN);
    return rc ? rc : seal_more(m, r);
}

/* Takes the next frame of the peer's queue onto connection k. */
static xp_req *take_next(xp_conn *k, xp_peer *p)
{
    if (!p->qhead || k->index >= p->active)
        return NULL;
    k->cur = p->qhead;
    p->qhead = k->cur->next;
    if (!p->qhead)
        p->qtail = NULL;
    k->cur_off = 0;
    if (k->mac) {
        /* The sequence number is this connection's, so the MAC starts
         * when a connection takes the frame. */
        k->mac->tx_on = ccl__xp_macd(k->mac, k->cur->hdr[0]);
        k->mac->tx_sealed = 0;
        if (k->mac->tx_aead) {
            int rc = seal_start(k->mac, k->cur);
            if (rc) {
                ccl__xp_conn_failed(k, rc, rc == CCL_ERR_PROTOCOL
                                    ? "the connection's frame counter is spent "
                                      "(2^64 - 1 frames): it must close"
                                    : "encrypting a frame failed");
                return NULL;
            }
        } else if (k->mac->tx_on) {
            ccl__frame_mac_init(&k->mac->tx, &k->mac->tx_key, k->mac->tx_seq++);
        }
    }
    return k->cur;
}

/* The frame's bytes ready to write from cur_off on (header, payload or
 * its ciphertext so far, then the tag once it is known) as an iovec.
 * Each segment is placed by its offset in the frame; the iovec ends at
 * the first byte not ready yet. */
static int frame_iov(const xp_conn *k, const xp_req *r, struct iovec *iov)
{
    const xp_mac *m = k->mac;
    int sealed = m && m->tx_sealed, enc = m && m->tx_aead;
    const uint8_t *seg[3] = {r->hdr, enc ? m->ct : r->data,
                             sealed ? m->tx_tag : NULL};
    size_t at[3] = {0, CCL_HDR_LEN + (enc ? m->ct_from : 0),
                    CCL_HDR_LEN + r->len};
    size_t seglen[3] = {CCL_HDR_LEN, enc ? m->ct_to - m->ct_from : r->len,
                        sealed ? CCL_FRAME_MAC_TAG_LEN : 0};
    int n = 0;
    size_t pos = k->cur_off;
    for (int i = 0; i < 3; i++) {
        if (pos >= at[i] + seglen[i])
            continue;
        if (pos < at[i])
            break; /* not encrypted yet */
        iov[n].iov_base = (void *)(seg[i] + (pos - at[i]));
        iov[n].iov_len = seglen[i] - (pos - at[i]);
        pos = at[i] + seglen[i];
        n++;
    }
    return n;
}

/* Test hook (CCL_TEST_TX_BYTES_PER_S): a token bucket over every send of
 * this process (or, with CCL_TEST_TX_SLOW_PEER, over its sends to that
 * rank only), refilled at tx_rate and holding at most 5 ms of it, and
 * at most 4 KiB when a frame starts: every frame is paced at tx_rate
 * from its first byte, like a link of that bandwidth (a full bucket
 * would send the start of a frame at memory speed).  Trims the iovec to
 * the tokens there are; 0 when there are fewer than a quantum (the loop
 * resumes the connection within ~1 ms). */
static int throttle(xp_conn *k, struct iovec *iov, int *n)
{
    ccl__xport *x = k->x;
    uint64_t now = ccl__now_us();
    double cap = x->tx_rate / 200.0 > 16384.0 ? x->tx_rate / 200.0 : 16384.0;
    if (x->tx_refill_us)
        x->tx_tokens += x->tx_rate * (double)(now - x->tx_refill_us) / 1e6;
    x->tx_refill_us = now;
    if (x->tx_tokens > cap)
        x->tx_tokens = cap;
    if (k->cur_off == 0 && x->tx_tokens > 4096.0)
        x->tx_tokens = 4096.0;
    /* Waits for a quantum (4 KiB, or the rest of the frame) rather than
     * writing what a few microseconds refilled: that kept this loop
     * writing 32 bytes at a time for a whole frame, so neither this
     * process nor a peer doing the same read anything meanwhile, and a
     * frame arrived all at once (its measured rate many times the
     * link's). */
    size_t want = 0;
    for (int i = 0; i < *n; i++)
        want += iov[i].iov_len;
    if (want > 4096)
        want = 4096;
    if (x->tx_tokens < (double)want || x->tx_tokens < 1.0) {
        x->tx_waiting = 1;
        return 0;
    }
    size_t left = (size_t)x->tx_tokens;
    for (int i = 0; i < *n; i++) {
        if (iov[i].iov_len >= left) {
            iov[i].iov_len = left;
            *n = i + 1;
            break;
        }
        left -= iov[i].iov_len;
    }
    return 1;
}

/* Writes what the socket takes, pulling frames from the peer's queue. */
void ccl__xp_flush(xp_conn *k)
{
    ccl__xport *x = k->x;
    xp_peer *p = &x->peers[k->peer];
    char err[160];
    while (k->fd >= 0) {
        xp_req *r = k->cur ? k->cur : take_next(k, p);
        if (!r)
            break;
        size_t body = CCL_HDR_LEN + r->len;
        int on = k->mac && k->mac->tx_on, enc = k->mac && k->mac->tx_aead;
        if (enc && k->cur_off == CCL_HDR_LEN + k->mac->ct_to &&
            k->mac->ct_to < r->len) {
            int rc = seal_more(k->mac, r);
            if (rc) {
                ccl__xp_conn_failed(k, rc, "encrypting a frame failed");
                return;
            }
        }
        if (on && !enc && k->cur_off == body && !k->mac->tx_sealed) {
            ccl__frame_mac_final(&k->mac->tx, k->mac->tx_tag);
            k->mac->tx_sealed = 1;
        }
        size_t total = body + (on ? CCL_FRAME_MAC_TAG_LEN : 0);
        struct iovec iov[3];
        int n = frame_iov(k, r, iov);
        int paced = x->tx_rate > 0 && (x->tx_slow_peer < 0 || k->peer == x->tx_slow_peer);
        if (paced && !throttle(k, iov, &n))
            return;
        long w = ccl__xp_writev_some(k, iov, n, err, sizeof err);
        if (w < 0) {
            ccl__xp_conn_failed(k, CCL_ERR_PEER_LOST, err);
            return;
        }
        if (w == 0) {
            if (!k->out_armed) {
                k->out_armed = 1;
                ccl__xp_conn_events(k);
            }
            return;
        }
        __atomic_fetch_add(&x->tx_bytes, (uint64_t)w, __ATOMIC_RELAXED);
        ccl__stats_tx(&x->stats, k->peer, (uint64_t)w);
        if (paced)
            x->tx_tokens -= (double)w;
        if (on && !enc && !k->mac->tx_sealed)
            mac_written(k->mac, r, k->cur_off, k->cur_off + (size_t)w);
        k->cur_off += (size_t)w;
        if (k->cur_off == total) {
            k->cur = NULL;
            req_sent(x, r);
        }
    }
    if (k->fd >= 0 && k->out_armed) {
        k->out_armed = 0;
        ccl__xp_conn_events(k);
    }
}

/* Offers queued frames to every idle connection of a peer. */
void ccl__xp_kick(ccl__xport *x, int peer)
{
    xp_peer *p = &x->peers[peer];
    for (int i = 0; i < p->nconns && p->qhead; i++) {
        xp_conn *k = &p->conns[i];
        if (k->fd >= 0 && !k->cur)
            ccl__xp_flush(k);
    }
}

/* Queues a frame whose payload is data (borrowed) or owned (ours from
 * now on, freed once written or dropped). */
static int queue(ccl__xport *x, int peer, ccl__hdr *h, const uint8_t *data,
                 uint8_t *owned, uint32_t len, void *cookie)
{
    xp_peer *p = &x->peers[peer];
    int open = 0;
    for (int i = 0; i < p->nconns; i++)
        open |= p->conns[i].fd >= 0;
    xp_req *r = open ? ccl__xp_req_alloc(x) : NULL;
    if (!r) {
        free(owned);
        return open ? CCL_ERR_NOMEM : CCL_OK; /* out already: reported */
    }
    r->owned = owned;
    h->epoch = x->epoch;
    h->length = len;
    ccl__hdr_encode(r->hdr, h);
    r->cookie = cookie;
    r->data = owned ? owned : data;
    r->len = len;
    peer_push(p, r);
    ccl__xp_kick(x, peer);
    return CCL_OK;
}

int ccl__xport_send(ccl__xport *x, int peer, ccl__hdr *h, const uint8_t *data,
                    uint32_t len, void *cookie)
{
    uint8_t *owned = NULL;
    if (!cookie && len) { /* a control frame: copied */
        owned = malloc(len);
        if (!owned)
            return CCL_ERR_NOMEM;
        memcpy(owned, data, len);
    }
    return queue(x, peer, h, data, owned, len, cookie);
}

int ccl__xport_send_owned(ccl__xport *x, int peer, ccl__hdr *h, uint8_t *owned,
                          uint32_t len, void *cookie)
{
    return queue(x, peer, h, NULL, owned, len, cookie);
}

/* A half-written frame must still be finished (the stream would be
 * corrupt otherwise), so its remaining bytes are copied to memory the
 * request owns: the owner's buffer may be reused at once. */
static void detach_current(xp_conn *k)
{
    xp_req *r = k->cur;
    r->cookie = NULL;
    if (k->cur_off >= CCL_HDR_LEN + r->len || !r->len)
        return;
    if (k->mac && k->mac->tx_aead && k->mac->ct_to == r->len)
        return; /* all of it is encrypted already, in the connection's buffer */
    uint8_t *copy = malloc(r->len);
    if (!copy) {
        /* Without memory the stream cannot be finished safely. */
        ccl__xp_conn_failed(k, CCL_ERR_NOMEM, "out of memory");
        return;
    }
    memcpy(copy, r->data, r->len);
    free(r->owned);
    r->owned = copy;
    r->data = copy;
}

void ccl__xport_purge(ccl__xport *x, void *cookie)
{
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        xp_req **pp = &pe->qhead, *last = NULL;
        while (*pp) {
            xp_req *r = *pp;
            if (r->cookie == cookie) {
                *pp = r->next;
                ccl__xp_req_free(x, r);
            } else {
                last = r;
                pp = &r->next;
            }
        }
        pe->qtail = last;
        for (int i = 0; i < pe->nconns; i++) {
            xp_conn *k = &pe->conns[i];
            if (k->fd >= 0 && k->cur && k->cur->cookie == cookie)
                detach_current(k);
        }
    }
}
