/*
 * recv.c - frames in.  Each connection reads a 40-byte header, finds the
 * op by tag, and lets the algorithm say where the payload goes: straight
 * into the op's buffer (LAND) or into a staging buffer that is reduced
 * into the op's buffer as bytes arrive (REDUCE).  Frames for tags not
 * posted here yet are kept on the heap up to a cap, beyond which the
 * connection stops reading until an op is posted (TCP flow control then
 * holds the sender).  Frames for tags that already ended are dropped.
 */

#include "engine.h"
#include "reduce.h"
#include "sock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- receiving ---- */

static void early_push(ccl_comm *c, ccl__early *e)
{
    e->next = NULL;
    if (c->early_tail)
        c->early_tail->next = e;
    else
        c->early_head = e;
    c->early_tail = e;
}

/* Checks that a DATA frame describes the same op as ours. */
static int frame_matches(ccl_op *op, const ccl__hdr *h)
{
    return h->coll == op->algo->coll && h->dtype == op->dtype &&
           h->redop == op->redop && h->total == op->nbytes;
}

static void mismatch(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h)
{
    ccl__op_fail(c, op, CCL_ERR_MISMATCH, 1,
                 "op %llu: peer %d sent (kind %u, dtype %u, op %u, %llu bytes) "
                 "but this rank has (kind %u, dtype %d, op %d, %llu bytes)",
                 (unsigned long long)op->tag, peer, h->coll, h->dtype, h->redop,
                 (unsigned long long)h->total, op->algo->coll, op->dtype,
                 op->redop, (unsigned long long)op->nbytes);
}

static int ensure_staging(ccl__conn *k, size_t len)
{
    if (k->staging_cap >= len)
        return 0;
    size_t cap = len < DISCARD_CHUNK ? DISCARD_CHUNK : len;
    uint8_t *s = realloc(k->staging, cap);
    if (!s)
        return -1;
    k->staging = s;
    k->staging_cap = cap;
    return 0;
}

/* Runs an algorithm callback.  The op cannot complete while the callback
 * is still queueing frames (a first frame written at once must not end the
 * op before the rest are queued), so completion is checked afterwards. */
static void call_on_data(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h)
{
    op->hold++;
    int rc = op->algo->on_data(c, op, peer, h);
    op->hold--;
    if (rc == 0)
        ccl__op_check_done(c, op);
}

/* Delivers a complete DATA payload that was kept before its op existed. */
void ccl__deliver_early(ccl_comm *c, ccl_op *op, ccl__early *e)
{
    int mode = 0;
    uint8_t *dst = NULL;
    if (!frame_matches(op, &e->h)) {
        mismatch(c, op, e->peer, &e->h);
        return;
    }
    if (op->algo->on_header(c, op, e->peer, &e->h, &mode, &dst)) {
        ccl__op_fail(c, op, CCL_ERR_PROTOCOL, 1, "%s", op->err);
        return;
    }
    if (ccl__save_region(op, mode, dst, e->h.length)) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory saving the input");
        return;
    }
    if (e->h.length) {
        if (mode == RXM_REDUCE)
            ccl__reduce(dst, e->data, e->h.length / op->esize, op->dtype, op->redop);
        else
            memcpy(dst, e->data, e->h.length);
    }
    op->recv_left -= e->h.length;
    op->last_progress_ms = ccl__now_ms();
    call_on_data(c, op, e->peer, &e->h);
}

static void rx_dispatch(ccl_comm *c, ccl__conn *k);


static void protocol_error(ccl_comm *c, ccl__conn *k, const char *what)
{
    ccl__conn_broken(c, k, CCL_ERR_PROTOCOL, what);
}

