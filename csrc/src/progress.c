/*
 * progress.c - the progress engine: frames in and out of the connection
 * pools, op activation, completion and failure, deadlines.
 *
 * Every function here runs with comm->mu held (see comm.h), except
 * ccl__progress_main, the progress thread's body.
 *
 * Sending: an algorithm queues frames per peer (ccl__enqueue_data).  The
 * peer's K connections pull from that queue whenever their socket can take
 * more, so one op is striped over the pool in proportion to each
 * connection's progress.
 *
 * Receiving: each connection reads a 40-byte header, finds the op by tag,
 * and lets the algorithm say where the payload goes: straight into the
 * op's buffer (LAND) or into a staging buffer that is reduced into the op's
 * buffer as bytes arrive (REDUCE).  Frames for tags not posted here yet are
 * kept on the heap up to a cap, beyond which the connection stops reading
 * until an op is posted (TCP flow control then holds the sender).  Frames
 * for tags that already ended are read and dropped.
 */
#include "comm.h"
#include "reduce.h"
#include "sock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Early frames (for ops not posted here yet) are kept up to this many
 * bytes; past it a connection stops reading, so TCP holds the sender.  The
 * cap is soft: if ops that are posted make no progress while a connection
 * is parked (their frames may sit behind the parked one in the same
 * stream), the connection reads on after PARK_STUCK_MS. */
#define EARLY_CAP_BYTES (64ull << 20)
#define PARK_STUCK_MS 100
#define DISCARD_CHUNK 65536
#define READ_BUDGET (4u << 20)

static void conn_update_events(ccl_comm *c, ccl__conn *k)
{
    unsigned ev = (k->parked ? 0 : CCL_EV_IN) | (k->out_armed ? CCL_EV_OUT : 0);
    ccl__poller_set(c->poller, k->fd, k, ev, 0);
}

static ccl__sendreq *req_alloc(ccl_comm *c)
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

static void req_free(ccl_comm *c, ccl__sendreq *r)
{
    free(r->owned);
    r->owned = NULL;
    r->next = c->free_reqs;
    c->free_reqs = r;
}

static void peer_push(ccl__peer *p, ccl__sendreq *r)
{
    r->next = NULL;
    p->last_tx_ms = ccl__now_ms();
    if (p->qtail)
        p->qtail->next = r;
    else
        p->qhead = r;
    p->qtail = r;
}

static void conn_broken(ccl_comm *c, ccl__conn *k, int code, const char *why);

/* A finished frame: account it to its op. */
static void req_sent(ccl_comm *c, ccl__sendreq *r)
{
    ccl_op *op = r->op;
    req_free(c, r);
    if (op) {
        op->send_left--;
        op->last_progress_ms = ccl__now_ms();
        ccl__op_check_done(c, op);
    }
}

/* Writes what the socket takes, pulling frames from the peer's queue. */
static void conn_flush(ccl_comm *c, ccl__conn *k)
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
        }
        ccl__sendreq *r = k->cur;
        struct iovec iov[2];
        int n = 0;
        size_t total = CCL_HDR_LEN + r->len;
        if (k->cur_off < CCL_HDR_LEN) {
            iov[n].iov_base = r->hdr + k->cur_off;
            iov[n].iov_len = CCL_HDR_LEN - k->cur_off;
            n++;
            if (r->len) {
                iov[n].iov_base = (void *)r->data;
                iov[n].iov_len = r->len;
                n++;
            }
        } else {
            iov[n].iov_base = (void *)(r->data + (k->cur_off - CCL_HDR_LEN));
            iov[n].iov_len = total - k->cur_off;
            n++;
        }
        long w = ccl__sock_writev_some(k->fd, iov, n, err, sizeof err);
        if (w < 0) {
            conn_broken(c, k, CCL_ERR_PEER_LOST, err);
            return;
        }
        if (w == 0) {
            if (!k->out_armed) {
                k->out_armed = 1;
                conn_update_events(c, k);
            }
            return;
        }
        c->tx_bytes += (uint64_t)w;
        k->cur_off += (size_t)w;
        if (k->cur_off == total) {
            k->cur = NULL;
            req_sent(c, r);
        }
    }
    if (k->out_armed) {
        k->out_armed = 0;
        conn_update_events(c, k);
    }
}

