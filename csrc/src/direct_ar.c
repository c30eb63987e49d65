/*
 * direct_ar.c - the direct all-reduce: a reduce-scatter and an all-gather
 * straight between every pair of ranks.
 *
 * The buffer is cut into N segments as the ring cuts it
 * (ccl__ring_segment); rank r owns segment r.
 *
 *   Step 0: rank r sends segment p of its input to every rank p != r, and
 *   receives its own segment from every other rank, each into a slot of
 *   its own in scratch (its own input copied into slot r).  Once all are
 *   in it reduces the slots in rank order, finishes (AVG) and writes
 *   segment r of the result.
 *   Step 1: it sends that segment to every other rank, which lands it in
 *   place.
 *
 * Two hops where the ring takes 2(N-1), for the same bytes per rank
 * (2(N-1)/N of the buffer out and in): on a long link that is 2(N-2)
 * one-way latencies less.  The price is N-1 streams out of every rank at
 * once (a ring has one) and scratch of one segment per rank.
 *
 * Every (peer, step) carries at least one frame, an empty one for an
 * empty segment (count below N), so the receiver knows each peer's part
 * arrived.  The owner's bytes reach every rank verbatim, so results are
 * bit-identical; the slots are reduced in rank order, so a retry gives
 * the same bits whatever the arrival order.
 *
 * Landing in place is safe: rank p's result for segment p can only
 * arrive after p had this rank's whole contribution of segment p, that is
 * after those frames were written to the socket and no longer read from
 * the buffer.  In place, the caller's input is kept as the op layer keeps
 * it: this rank's own segment is saved before the result overwrites it,
 * and landed segments are saved as they land (save_on_land).
 */
#include "algos.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* op->peer_rx: [0, n) bytes and [n, 2n) frames from each peer at step 0,
 * [2n, 3n) and [3n, 4n) at step 1, [4n] peers whose step 0 is complete. */
#define RX(op, step, p) ((op)->peer_rx[2 * (size_t)(step) * (op)->size + (p)])
#define FRAMES(op, step, p) ((op)->peer_rx[(2 * (size_t)(step) + 1) * (op)->size + (p)])
#define STEP0_DONE(op) ((op)->peer_rx[4 * (size_t)(op)->size])

static void seg(const ccl_op *op, int k, uint64_t *off, uint64_t *len)
{
    ccl__ring_segment(op, op->size, k, off, len);
}

/* Bytes [off, off + len) of base to peer at step: at least one frame. */
static int send_seg(ccl_op *op, int peer, uint16_t step, const uint8_t *base,
                    uint64_t off, uint64_t len)
{
    if (len == 0)
        return ccl__op_send(op, peer, step, 0, NULL, 0) ? -1 : 0;
    return ccl__op_send_range(op, peer, step, base, off, len);
}

/* Every contribution is in: reduce the slots in rank order into segment
 * `rank` of the result and send it to every other rank. */
static int reduce_and_share(ccl_op *op)
{
    int n = op->size, me = op->rank;
    uint64_t off, len;
    seg(op, me, &off, &len);
    if (len) {
        if (ccl__op_save(op, off, len))
            return -1;
        uint8_t *dst = op->buf + off;
        memcpy(dst, op->scratch, len);
        for (int p = 1; p < n; p++)
            ccl__reduce(dst, op->scratch + (size_t)p * len, len / op->esize, op->dtype,
                        op->redop);
        ccl__reduce_finish(dst, len / op->esize, op->dtype, op->redop, n);
    }
    for (int p = 0; p < n; p++)
        if (p != me && send_seg(op, p, 1, op->buf, off, len))
            return -1;
    return 0;
}

static int dar_start(ccl_op *op)
{
    int n = op->size, me = op->rank;
    uint64_t off, len;
    op->buf = op->out;
    if (n == 1) {
        if (op->send != op->out)
            memcpy(op->buf, op->send, op->nbytes);
        ccl__reduce_finish(op->buf, op->count, op->dtype, op->redop, 1);
        return 0;
    }
    if (ccl__op_keep_input(op))
        return -1;
    seg(op, me, &off, &len);
    if (!ccl__op_scratch(op, len ? (size_t)len * (size_t)n : 1))
        return -1;
    op->peer_rx = calloc(4 * (size_t)n + 1, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return -1;
    }
    /* This rank's own contribution, in its slot. */
    if (len)
        memcpy(op->scratch + (size_t)me * len, op->send + off, len);
    op->frames_left = (uint32_t)(2 * (n - 1));
    op->recv_left = (uint64_t)(n - 1) * len;
    for (int p = 0; p < n; p++) {
        uint64_t poff, plen;
        seg(op, p, &poff, &plen);
        if (p != me)
            op->recv_left += plen;
    }
    for (int p = 0; p < n; p++) {
        uint64_t poff, plen;
        seg(op, p, &poff, &plen);
        if (p != me && send_seg(op, p, 0, op->send, poff, plen))
            return -1;
    }
    return 0;
}

static int dar_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int step = h->step;
    uint64_t off, len;
    if (step != 0 && step != 1)
        goto bad;
    seg(op, step == 0 ? op->rank : peer, &off, &len);
    int extra = FRAMES(op, step, peer) > 0 && RX(op, step, peer) >= len;
    if (extra || h->length % op->esize)
        goto bad;
    if (len == 0 ? h->length != 0
                 : h->length == 0 || h->offset < off || h->offset + h->length > off + len)
        goto bad;
    if (len == 0)
        ccl__sink_land(sink, op, NULL);
    else if (step == 0)
        ccl__sink_land(sink, op, op->scratch + (size_t)peer * len + (h->offset - off));
    else
        ccl__sink_land(sink, op, op->buf + h->offset);
    return 0;
bad:
    snprintf(op->err, sizeof op->err, "direct all-reduce frame (step %u, bytes "
             "[%llu, +%u)) from rank %d not valid at rank %d", h->step,
             (unsigned long long)h->offset, h->length, peer, op->rank);
    return -1;
}

static int dar_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    int step = h->step;
    uint64_t off, len;
    seg(op, step == 0 ? op->rank : peer, &off, &len);
    RX(op, step, peer) += h->length;
    FRAMES(op, step, peer)++;
    if (RX(op, step, peer) < len)
        return 0;
    op->frames_left--;
    if (step == 1)
        return 0;
    if (++STEP0_DONE(op) < (uint64_t)(op->size - 1))
        return 0;
    return reduce_and_share(op);
}

const ccl__algo ccl__direct_allreduce_algo = {
    .coll = CCL_COLL_ALLREDUCE_DIRECT, .start = dar_start,
    .on_header = dar_on_header, .on_data = dar_on_data, .save_on_land = 1};
