/*
 * op_state.c - the life of an op: posting, two-stage completion (complete
 * here, then DONE from every peer), failure (purge its frames, give the
 * input back, tell the peers), and what a lost peer means for the ops in
 * flight.  Frames go out through the transport; nothing here reads one.
 */
#include "op_int.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ccl__engine_init(ccl__engine *e, int op_timeout_ms, int restore_input)
{
    memset(e, 0, sizeof *e);
    e->op_timeout_ms = op_timeout_ms;
    e->restore_input = restore_input;
    e->rank = -1;
    e->bye_from = UINT64_MAX;
    e->refuse_from = UINT64_MAX;
    ccl__tune_default(&e->tune);
    pthread_mutex_init(&e->group_mu, NULL);
    pthread_mutex_init(&e->post_mu, NULL);
    pthread_mutex_init(&e->done_mu, NULL);
    pthread_cond_init(&e->done_cv, NULL);
    return CCL_OK;
}

void ccl__engine_fini(ccl__engine *e)
{
    ccl__engine_forget_epoch(e);
    ccl__engine_buffers_free(e);
    free(e->lost);
    e->lost = NULL;
    free(e->ring);
    e->ring = NULL;
    pthread_mutex_destroy(&e->group_mu);
    pthread_mutex_destroy(&e->post_mu);
    pthread_mutex_destroy(&e->done_mu);
    pthread_cond_destroy(&e->done_cv);
}

/* Frees what arrived for ops of this epoch that never ran here: early
 * frames, aborts and DONEs. */
void ccl__engine_forget_epoch(ccl__engine *e)
{
    while (e->early_head) {
        ccl__early *x = e->early_head;
        e->early_head = x->next;
        free(x->data);
        free(x);
    }
    e->early_tail = NULL;
    e->early_bytes = 0;
    while (e->aborted) {
        ccl__aborted *a = e->aborted;
        e->aborted = a->next;
        free(a);
    }
    while (e->early_done) {
        ccl__early_done *d = e->early_done;
        e->early_done = d->next;
        free(d);
    }
    while (e->p2p_seqs) {
        ccl__p2p_seq *q = e->p2p_seqs;
        e->p2p_seqs = q->next;
        free(q);
    }
    ccl__confirm_forget(e);
}

ccl__p2p_seq *ccl__p2p_seq_of(ccl__engine *e, int peer, uint32_t utag)
{
    for (ccl__p2p_seq *q = e->p2p_seqs; q; q = q->next)
        if (q->peer == peer && q->utag == utag)
            return q;
    ccl__p2p_seq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->peer = peer;
    q->utag = utag;
    q->next = e->p2p_seqs;
    e->p2p_seqs = q;
    return q;
}

int ccl__engine_new_epoch(ccl__engine *e, int rank, int size, uint32_t epoch,
                          const uint32_t *ring, const ccl__tuning *tune)
{
    ccl__engine_forget_epoch(e);
    uint8_t *lost = calloc((size_t)size, 1);
    uint32_t *order = NULL;
    int pos = rank;
    for (int p = 0; ring && p < size && !order; p++)
        if (ring[p] != (uint32_t)p) {
            /* Not the rank order: keep a copy for the ring algorithms. */
            order = malloc((size_t)size * sizeof *order);
            if (!order) {
                free(lost);
                return CCL_ERR_NOMEM;
            }
            memcpy(order, ring, (size_t)size * sizeof *order);
        }
    for (int p = 0; order && p < size; p++)
        if (order[p] == (uint32_t)rank)
            pos = p;
    if (!lost) {
        free(order);
        return CCL_ERR_NOMEM;
    }
    free(e->lost);
    e->lost = lost;
    free(e->ring);
    e->ring = order;
    e->ring_pos = pos;
    e->has_tune = tune != NULL;
    if (tune)
        e->tune = *tune;
    else
        ccl__tune_default(&e->tune);
    e->agree_coord = ccl__gather_coordinator(size, tune);
    pthread_mutex_lock(&e->post_mu);
    e->next_tag = 0; /* tags count from zero in every epoch */
    pthread_mutex_unlock(&e->post_mu);
    pthread_mutex_lock(&e->group_mu);
    e->rank = rank;
    e->size = size;
    e->epoch = epoch;
    pthread_mutex_unlock(&e->group_mu);
    e->activated_upto = 0;
    e->succeeded = 0;
    e->broken = 0;
    e->broken_hard = 0;
    e->bye_from = UINT64_MAX;
    e->broken_msg[0] = 0;
    return CCL_OK;
}

