/*
 * ring_q.c - quantized ring all-reduce of f32 data: the ring of ring.c
 * (segments, steps, units picked by a segment's first sender and kept by
 * every hop), with units encoded on the wire (quant.h) wherever the next
 * rank is on another host.
 *
 * Reduce-scatter: a rank decodes an arriving unit and adds it into its f32
 * buffer, then encodes that partial sum for the next hop.  At the last
 * step the unit's owner holds the whole sum: it finishes it (AVG divides
 * once), encodes it once, replaces its own copy with the decoded result,
 * and starts it round the all-gather.  All-gather: every rank decodes the
 * unit into place and forwards the very bytes it received.  So every rank
 * decodes the owner's bytes with the same f32 operations: bit-identical
 * results everywhere.  The error: one encoding per encoded hop of a
 * partial sum (N-1 of them between hosts) and one of the result.
 *
 * Same-host hops carry partial sums raw (protocol 9): a reduce-scatter
 * hop to a rank this one shares memory with (ccl__op_peer_shares_memory)
 * sends the unit's f32 bytes, flagged by RQ_RAW in the step, and its
 * receiver adds them as the f32 ring does.  Through shared memory the codec costs
 * more than the bytes it saves (encoding runs at about 11 GB/s a core,
 * the copy at memory speed), and the sum is the more exact for it.  The
 * owner still encodes the result once and the all-gather still forwards
 * its bytes, so every rank ends with the same quantized result.  Which
 * hops are raw depends on where the ranks run, not on timing: the same
 * placement gives the same bits run after run.
 *
 * Ranks sit on the ring in the epoch's ring order, as in ring.c.
 *
 * A frame is one unit (quant_op.c); `root` carries the format and block
 * as in star_q.c.
 */
#include "algos.h"
#include "quant.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The step flag of a raw (f32) partial sum.  Ring steps stay below
 * 2 * CCL_MAX_WORLD = 8192, clear of it. */
#define RQ_RAW 0x4000u

/* A reduce-scatter unit (a partial sum) to the next rank: raw to a rank
 * on this host, else encoded.  The raw bytes are read from the buffer
 * when the transport writes them, before this rank's all-gather can land
 * on them (ring.c's argument: the unit's result needs this send to have
 * reached the next rank first). */
/* Room for one encoded unit of n elements (4 + its encoding, *len bytes)
 * in the op's arena: op->scratch, taken from the engine's spare buffers
 * at the start and handed to the next op at the end, so that the pages
 * are not faulted in afresh for every unit as a malloc'd buffer's are.
 * NULL when the planned room is used up (units cut smaller than planned,
 * by ranks with a smaller chunk_bytes): the caller mallocs that one. */
static uint8_t *arena_take(ccl_op *op, uint64_t n, uint32_t *len)
{
    size_t need = 4 + ccl__quant_size(op->qfmt, n, op->qblock);
    *len = (uint32_t)need;
    if (!op->scratch || op->qarena_cap - op->qarena_used < need)
        return NULL;
    uint8_t *p = op->scratch + op->qarena_used;
    op->qarena_used += need;
    return p;
}

/* The arena's size: every unit this rank will encode (the partial sums
 * it sends on unless they go raw, and its own segment's result), cut as
 * its own chunk_bytes would cut them, with room for each unit's count
 * and a block header more. */
static size_t arena_size(const ccl_op *op)
{
    uint64_t off, len, elems = 0, units = 0, u = op->unit / 4 ? op->unit / 4 : 1;
    int n = op->size, r = op->ring_pos;
    for (int k = 0; k < n; k++) {
        int p = ccl__mod(k - r, n); /* segment of ring position r + p */
        /* Encoded here: its own segment's result, the partial sums of
         * the others unless they go raw; kept to forward: the all-gather
         * units of positions r-1 .. r-(n-2). */
        int times = (p == 0 || !op->qraw) + (p >= 2);
        ccl__ring_segment(op, n, ccl__ring_rank(op, k), &off, &len);
        elems += times * (len / 4);
        units += times * ((len / 4 + u - 1) / u);
    }
    return ccl__quant_size(op->qfmt, elems, op->qblock) + units * (4 + 9);
}

