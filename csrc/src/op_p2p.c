/*
 * op_p2p.c - matching point-to-point messages to recvs.
 *
 * The k-th send from rank a to rank b with user tag t meets the k-th recv
 * at b from a with tag t: each side counts messages per (peer, tag), and
 * a message's wire tag is t << 32 | its number, so frames name the exact
 * message they belong to whatever connection carries them.  A recv from
 * any source takes its number when it is matched: with the oldest kept
 * message of its tag that is next in line from some peer, or with the
 * next such message to arrive.  Frames of messages no recv has taken yet
 * are kept like early collective frames (op_rx.c); frames of messages
 * already taken by a recv that ended are stale and dropped.
 */
#include "op_int.h"

#include <stdlib.h>

static uint32_t utag_of(uint64_t tag)
{
    return (uint32_t)(tag >> 32);
}

/* The oldest recv from any source still unmatched with this tag (the
 * active list holds the newest first). */
static ccl_op *unmatched_any(ccl__engine *e, uint32_t utag)
{
    ccl_op *found = NULL;
    for (ccl_op *op = e->active; op; op = op->next)
        if (op->p2p == CCL__P2P_RECV && op->peer < 0 && op->utag == utag)
            found = op;
    return found;
}

static void match(ccl_op *op, int peer, ccl__p2p_seq *q)
{
    op->peer = peer;
    op->tag = (uint64_t)op->utag << 32 | q->rx++;
}

int ccl__p2p_number(ccl__engine *e, ccl_op *op)
{
    if (op->p2p == CCL__P2P_RECV && op->peer < 0) {
        /* From any source: the oldest kept message that is next in line. */
        for (ccl__early *x = e->early_head; x; x = x->next) {
            if (x->h.coll != CCL_COLL_P2P || utag_of(x->h.tag) != op->utag)
                continue;
            ccl__p2p_seq *q = ccl__p2p_seq_of(e, x->peer, op->utag);
            if (!q)
                return CCL_ERR_NOMEM;
            if ((uint32_t)x->h.tag == q->rx) {
                match(op, x->peer, q);
                return CCL_OK;
            }
        }
        return CCL_OK; /* matched when a message comes */
    }
    ccl__p2p_seq *q = ccl__p2p_seq_of(e, op->peer, op->utag);
    if (!q)
        return CCL_ERR_NOMEM;
    if (op->p2p == CCL__P2P_SEND)
        op->tag = (uint64_t)op->utag << 32 | q->tx++;
    else
        match(op, op->peer, q);
    return CCL_OK;
}

int ccl__p2p_route(ccl__engine *e, int peer, const ccl__hdr *h, ccl_op **out)
{
    *out = ccl__engine_find_p2p(e, CCL__P2P_RECV, peer, h->tag);
    if (*out)
        return CCL__P2P_FOR_OP;
    ccl__p2p_seq *q = ccl__p2p_seq_of(e, peer, utag_of(h->tag));
    if (!q)
        return -CCL_ERR_NOMEM;
    uint32_t seq = (uint32_t)h->tag;
    if (seq < q->rx)
        return CCL__P2P_STALE; /* its recv ended (failed) already */
    if (seq == q->rx && (*out = unmatched_any(e, utag_of(h->tag))) != NULL) {
        match(*out, peer, q);
        return CCL__P2P_MATCHED;
    }
    return CCL__P2P_EARLY;
}
