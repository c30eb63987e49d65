/*
 * direct.c - collectives where every rank exchanges one block directly
 * with some of the others: gather and scatter (with a root), all-to-all
 * with a size per pair, all-gather and reduce-scatter with a size per
 * rank, and reduce (to a root).  One hop, no forwarding: the right shape
 * for these, whose data has one source and one destination.
 *
 * The API fills op->blocks: for each rank p, the offset and size of the
 * block this rank sends to p and of the block it receives from p (bytes;
 * CCL__NO_BLOCK where no message goes that way).  Every message is sent
 * as units of at most one chunk, and at least one frame (an empty one for
 * an empty block), so the receiver knows each sender arrived.  A frame's
 * `total` is its block's size: the sender's and the receiver's idea of
 * it must agree, else the op fails with MISMATCH.  The block a rank
 * "sends" to itself is copied at start.
 *
 * Reduce and reduce-scatter land every contribution in its own slot of
 * scratch and reduce the slots in rank order once all are in, so the
 * result does not depend on arrival order (a retry gives the same bits).
 */
#include "algos.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEND_OFF(op, p) ((op)->blocks[(p)])
#define SEND_LEN(op, p) ((op)->blocks[(op)->size + (p)])
#define RECV_OFF(op, p) ((op)->blocks[2 * (op)->size + (p)])
#define RECV_LEN(op, p) ((op)->blocks[3 * (op)->size + (p)])

static int reducing(const ccl_op *op)
{
    return op->algo == &ccl__reduce_algo || op->algo == &ccl__reduce_scatterv_algo;
}

/* Where the block from peer lands: the output, or its slot of scratch
 * (reducing ops: RECV_OFF is then the slot's offset in scratch). */
static uint8_t *landing(const ccl_op *op, int peer)
{
    return (reducing(op) ? op->scratch : op->out) + RECV_OFF(op, peer);
}

static uint64_t direct_total(const ccl_op *op, int peer, int sending)
{
    return sending ? SEND_LEN(op, peer) : RECV_LEN(op, peer);
}

/* Reduces every slot into the output in rank order (reducing ops). */
static void reduce_slots(ccl_op *op)
{
    uint64_t len = RECV_LEN(op, op->rank);
    if (len == CCL__NO_BLOCK || len == 0 || !op->out)
        return; /* a rank that only contributes (reduce: not the root) */
    uint64_t n = len / op->esize;
    memcpy(op->out, op->scratch + RECV_OFF(op, 0), len);
    for (int p = 1; p < op->size; p++)
        ccl__reduce(op->out, op->scratch + RECV_OFF(op, p), n, op->dtype, op->redop);
    ccl__reduce_finish(op->out, n, op->dtype, op->redop, op->size);
}

static int direct_start(ccl_op *op)
{
    int n = op->size, me = op->rank;
    if (reducing(op) && RECV_LEN(op, me) != CCL__NO_BLOCK) {
        uint64_t all = RECV_LEN(op, me) * (uint64_t)n;
        if (!ccl__op_scratch(op, all ? all : 1))
            return -1;
    }
    /* peer_rx[p]: bytes received from p; peer_rx[n + p]: frames from p. */
    op->peer_rx = calloc(2 * (size_t)n, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return -1;
    }
    if (SEND_LEN(op, me) != CCL__NO_BLOCK && SEND_LEN(op, me))
        memmove(landing(op, me), op->send + SEND_OFF(op, me), SEND_LEN(op, me));
    for (int p = 0; p < n; p++) {
        if (p == me || RECV_LEN(op, p) == CCL__NO_BLOCK)
            continue;
        op->frames_left++;
        op->recv_left += RECV_LEN(op, p);
    }
    for (int p = 0; p < n; p++) {
        if (p == me || SEND_LEN(op, p) == CCL__NO_BLOCK)
            continue;
        int rc = SEND_LEN(op, p)
                     ? ccl__op_send_range(op, p, 0, op->send + SEND_OFF(op, p), 0,
                                          SEND_LEN(op, p))
                     : ccl__op_send(op, p, 0, 0, NULL, 0);
        if (rc)
            return -1;
    }
    if (op->frames_left == 0 && reducing(op))
        reduce_slots(op);
    return 0;
}

static int direct_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    uint64_t len = RECV_LEN(op, peer);
    int extra = op->peer_rx[op->size + peer] > 0 && op->peer_rx[peer] >= len;
    if (len == CCL__NO_BLOCK || h->step != 0 || h->length % op->esize || extra ||
        (h->length == 0 && len != 0)) {
        snprintf(op->err, sizeof op->err, "%s frame (step %u, %u bytes) from rank %d "
                 "not valid at rank %d", ccl__coll_name(op->algo->coll), h->step,
                 h->length, peer, op->rank);
        return -1;
    }
    ccl__sink_land(sink, op, len ? landing(op, peer) + h->offset : NULL);
    return 0;
}

static int direct_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    op->peer_rx[peer] += h->length;
    op->peer_rx[op->size + peer]++;
    if (op->peer_rx[peer] < RECV_LEN(op, peer))
        return 0;
    if (--op->frames_left == 0 && reducing(op))
        reduce_slots(op);
    return 0;
}

#define DIRECT(name, kind)                                                 \
    const ccl__algo name = {.coll = kind, .start = direct_start,           \
                            .on_header = direct_on_header,                  \
                            .on_data = direct_on_data,                      \
                            .block_total = direct_total}
DIRECT(ccl__gather_algo, CCL_COLL_GATHER);
DIRECT(ccl__scatter_algo, CCL_COLL_SCATTER);
DIRECT(ccl__alltoallv_algo, CCL_COLL_ALLTOALLV);
DIRECT(ccl__allgatherv_algo, CCL_COLL_ALLGATHERV);
DIRECT(ccl__reduce_scatterv_algo, CCL_COLL_REDUCE_SCATTERV);
DIRECT(ccl__reduce_algo, CCL_COLL_REDUCE);