static int send_unit(ccl_op *op, uint16_t step, uint64_t first, uint64_t n)
{
    int next = ccl__ring_rank(op, op->ring_pos + 1);
    if (op->qraw)
        return ccl__op_send(op, next, (uint16_t)(step | RQ_RAW), first * 4,
                            op->buf + first * 4, (uint32_t)(n * 4)) ? -1 : 0;
    uint32_t len;
    uint8_t *w = arena_take(op, n, &len);
    if (w) {
        if (ccl__quant_unit_into(op, first, n, op->qseed, w))
            return -1;
        return ccl__op_send(op, next, step, first * 4, w, len) ? -1 : 0;
    }
    uint8_t *b = ccl__quant_unit(op, first, n, op->qseed, &len);
    if (!b)
        return -1;
    return ccl__op_send_owned(op, next, step, first * 4, b, len) ? -1 : 0;
}

/* Where this rank's input leaves it raw, it is checked for NaN and
 * infinity first, so that the rank holding one is the one that fails with
 * INVALID_ARG (the others get ABORTED), as where it encodes them; F16
 * and BF16 carry both, so nothing is checked for them.  0, or 1 with
 * op->qbad_at set. */
static int carries_nonfinite(const ccl_op *op)
{
    return op->qfmt == CCL_QUANT_F16 || op->qfmt == CCL_QUANT_BF16;
}

/* The same with the scan done (at: the first bad element of the unit,
 * n if none). */
static int nonfinite_at(ccl_op *op, uint64_t first, uint64_t n, uint64_t at)
{
    if (at >= n || carries_nonfinite(op))
        return 0;
    op->qbad_at = first + at;
    return 1;
}

static int raw_input_bad(ccl_op *op, uint64_t first, uint64_t n)
{
    if (carries_nonfinite(op))
        return 0;
    return nonfinite_at(op, first, n,
                        ccl__f32_first_nonfinite((const float *)op->buf + first, n));
}

static void fail_nonfinite(ccl_op *op)
{
    ccl__op_fail(op, CCL_ERR_INVALID_ARG, "a quantized all-reduce cannot carry NaN or "
                 "infinity (element %llu of this rank's input)",
                 (unsigned long long)op->qbad_at);
}

static int rq_start(ccl_op *op)
{
    int n = op->size, r = op->ring_pos, rc = ccl__quant_begin(op, 0);
    if (rc)
        return rc < 0 ? -1 : 0;
    uint64_t off, len, u = op->unit / 4 ? op->unit / 4 : 1;
    for (int k = 0; k < n; k++) {
        ccl__ring_segment(op, n, ccl__ring_rank(op, k), &off, &len);
        op->qleft += (k != ccl__mod(r - 1, n) ? len / 4 : 0) + (k != r ? len / 4 : 0);
    }
    op->frames_left = op->qleft ? 1 : 0;
    op->qraw = ccl__op_peer_shares_memory(op, ccl__ring_rank(op, r + 1));
    op->qarena_cap = arena_size(op);
    if (!ccl__op_scratch(op, op->qarena_cap))
        return -1;
    ccl__ring_segment(op, n, ccl__ring_rank(op, r - 1), &off, &len);
    for (uint64_t e = off / 4; e < (off + len) / 4; e += u) {
        uint64_t m = (off + len) / 4 - e < u ? (off + len) / 4 - e : u;
        /* A unit that leaves raw is checked just before, and saved in the
         * same pass where the input is kept (the all-gather writes it
         * next): the transport's copy then reads it from the cache. */
        if (op->qraw) {
            int bad;
            if (op->backup) {
                uint64_t at;
                if (ccl__op_save_f32_checked(op, e, m, &at)) {
                    ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory saving the input");
                    return -1;
                }
                bad = nonfinite_at(op, e, m, at);
            } else {
                bad = raw_input_bad(op, e, m);
            }
            if (bad) {
                fail_nonfinite(op);
                return -1;
            }
        }
        if (send_unit(op, 0, e, m))
            return -1;
    }
    return 0;
}

