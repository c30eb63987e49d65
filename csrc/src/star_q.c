/*
 * star_q.c - quantized star all-reduce of f32 data.
 *
 * Every rank but the hub (rank 0) encodes its buffer (quant.h) and sends
 * it to the hub in units; the hub decodes each contribution into a slot
 * of its own, reduces the slots in rank order in f32 (its own part
 * exact), encodes the result once, replaces its own copy with the decoded
 * result, and sends the same encoded bytes to everyone, who decode them.
 * So every rank ends with the same bits, whatever the format, and the
 * error is one encoding of each contribution plus one of the result.
 *
 * A unit travels as one frame: `offset` is its first element's byte
 * offset in the f32 buffer, the payload a u32 element count then the
 * encoding.  Ranks must agree on the format and block: frames carry them
 * in `root` (format | log2(block) << 3), so a disagreement is a
 * MISMATCH.  NaN and infinity cannot be encoded by U8, U4 and E3M0: the
 * op then fails with INVALID_ARG on the rank that holds them (and is
 * aborted on the others).
 */
#include "algos.h"
#include "quant.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HUB 0

/* Elements per unit: the chunk, in f32 elements. */
static uint64_t unit_elems(const ccl_op *op)
{
    return op->unit / 4 ? op->unit / 4 : 1;
}

/* Encodes src (the op's count of f32) into op->wire, unit by unit. */
static int encode_all(ccl_op *op, const float *src)
{
    uint64_t u = unit_elems(op), need = 0;
    for (uint64_t e = 0; e < op->count; e += u) {
        uint64_t n = op->count - e < u ? op->count - e : u;
        need += 4 + ccl__quant_size(op->qfmt, n, op->qblock);
    }
    if (op->wire_len < need) {
        free(op->wire);
        op->wire = malloc(need ? need : 1);
        op->wire_len = op->wire ? need : 0;
        if (!op->wire) {
            ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory for the encoding");
            return -1;
        }
    }
    uint8_t *w = op->wire;
    for (uint64_t e = 0; e < op->count; e += u) {
        uint64_t n = op->count - e < u ? op->count - e : u;
        ccl__put_u32(w, (uint32_t)n);
        if (ccl__quant_encode(op->qfmt, src + e, n, op->qblock, op->qseed, e, w + 4)) {
            ccl__op_fail(op, CCL_ERR_INVALID_ARG, "a quantized all-reduce (%s) "
                         "cannot carry NaN or infinity: element %llu or after",
                         op->qfmt == CCL_QUANT_E3M0 ? "e3m0"
                         : op->qfmt == CCL_QUANT_U4 ? "u4" : "u8",
                         (unsigned long long)e);
            return -1;
        }
        w += 4 + ccl__quant_size(op->qfmt, n, op->qblock);
    }
    return 0;
}

/* Sends every encoded unit to peer. */
static int send_encoded(ccl_op *op, int peer, uint16_t step)
{
    uint64_t u = unit_elems(op);
    const uint8_t *w = op->wire;
    if (op->count == 0)
        return ccl__op_send(op, peer, step, 0, NULL, 0) ? -1 : 0;
    for (uint64_t e = 0; e < op->count; e += u) {
        uint64_t n = op->count - e < u ? op->count - e : u;
        size_t len = 4 + ccl__quant_size(op->qfmt, n, op->qblock);
        if (ccl__op_send(op, peer, step, e * 4, w, (uint32_t)len))
            return -1;
        w += len;
    }
    return 0;
}

/* The decoded result replaces this rank's buffer. */
static void decode_all(ccl_op *op)
{
    uint64_t u = unit_elems(op);
    const uint8_t *w = op->wire;
    for (uint64_t e = 0; e < op->count; e += u) {
        uint64_t n = op->count - e < u ? op->count - e : u;
        ccl__quant_decode(op->qfmt, w + 4, n, op->qblock, (float *)op->buf + e);
        w += 4 + ccl__quant_size(op->qfmt, n, op->qblock);
    }
}

