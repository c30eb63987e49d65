/*
 * algo_pick.c - the automatic all-reduce's choice at activation: the
 * star up to the epoch's threshold; above it the ring, or the direct
 * all-reduce in the range the cost model gives it (plain); quantized, the
 * ring (ccl__quant_large).
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
    if (op->algo == &ccl__star_q_algo || op->algo == &ccl__ring_q_algo ||
        op->algo == &ccl__direct_q_algo)
        return star ? &ccl__star_q_algo : ccl__quant_large(op->size);
    /* Where the model gives the direct all-reduce a range, it takes over
     * from the star above the floor (tune.h). */
    if (op->direct_max && op->size > 1 && op->nbytes > CCL_TUNE_FLOOR_BYTES &&
        op->nbytes <= op->direct_max)
        return &ccl__direct_allreduce_algo;
    return star ? &ccl__star_allreduce_algo : &ccl__ring_allreduce_algo;
}

const ccl__algo *ccl__quant_large(int n)
{
    /* The ring.  The direct algorithm (direct_q.c: 2 hops, each input
     * encoded once, so about 1.2x less error rounding to nearest and
     * 1.8x less stochastically at 4 ranks) is as fast on loopback but
     * was slower and erratic on the emulated 1 Gbit/s, 50 ms link with
     * its 4 streams per pair, and as fast only with 1
     * (docs/quantization.md, "Algorithms"): it is there on request. */
    (void)n;
    return &ccl__ring_q_algo;
}
