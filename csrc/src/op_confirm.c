/*
 * op_confirm.c - the third stage of agreement, run only when a peer was
 * lost before its DONE for an op arrived.
 *
 * Two-stage completion (op_state.c) lets an op that is complete here
 * succeed once every peer still in the group said DONE.  That is safe
 * when every DONE is in: a peer that fails an op never says DONE for it,
 * so none failed it.  It is not safe when a peer X was lost here before
 * its DONE: X may be alive for the others (a stopped process woken, a
 * link cut between two members only), may have failed the op, and its
 * ABORT may have reached third parties that fail it too.  Such an op is
 * *uncertain*, and before it succeeds here it asks every peer still in
 * the group (QUERY), naming the peers lost here.  A peer that gets a
 * QUERY first takes every named peer for lost too (it breaks its links
 * to them, so nothing they say counts any more), then answers for the op:
 * CONFIRM if the op is complete there (or succeeded), ABORT if it failed;
 * for an op not complete there yet, the answer waits until it is.  The
 * uncertain op succeeds once every peer still in the group confirmed the
 * latest set of lost peers (`round`, the number lost in this epoch: that
 * set only grows), and fails on an ABORT.
 *
 * Why this keeps survivors agreeing: a failure starts at a peer that
 * could not complete (it never said DONE) and spreads only by ABORT to
 * peers that still have the sender in their group.  When an uncertain op
 * succeeds here, every peer that never said DONE is among the lost peers
 * named (else its DONE would be missing), and every other peer had cut
 * all of them, without having failed the op, before it confirmed.  So no
 * ABORT can reach a peer still in the group any more: none of them fails
 * the op later.  The cost: nothing on the fault-free path; one round trip
 * for ops that were waiting on a lost peer's DONE.
 *
 * This file keeps what the stage needs besides the op: which ops of the
 * epoch failed here (to answer a QUERY about an op that ended), and the
 * QUERYs that arrived before their op was posted.
 */
#include "op_int.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* A QUERY that arrived before its op was posted here. */
struct ccl__early_query {
    struct ccl__early_query *next;
    uint64_t tag;
    int peer;
    uint32_t round;
};

uint32_t ccl__confirm_round_of(const ccl__engine *e)
{
    uint32_t n = 0;
    for (int p = 0; p < e->size; p++)
        n += e->lost[p] != 0;
    return n;
}

int ccl__confirm_note_failed(ccl__engine *e, uint64_t tag)
{
    if (tag >= e->refuse_from)
        return CCL_OK; /* covered by refuse_from */
    if (e->nfailed == e->capfailed) {
        size_t cap = e->capfailed ? 2 * e->capfailed : 16;
        uint64_t *t = realloc(e->failed_tags, cap * sizeof *t);
        if (!t) {
            /* Unknown outcomes are answered by breaking the link
             * (ccl__confirm_outcome): slow, never a wrong CONFIRM. */
            e->failed_unknown = 1;
            return CCL_ERR_NOMEM;
        }
        e->failed_tags = t;
        e->capfailed = cap;
    }
    e->failed_tags[e->nfailed++] = tag;
    return CCL_OK;
}

int ccl__confirm_outcome(const ccl__engine *e, uint64_t tag)
{
    if (tag >= e->activated_upto)
        return CCL__OUTCOME_NOT_POSTED;
    for (const ccl_op *op = e->active; op; op = op->next)
        if (!op->p2p && op->tag == tag)
            return CCL__OUTCOME_RUNNING;
    if (tag >= e->refuse_from)
        return CCL__OUTCOME_FAILED;
    /* Failures before the epoch broke are few (ops in flight when it
     * did), so a scan from the newest is short. */
    for (size_t i = e->nfailed; i-- > 0;)
        if (e->failed_tags[i] == tag)
            return CCL__OUTCOME_FAILED;
    return e->failed_unknown ? CCL__OUTCOME_UNKNOWN : CCL__OUTCOME_SUCCEEDED;
}

int ccl__confirm_send(ccl__engine *e, int peer, uint64_t tag, uint32_t round)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_CONFIRM;
    h.tag = tag;
    h.offset = round;
    return ccl__xport_send(e->xp, peer, &h, NULL, 0, NULL);
}

int ccl__confirm_query(ccl_op *op, uint32_t round)
{
    ccl__engine *e = op->eng;
    size_t n = ((size_t)op->size + 7) / 8;
    uint8_t map[CCL_MAX_WORLD / 8];
    memset(map, 0, n);
    for (int p = 0; p < op->size; p++)
        if (e->lost[p])
            map[p / 8] |= (uint8_t)(1u << (p % 8));
    op->confirm_round = round;
    for (int p = 0; p < op->size; p++)
        op->done_seen[p] &= (uint8_t)~CCL__SEEN_CONFIRM;
    ccl__log(CCL_LOG_DEBUG, "rank %d, epoch %u: op %llu waits for confirmation "
             "(%u peers lost before their DONE)", op->rank, op->epoch,
             (unsigned long long)op->tag, round);
    for (int p = 0; p < op->size && op->active; p++) {
        if (p == op->rank || e->lost[p])
            continue;
        ccl__hdr h;
        memset(&h, 0, sizeof h);
        h.type = CCL_FT_QUERY;
        h.tag = op->tag;
        h.offset = round;
        /* Without memory the peer never answers and the op fails at its
         * deadline: slow, and still agreed (nobody succeeds without us). */
        if (ccl__xport_send(e->xp, p, &h, map, (uint32_t)n, NULL) != CCL_OK)
            return CCL_ERR_NOMEM;
    }
    return CCL_OK;
}

int ccl__confirm_keep_early(ccl__engine *e, int peer, uint64_t tag, uint32_t round)
{
    for (ccl__early_query *q = e->early_query; q; q = q->next)
        if (q->peer == peer && q->tag == tag) {
            if (round > q->round)
                q->round = round;
            return CCL_OK;
        }
    ccl__early_query *q = malloc(sizeof *q);
    if (!q)
        return CCL_ERR_NOMEM;
    q->tag = tag;
    q->peer = peer;
    q->round = round;
    q->next = e->early_query;
    e->early_query = q;
    return CCL_OK;
}

int ccl__confirm_owe(ccl_op *op, int peer, uint32_t round)
{
    if (!op->qowed) {
        op->qowed = calloc((size_t)op->size, sizeof *op->qowed);
        if (!op->qowed)
            return CCL_ERR_NOMEM;
    }
    if (round > op->qowed[peer])
        op->qowed[peer] = round;
    return CCL_OK;
}

int ccl__confirm_take_early(ccl__engine *e, ccl_op *op)
{
    int rc = CCL_OK;
    for (ccl__early_query **qp = &e->early_query; *qp;) {
        ccl__early_query *q = *qp;
        if (q->tag == op->tag && q->peer < op->size) {
            if (ccl__confirm_owe(op, q->peer, q->round) != CCL_OK)
                rc = CCL_ERR_NOMEM;
            *qp = q->next;
            free(q);
        } else {
            qp = &q->next;
        }
    }
    return rc;
}

void ccl__confirm_forget(ccl__engine *e)
{
    while (e->early_query) {
        ccl__early_query *q = e->early_query;
        e->early_query = q->next;
        free(q);
    }
    free(e->failed_tags);
    e->failed_tags = NULL;
    e->nfailed = e->capfailed = 0;
    e->failed_unknown = 0;
    e->refuse_from = UINT64_MAX;
}