void ccl__engine_group(ccl__engine *e, int *rank, int *size, uint32_t *epoch)
{
    pthread_mutex_lock(&e->group_mu);
    if (rank)
        *rank = e->rank;
    if (size)
        *size = e->size;
    if (epoch)
        *epoch = e->epoch;
    pthread_mutex_unlock(&e->group_mu);
}

void ccl__engine_set_error(ccl__engine *e, const char *msg)
{
    pthread_mutex_lock(&e->post_mu);
    if (!e->error_final)
        snprintf(e->errbuf, sizeof e->errbuf, "%s", msg);
    pthread_mutex_unlock(&e->post_mu);
}

void ccl__engine_set_final_error(ccl__engine *e, const char *msg)
{
    pthread_mutex_lock(&e->post_mu);
    snprintf(e->errbuf, sizeof e->errbuf, "%s", msg);
    e->error_final = 1;
    pthread_mutex_unlock(&e->post_mu);
}

void ccl__engine_error(ccl__engine *e, char *buf, size_t cap)
{
    pthread_mutex_lock(&e->post_mu);
    snprintf(buf, cap, "%s", e->errbuf);
    pthread_mutex_unlock(&e->post_mu);
}

int ccl__engine_post(ccl__engine *e, ccl_op *op)
{
    pthread_mutex_lock(&e->post_mu);
    if (e->closed) {
        pthread_mutex_unlock(&e->post_mu);
        return CCL_ERR_CLOSED;
    }
    /* Collectives are matched by their sequence number in the epoch;
     * point-to-point ops get theirs per (peer, tag) at activation. */
    if (!op->p2p)
        op->tag = e->next_tag++;
    op->t_post_ns = ccl__stats_now_ns();
    op->next = NULL;
    if (e->post_tail)
        e->post_tail->next = op;
    else
        e->post_head = op;
    e->post_tail = op;
    pthread_mutex_unlock(&e->post_mu);
    return CCL_OK;
}

int ccl__engine_pending(ccl__engine *e)
{
    pthread_mutex_lock(&e->post_mu);
    int posted = e->post_head != NULL;
    pthread_mutex_unlock(&e->post_mu);
    return posted || e->active != NULL;
}

void ccl__engine_mark_broken(ccl__engine *e, int code, const char *msg)
{
    e->broken_hard = 1;
    if (e->broken)
        return;
    e->broken = code;
    snprintf(e->broken_msg, sizeof e->broken_msg, "%s", msg);
}

void ccl__engine_mark_left(ccl__engine *e, uint64_t bye_tag, const char *msg)
{
    if (bye_tag < e->bye_from)
        e->bye_from = bye_tag;
    if (e->broken)
        return;
    e->broken = CCL_ERR_PEER_LOST;
    snprintf(e->broken_msg, sizeof e->broken_msg, "%s", msg);
}

ccl_op *ccl__engine_find(ccl__engine *e, uint64_t tag)
{
    for (ccl_op *op = e->active; op; op = op->next)
        if (op->tag == tag && !op->p2p)
            return op;
    return NULL;
}

ccl_op *ccl__engine_find_p2p(ccl__engine *e, int kind, int peer, uint64_t tag)
{
    for (ccl_op *op = e->active; op; op = op->next)
        if (op->p2p == kind && op->peer == peer && op->tag == tag)
            return op;
    return NULL;
}

static void active_remove(ccl__engine *e, ccl_op *op)
{
    ccl_op **pp = &e->active;
    while (*pp && *pp != op)
        pp = &(*pp)->next;
    if (*pp)
        *pp = op->next;
    op->next = NULL;
    op->active = 0;
}