/* Offers queued frames to every idle connection of a peer. */
static void peer_kick(ccl_comm *c, int peer)
{
    ccl__peer *p = &c->peers[peer];
    for (int i = 0; i < p->nconns && p->qhead; i++) {
        ccl__conn *k = &p->conns[i];
        if (k->fd >= 0 && !k->cur)
            conn_flush(c, k);
    }
}

int ccl__enqueue_data(ccl_comm *c, ccl_op *op, int peer, uint16_t step,
                      uint64_t offset, const uint8_t *data, uint32_t len)
{
    if (!op->active)
        return CCL_ERR_ABORTED; /* failed inside the caller's callback */
    ccl__sendreq *r = req_alloc(c);
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
    peer_push(&c->peers[peer], r);
    peer_kick(c, peer);
    return CCL_OK;
}

static void enqueue_abort(ccl_comm *c, int peer, uint64_t tag, int code,
                          const char *msg)
{
    ccl__peer *p = &c->peers[peer];
    if (!p->nconns)
        return;
    ccl__sendreq *r = req_alloc(c);
    if (!r)
        return;
    r->owned = malloc(6 + CCL_MAX_ERRMSG);
    if (!r->owned) {
        req_free(c, r);
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
    peer_push(p, r);
    peer_kick(c, peer);
}

/* ---- op completion ---- */

static void active_remove(ccl_comm *c, ccl_op *op)
{
    ccl_op **pp = &c->active;
    while (*pp && *pp != op)
        pp = &(*pp)->next;
    if (*pp)
        *pp = op->next;
    op->next = NULL;
    op->active = 0;
}

static ccl_op *active_find(ccl_comm *c, uint64_t tag)
{
    for (ccl_op *op = c->active; op; op = op->next)
        if (op->tag == tag)
            return op;
    return NULL;
}

static void op_finish(ccl_comm *c, ccl_op *op, int rc)
{
    active_remove(c, op);
    /* Nothing reads the working buffers any more (a failure restored the
     * input already): hand them to the next op. */
    ccl__buf_put(c, op->backup, op->nbytes);
    op->backup = NULL;
    ccl__buf_put(c, op->scratch, op->scratch_len);
    op->scratch = NULL;
    op->result = rc;
    __atomic_store_n(&op->done, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&c->done_mu);
    pthread_cond_broadcast(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
    /* The engine's reference is dropped later, in ccl__reap, because the
     * handler that finished the op may still be on the stack. */
    op->next = c->reap;
    c->reap = op;
}

void ccl__reap(ccl_comm *c)
{
    while (c->reap) {
        ccl_op *op = c->reap;
        c->reap = op->next;
        op->next = NULL;
        ccl__op_release(op);
    }
}

/* Queues a frame without payload (DONE) to a peer. */
static void enqueue_ctl(ccl_comm *c, int peer, int type, uint64_t tag)
{
    ccl__sendreq *r = req_alloc(c);
    if (!r)
        return; /* the peer then waits for its deadline: degraded, not wrong */
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.epoch = c->epoch;
    h.tag = tag;
    ccl__hdr_encode(r->hdr, &h);
    peer_push(&c->peers[peer], r);
    peer_kick(c, peer);
}

/* Whether every peer still in the group said DONE for this op. */
static int commit_ready(ccl_comm *c, ccl_op *op)
{
    for (int p = 0; p < c->size; p++)
        if (p != c->rank && !op->done_seen[p] && !c->peers[p].lost)
            return 0;
    return 1;
}

/* Completion has two stages.  When an op's own bytes are all in and out,
 * it is complete *here*: it tells every peer DONE and waits for theirs.
 * It succeeds once every peer still in the group said DONE.  A peer that
 * cannot complete (it lost data from a dead peer) aborts the op instead,
 * and since it never said DONE, no survivor can have succeeded: so every
 * survivor ends the op the same way.  An op that is complete here is never
 * failed by a lost peer (its result is whole); it only stops waiting for
 * that peer's DONE. */
void ccl__op_check_done(ccl_comm *c, ccl_op *op)
{
    if (!op->active || op->hold)
        return;
    if (!op->committing) {
        if (op->recv_left || op->send_left || op->frames_left)
            return;
        op->committing = 1;
        op->hold++;
        for (int p = 0; p < c->size; p++)
            if (p != c->rank && !c->peers[p].lost)
                enqueue_ctl(c, p, CCL_FT_DONE, op->tag);
        op->hold--;
    }
    if (op->active && commit_ready(c, op))
        op_finish(c, op, CCL_OK);
}

/* A peer is out of the epoch: running ops fail (and tell the others),
 * ops complete here stop waiting for its DONE. */
static void peer_lost(ccl_comm *c, int peer, int code, const char *msg,
                      uint64_t from_tag, int notify)
{
    c->peers[peer].lost = 1;
    int again = 1;
    while (again) {
        again = 0;
        for (ccl_op *op = c->active; op; op = op->next) {
            if (op->tag < from_tag)
                continue;
            if (!op->committing) {
                ccl__op_fail(c, op, code, notify, "%s", msg);
                again = 1; /* the list changed under us */
                break;
            }
        }
    }
    again = 1;
    while (again) {
        again = 0;
        for (ccl_op *op = c->active; op; op = op->next)
            if (op->committing && commit_ready(c, op)) {
                ccl__op_check_done(c, op);
                again = 1;
                break;
            }
    }
}

/* Detaches every frame of a failed op from the send side.  A frame already
 * half written must still be finished (the stream would be corrupt
 * otherwise), so its remaining bytes are copied to memory the request owns:
 * the caller's buffer may be reused the moment the op reports failure. */
static void purge_sends(ccl_comm *c, ccl_op *op)
{
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        ccl__sendreq **pp = &pe->qhead, *last = NULL;
        while (*pp) {
            ccl__sendreq *r = *pp;
            if (r->op == op) {
                *pp = r->next;
                req_free(c, r);
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
                    req_free(c, r);
                    conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
                }
            }
        }
    }
    op->send_left = 0;
}