/* The segment a frame at this step carries (ring.c's arithmetic, over
 * ring positions: the segment of the rank at that position). */
static int step_segment(const ccl_op *op, uint16_t step, int *k)
{
    int n = op->size, r = op->ring_pos;
    if (step < n - 1)
        *k = ccl__ring_rank(op, r - step - 2);
    else if (step <= 2 * n - 3)
        *k = ccl__ring_rank(op, r - (step - (n - 1)) - 1);
    else
        return -1;
    return 0;
}

static void rq_consume(const ccl__sink *s, const uint8_t *src, size_t off, size_t len)
{
    ccl_op *op = s->arg;
    uint64_t n = len >= 4 ? ccl__get_u32(src) : 0;
    uint64_t first = s->where, soff, slen;
    int k, ag = s->from >= op->size - 1;
    step_segment(op, (uint16_t)s->from, &k);
    ccl__ring_segment(op, op->size, k, &soff, &slen);
    if (len < 4 || n == 0 || 4 + ccl__quant_size(op->qfmt, n, op->qblock) != len ||
        first + n > (soff + slen) / 4 || n > op->count) {
        op->qbad = 1;
        return;
    }
    /* A sum that goes on raw: this rank's part of it is checked first
     * (raw_input_bad). */
    if (s->from < op->size - 2 && op->qraw && raw_input_bad(op, first, n)) {
        op->qbad = 3;
        return;
    }
    struct ccl__qunit *q = ccl__qunit_add(op, 0, first, n);
    if (!q)
        return;
    float *dst = (float *)op->buf + first;
    /* A unit is first written here at a step of the reduce-scatter, or
     * (the segment this rank only sent from) the all-gather's first:
     * its input is saved then, while it is in cache anyway (that one at
     * the start instead where it left raw). */
    if ((s->from < op->size - 1 || (s->from == op->size - 1 && !op->qraw)) && op->backup &&
        ccl__op_save_region(op, first * 4, n * 4)) {
        op->qbad = 2;
        return;
    }
    if (ag) {
        /* The owner's bytes: kept to forward verbatim, unless this is
         * the last hop. */
        if (s->from < 2 * op->size - 3) {
            uint32_t l;
            q->bytes = arena_take(op, n, &l);
            q->in_arena = q->bytes != NULL;
            if (!q->bytes)
                q->bytes = malloc(len);
            if (!q->bytes) {
                op->qbad = 2;
                return;
            }
            memcpy(q->bytes, src, len);
        }
        ccl__quant_decode(op->qfmt, src + 4, n, op->qblock, dst);
    } else {
        ccl__quant_decode_add(op->qfmt, src + 4, n, op->qblock, dst);
    }
}

