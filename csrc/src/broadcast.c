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
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mod(int a, int n)
{
    a %= n;
    return a < 0 ? a + n : a;
}

static int use_chain(const ccl_comm *c, const ccl_op *op)
{
    return c->size > 2 && op->nbytes > c->cfg.star_max_bytes;
}

static int send_all(ccl_comm *c, ccl_op *op, int peer, uint16_t step)
{
    uint32_t unit = ccl__unit_bytes(c, op->esize);
    uint64_t off = 0;
    do {
        uint64_t left = op->nbytes - off;
        uint32_t l = left < unit ? (uint32_t)left : unit;
        if (ccl__enqueue_data(c, op, peer, step, off, op->buf ? op->buf + off : NULL, l))
            return -1;
        off += l;
    } while (off < op->nbytes);
    return 0;
}

static int bcast_start(ccl_comm *c, ccl_op *op)
{
    op->buf = op->out;
    if (c->size == 1)
        return 0;
    if (c->rank != op->root) {
        op->frames_left = 1;
        op->recv_left = op->nbytes;
        return 0;
    }
    if (use_chain(c, op))
        return send_all(c, op, mod(op->root + 1, c->size), 1);
    for (int p = 0; p < c->size; p++)
        if (p != op->root && send_all(c, op, p, 0))
            return -1;
    return 0;
}

static int bcast_on_header(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h,
                           int *mode, uint8_t **dst)
{
    int chain = use_chain(c, op);
    int from = chain ? mod(c->rank - 1, c->size) : op->root;
    if (c->rank == op->root || h->step != (chain ? 1 : 0) || peer != from ||
        h->length % op->esize || (h->length == 0 && op->nbytes != 0)) {
        snprintf(op->err, sizeof op->err, "broadcast frame (step %u, %u bytes) "
                 "from rank %d not valid at rank %d (root %d)", h->step,
                 h->length, peer, c->rank, op->root);
        return -1;
    }
    *mode = RXM_LAND;
    *dst = op->buf ? op->buf + h->offset : NULL;
    return 0;
}

static int bcast_on_data(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h)
{
    if (use_chain(c, op)) {
        int next = mod(c->rank + 1, c->size);
        if (next != op->root &&
            ccl__enqueue_data(c, op, next, 1, h->offset, op->buf + h->offset,
                              h->length))
            return -1;
    }
    if (op->recv_left == 0 && op->frames_left)
        op->frames_left = 0;
    return 0;
}

const ccl__algo ccl__broadcast_algo = {
    CCL_COLL_BROADCAST, bcast_start, bcast_on_header, bcast_on_data, 0};