/* A buffer of at least len bytes, from the spares when one fits. */
void *ccl__buf_get(ccl_comm *c, size_t len)
{
    for (int i = 0; i < 2; i++)
        if (c->spare[i] && c->spare_len[i] >= len) {
            void *p = c->spare[i];
            c->spare[i] = NULL;
            return p;
        }
    return malloc(len ? len : 1);
}

/* Keeps a finished op's buffer as a spare (the larger ones win). */
void ccl__buf_put(ccl_comm *c, void *p, size_t len)
{
    if (!p)
        return;
    int slot = c->spare_len[0] <= c->spare_len[1] ? 0 : 1;
    if (!c->spare[slot] || c->spare_len[slot] < len) {
        free(c->spare[slot]);
        c->spare[slot] = p;
        c->spare_len[slot] = len;
    } else {
        free(p);
    }
}

/* Starts keeping the input of an in-place op (if configured).  Nonzero
 * when memory for it is missing: the op has failed then. */
int ccl__op_keep_input(ccl_comm *c, ccl_op *op)
{
    if (!c->cfg.restore_input || op->send != op->out || op->nbytes == 0)
        return 0;
    op->backup = ccl__buf_get(c, op->nbytes);
    if (!op->backup) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory for the input backup");
        return -1;
    }
    return 0;
}

/* Saves the caller's bytes of a region the op is about to overwrite. */
int ccl__op_save(ccl_op *op, uint64_t off, uint64_t len)
{
    if (!op->backup || len == 0)
        return 0;
    if (op->nsaved == op->capsaved) {
        size_t cap = op->capsaved ? op->capsaved * 2 : 16;
        void *n = realloc(op->saved, cap * sizeof *op->saved);
        if (!n)
            return -1;
        op->saved = n;
        op->capsaved = cap;
    }
    op->saved[op->nsaved][0] = off;
    op->saved[op->nsaved][1] = len;
    op->nsaved++;
    memcpy(op->backup + off, op->buf + off, len);
    return 0;
}

/* Saves the input under a frame about to be reduced or landed into the
 * caller's buffer (landing only where the algorithm asks: a ring lands in
 * regions it already saved while reducing). */
static int save_region(ccl_op *op, int mode, uint8_t *dst, uint64_t len)
{
    if (!op->backup || (mode == RXM_LAND && !op->algo->save_on_land))
        return 0;
    if (dst < op->buf || dst >= op->buf + op->nbytes)
        return 0; /* not the caller's buffer (a hub's staging slot) */
    return ccl__op_save(op, (uint64_t)(dst - op->buf), len);
}

