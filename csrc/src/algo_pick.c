/*
 * algo_pick.c - the automatic all-reduce's choice at activation: the
 * star up to the epoch's threshold, the ring above (plain or quantized),
 * and the direct all-reduce in the range the cost model gives it (plain
 * only).
 * The API guesses at build time (op.c, coll_api.c); this settles it once
 * the op has the thresholds of the epoch it runs in, which every member
 * of that epoch shares (the GROUP's tuning, tune.h), so every rank
 * picks the same algorithm.
 */
#include "algos.h"

const ccl__algo *ccl__algo_pick(const ccl_op *op)
{
    /* A zero-byte op is always under the threshold: the star, whose
     * empty frames make it a barrier (star.c). */
    int star = op->size <= 1 || op->nbytes <= op->star_max_bytes;
    if (op->algo == &ccl__star_q_algo || op->algo == &ccl__ring_q_algo)
        return star ? &ccl__star_q_algo : &ccl__ring_q_algo;
    /* Where the model gives the direct all-reduce a range, it takes over
     * from the star above the floor (tune.h). */
    if (op->direct_max && op->size > 1 && op->nbytes > CCL_TUNE_FLOOR_BYTES &&
        op->nbytes <= op->direct_max)
        return &ccl__direct_allreduce_algo;
    return star ? &ccl__star_allreduce_algo : &ccl__ring_allreduce_algo;
}
