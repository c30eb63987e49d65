/*
 * algos.h - the algorithms (one per file: ring.c, star.c, broadcast.c,
 * direct_ar.c, ...)
 * and the sinks they share (sinks.c).  The public API picks an algorithm
 * per op; the op layer drives it through its ccl__algo table.
 */
#ifndef CCL_ALGOS_H
#define CCL_ALGOS_H

#include "op_types.h"

/* Payload lands at dst as it arrives. */
void ccl__sink_land(ccl__sink *s, ccl_op *op, uint8_t *dst);
/* Payload is reduced (op's dtype and redop) into dst as it arrives. */
void ccl__sink_reduce(ccl__sink *s, ccl_op *op, uint8_t *dst);

/* What the quantized all-reduces share (quant_op.c).  `total` of their
 * frames: */
uint64_t ccl__quant_total(const ccl_op *op, int peer, int sending);
/* Their start: the buffer, the input kept (in place: all of it saved now
 * with save_all, else the algorithm saves each unit before it first
 * writes there), a group of one finished.  1: done (one rank), 0: go on,
 * -1: failed. */
int ccl__quant_begin(ccl_op *op, int save_all);
/* Elements [first, first + n) of op->buf encoded as one unit's payload
 * (u32 n, the encoding) in a new buffer, its length in *len; NULL: the op
 * has failed (no memory, or NaN or infinity in the data). */
uint8_t *ccl__quant_unit(ccl_op *op, uint64_t first, uint64_t n, uint64_t seed,
                         uint32_t *len);
/* The same into b (4 + ccl__quant_size bytes); 0, or -1: failed. */
int ccl__quant_unit_into(ccl_op *op, uint64_t first, uint64_t n, uint64_t seed,
                         uint8_t *b);
/* The owner's step on elements [first, first + n) of op->buf, whose sum
 * is complete: finish it (AVG divides once), encode it into w (the u32
 * count, then the encoding: 4 + ccl__quant_size bytes) and replace it
 * with the decoded result, the three a few blocks at a time.  0, or -1:
 * the op has failed (the sum is NaN or infinite). */
int ccl__quant_finish_keep(ccl_op *op, uint64_t first, uint64_t n, uint8_t *w);
/* A decoded unit from `from` (an algorithm's tag: peer, step) waiting
 * for its frame's end; NULL (op->qbad = 2) without memory.  take: moves
 * it out (-1: none such). */
struct ccl__qunit *ccl__qunit_add(ccl_op *op, int from, uint64_t first, uint64_t n);
int ccl__qunit_take(ccl_op *op, int from, uint64_t first, struct ccl__qunit *out);

/* Byte range of segment k of the op's buffer cut into n (ring.c). */
void ccl__ring_segment(const ccl_op *op, int n, int k, uint64_t *off, uint64_t *len);

/* The engine's pick (engine.h, algo_pick.c): an automatic all-reduce's
 * algorithm against the epoch's threshold in op->star_max_bytes. */
const ccl__algo *ccl__algo_pick(const ccl_op *op);
/* AUTO's algorithm for a large quantized all-reduce in a group of n
 * (algo_pick.c). */
const ccl__algo *ccl__quant_large(int n);

extern const ccl__algo ccl__ring_allreduce_algo;
extern const ccl__algo ccl__ring_allgather_algo;
extern const ccl__algo ccl__ring_reduce_scatter_algo;
extern const ccl__algo ccl__star_allreduce_algo;
extern const ccl__algo ccl__broadcast_algo;
extern const ccl__algo ccl__barrier_algo;
extern const ccl__algo ccl__send_algo;
extern const ccl__algo ccl__recv_algo;
extern const ccl__algo ccl__gather_algo;
extern const ccl__algo ccl__scatter_algo;
extern const ccl__algo ccl__alltoallv_algo;
extern const ccl__algo ccl__allgatherv_algo;
extern const ccl__algo ccl__reduce_scatterv_algo;
extern const ccl__algo ccl__reduce_algo;
extern const ccl__algo ccl__star_q_algo;
extern const ccl__algo ccl__ring_q_algo;
extern const ccl__algo ccl__direct_allreduce_algo;
extern const ccl__algo ccl__direct_q_algo;

#endif