static void restore_input(ccl_op *op)
{
    for (size_t i = 0; i < op->nsaved; i++)
        memcpy(op->buf + op->saved[i][0], op->backup + op->saved[i][0],
               op->saved[i][1]);
}

/* Stops landing bytes in a failed op's buffers. */
static void detach_receives(ccl_comm *c, ccl_op *op)
{
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            if (k->rop == op) {
                k->rop = NULL;
                k->rmode = RXM_DISCARD;
            }
        }
    }
}

void ccl__op_fail(ccl_comm *c, ccl_op *op, int code, int notify_peers,
                  const char *fmt, ...)
{
    if (!op->active || __atomic_load_n(&op->done, __ATOMIC_ACQUIRE))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->err, sizeof op->err, fmt, ap);
    va_end(ap);
    purge_sends(c, op);
    detach_receives(c, op);
    /* Nothing writes into the buffers any more: give the input back. */
    restore_input(op);
    /* Finish first: telling the peers may break a connection, which fails
     * every active op again, and this one must not be among them. */
    op_finish(c, op, code);
    if (notify_peers) {
        /* Tell every peer so that all of them fail this op too instead of
         * waiting for their deadline.  (op stays allocated until the reap.) */
        for (int p = 0; p < c->size; p++)
            if (p != c->rank)
                enqueue_abort(c, p, op->tag, code, op->err);
    }
}

void ccl__fail_all(ccl_comm *c, int code, int notify_peers, const char *why)
{
    while (c->active)
        ccl__op_fail(c, c->active, code, notify_peers, "%s", why);
}

/* A connection failed: every pending op fails (a collective cannot finish
 * without the peer), and the communicator stays broken until it is rebuilt. */
static void conn_close(ccl_comm *c, ccl__conn *k)
{
    if (k->fd < 0)
        return;
    ccl__poller_del(c->poller, k->fd);
    ccl__sock_close(k->fd);
    k->fd = -1;
    k->rop = NULL;
    k->rmode = RXM_DISCARD;
    if (k->cur) {
        ccl__sendreq *r = k->cur;
        k->cur = NULL;
        r->op = NULL;
        req_free(c, r);
    }
}

static void conn_broken(ccl_comm *c, ccl__conn *k, int code, const char *why)
{
    if (k->fd < 0)
        return;
    int peer = k->peer;
    ccl__peer *p = &c->peers[peer];
    char msg[400];
    snprintf(msg, sizeof msg, "peer %d (%s:%u) connection %d: %s", peer, p->host,
             p->port, k->index, why);
    /* One broken connection ends the whole pool: the peer's frames are
     * striped, so what is missing on this stream cannot come on another. */
    for (int i = 0; i < p->nconns; i++)
        conn_close(c, &p->conns[i]);
    while (p->qhead) {
        ccl__sendreq *r = p->qhead;
        p->qhead = r->next;
        r->op = NULL; /* its op fails below */
        req_free(c, r);
    }
    p->qtail = NULL;
    if (!c->broken) {
        c->broken = code;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", msg);
        snprintf(c->errbuf, sizeof c->errbuf, "%s", msg);
    }
    /* The other peers learn it from us at once rather than at their own
     * deadline, so every survivor fails the same ops. */
    peer_lost(c, peer, code, msg, 0, 1);
}

/* A peer closed its communicator and said so on this connection: nothing
 * more comes on it.  Ops it took part in already have all its bytes
 * (they were ahead of the BYE in every stream), so only ops it never
 * reached (tag >= the BYE's tag) fail, once all its connections said BYE,
 * and so does every later op: the group is smaller now. */
