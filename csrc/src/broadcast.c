/*
 * broadcast.c - broadcast from a root.
 *
 * Small buffers (up to star_max_bytes) or two ranks: the root sends to
 * every rank directly (wire step 0): one hop.  Larger buffers: a pipelined
 * chain root -> root+1 -> ... -> root-1 (wire step 1), where each rank
 * forwards every unit as soon as it has landed, so the root's link is not
 * shared N-1 ways.  The root picks units; others forward them unchanged.
 * Ranks must agree on star_max_bytes; a rank that sees the other variant
 * reports a protocol error instead of hanging.
 */
#include "algos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int use_chain(const ccl_op *op)
{
    return op->size > 2 && op->nbytes > op->star_max_bytes;
}

/* Queues the whole buffer to peer: at least one frame. */
static int send_whole(ccl_op *op, int peer, uint16_t step)
{
    if (op->nbytes == 0)
        return ccl__op_send(op, peer, step, 0, NULL, 0) ? -1 : 0;
    return ccl__op_send_range(op, peer, step, op->buf, 0, op->nbytes);
}

static int bcast_start(ccl_op *op)
{
    op->buf = op->out;
    if (op->size == 1)
        return 0;
    if (op->rank != op->root) {
        op->frames_left = 1;
        op->recv_left = op->nbytes;
        return 0;
    }
    if (use_chain(op))
        return send_whole(op, ccl__mod(op->root + 1, op->size), 1);
    for (int p = 0; p < op->size; p++)
        if (p != op->root && send_whole(op, p, 0))
            return -1;
    return 0;
}

static int bcast_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int chain = use_chain(op);
    int from = chain ? ccl__mod(op->rank - 1, op->size) : op->root;
    if (op->rank == op->root || h->step != (chain ? 1 : 0) || peer != from ||
        h->length % op->esize || (h->length == 0 && op->nbytes != 0) ||
        h->offset + h->length > op->nbytes) {
        snprintf(op->err, sizeof op->err, "broadcast frame (step %u, %u bytes) "
                 "from rank %d not valid at rank %d (root %d)", h->step,
                 h->length, peer, op->rank, op->root);
        return -1;
    }
    ccl__sink_land(sink, op, op->buf ? op->buf + h->offset : NULL);
    return 0;
}

static int bcast_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    if (use_chain(op)) {
        int next = ccl__mod(op->rank + 1, op->size);
        if (next != op->root &&
            ccl__op_send(op, next, 1, h->offset, op->buf + h->offset, h->length))
            return -1;
    }
    if (op->recv_left == 0 && op->frames_left)
        op->frames_left = 0;
    return 0;
}

const ccl__algo ccl__broadcast_algo = {
    .coll = CCL_COLL_BROADCAST, .start = bcast_start,
    .on_header = bcast_on_header, .on_data = bcast_on_data};