static int q_start(ccl_op *op)
{
    int n = op->size, rc = ccl__quant_begin(op, 1);
    if (rc)
        return rc < 0 ? -1 : 0;
    /* peer_rx[p]: elements decoded from p; peer_rx[n + p]: p is complete. */
    op->peer_rx = calloc(2 * (size_t)n, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return -1;
    }
    if (op->rank == HUB) {
        if (op->nbytes && !ccl__op_scratch(op, (size_t)op->nbytes * (size_t)(n - 1)))
            return -1;
        op->frames_left = (uint32_t)(n - 1);
        return 0;
    }
    op->frames_left = 1;
    if (op->count && encode_all(op, (const float *)op->buf))
        return -1;
    return send_encoded(op, HUB, 0);
}

static void q_consume(const ccl__sink *s, const uint8_t *src, size_t off, size_t len)
{
    ccl_op *op = s->arg;
    uint64_t n = len >= 4 ? ccl__get_u32(src) : 0;
    uint64_t first = s->where;
    if (len < 4 || 4 + ccl__quant_size(op->qfmt, n, op->qblock) != len || n == 0 ||
        first + n > op->count || n > op->count) {
        op->qbad = 1;
        return;
    }
    ccl__quant_decode(op->qfmt, src + 4, n, op->qblock, (float *)s->target + first);
    op->peer_rx[s->from] += n;
}

static int q_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int want_step = op->rank == HUB ? 0 : 1;
    if (h->step != want_step || (op->rank != HUB && peer != HUB) || h->offset % 4 ||
        op->peer_rx[op->size + peer] || (h->length == 0) != (op->count == 0)) {
        snprintf(op->err, sizeof op->err, "quantized star frame (step %u, %u bytes) "
                 "from rank %d not valid at rank %d", h->step, h->length, peer, op->rank);
        return -1;
    }
    if (h->length == 0) {
        ccl__sink_land(sink, op, NULL); /* an empty op's one frame */
        return 0;
    }
    memset(sink, 0, sizeof *sink);
    sink->kind = CCL_SINK_STAGE;
    sink->unit = h->length; /* the whole unit at once */
    sink->consume = q_consume;
    sink->owner = op;
    sink->arg = op;
    sink->from = peer;
    sink->where = h->offset / 4;
    sink->target = op->rank == HUB ? op->scratch + (size_t)(peer - 1) * op->nbytes
                                   : op->buf;
    return 0;
}

/* Every contribution is in: reduce in rank order, encode the result once,
 * keep the decoded result here too, and send the encoding to everyone. */
static int hub_finish(ccl_op *op)
{
    int n = op->size;
    for (int p = 1; p < n && op->count; p++)
        ccl__reduce(op->buf, op->scratch + (size_t)(p - 1) * op->nbytes, op->count,
                    CCL_F32, op->redop);
    if (op->count) {
        ccl__reduce_finish(op->buf, op->count, CCL_F32, op->redop, n);
        if (encode_all(op, (const float *)op->buf))
            return -1;
        decode_all(op);
    }
    for (int p = 1; p < n; p++)
        if (send_encoded(op, p, 1))
            return -1;
    return 0;
}

static int q_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    if (op->qbad) {
        ccl__op_fail(op, CCL_ERR_PROTOCOL, "a quantized unit from rank %d does not "
                     "decode (its count and length disagree)", peer);
        return -1;
    }
    if (op->peer_rx[op->size + peer] || op->peer_rx[peer] < op->count)
        return 0;
    op->peer_rx[op->size + peer] = 1;
    if (--op->frames_left > 0 || op->rank != HUB)
        return 0;
    return hub_finish(op);
}

const ccl__algo ccl__star_q_algo = {
    .coll = CCL_COLL_ALLREDUCE_STAR_Q, .start = q_start, .on_header = q_on_header,
    .on_data = q_on_data, .block_total = ccl__quant_total};