static void rx_done(ccl_comm *c, ccl__conn *k)
{
    if (k->h.epoch != c->epoch)
        return;
    ccl_op *op = ccl__active_find(c, k->h.tag);
    if (op) {
        op->done_seen[k->peer] = 1;
        op->last_progress_ms = ccl__now_ms();
        ccl__op_check_done(c, op);
    } else if (k->h.tag >= c->activated_upto) {
        ccl__early_done *d = malloc(sizeof *d);
        if (!d)
            return;
        d->tag = k->h.tag;
        d->peer = k->peer;
        d->next = c->early_done;
        c->early_done = d;
    }
}

/* Decides where the payload of the header in k->h goes. */
static void rx_dispatch(ccl_comm *c, ccl__conn *k)
{
    ccl__hdr *h = &k->h;
    k->rop = NULL;
    k->rdone = 0;
    k->rreduced = 0;
    k->rmode = RXM_DISCARD;
    k->rstate = RX_PAYLOAD;
    switch (h->type) {
    case CCL_FT_DATA:
        break;
    case CCL_FT_ABORT:
        /* The small payload is read into staging and handled at the end. */
        if (ensure_staging(k, h->length)) {
            ccl__conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
            return;
        }
        k->rmode = RXM_KEEP;
        k->rdst = k->staging;
        return;
    case CCL_FT_HEARTBEAT:
        return;
    case CCL_FT_BYE:
        ccl__conn_bye(c, k);
        return;
    case CCL_FT_DONE:
        rx_done(c, k);
        return;
    default:
        protocol_error(c, k, "unexpected frame type on a peer connection");
        return;
    }
    if (h->epoch != c->epoch) {
        if (h->epoch > c->epoch) {
            protocol_error(c, k, "frame from a future epoch");
            return;
        }
        return; /* An old epoch's frame: drop it. */
    }
    if (h->tag >= c->activated_upto) {
        /* Early: the peer is ahead of us.  Keep the payload, or stop
         * reading this connection if too much is kept already. */
        if (c->early_bytes + h->length > EARLY_CAP_BYTES && !k->over_cap) {
            k->parked = 1;
            k->rstate = RX_HDR;
            k->hpos = CCL_HDR_LEN; /* header stays in k->h */
            ccl__conn_update_events(c, k);
            return;
        }
        uint8_t *buf = h->length ? malloc(h->length) : NULL;
        if (h->length && !buf) {
            ccl__conn_broken(c, k, CCL_ERR_NOMEM, "out of memory keeping an early frame");
            return;
        }
        c->early_bytes += h->length;
        k->over_cap = 0;
        k->keep = buf;
        k->rdst = buf;
        k->rmode = RXM_KEEP;
        return;
    }
    ccl_op *op = ccl__active_find(c, h->tag);
    if (!op)
        return; /* The op already ended here: drop its late bytes. */
    if (!frame_matches(op, h)) {
        mismatch(c, op, k->peer, h);
        return;
    }
    int mode = 0;
    uint8_t *dst = NULL;
    if (op->algo->on_header(c, op, k->peer, h, &mode, &dst)) {
        char why[300];
        snprintf(why, sizeof why, "%s", op->err);
        ccl__op_fail(c, op, CCL_ERR_PROTOCOL, 1, "%s", why);
        protocol_error(c, k, why);
        return;
    }
    k->rop = op;
    k->rmode = mode;
    if (ccl__save_region(op, mode, dst, h->length)) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory saving the input");
        k->rop = NULL;
        k->rmode = RXM_DISCARD;
        return;
    }
    if (mode == RXM_REDUCE) {
        if (ensure_staging(k, h->length)) {
            ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory for staging");
            k->rop = NULL;
            k->rmode = RXM_DISCARD;
            return;
        }
        k->reduce_dst = dst;
        k->rdst = k->staging;
    } else {
        k->rdst = dst;
    }
}

