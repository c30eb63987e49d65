/*
 * ring.c - the pipelined ring: all-reduce = reduce-scatter + all-gather,
 * and each half on its own as reduce-scatter and all-gather.
 *
 * The buffer of N*... elements is cut into N segments (segment k starts at
 * k*base + min(k, rem) elements, base = count / N, rem = count % N, and
 * the first rem segments hold one element more).
 *
 * Ring positions.  The ranks sit on the ring in the epoch's ring order
 * (the master's GROUP; the rank order unless it chose another, see
 * ring_order.h): ring[p] is the rank at position p.  Below, r is this
 * rank's position, and "segment of position q" is the segment numbered
 * by the rank at q (ring[q]).  The member at position r talks to
 * right = ring[r+1] and hears from left = ring[r-1] (mod N).  With the
 * rank order this is rank r+1 and r-1, as before ring orders existed.
 *
 * Reduce-scatter, steps s = 0..N-2 (wire step s): send the segment of
 * position r-s-1, receive that of r-s-2 from left and reduce it into the
 * buffer.  After the last step the member holds the segment of its own
 * position, which is its own rank's segment, fully reduced: so a
 * reduce-scatter delivers block `rank` whatever the order.
 * All-gather, steps s = 0..N-2 (wire step N-1+s): send the segment of
 * position r-s, receive that of r-s-1 from left, landing in place.
 *
 * A different order changes who adds whose partial sums first, so the
 * bits of a float sum may differ from those of the rank order; they are
 * still the same on every rank (the all-gather below).
 *
 * Pipelining: a segment travels as units of at most chunk_bytes.  The
 * first sender of a segment picks the unit boundaries; every later hop
 * forwards exactly the (offset, length) it received, as soon as that unit
 * has arrived (and been reduced).  So each unit moves along the ring on
 * its own, sending, receiving and reducing overlap, and no rank needs to
 * agree on chunk sizes.
 *
 * Why in-place landing is safe: a unit of segment k arrives at rank r in
 * the all-gather only after it went all the way round, which needed rank
 * r's own reduce-scatter send of that unit to have been written to the
 * socket already (the frame's bytes are in the kernel, not read from our
 * buffer any more).
 *
 * Every rank gets the owner's bytes verbatim in the all-gather, so results
 * are bit-identical on every rank; AVG divides once, at the owner.
 */
#include "algos.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Byte range of segment k. */
void ccl__ring_segment(const ccl_op *op, int n, int k, uint64_t *off, uint64_t *len)
{
    uint64_t base = op->count / (uint64_t)n, rem = op->count % (uint64_t)n;
    uint64_t uk = (uint64_t)k;
    uint64_t start = uk * base + (uk < rem ? uk : rem);
    *off = start * op->esize;
    *len = (base + (uk < rem ? 1 : 0)) * op->esize;
}

/* Queues a byte range of the buffer to the right neighbour in units. */
static int send_right(ccl_op *op, uint16_t step, uint64_t off, uint64_t len)
{
    return ccl__op_send_range(op, ccl__ring_rank(op, op->ring_pos + 1), step,
                              op->buf, off, len);
}

enum { DO_RS = 1, DO_AG = 2 };

static int phases(const ccl_op *op)
{
    if (op->algo == &ccl__ring_allreduce_algo)
        return DO_RS | DO_AG;
    if (op->algo == &ccl__ring_reduce_scatter_algo)
        return DO_RS;
    return DO_AG;
}

/* The caller's block r of a reduce-scatter is segment r of the scratch. */
static void rs_deliver(ccl_op *op, uint64_t off, uint64_t len)
{
    uint64_t soff, slen;
    ccl__ring_segment(op, op->size, op->rank, &soff, &slen);
    memcpy(op->out + (off - soff), op->buf + off, len);
}

/* The segment of ring position q: the block of the rank there. */
static void seg_at(const ccl_op *op, int q, uint64_t *off, uint64_t *len)
{
    ccl__ring_segment(op, op->size, ccl__ring_rank(op, q), off, len);
}

