/*
 * send.c - frames out.  An algorithm queues frames per peer
 * (ccl__enqueue_data); the peer's K connections pull from that queue
 * whenever their socket can take more, so one op is striped over the pool
 * in proportion to each connection's progress.  Writes are nonblocking;
 * a connection that would block waits for EPOLLOUT.
 */

#include "engine.h"
#include "reduce.h"
#include "sock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ccl__conn_update_events(ccl_comm *c, ccl__conn *k)
{
    unsigned ev = (k->parked ? 0 : CCL_EV_IN) | (k->out_armed ? CCL_EV_OUT : 0);
    ccl__poller_set(c->poller, k->fd, k, ev, 0);
}

ccl__sendreq *ccl__req_alloc(ccl_comm *c)
{
    ccl__sendreq *r = c->free_reqs;
    if (r) {
        c->free_reqs = r->next;
    } else {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
    }
    memset(r, 0, sizeof *r);
    return r;
}

void ccl__req_free(ccl_comm *c, ccl__sendreq *r)
{
    free(r->owned);
    r->owned = NULL;
    r->next = c->free_reqs;
    c->free_reqs = r;
}

void ccl__peer_push(ccl__peer *p, ccl__sendreq *r)
{
    r->next = NULL;
    p->last_tx_ms = ccl__now_ms();
    if (p->qtail)
        p->qtail->next = r;
    else
        p->qhead = r;
    p->qtail = r;
}


/* A finished frame: account it to its op. */
static void req_sent(ccl_comm *c, ccl__sendreq *r)
{
    ccl_op *op = r->op;
    ccl__req_free(c, r);
    if (op) {
        op->send_left--;
        op->last_progress_ms = ccl__now_ms();
        ccl__op_check_done(c, op);
    }
}

/* Feeds bytes [from, to) of a frame's header + payload, just written,
 * to its MAC while they are still in cache. */
static void mac_written(ccl__conn_mac *m, const ccl__sendreq *r, size_t from,
                        size_t to)
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

/* Writes what the socket takes, pulling frames from the peer's queue. */
void ccl__conn_flush(ccl_comm *c, ccl__conn *k)
{
    ccl__peer *p = &c->peers[k->peer];
    char err[160];
    for (;;) {
        if (!k->cur) {
            if (!p->qhead)
                break;
            k->cur = p->qhead;
            p->qhead = k->cur->next;
            if (!p->qhead)
                p->qtail = NULL;
            k->cur_off = 0;
            if (k->mac) {
                /* The sequence number is this connection's, so the MAC
                 * starts when a connection takes the frame. */
                ccl__frame_mac_init(&k->mac->tx, &k->mac->tx_key, k->mac->tx_seq++);
                k->mac->tx_sealed = 0;
            }
        }
        ccl__sendreq *r = k->cur;
        size_t body = CCL_HDR_LEN + r->len;
        if (k->mac && k->cur_off == body && !k->mac->tx_sealed) {
            ccl__frame_mac_final(&k->mac->tx, k->mac->tx_tag);
            k->mac->tx_sealed = 1;
        }
        /* The frame's bytes: header, payload, then the tag once it is
         * known; skip what was written already. */
        const uint8_t *seg[3] = {r->hdr, r->data, k->mac ? k->mac->tx_tag : NULL};
        size_t seglen[3] = {CCL_HDR_LEN, r->len,
                            k->mac && k->mac->tx_sealed ? CCL_FRAME_MAC_TAG_LEN : 0};
        size_t total = body + (k->mac ? CCL_FRAME_MAC_TAG_LEN : 0);
        struct iovec iov[3];
        int n = 0;
        size_t skip = k->cur_off;
        for (int i = 0; i < 3; i++) {
            if (skip >= seglen[i]) {
                skip -= seglen[i];
                continue;
            }
            iov[n].iov_base = (void *)(seg[i] + skip);
            iov[n].iov_len = seglen[i] - skip;
            n++;
            skip = 0;
        }
        long w = ccl__sock_writev_some(k->fd, iov, n, err, sizeof err);
        if (w < 0) {
            ccl__conn_broken(c, k, CCL_ERR_PEER_LOST, err);
            return;
        }
        if (w == 0) {
            if (!k->out_armed) {
                k->out_armed = 1;
                ccl__conn_update_events(c, k);
            }
            return;
        }
        c->tx_bytes += (uint64_t)w;
        if (k->mac && !k->mac->tx_sealed)
            mac_written(k->mac, r, k->cur_off, k->cur_off + (size_t)w);
        k->cur_off += (size_t)w;
        if (k->cur_off == total) {
            k->cur = NULL;
            req_sent(c, r);
        }
    }
    if (k->out_armed) {
        k->out_armed = 0;
        ccl__conn_update_events(c, k);
    }
}