static void rx_abort_frame(ccl_comm *c, ccl__conn *k)
{
    int code = 0;
    char msg[CCL_MAX_ERRMSG + 1];
    if (ccl__errmsg_decode(k->staging, k->h.length, &code, msg) != 0) {
        protocol_error(c, k, "malformed ABORT frame");
        return;
    }
    if (k->h.epoch != c->epoch)
        return;
    int ours = ccl__abort_code(code);
    ccl_op *op = ccl__active_find(c, k->h.tag);
    if (op) {
        ccl__op_fail(c, op, ours, 0, "aborted by peer %d: %s", k->peer, msg);
    } else if (k->h.tag >= c->activated_upto) {
        ccl__aborted *a = calloc(1, sizeof *a);
        if (!a)
            return;
        a->tag = k->h.tag;
        a->code = code;
        snprintf(a->msg, sizeof a->msg, "peer %d: %s", k->peer, msg);
        a->next = c->aborted;
        c->aborted = a;
    }
}

/* The payload of the current frame is complete. */
static void rx_complete(ccl_comm *c, ccl__conn *k)
{
    ccl__hdr *h = &k->h;
    k->rstate = RX_HDR;
    k->hpos = 0;
    if (h->type == CCL_FT_ABORT) {
        rx_abort_frame(c, k);
        return;
    }
    if (k->rmode == RXM_KEEP) {
        ccl__early *e = calloc(1, sizeof *e);
        if (!e) {
            free(k->keep);
            k->keep = NULL;
            ccl__conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
            return;
        }
        e->peer = k->peer;
        e->h = *h;
        e->data = k->keep;
        k->keep = NULL;
        if (h->tag < c->activated_upto) {
            /* Its op was posted while the payload was still arriving. */
            c->early_bytes -= h->length;
            ccl_op *op = ccl__active_find(c, h->tag);
            if (op)
                ccl__deliver_early(c, op, e);
            free(e->data);
            free(e);
            return;
        }
        early_push(c, e);
        return;
    }
    ccl_op *op = k->rop;
    k->rop = NULL;
    if (!op || k->rmode == RXM_DISCARD)
        return;
    op->recv_left -= h->length;
    op->last_progress_ms = ccl__now_ms();
    call_on_data(c, op, k->peer, h);
}

/* Reads a frame's tag (frame MACs) and, if it checks out, lets the frame
 * act: a frame without payload is dispatched only now, one with payload
 * completes now.  Returns 0 while tag bytes are missing or the connection
 * ended. */
static int read_tag(ccl_comm *c, ccl__conn *k)
{
    char err[160];
    ccl__conn_mac *m = k->mac;
    long n = ccl__sock_read_some(k->fd, m->rx_tag + m->rx_tag_have,
                                 CCL_FRAME_MAC_TAG_LEN - m->rx_tag_have, err,
                                 sizeof err);
    if (n < 0) {
        ccl__conn_broken(c, k, (int)-n, err);
        return 0;
    }
    c->rx_bytes += (uint64_t)n;
    m->rx_tag_have += (size_t)n;
    if (m->rx_tag_have < CCL_FRAME_MAC_TAG_LEN)
        return 0;
    c->peers[k->peer].last_rx_ms = ccl__now_ms();
    if (!ccl__frame_mac_final_verify(&m->rx, m->rx_tag)) {
        char why[160];
        snprintf(why, sizeof why, "frame %llu failed its MAC check: the bytes "
                 "were changed on the way, or did not come from this peer",
                 (unsigned long long)(m->rx_seq - 1));
        ccl__conn_broken(c, k, CCL_ERR_AUTH, why);
        return 0;
    }
    if (k->h.length > 0) {
        rx_complete(c, k);
        return 1;
    }
    rx_dispatch(c, k);
    if (k->fd >= 0 && k->rstate == RX_PAYLOAD)
        rx_complete(c, k);
    return 1;
}

/* Reads what is available on a connection, within a budget so that one
 * busy connection cannot starve the others. */
