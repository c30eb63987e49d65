/*
 * op_confirm_rx.c - the confirmation stage's frames as they arrive (see
 * op_confirm.c for the stage), and what losing the link to a peer means
 * for the ops: a QUERY can make us take a peer for lost on another's word.
 */
#include "op_int.h"
#include "sock.h"

#include <stdio.h>
#include <string.h>

/* A connection failed: every pending op fails (a collective cannot finish
 * without the peer), and the other peers learn it from us at once rather
 * than at their own deadline, so every survivor fails the same ops.  The
 * epoch stays broken until the next safe point. */
void ccl__engine_link_lost(ccl__engine *e, int peer, int code, const char *why)
{
    if (!e->broken)
        ccl__engine_set_error(e, why);
    ccl__engine_mark_broken(e, code, why);
    ccl__engine_peer_lost(e, peer, code, why, 0, 1);
}

/* Takes a peer for lost on another's word: its links close, so nothing
 * it says counts here any more. */
static void cut_peer(ccl__engine *e, int peer, const char *why)
{
    if (ccl__xport_peer_open(e->xp, peer))
        ccl__xport_break(e->xp, peer, CCL_ERR_PEER_LOST, why);
    if (!e->lost[peer]) /* no connection was open to break */
        ccl__engine_link_lost(e, peer, CCL_ERR_PEER_LOST, why);
}

/* A QUERY (op_confirm.c): peer lost the ranks in map before their DONE
 * for op tag, and asks whether we can still fail it.  We cut those ranks
 * first, then answer: CONFIRM once the op is complete here (or ended
 * well), ABORT if it failed. */
void ccl__rx_query(ccl__engine *e, int peer, const ccl__hdr *h, const uint8_t *map)
{
    if (h->epoch != e->epoch)
        return;
    size_t n = ((size_t)e->size + 7) / 8;
    int bad = h->coll != 0 || h->length != n || h->offset == 0 ||
              h->offset >= (uint64_t)e->size;
    for (int r = 0; !bad && r < (int)(8 * n); r++)
        if ((map[r / 8] >> (r % 8)) & 1)
            bad = r >= e->size || r == e->rank || r == peer;
    if (bad) {
        ccl__xport_break(e->xp, peer, CCL_ERR_PROTOCOL, "malformed QUERY frame");
        return;
    }
    uint32_t round = (uint32_t)h->offset;
    for (int r = 0; r < e->size; r++)
        if (((map[r / 8] >> (r % 8)) & 1) && !e->lost[r]) {
            char why[120];
            snprintf(why, sizeof why, "peer %d lost it before its DONE for op %llu",
                     peer, (unsigned long long)h->tag);
            cut_peer(e, r, why);
        }
    if (e->lost[peer])
        return; /* cutting broke the link to the asker too */
    int rc = CCL_OK;
    ccl_op *op = ccl__engine_find(e, h->tag);
    if (op && op->committing) {
        rc = ccl__confirm_send(e, peer, h->tag, round);
    } else if (op) {
        rc = ccl__confirm_owe(op, peer, round);
    } else {
        switch (ccl__confirm_outcome(e, h->tag)) {
        case CCL__OUTCOME_SUCCEEDED:
            rc = ccl__confirm_send(e, peer, h->tag, round);
            break;
        case CCL__OUTCOME_FAILED: {
            uint8_t buf[6 + CCL_MAX_ERRMSG];
            size_t len = ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_PEER_LOST,
                                            "the op failed at a peer");
            ccl__hdr a;
            memset(&a, 0, sizeof a);
            a.type = CCL_FT_ABORT;
            a.tag = h->tag;
            rc = ccl__xport_send(e->xp, peer, &a, buf, (uint32_t)len, NULL);
            break;
        }
        case CCL__OUTCOME_NOT_POSTED:
            rc = ccl__confirm_keep_early(e, peer, h->tag, round);
            break;
        default:
            rc = CCL_ERR_NOMEM;
        }
    }
    /* An answer we cannot give would leave the asker waiting: it takes
     * us for lost instead, and asks the others again. */
    if (rc != CCL_OK)
        ccl__xport_break(e->xp, peer, CCL_ERR_NOMEM, "out of memory answering a QUERY");
}

/* A CONFIRM of the round an op of ours asked. */
void ccl__rx_confirm(ccl__engine *e, int peer, const ccl__hdr *h)
{
    if (h->epoch != e->epoch || h->coll != 0)
        return;
    ccl_op *op = ccl__engine_find(e, h->tag);
    if (!op || !op->committing || h->offset != op->confirm_round)
        return; /* a stale round's answer */
    op->done_seen[peer] |= CCL__SEEN_CONFIRM;
    op->last_progress_ms = ccl__now_ms();
    ccl__op_check_done(op);
}