/* One line in the communicator's op records (stats.h). */
static void record(const ccl_op *op, int rc)
{
    ccl_op_record r;
    memset(&r, 0, sizeof r);
    r.epoch = op->epoch;
    r.tag = op->tag;
    r.coll = op->algo ? op->algo->coll : 0;
    r.dtype = op->dtype;
    r.redop = op->redop;
    r.size = op->size;
    r.result = rc;
    r.bytes = op->nbytes;
    r.tx_bytes = op->st_tx;
    r.rx_bytes = op->st_rx;
    r.wall_ns = ccl__stats_now_ns() - op->t_post_ns;
    ccl__stats_op_end(ccl__xport_stats_of(op->eng->xp), &r);
    /* A line per failed op: the first of an epoch at INFO, the rest (often
     * the same cause again) and CLOSED (the caller's own doing) at DEBUG. */
    if (rc != CCL_OK)
        ccl__log(rc != CCL_ERR_CLOSED &&
                         ccl__stats_first_failure(ccl__xport_stats_of(op->eng->xp),
                                                  op->epoch)
                     ? CCL_LOG_INFO : CCL_LOG_DEBUG,
                 "rank %d, epoch %u: op %llu (%s, %llu bytes) failed: %s: %s",
                 op->rank, op->epoch, (unsigned long long)op->tag,
                 r.coll ? ccl__coll_name(r.coll) : "?",
                 (unsigned long long)op->nbytes, ccl_strerror(rc), op->err);
}

static void op_finish(ccl_op *op, int rc)
{
    ccl__engine *e = op->eng;
    active_remove(e, op);
    /* Nothing reads the working buffers any more (a failure restored the
     * input already): hand them to the next op. */
    ccl__op_buffers_put(op);
    op->result = rc;
    record(op, rc);
    if (rc != CCL_OK && !op->p2p)
        ccl__confirm_note_failed(e, op->tag);
    __atomic_store_n(&op->done, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&e->done_mu);
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->done_mu);
    /* The engine's reference is dropped later, in ccl__engine_reap,
     * because the handler that finished the op may still be on the
     * stack. */
    op->next = e->reap;
    e->reap = op;
}

void ccl__engine_reap(ccl__engine *e)
{
    while (e->reap) {
        ccl_op *op = e->reap;
        e->reap = op->next;
        op->next = NULL;
        ccl__op_release(op);
    }
}

enum { COMMIT_WAIT, COMMIT_READY, COMMIT_NEW_ROUND };

/* The rank whose word this op waits for when the epoch gathers its
 * agreement and this rank is not the coordinator (the coordinator's DONE
 * is the group's COMMIT); -1 when it waits for every peer's DONE. */
static int commit_from(const ccl_op *op)
{
    int c = op->eng->agree_coord;
    return !op->p2p && c >= 0 && c != op->rank ? c : -1;
}

/* Whether this rank is the coordinator of a gathered agreement for op. */
static int coordinates(const ccl_op *op)
{
    return !op->p2p && op->eng->agree_coord == op->rank;
}

/* Whether an op complete here may succeed: every peer still in the group
 * said DONE (or, gathered, the coordinator said COMMIT), and when a peer
 * whose word it waited for was lost first, every peer still in confirmed
 * the latest round (op_confirm.c); COMMIT_NEW_ROUND (and *round) when
 * that round must be asked first. */
static int commit_state(const ccl_op *op, uint32_t *round)
{
    ccl__engine *e = op->eng;
    if (op->p2p) /* only the other side takes part */
        return (op->done_seen[op->peer] & CCL__SEEN_DONE) || e->lost[op->peer]
                   ? COMMIT_READY : COMMIT_WAIT;
    int uncertain = 0;
    int c = commit_from(op);
    if (c >= 0) {
        /* The coordinator's COMMIT says every member was complete.  Peers
         * lost here meanwhile change nothing: the coordinator either has
         * their DONE or finds them lost and confirms without them. */
        if (op->done_seen[c] & CCL__SEEN_DONE)
            return COMMIT_READY;
        if (!e->lost[c])
            return COMMIT_WAIT;
        uncertain = 1; /* who said DONE is unknown here: ask everyone */
    } else {
        for (int p = 0; p < op->size; p++) {
            if (p == op->rank || (op->done_seen[p] & CCL__SEEN_DONE))
                continue;
            if (!e->lost[p])
                return COMMIT_WAIT;
            uncertain = 1;
        }
    }
    if (!uncertain)
        return COMMIT_READY;
    *round = ccl__confirm_round_of(e);
    if (op->confirm_round != *round)
        return COMMIT_NEW_ROUND;
    for (int p = 0; p < op->size; p++)
        if (p != op->rank && !e->lost[p] && !(op->done_seen[p] & CCL__SEEN_CONFIRM))
            return COMMIT_WAIT;
    return COMMIT_READY;
}

