/*
 * star.c - star all-reduce and barrier: everyone sends its whole buffer to
 * a hub (rank 0), the hub reduces and sends the result back.  Two hops
 * instead of 2(N-1): the right choice for small ops and long round trips.
 *
 * Wire steps: 0 = contribution to the hub, 1 = result from the hub.  Every
 * sender sends at least one frame, an empty one for a zero-byte op, so the
 * hub knows each peer has arrived (that makes the barrier) and a peer
 * whose op differs is caught even at size zero.
 *
 * The hub lands each contribution in its own staging slot and reduces
 * them in rank order once all have arrived, so the result does not depend
 * on arrival order: a retry of the same op gives the same bits.
 */
#include "algos.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HUB 0

/* Queues the whole buffer src to peer: at least one frame. */
static int send_whole(ccl_op *op, int peer, uint16_t step, const uint8_t *src)
{
    if (op->nbytes == 0)
        return ccl__op_send(op, peer, step, 0, NULL, 0) ? -1 : 0;
    return ccl__op_send_range(op, peer, step, src, 0, op->nbytes);
}

static int star_start(ccl_op *op)
{
    int n = op->size;
    op->buf = op->out;
    if (op->rank == HUB && op->nbytes && op->send != op->out)
        memcpy(op->buf, op->send, op->nbytes);
    if (n > 1 && op->algo == &ccl__star_allreduce_algo && ccl__op_keep_input(op))
        return -1;
    if (n == 1) {
        if (op->nbytes)
            ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, 1);
        return 0;
    }
    /* peer_rx[p]: bytes received from p; peer_rx[n + p]: frames from p. */
    op->peer_rx = calloc(2 * (size_t)n, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return -1;
    }
    if (op->rank == HUB) {
        if (op->nbytes && !ccl__op_scratch(op, (size_t)op->nbytes * (size_t)(n - 1)))
            return -1;
        op->frames_left = (uint32_t)(n - 1);
        op->recv_left = op->nbytes * (uint64_t)(n - 1);
        return 0;
    }
    op->frames_left = 1;
    op->recv_left = op->nbytes;
    return send_whole(op, HUB, 0, op->send);
}

static int star_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int want_step = op->rank == HUB ? 0 : 1;
    if (h->step != want_step || (op->rank != HUB && peer != HUB)) {
        snprintf(op->err, sizeof op->err, "star frame (step %u) from rank %d "
                 "not valid at rank %d", h->step, peer, op->rank);
        return -1;
    }
    int extra = op->peer_rx[op->size + peer] > 0 && op->peer_rx[peer] >= op->nbytes;
    if (h->length % op->esize || extra || (h->length == 0 && op->nbytes != 0) ||
        h->offset + h->length > op->nbytes) {
        snprintf(op->err, sizeof op->err, "star frame of %u bytes from rank %d "
                 "is malformed", h->length, peer);
        return -1;
    }
    uint8_t *dst;
    if (op->rank == HUB)
        dst = op->scratch ? op->scratch + (size_t)(peer - 1) * op->nbytes + h->offset
                          : NULL;
    else
        dst = op->buf ? op->buf + h->offset : NULL;
    ccl__sink_land(sink, op, dst);
    return 0;
}

static int star_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    int n = op->size;
    op->peer_rx[peer] += h->length;
    op->peer_rx[n + peer]++;
    if (op->peer_rx[peer] < op->nbytes)
        return 0;
    op->frames_left--;
    if (op->rank != HUB || op->frames_left > 0)
        return 0;
    /* Every contribution is here: reduce in rank order, then answer. */
    if (ccl__op_save(op, 0, op->nbytes))
        return -1;
    for (int p = 1; p < n && op->nbytes; p++)
        ccl__reduce(op->buf, op->scratch + (size_t)(p - 1) * op->nbytes,
                    op->count, op->dtype, op->redop);
    if (op->nbytes)
        ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, n);
    for (int p = 1; p < n; p++)
        if (send_whole(op, p, 1, op->buf))
            return -1;
    return 0;
}

const ccl__algo ccl__star_allreduce_algo = {
    .coll = CCL_COLL_ALLREDUCE_STAR, .start = star_start,
    .on_header = star_on_header, .on_data = star_on_data, .save_on_land = 1};
const ccl__algo ccl__barrier_algo = {
    .coll = CCL_COLL_BARRIER, .start = star_start,
    .on_header = star_on_header, .on_data = star_on_data, .save_on_land = 1};