static void conn_bye(ccl_comm *c, ccl__conn *k)
{
    ccl__peer *p = &c->peers[k->peer];
    uint64_t from = k->h.tag;
    conn_close(c, k);
    k->rstate = RX_HDR;
    for (int i = 0; i < p->nconns; i++)
        if (p->conns[i].fd >= 0)
            return;
    char msg[200];
    snprintf(msg, sizeof msg, "peer %d (%s:%u) left the group", k->peer, p->host,
             p->port);
    if (!c->broken) {
        c->broken = CCL_ERR_PEER_LOST;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", msg);
    }
    /* Every survivor got the same BYE, so none needs to be told. */
    peer_lost(c, k->peer, CCL_ERR_PEER_LOST, msg, from, 0);
}

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
static void deliver_early(ccl_comm *c, ccl_op *op, ccl__early *e)
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
    if (save_region(op, mode, dst, e->h.length)) {
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

static void unpark_all(ccl_comm *c);
static void rx_dispatch(ccl_comm *c, ccl__conn *k);

/* The code an op fails with when a peer aborts it: a lost peer or a
 * mismatch is the same fact here as there; anything else that failed the
 * op over there is an abort here. */
static int abort_code(int theirs)
{
    return theirs == CCL_ERR_MISMATCH || theirs == CCL_ERR_PEER_LOST
               ? theirs : CCL_ERR_ABORTED;
}

/* Frees the early frames of a tag that will never run here. */
static void drop_early(ccl_comm *c, uint64_t tag)
{
    ccl__early **ep = &c->early_head, *prev = NULL;
    while (*ep) {
        ccl__early *e = *ep;
        if (e->h.tag == tag) {
            *ep = e->next;
            if (c->early_tail == e)
                c->early_tail = prev;
            c->early_bytes -= e->h.length;
            free(e->data);
            free(e);
        } else {
            prev = e;
            ep = &e->next;
        }
    }
}

/* Moves posted ops into the engine: start them, hand them their early
 * frames, and let parked connections read again. */
void ccl__drain_posts(ccl_comm *c)
{
    pthread_mutex_lock(&c->post_mu);
    ccl_op *list = c->post_head;
    c->post_head = c->post_tail = NULL;
    pthread_mutex_unlock(&c->post_mu);
    int any = list != NULL;
    while (list) {
        ccl_op *op = list;
        list = op->next;
        op->next = c->active;
        c->active = op;
        op->active = 1;
        op->last_progress_ms = ccl__now_ms();
        c->activated_upto = op->tag + 1;
        if (c->broken) {
            ccl__op_fail(c, op, c->broken, 0, "%s", c->broken_msg);
            drop_early(c, op->tag);
            continue;
        }
        ccl__aborted **ap = &c->aborted;
        while (*ap && (*ap)->tag != op->tag)
            ap = &(*ap)->next;
        if (*ap) {
            ccl__aborted *a = *ap;
            *ap = a->next;
            ccl__op_fail(c, op, abort_code(a->code), 0, "aborted by a peer: %s",
                         a->msg);
            free(a);
            drop_early(c, op->tag);
            continue;
        }
        op->done_seen = calloc((size_t)c->size, 1);
        if (!op->done_seen) {
            ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory");
            continue;
        }
        for (ccl__early_done **dp = &c->early_done; *dp;) {
            ccl__early_done *d = *dp;
            if (d->tag == op->tag) {
                op->done_seen[d->peer] = 1;
                *dp = d->next;
                free(d);
            } else {
                dp = &d->next;
            }
        }
        op->hold++;
        int rc = op->algo->start(c, op);
        op->hold--;
        if (rc != 0)
            continue; /* start failed the op itself */
        ccl__early **ep = &c->early_head, *prev = NULL;
        while (*ep) {
            ccl__early *e = *ep;
            if (e->h.tag == op->tag) {
                *ep = e->next;
                if (c->early_tail == e)
                    c->early_tail = prev;
                c->early_bytes -= e->h.length;
                if (op->active)
                    deliver_early(c, op, e);
                free(e->data);
                free(e);
            } else {
                prev = e;
                ep = &e->next;
            }
        }
        ccl__op_check_done(c, op);
    }
    if (any)
        unpark_all(c);
}

static void protocol_error(ccl_comm *c, ccl__conn *k, const char *what)
{
    conn_broken(c, k, CCL_ERR_PROTOCOL, what);
}

static void rx_done(ccl_comm *c, ccl__conn *k)
{
    if (k->h.epoch != c->epoch)
        return;
    ccl_op *op = active_find(c, k->h.tag);
    if (op) {
        op->done_seen[k->peer] = 1;
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
            conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
            return;
        }
        k->rmode = RXM_KEEP;
        k->rdst = k->staging;
        return;
    case CCL_FT_HEARTBEAT:
        return;
    case CCL_FT_BYE:
        conn_bye(c, k);
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
            conn_update_events(c, k);
            return;
        }
        uint8_t *buf = h->length ? malloc(h->length) : NULL;
        if (h->length && !buf) {
            conn_broken(c, k, CCL_ERR_NOMEM, "out of memory keeping an early frame");
            return;
        }
        c->early_bytes += h->length;
        k->over_cap = 0;
        k->keep = buf;
        k->rdst = buf;
        k->rmode = RXM_KEEP;
        return;
    }
    ccl_op *op = active_find(c, h->tag);
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
    if (save_region(op, mode, dst, h->length)) {
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
    int ours = abort_code(code);
    ccl_op *op = active_find(c, k->h.tag);
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
            conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
            return;
        }
        e->peer = k->peer;
        e->h = *h;
        e->data = k->keep;
        k->keep = NULL;
        if (h->tag < c->activated_upto) {
            /* Its op was posted while the payload was still arriving. */
            c->early_bytes -= h->length;
            ccl_op *op = active_find(c, h->tag);
            if (op)
                deliver_early(c, op, e);
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

/* Reads what is available on a connection, within a budget so that one
 * busy connection cannot starve the others. */
static void conn_read(ccl_comm *c, ccl__conn *k)
{
    char err[160];
    size_t budget = READ_BUDGET;
    while (k->fd >= 0 && !k->parked && budget > 0) {
        if (k->rstate == RX_HDR) {
            long n = ccl__sock_read_some(k->fd, k->hbuf + k->hpos,
                                         CCL_HDR_LEN - k->hpos, err, sizeof err);
            if (n < 0) {
                conn_broken(c, k, (int)-n, err);
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
            rx_dispatch(c, k);
            if (k->fd >= 0 && k->rstate == RX_PAYLOAD && k->h.length == 0)
                rx_complete(c, k);
            continue;
        }
        size_t want = k->h.length - k->rdone;
        uint8_t *dst;
        if (k->rmode == RXM_DISCARD) {
            if (ensure_staging(k, DISCARD_CHUNK)) {
                conn_broken(c, k, CCL_ERR_NOMEM, "out of memory");
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
            conn_broken(c, k, (int)-n, err);
            return;
        }
        if (n == 0)
            return;
        c->rx_bytes += (uint64_t)n;
        c->peers[k->peer].last_rx_ms = ccl__now_ms();
        budget -= (size_t)n;
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
        if (k->rdone == k->h.length)
            rx_complete(c, k);
    }
}

/* Lets a parked connection read again, starting with its saved header. */
static void conn_unpark(ccl_comm *c, ccl__conn *k)
{
    k->parked = 0;
    conn_update_events(c, k);
    rx_dispatch(c, k);
    if (k->parked)
        return;
    k->hpos = 0;
    if (k->fd >= 0 && k->rstate == RX_PAYLOAD && k->h.length == 0)
        rx_complete(c, k);
    if (k->fd >= 0)
        conn_read(c, k);
}

static void unpark_all(ccl_comm *c)
{
    for (int p = 0; p < c->size; p++)
        for (int i = 0; i < c->peers[p].nconns; i++) {
            ccl__conn *k = &c->peers[p].conns[i];
            if (k->fd >= 0 && k->parked)
                conn_unpark(c, k);
        }
}

void ccl__say_bye(ccl_comm *c)
{
    uint8_t buf[CCL_HDR_LEN];
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
            ccl__sock_send_all(k->fd, buf, sizeof buf, ccl__now_ms() + 200, NULL, 0);
        }
    }
}

/* ---- the loop ---- */

static void unpark_stuck(ccl_comm *c, uint64_t now)
{
    uint64_t last = 0;
    if (!c->active)
        return;
    for (ccl_op *op = c->active; op; op = op->next)
        if (op->last_progress_ms > last)
            last = op->last_progress_ms;
    if (now - last < PARK_STUCK_MS)
        return;
    for (int p = 0; p < c->size; p++)
        for (int i = 0; i < c->peers[p].nconns; i++) {
            ccl__conn *k = &c->peers[p].conns[i];
            if (k->fd >= 0 && k->parked) {
                k->over_cap = 1;
                conn_unpark(c, k);
            }
        }
}

/* Heartbeats keep an idle but healthy peer from looking dead; silence
 * longer than peer_timeout_ms means the peer is stopped, hung or cut off
 * (a stopped process keeps its sockets open, so only a deadline catches
 * it). */
static void check_peers(ccl_comm *c, uint64_t now)
{
    uint64_t hb = (uint64_t)c->cfg.peer_timeout_ms / 4;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        int open = 0, parked = 0;
        for (int i = 0; i < pe->nconns; i++) {
            open |= pe->conns[i].fd >= 0;
            parked |= pe->conns[i].fd >= 0 && pe->conns[i].parked;
        }
        if (!open)
            continue;
        if (parked) /* we stopped reading it ourselves: it is not silent */
            pe->last_rx_ms = now;
        if (now - pe->last_rx_ms > (uint64_t)c->cfg.peer_timeout_ms) {
            char why[160];
            snprintf(why, sizeof why, "silent for %llu ms (stopped, hung or cut off)",
                     (unsigned long long)(now - pe->last_rx_ms));
            for (int i = 0; i < pe->nconns; i++)
                conn_broken(c, &pe->conns[i], CCL_ERR_PEER_LOST, why);
            continue;
        }
        if (now - pe->last_tx_ms >= hb && !pe->qhead) {
            ccl__sendreq *r = req_alloc(c);
            if (!r)
                continue;
            ccl__hdr h;
            memset(&h, 0, sizeof h);
            h.type = CCL_FT_HEARTBEAT;
            h.epoch = c->epoch;
            ccl__hdr_encode(r->hdr, &h);
            peer_push(pe, r);
            peer_kick(c, p);
        }
    }
}