static int commit_ready(const ccl_op *op)
{
    uint32_t round;
    return commit_state(op, &round) != COMMIT_WAIT;
}

static int send_done(ccl_op *op, int peer)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_DONE;
    h.tag = op->tag;
    h.coll = op->p2p ? CCL_COLL_P2P : 0; /* p2p tags are a space of their own */
    h.step = (uint16_t)op->p2p; /* ... where a send and a recv may share one */
    return ccl__xport_send(op->eng->xp, peer, &h, NULL, 0, NULL);
}

/* Whether this rank tells peer DONE when the op is complete here: every
 * peer, or in a gathered agreement the coordinator only (which says
 * nothing until it can COMMIT). */
static int says_done_to(const ccl_op *op, int peer)
{
    if (peer == op->rank || op->eng->lost[peer])
        return 0;
    if (op->p2p)
        return peer == op->peer;
    int c = op->eng->agree_coord;
    return c < 0 || (c != op->rank && peer == c);
}

/* The coordinator's COMMIT (a DONE frame) to every peer still in the
 * group.  The op succeeds here whatever happens to these sends, so a
 * COMMIT that cannot be queued ends the link instead: that peer finds us
 * lost and asks the others to confirm (op_confirm.c), which they do.  A
 * lost link never fails an op that is complete here, so op stays active. */
static void send_commit(ccl_op *op)
{
    op->hold++;
    for (int p = 0; p < op->size; p++)
        if (p != op->rank && !op->eng->lost[p] && send_done(op, p) != CCL_OK)
            ccl__xport_break(op->eng->xp, p, CCL_ERR_NOMEM, "out of memory queueing COMMIT");
    op->hold--;
}

void ccl__op_check_done(ccl_op *op)
{
    if (!op->active || op->hold)
        return;
    if (!op->committing) {
        if (op->recv_left || op->send_left || op->frames_left)
            return;
        op->committing = 1;
        op->hold++;
        for (int p = 0; p < op->size && op->active; p++)
            if (says_done_to(op, p) && send_done(op, p) != CCL_OK)
                /* A peer that never hears our DONE cannot succeed, and
                 * fails the op at its deadline: not wrong, only slow. */
                ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory queueing DONE");
        /* Peers that asked us to confirm while we were not complete get
         * their answer now. */
        for (int p = 0; op->qowed && p < op->size && op->active; p++)
            if (op->qowed[p] && !op->eng->lost[p]) {
                ccl__confirm_send(op->eng, p, op->tag, op->qowed[p]);
                op->qowed[p] = 0;
            }
        op->hold--;
    }
    while (op->active) {
        uint32_t round = 0;
        int st = commit_state(op, &round);
        if (st == COMMIT_WAIT)
            return;
        if (st == COMMIT_READY) {
            if (coordinates(op))
                send_commit(op);
            op->eng->succeeded++;
            op_finish(op, CCL_OK);
            return;
        }
        /* Sending may break a link (another peer lost: a newer round),
         * so the state is looked at again afterwards. */
        op->hold++;
        int rc = ccl__confirm_query(op, round);
        op->hold--;
        if (rc != CCL_OK) {
            ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory asking peers to confirm");
            return;
        }
    }
}

/* ABORT to every peer, or (owed_only) to those whose QUERY we owe an
 * answer. */
static void tell_abort(ccl_op *op, int code, int owed_only)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG];
    size_t n = ccl__errmsg_encode(buf, sizeof buf, code, op->err);
    for (int p = 0; p < op->size; p++) {
        if (p == op->rank || (op->p2p && p != op->peer))
            continue;
        if (owed_only && !(op->qowed && op->qowed[p]))
            continue;
        ccl__hdr h;
        memset(&h, 0, sizeof h);
        h.type = CCL_FT_ABORT;
        h.tag = op->tag;
        h.coll = op->p2p ? CCL_COLL_P2P : 0;
        h.step = (uint16_t)op->p2p;
        /* Without memory the peer fails the op at its deadline instead. */
        ccl__xport_send(op->eng->xp, p, &h, buf, (uint32_t)n, NULL);
    }
}