static int rq_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int k, raw = (h->step & RQ_RAW) != 0;
    uint16_t step = (uint16_t)(h->step & ~RQ_RAW);
    uint64_t soff, slen;
    if (peer != ccl__ring_rank(op, op->ring_pos - 1) || step_segment(op, step, &k) ||
        (raw && step >= op->size - 1)) {
        snprintf(op->err, sizeof op->err, "quantized ring frame (step %#x) from rank %d "
                 "not valid at rank %d", h->step, peer, op->rank);
        return -1;
    }
    ccl__ring_segment(op, op->size, k, &soff, &slen);
    if (raw) {
        /* A partial sum in f32: added in place as the f32 ring does (the
         * op layer saves the input under it first). */
        if (h->offset % 4 || h->length % 4 || h->length == 0 || h->offset < soff ||
            h->offset + h->length > soff + slen) {
            snprintf(op->err, sizeof op->err, "raw quantized ring frame at bytes "
                     "[%llu, +%u) is outside segment %d of step %u",
                     (unsigned long long)h->offset, h->length, k, step);
            return -1;
        }
        /* The sum goes on raw too: check this rank's part of it first.
         * A bad one drops the frame (the sink stays DISCARD) and fails
         * the op in rq_on_data: this rank's fault, not the sender's. */
        if (step < op->size - 2 && op->qraw && !op->qbad &&
            raw_input_bad(op, h->offset / 4, h->length / 4)) {
            op->qbad = 3;
            memset(sink, 0, sizeof *sink);
            return 0;
        }
        ccl__sink_reduce(sink, op, op->buf + h->offset);
        return 0;
    }
    if (h->offset % 4 || h->offset < soff || h->offset >= soff + slen || h->length < 4) {
        snprintf(op->err, sizeof op->err, "quantized ring frame at byte %llu is outside "
                 "segment %d of step %u", (unsigned long long)h->offset, k, h->step);
        return -1;
    }
    memset(sink, 0, sizeof *sink);
    sink->kind = CCL_SINK_STAGE;
    sink->unit = h->length; /* the whole unit at once */
    sink->consume = rq_consume;
    sink->owner = op;
    sink->arg = op;
    sink->from = h->step;
    sink->where = h->offset / 4;
    return 0;
}

static int rq_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    int n = op->size, step = h->step & ~RQ_RAW;
    struct ccl__qunit q = {0, h->offset / 4, h->length / 4, NULL, 0};
    if (op->qbad == 3) {
        fail_nonfinite(op);
        return -1;
    }
    if (op->qbad || (!(h->step & RQ_RAW) && ccl__qunit_take(op, 0, h->offset / 4, &q))) {
        ccl__op_fail(op, op->qbad == 2 ? CCL_ERR_NOMEM : CCL_ERR_PROTOCOL,
                     op->qbad == 2 ? "out of memory for a quantized unit"
                                   : "a quantized unit from rank %d does not decode "
                                     "(its count and length disagree)", peer);
        return -1;
    }
    op->qleft -= q.n;
    if (op->qleft == 0)
        op->frames_left = 0;
    int rc = 0;
    if (step < n - 2) {
        rc = send_unit(op, (uint16_t)(step + 1), q.first, q.n); /* a partial sum on */
    } else if (step == n - 2) {
        /* The whole sum of this unit, here at its owner: finish, encode
         * once, keep the decoded result, start it round. */
        uint32_t len;
        uint8_t *w = arena_take(op, q.n, &len), *b = w ? NULL : malloc(len);
        if (!w && !b) {
            ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory for an encoded unit");
            return -1;
        }
        if (ccl__quant_finish_keep(op, q.first, q.n, w ? w : b)) {
            free(b);
            return -1;
        }
        int next = ccl__ring_rank(op, op->ring_pos + 1);
        rc = (w ? ccl__op_send(op, next, (uint16_t)(n - 1), q.first * 4, w, len)
                : ccl__op_send_owned(op, next, (uint16_t)(n - 1), q.first * 4, b, len))
                 ? -1 : 0;
    } else if (step < 2 * n - 3) {
        int next = ccl__ring_rank(op, op->ring_pos + 1);
        rc = (q.in_arena ? ccl__op_send(op, next, (uint16_t)(step + 1), q.first * 4,
                                        q.bytes, (uint32_t)h->length)
                         : ccl__op_send_owned(op, next, (uint16_t)(step + 1),
                                              q.first * 4, q.bytes, (uint32_t)h->length))
                 ? -1 : 0;
        q.bytes = NULL; /* the transport's now, or the arena's */
    }
    if (!q.in_arena)
        free(q.bytes);
    return rc;
}

const ccl__algo ccl__ring_q_algo = {
    .coll = CCL_COLL_ALLREDUCE_RING_Q, .start = rq_start, .on_header = rq_on_header,
    .on_data = rq_on_data, .block_total = ccl__quant_total};