static int ring_start(ccl_op *op)
{
    int n = op->size, r = op->ring_pos, ph = phases(op);
    uint64_t off, len;
    if (ph == (DO_RS | DO_AG)) {
        op->buf = op->out;
        if (op->send != op->out)
            memcpy(op->buf, op->send, op->nbytes);
        else if (n > 1) {
            /* Every segment but that of r-1 is reduced into (and saved
             * then); r-1's is only overwritten by the all-gather: save it
             * now. */
            if (ccl__op_keep_input(op))
                return -1;
            seg_at(op, r - 1, &off, &len);
            if (ccl__op_save(op, off, len))
                return -1;
        }
    } else if (ph == DO_RS) {
        /* Reduce-scatter works in scratch so the caller's input stays
         * intact. */
        if (!ccl__op_scratch(op, op->nbytes))
            return -1;
        memcpy(op->scratch, op->send, op->nbytes);
        op->buf = op->scratch;
    } else {
        op->buf = op->out;
        seg_at(op, r, &off, &len);
        if (op->send != op->buf + off)
            memmove(op->buf + off, op->send, len);
    }
    if (n == 1) {
        if (ph & DO_RS) {
            ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, 1);
            if (ph == DO_RS)
                rs_deliver(op, 0, op->nbytes);
        }
        return 0;
    }
    op->recv_left = 0;
    for (int k = 0; k < n; k++) {
        seg_at(op, k, &off, &len);
        if ((ph & DO_RS) && k != ccl__mod(r - 1, n))
            op->recv_left += len;
        if ((ph & DO_AG) && k != r)
            op->recv_left += len;
    }
    if (ph & DO_RS) {
        seg_at(op, r - 1, &off, &len);
        return send_right(op, 0, off, len);
    }
    seg_at(op, r, &off, &len);
    return send_right(op, (uint16_t)(n - 1), off, len);
}

static int ring_on_header(ccl_op *op, int peer, const ccl__hdr *h,
                          ccl__sink *sink)
{
    int n = op->size, r = op->ring_pos, ph = phases(op);
    int s, k, reduce;
    if (peer != ccl__ring_rank(op, r - 1)) {
        snprintf(op->err, sizeof op->err, "ring frame from rank %d, not from the "
                 "left neighbour %d", peer, ccl__ring_rank(op, r - 1));
        return -1;
    }
    if (h->step < n - 1) {
        s = h->step;
        k = ccl__mod(r - s - 2, n);
        reduce = 1;
        if (!(ph & DO_RS))
            goto bad_step;
    } else if (h->step <= 2 * n - 3) {
        s = h->step - (n - 1);
        k = ccl__mod(r - s - 1, n);
        reduce = 0;
        if (!(ph & DO_AG))
            goto bad_step;
    } else {
        goto bad_step;
    }
    uint64_t off, len;
    seg_at(op, k, &off, &len);
    if (h->offset < off || h->offset + h->length > off + len ||
        h->length % op->esize || h->length == 0) {
        snprintf(op->err, sizeof op->err, "ring frame at bytes [%llu, +%u) is "
                 "outside segment %d of step %u", (unsigned long long)h->offset,
                 h->length, k, h->step);
        return -1;
    }
    if (reduce)
        ccl__sink_reduce(sink, op, op->buf + h->offset);
    else
        ccl__sink_land(sink, op, op->buf + h->offset);
    return 0;
bad_step:
    snprintf(op->err, sizeof op->err, "ring frame with step %u not valid here",
             h->step);
    return -1;
}

static int ring_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    int n = op->size, ph = phases(op);
    int last_rs = n - 2, last_ag = 2 * n - 3;
    if (h->step < n - 1) {
        if (h->step < last_rs)
            return send_right(op, h->step + 1, h->offset, h->length);
        /* The unit of our own segment is complete: finish it (AVG) once,
         * here, so every rank later receives these exact bytes. */
        ccl__reduce_finish(op->buf + h->offset, h->length / op->esize,
                           op->dtype, op->redop, n);
        if (ph & DO_AG)
            return send_right(op, (uint16_t)(n - 1), h->offset, h->length);
        rs_deliver(op, h->offset, h->length);
        return 0;
    }
    if (h->step < last_ag)
        return send_right(op, h->step + 1, h->offset, h->length);
    return 0;
}

const ccl__algo ccl__ring_allreduce_algo = {
    .coll = CCL_COLL_ALLREDUCE_RING, .start = ring_start,
    .on_header = ring_on_header, .on_data = ring_on_data};
const ccl__algo ccl__ring_reduce_scatter_algo = {
    .coll = CCL_COLL_REDUCE_SCATTER, .start = ring_start,
    .on_header = ring_on_header, .on_data = ring_on_data};
const ccl__algo ccl__ring_allgather_algo = {
    .coll = CCL_COLL_ALLGATHER, .start = ring_start,
    .on_header = ring_on_header, .on_data = ring_on_data};
