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
#include "comm.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HUB 0

/* Queues [0, nbytes) of src to peer in units (at least one frame). */
static int send_all(ccl_comm *c, ccl_op *op, int peer, uint16_t step,
                    const uint8_t *src)
{
    uint32_t unit = ccl__unit_bytes(c, op->esize);
    uint64_t off = 0;
    do {
        uint64_t left = op->nbytes - off;
        uint32_t l = left < unit ? (uint32_t)left : unit;
        if (ccl__enqueue_data(c, op, peer, step, off, src + off, l))
            return -1;
        off += l;
    } while (off < op->nbytes);
    return 0;
}

static int star_start(ccl_comm *c, ccl_op *op)
{
    int n = c->size;
    op->buf = op->out;
    if (c->rank == HUB && op->nbytes && op->send != op->out)
        memcpy(op->buf, op->send, op->nbytes);
    if (n > 1 && op->algo == &ccl__star_allreduce_algo && ccl__op_keep_input(c, op))
        return -1;
    if (n == 1) {
        if (op->nbytes)
            ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, 1);
        return 0;
    }
    /* peer_rx[p]: bytes received from p; peer_rx[n + p]: frames from p. */
    op->peer_rx = calloc(2 * (size_t)n, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory");
        return -1;
    }
    if (c->rank == HUB) {
        if (op->nbytes) {
            op->scratch = ccl__buf_get(c, (size_t)op->nbytes * (size_t)(n - 1),
                                       &op->scratch_len);
            if (!op->scratch) {
                ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory for staging");
                return -1;
            }
        }
        op->frames_left = (uint32_t)(n - 1);
        op->recv_left = op->nbytes * (uint64_t)(n - 1);
        return 0;
    }
    op->frames_left = 1;
    op->recv_left = op->nbytes;
    return send_all(c, op, HUB, 0, op->nbytes ? op->send : NULL);
}

static int star_on_header(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h,
                          int *mode, uint8_t **dst)
{
    int want_step = c->rank == HUB ? 0 : 1;
    if (h->step != want_step || (c->rank != HUB && peer != HUB)) {
        snprintf(op->err, sizeof op->err, "star frame (step %u) from rank %d "
                 "not valid at rank %d", h->step, peer, c->rank);
        return -1;
    }
    int extra = op->peer_rx[c->size + peer] > 0 && op->peer_rx[peer] >= op->nbytes;
    if (h->length % op->esize || extra || (h->length == 0 && op->nbytes != 0)) {
        snprintf(op->err, sizeof op->err, "star frame of %u bytes from rank %d "
                 "is malformed", h->length, peer);
        return -1;
    }
    *mode = RXM_LAND;
    if (c->rank == HUB)
        *dst = op->scratch ? op->scratch + (size_t)(peer - 1) * op->nbytes + h->offset
                           : NULL;
    else
        *dst = op->buf ? op->buf + h->offset : NULL;
    return 0;
}

static int star_on_data(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h)
{
    int n = c->size;
    op->peer_rx[peer] += h->length;
    op->peer_rx[n + peer]++;
    if (op->peer_rx[peer] < op->nbytes)
        return 0;
    op->frames_left--;
    if (c->rank != HUB || op->frames_left > 0)
        return 0;
    /* Every contribution is here: reduce in rank order, then answer. */
    if (ccl__op_save(op, 0, op->nbytes)) {
        ccl__op_fail(c, op, CCL_ERR_NOMEM, 1, "out of memory saving the input");
        return -1;
    }
    for (int p = 1; p < n && op->nbytes; p++)
        ccl__reduce(op->buf, op->scratch + (size_t)(p - 1) * op->nbytes,
                    op->count, op->dtype, op->redop);
    if (op->nbytes)
        ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, n);
    for (int p = 1; p < n; p++)
        if (send_all(c, op, p, 1, op->buf))
            return -1;
    return 0;
}

const ccl__algo ccl__star_allreduce_algo = {
    CCL_COLL_ALLREDUCE_STAR, star_start, star_on_header, star_on_data, 1};
const ccl__algo ccl__barrier_algo = {
    CCL_COLL_BARRIER, star_start, star_on_header, star_on_data, 1};