/* Offers queued frames to every idle connection of a peer. */
void ccl__peer_kick(ccl_comm *c, int peer)
{
    ccl__peer *p = &c->peers[peer];
    for (int i = 0; i < p->nconns && p->qhead; i++) {
        ccl__conn *k = &p->conns[i];
        if (k->fd >= 0 && !k->cur)
            ccl__conn_flush(c, k);
    }
}

int ccl__enqueue_data(ccl_comm *c, ccl_op *op, int peer, uint16_t step,
                      uint64_t offset, const uint8_t *data, uint32_t len)
{
    if (!op->active)
        return CCL_ERR_ABORTED; /* failed inside the caller's callback */
    ccl__sendreq *r = ccl__req_alloc(c);
    if (!r) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory queueing a frame");
        return CCL_ERR_NOMEM;
    }
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_DATA;
    h.coll = op->algo->coll;
    h.dtype = (uint8_t)op->dtype;
    h.redop = (uint8_t)op->redop;
    h.epoch = op->epoch;
    h.tag = op->tag;
    h.offset = offset;
    h.total = op->nbytes;
    h.length = len;
    h.step = step;
    ccl__hdr_encode(r->hdr, &h);
    r->op = op;
    r->data = data;
    r->len = len;
    op->send_left++;
    ccl__peer_push(&c->peers[peer], r);
    ccl__peer_kick(c, peer);
    return CCL_OK;
}

void ccl__enqueue_abort(ccl_comm *c, int peer, uint64_t tag, int code,
                          const char *msg)
{
    ccl__peer *p = &c->peers[peer];
    if (!p->nconns)
        return;
    ccl__sendreq *r = ccl__req_alloc(c);
    if (!r)
        return;
    r->owned = malloc(6 + CCL_MAX_ERRMSG);
    if (!r->owned) {
        ccl__req_free(c, r);
        return;
    }
    size_t n = ccl__errmsg_encode(r->owned, 6 + CCL_MAX_ERRMSG, code, msg);
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_ABORT;
    h.epoch = c->epoch;
    h.tag = tag;
    h.length = (uint32_t)n;
    ccl__hdr_encode(r->hdr, &h);
    r->data = r->owned;
    r->len = (uint32_t)n;
    ccl__peer_push(p, r);
    ccl__peer_kick(c, peer);
}


/* Queues a frame without payload (DONE) to a peer. */
void ccl__enqueue_ctl(ccl_comm *c, int peer, int type, uint64_t tag)
{
    ccl__sendreq *r = ccl__req_alloc(c);
    if (!r)
        return; /* the peer then waits for its deadline: degraded, not wrong */
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.epoch = c->epoch;
    h.tag = tag;
    ccl__hdr_encode(r->hdr, &h);
    ccl__peer_push(&c->peers[peer], r);
    ccl__peer_kick(c, peer);
}


/* Detaches every frame of a failed op from the send side.  A frame already
 * half written must still be finished (the stream would be corrupt
 * otherwise), so its remaining bytes are copied to memory the request owns:
 * the caller's buffer may be reused the moment the op reports failure. */
void ccl__purge_sends(ccl_comm *c, ccl_op *op)
{
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        ccl__sendreq **pp = &pe->qhead, *last = NULL;
        while (*pp) {
            ccl__sendreq *r = *pp;
            if (r->op == op) {
                *pp = r->next;
                ccl__req_free(c, r);
            } else {
                last = r;
                pp = &r->next;
            }
        }
        pe->qtail = last;
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            ccl__sendreq *r = k->cur;
            if (!r || r->op != op)
                continue;
            r->op = NULL;
            if (k->cur_off < CCL_HDR_LEN + r->len && r->len) {
                uint8_t *copy = malloc(r->len);
                if (copy) {
                    memcpy(copy, r->data, r->len);
                    free(r->owned);
                    r->owned = copy;
                    r->data = copy;
                } else {
                    /* Without memory the stream cannot be finished safely. */
                    r->len = 0;
                    k->cur = NULL;
                    ccl__req_free(c, r);
                    ccl__conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
                }
            }
        }
    }
    op->send_left = 0;
}


void ccl__say_bye(ccl_comm *c)
{
    uint8_t buf[CCL_HDR_LEN + CCL_FRAME_MAC_TAG_LEN];
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_BYE;
    h.epoch = c->epoch;
    h.tag = c->bye_tag;
    ccl__hdr_encode(buf, &h);
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            /* A frame cut in the middle cannot be followed by BYE: the peer
             * then sees the connection end, which is the truth. */
            if (k->fd < 0 || k->cur)
                continue;
            size_t len = CCL_HDR_LEN;
            if (k->mac) {
                ccl__frame_mac(&k->mac->tx_key, k->mac->tx_seq++, buf,
                               CCL_HDR_LEN, buf + CCL_HDR_LEN);
                len += CCL_FRAME_MAC_TAG_LEN;
            }
            ccl__sock_send_all(k->fd, buf, len, ccl__now_ms() + 200, NULL, 0);
        }
    }
}
