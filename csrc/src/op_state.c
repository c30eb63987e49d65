/*
 * op_state.c - the life of an op inside the engine: activation of posted
 * ops, two-stage completion (complete here, then DONE from every peer),
 * failure (purge its frames, give the input back, tell the peers), and
 * what a lost peer means for the ops in flight.
 */

#include "engine.h"
#include "reduce.h"
#include "sock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

ccl_op *ccl__active_find(ccl_comm *c, uint64_t tag)
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
    ccl__buf_put(c, op->backup, op->backup_len);
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
                ccl__enqueue_ctl(c, p, CCL_FT_DONE, op->tag);
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


/* A buffer of at least len bytes, from the spares when one fits. */
void *ccl__buf_get(ccl_comm *c, size_t len, size_t *got)
{
    for (int i = 0; i < 2; i++)
        if (c->spare[i] && c->spare_len[i] >= len) {
            void *p = c->spare[i];
            c->spare[i] = NULL;
            *got = c->spare_len[i];
            return p;
        }
    *got = len;
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
    op->backup = ccl__buf_get(c, op->nbytes, &op->backup_len);
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
int ccl__save_region(ccl_op *op, int mode, uint8_t *dst, uint64_t len)
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
    ccl__purge_sends(c, op);
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
                ccl__enqueue_abort(c, p, op->tag, code, op->err);
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
        ccl__req_free(c, r);
    }
}

void ccl__conn_broken(ccl_comm *c, ccl__conn *k, int code, const char *why)
{
    if (k->fd < 0)
        return;
    int peer = k->peer;
    ccl__peer *p = &c->peers[peer];
    /* Bytes that break the protocol (or fail their MAC) come from a peer
     * that is buggy or not who it claims: it is reported for expulsion,
     * not just as lost. */
    if (code == CCL_ERR_PROTOCOL || code == CCL_ERR_AUTH)
        p->misbehaved = 1;
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
        ccl__req_free(c, r);
    }
    p->qtail = NULL;
    if (!c->broken) {
        c->broken = code;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", msg);
        ccl__set_error(c, msg);
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
void ccl__conn_bye(ccl_comm *c, ccl__conn *k)
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


/* The code an op fails with when a peer aborts it: a lost peer or a
 * mismatch is the same fact here as there; anything else that failed the
 * op over there is an abort here. */
int ccl__abort_code(int theirs)
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
            ccl__op_fail(c, op, ccl__abort_code(a->code), 0, "aborted by a peer: %s",
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
                    ccl__deliver_early(c, op, e);
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
        ccl__unpark_all(c);
}