static void op_vfail(ccl_op *op, int code, int notify, const char *fmt, va_list ap)
{
    ccl__engine *e = op->eng;
    if (!op->active || __atomic_load_n(&op->done, __ATOMIC_ACQUIRE))
        return;
    vsnprintf(op->err, sizeof op->err, fmt, ap);
    ccl__xport_purge(e->xp, op);
    ccl__xport_detach(e->xp, op);
    op->send_left = 0;
    /* Nothing writes into the buffers any more: give the input back. */
    ccl__op_restore_input(op);
    /* Finish first: telling the peers may break a connection, which fails
     * every active op again, and this one must not be among them. */
    op_finish(op, code);
    /* Tell every peer so that all of them fail this op too instead of
     * waiting for their deadline (op stays allocated until the reap). */
    if (notify || op->qowed)
        tell_abort(op, code, !notify);
}

void ccl__op_fail(ccl_op *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    op_vfail(op, code, 1, fmt, ap);
    va_end(ap);
}

void ccl__op_fail_quiet(ccl_op *op, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    op_vfail(op, code, 0, fmt, ap);
    va_end(ap);
}

void ccl__engine_fail_all(ccl__engine *e, int code, const char *why)
{
    while (e->active)
        ccl__op_fail_quiet(e->active, code, "%s", why);
}

/* A peer is out of the epoch: running ops from from_tag on fail (and tell
 * the others when notify), ops complete here stop waiting for its DONE. */
void ccl__engine_peer_lost(ccl__engine *e, int peer, int code, const char *msg,
                           uint64_t from_tag, int notify)
{
    e->lost[peer] = 1;
    for (int again = 1; again;) {
        again = 0;
        for (ccl_op *op = e->active; op; op = op->next)
            if ((op->p2p || op->tag >= from_tag) && !op->committing) {
                if (notify)
                    ccl__op_fail(op, code, "%s", msg);
                else
                    ccl__op_fail_quiet(op, code, "%s", msg);
                again = 1; /* the list changed under us */
                break;
            }
    }
    for (int again = 1; again;) {
        again = 0;
        for (ccl_op *op = e->active; op; op = op->next)
            /* An op on hold is in the middle of its own check (sending
             * DONE broke the connection that brought us here): that check
             * finishes it when it resumes.  Calling it now would return at
             * once and this loop would never end. */
            if (op->committing && !op->hold && commit_ready(op)) {
                ccl__op_check_done(op);
                again = 1;
                break;
            }
    }
}

/* The code an op fails with when a peer aborts it: a lost peer or a
 * mismatch is the same fact here as there; anything else that failed the
 * op over there is an abort here. */
int ccl__abort_code(int theirs)
{
    return theirs == CCL_ERR_MISMATCH || theirs == CCL_ERR_PEER_LOST
               ? theirs : CCL_ERR_ABORTED;
}

uint64_t ccl__engine_close(ccl__engine *e)
{
    pthread_mutex_lock(&e->post_mu);
    e->closed = 1;
    ccl_op *posted = e->post_head;
    e->post_head = e->post_tail = NULL;
    pthread_mutex_unlock(&e->post_mu);
    /* BYE tells the peers the first op we did not finish: they fail that
     * one and every later one, and keep the ones we completed. */
    uint64_t bye = e->activated_upto;
    for (ccl_op *op = e->active; op; op = op->next)
        if (!op->p2p && !op->committing && op->tag < bye)
            bye = op->tag; /* ops complete here may succeed elsewhere */
    for (ccl_op *op = posted; op; op = op->next)
        if (!op->p2p && op->tag < bye) {
            bye = op->tag;
            break;
        }
    /* Ops posted but never started end as closed too. */
    while (posted) {
        ccl_op *op = posted;
        posted = op->next;
        op->next = e->active;
        e->active = op;
        op->active = 1;
    }
    ccl__engine_fail_all(e, CCL_ERR_CLOSED, "communicator closed");
    ccl__engine_reap(e);
    return bye;
}