void ccl__conn_read(ccl_comm *c, ccl__conn *k)
{
    char err[160];
    size_t budget = READ_BUDGET;
    while (k->fd >= 0 && !k->parked && budget > 0) {
        if (k->rstate == RX_HDR) {
            long n = ccl__sock_read_some(k->fd, k->hbuf + k->hpos,
                                         CCL_HDR_LEN - k->hpos, err, sizeof err);
            if (n < 0) {
                ccl__conn_broken(c, k, (int)-n, err);
                return;
            }
            if (n == 0)
                return;
            c->rx_bytes += (uint64_t)n;
            c->peers[k->peer].last_rx_ms = ccl__now_ms();
            k->hpos += (size_t)n;
            if (k->hpos < CCL_HDR_LEN)
                continue;
            if (ccl__hdr_decode(k->hbuf, &k->h) != 0) {
                protocol_error(c, k, "malformed frame header");
                return;
            }
            k->hpos = 0;
            if (k->mac) {
                ccl__frame_mac_init(&k->mac->rx, &k->mac->rx_key, k->mac->rx_seq++);
                ccl__frame_mac_update(&k->mac->rx, k->hbuf, CCL_HDR_LEN);
                k->mac->rx_tag_have = 0;
                if (k->h.length == 0) {
                    /* Nothing to place: the frame acts after its tag. */
                    k->rstate = RX_TAG;
                    continue;
                }
            }
            rx_dispatch(c, k);
            if (k->fd >= 0 && k->rstate == RX_PAYLOAD && k->h.length == 0)
                rx_complete(c, k);
            continue;
        }
        if (k->rstate == RX_TAG) {
            if (!read_tag(c, k))
                return;
            continue;
        }
        size_t want = k->h.length - k->rdone;
        uint8_t *dst;
        if (k->rmode == RXM_DISCARD) {
            if (ensure_staging(k, DISCARD_CHUNK)) {
                ccl__conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
                return;
            }
            dst = k->staging;
            if (want > k->staging_cap)
                want = k->staging_cap;
        } else {
            dst = k->rdst + k->rdone;
        }
        if (want > budget)
            want = budget;
        long n = ccl__sock_read_some(k->fd, dst, want, err, sizeof err);
        if (n < 0) {
            ccl__conn_broken(c, k, (int)-n, err);
            return;
        }
        if (n == 0)
            return;
        c->rx_bytes += (uint64_t)n;
        c->peers[k->peer].last_rx_ms = ccl__now_ms();
        budget -= (size_t)n;
        if (k->mac)
            ccl__frame_mac_update(&k->mac->rx, dst, (size_t)n);
        k->rdone += (size_t)n;
        if (k->rmode == RXM_REDUCE && k->rop) {
            /* Reduce whole elements as they arrive, while they are still
             * in cache. */
            ccl_op *op = k->rop;
            size_t ready = k->rdone - k->rdone % op->esize;
            if (ready > k->rreduced) {
                ccl__reduce(k->reduce_dst + k->rreduced, k->staging + k->rreduced,
                            (ready - k->rreduced) / op->esize, op->dtype, op->redop);
                k->rreduced = ready;
            }
        }
        if (k->rdone == k->h.length) {
            if (k->mac)
                k->rstate = RX_TAG; /* it completes once the tag checks */
            else
                rx_complete(c, k);
        }
    }
}

/* Lets a parked connection read again, starting with its saved header. */
void ccl__conn_unpark(ccl_comm *c, ccl__conn *k)
{
    k->parked = 0;
    ccl__conn_update_events(c, k);
    rx_dispatch(c, k);
    if (k->parked)
        return;
    k->hpos = 0;
    if (k->fd >= 0 && k->rstate == RX_PAYLOAD && k->h.length == 0)
        rx_complete(c, k);
    if (k->fd >= 0)
        ccl__conn_read(c, k);
}

void ccl__unpark_all(ccl_comm *c)
{
    for (int p = 0; p < c->size; p++)
        for (int i = 0; i < c->peers[p].nconns; i++) {
            ccl__conn *k = &c->peers[p].conns[i];
            if (k->fd >= 0 && k->parked)
                ccl__conn_unpark(c, k);
        }
}
