/*
 * sinks.c - where arriving payload goes, for the algorithms: landed in
 * place, or reduced into place whole element by whole element while the
 * bytes are still in cache.  A quantized format adds a sink here that
 * decodes a run of blocks and reduces it: the transport and the op layer
 * stay as they are.
 */
#include "algos.h"
#include "reduce.h"

#include <string.h>

void ccl__sink_land(ccl__sink *s, ccl_op *op, uint8_t *dst)
{
    memset(s, 0, sizeof *s);
    s->kind = CCL_SINK_LAND;
    s->dst = dst;
    s->owner = op;
}

static void reduce_consume(const ccl__sink *s, const uint8_t *src, size_t off,
                           size_t len)
{
    const ccl_op *op = s->arg;
    ccl__reduce(s->dst + off, src, len / op->esize, op->dtype, op->redop);
}

void ccl__sink_reduce(ccl__sink *s, ccl_op *op, uint8_t *dst)
{
    memset(s, 0, sizeof *s);
    s->kind = CCL_SINK_STAGE;
    s->dst = dst;
    s->unit = op->esize;
    s->consume = reduce_consume;
    s->owner = op;
    s->arg = op;
}
