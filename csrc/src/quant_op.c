/*
 * quant_op.c - what the quantized all-reduces (star_q.c, ring_q.c,
 * direct_q.c) share: their start, the `total` their frames carry, one
 * unit encoded for the wire, and the decoded units waiting for their
 * frame's end.
 *
 * A unit travels as one frame: `offset` is its first element's byte
 * offset in the f32 buffer, the payload a u32 element count then the
 * encoding (quant.h).  A unit is decoded when its payload is in (the
 * sink's consume) and acted on once its frame is whole and checked
 * (on_data, after the frame MAC where there is one): op->qunits holds
 * what was decoded in between.
 */
#include "algos.h"
#include "quant.h"
#include "reduce.h"

#include <stdlib.h>
#include <string.h>

/* What quantized frames carry as `total`: a bound that every unit's
 * offset (f32 bytes) plus encoded length stays under, the same on every
 * rank: at most 9 encoded bytes and 4 of count per element (u8 with
 * blocks of 1), so 13 per element. */
uint64_t ccl__quant_total(const ccl_op *op, int peer, int sending)
{
    return 13 * op->count + 64;
}

int ccl__quant_begin(ccl_op *op, int save_all)
{
    op->buf = op->out;
    if (op->send != op->out && op->nbytes)
        memcpy(op->buf, op->send, op->nbytes);
    /* The result lands on the input: keep it, all of it up front, or
     * unit by unit before each is first written (ccl__op_save). */
    if (op->size > 1 && ccl__op_keep_input(op))
        return -1;
    if (save_all && op->backup && op->send == op->out && ccl__op_save(op, 0, op->nbytes))
        return -1;
    if (op->size == 1) {
        ccl__reduce_finish(op->buf, op->count, CCL_F32, op->redop, 1);
        return 1;
    }
    return 0;
}

int ccl__quant_unit_into(ccl_op *op, uint64_t first, uint64_t n, uint64_t seed,
                         uint8_t *b)
{
    ccl__put_u32(b, (uint32_t)n);
    if (ccl__quant_encode(op->qfmt, (const float *)op->buf + first, n, op->qblock, seed,
                          first, b + 4)) {
        ccl__op_fail(op, CCL_ERR_INVALID_ARG, "a quantized all-reduce cannot carry "
                     "NaN or infinity (element %llu or after)",
                     (unsigned long long)first);
        return -1;
    }
    return 0;
}

uint8_t *ccl__quant_unit(ccl_op *op, uint64_t first, uint64_t n, uint64_t seed,
                         uint32_t *len)
{
    size_t enc = ccl__quant_size(op->qfmt, n, op->qblock);
    uint8_t *b = malloc(4 + enc);
    if (!b) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory for an encoded unit");
        return NULL;
    }
    if (ccl__quant_unit_into(op, first, n, seed, b)) {
        free(b);
        return NULL;
    }
    *len = (uint32_t)(4 + enc);
    return b;
}

/* Pieces of this many elements (or one block, if larger) stay in the L1
 * cache from the finish through the encoding to the decoding. */
#define KEEP_PIECE 4096

int ccl__quant_finish_keep(ccl_op *op, uint64_t first, uint64_t n, uint8_t *w)
{
    uint32_t b = op->qblock ? op->qblock : 1;
    uint64_t piece = KEEP_PIECE >= b ? KEEP_PIECE / b * b : b;
    float *x = (float *)op->buf + first;
    uint8_t *out = w + 4;
    ccl__put_u32(w, (uint32_t)n);
    /* Every piece but the last is whole blocks, so the pieces' encodings
     * laid end to end are the unit's (quant.h: block by block). */
    for (uint64_t p = 0; p < n; p += piece) {
        uint64_t m = n - p < piece ? n - p : piece;
        ccl__reduce_finish(x + p, m, CCL_F32, op->redop, op->size);
        if (ccl__quant_encode(op->qfmt, x + p, m, op->qblock, op->qseed, first + p, out)) {
            ccl__op_fail(op, CCL_ERR_INVALID_ARG, "a quantized all-reduce cannot carry "
                         "NaN or infinity: the sum of elements %llu to %llu is not "
                         "finite", (unsigned long long)(first + p),
                         (unsigned long long)(first + p + m - 1));
            return -1;
        }
        ccl__quant_decode(op->qfmt, out, m, op->qblock, x + p);
        out += ccl__quant_size(op->qfmt, m, op->qblock);
    }
    return 0;
}

struct ccl__qunit *ccl__qunit_add(ccl_op *op, int from, uint64_t first, uint64_t n)
{
    if (op->nqunits == op->capqunits) {
        size_t cap = op->capqunits ? 2 * op->capqunits : 8;
        struct ccl__qunit *q = realloc(op->qunits, cap * sizeof *q);
        if (!q) {
            op->qbad = 2;
            return NULL;
        }
        op->qunits = q;
        op->capqunits = cap;
    }
    struct ccl__qunit *q = &op->qunits[op->nqunits++];
    q->from = from;
    q->first = first;
    q->n = n;
    q->bytes = NULL;
    q->in_arena = 0;
    return q;
}

int ccl__qunit_take(ccl_op *op, int from, uint64_t first, struct ccl__qunit *out)
{
    for (size_t i = 0; i < op->nqunits; i++)
        if (op->qunits[i].first == first && op->qunits[i].from == from) {
            *out = op->qunits[i];
            op->qunits[i] = op->qunits[--op->nqunits];
            return 0;
        }
    return -1;
}