/* The longest the loop may sleep before timers need it. */
int ccl__timer_ms(ccl_comm *c)
{
    int hb = c->cfg.peer_timeout_ms / 8;
    if (c->active && hb > 50)
        hb = 50;
    return hb > 1000 ? 1000 : hb;
}

static void check_deadlines(ccl_comm *c)
{
    uint64_t now = ccl__now_ms();
    if (now < c->next_deadline_check_ms)
        return;
    c->next_deadline_check_ms = now + (uint64_t)(c->active ? 50 : ccl__timer_ms(c));
    check_peers(c, now);
    unpark_stuck(c, now);
    uint64_t limit = (uint64_t)c->cfg.op_timeout_ms;
    ccl_op *op = c->active;
    while (op) {
        ccl_op *next = op->next;
        if (!op->committing && now - op->last_progress_ms > limit)
            ccl__op_fail(c, op, CCL_ERR_TIMEOUT, 1,
                         "op %llu made no progress for %d ms (a peer may be "
                         "stalled, or ranks issued different ops)",
                         (unsigned long long)op->tag, c->cfg.op_timeout_ms);
        op = next;
    }
}

static void process_events(ccl_comm *c, ccl__event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        if (evs[i].ptr == NULL) {
            ccl__wakefd_drain(c->wakefd);
            continue;
        }
        if (evs[i].ptr == &c->master_fd) {
            ccl__ctl_readable(c);
            continue;
        }
        ccl__conn *k = evs[i].ptr;
        if (k->fd < 0)
            continue;
        if (evs[i].events & CCL_EV_OUT)
            conn_flush(c, k);
        if (k->fd >= 0 && (evs[i].events & CCL_EV_IN))
            conn_read(c, k);
    }
    ccl__drain_posts(c);
    check_deadlines(c);
    ccl__reap(c);
}

void ccl__loop_once(ccl_comm *c, int timeout_ms)
{
    ccl__event evs[64];
    if (timeout_ms > ccl__timer_ms(c))
        timeout_ms = ccl__timer_ms(c);
    int n = ccl__poller_wait(c->poller, evs, 64, timeout_ms);
    process_events(c, evs, n);
}

void *ccl__progress_main(void *arg)
{
    ccl_comm *c = arg;
    ccl__event evs[64];
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->driving && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            pthread_cond_wait(&c->idle_cv, &c->mu);
        if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            break;
        int timeout = ccl__timer_ms(c);
        uint64_t gen = c->mesh_gen;
        pthread_mutex_unlock(&c->mu);
        int n = ccl__poller_wait(c->poller, evs, 64, timeout);
        pthread_mutex_lock(&c->mu);
        if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            break;
        /* Events gathered before a mesh rebuild point at freed
         * connections: drop them (level-triggered epoll reports live ones
         * again). */
        if (!c->driving)
            process_events(c, evs, gen == c->mesh_gen ? n : 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
