/*
 * coll_api.c - the public calls of point-to-point (send, recv) and of the
 * direct exchanges (reduce, gather, scatter, all-to-all(v), all-gather(v),
 * reduce-scatter(v)): argument checks and the blocks each rank exchanges;
 * the generic op calls are in op.c.
 */
#include "algos.h"
#include "api.h"
#include "communicator.h"

#include <stdlib.h>
#include <string.h>

/* Point-to-point: matched per (source, destination, tag) in posting order
 * (op_p2p.c). */
static int p2p_new(ccl_comm *c, const ccl__algo *algo, int kind, const void *send,
                   void *recv, uint64_t count, int dtype, int peer, uint32_t tag,
                   ccl_op **out)
{
    int rc = ccl__op_build(c, algo, send, recv, count, 1, dtype, CCL_SUM, 0, out);
    if (rc)
        return rc;
    int rank = ccl_comm_rank(c), size = ccl_comm_size(c);
    if (peer == rank || peer >= size || peer < (kind == CCL__P2P_RECV ? -1 : 0)) {
        free(*out);
        *out = NULL;
        return ccl__api_err(c, CCL_ERR_INVALID_ARG,
                        "peer must be another rank of the group (or CCL_ANY_SOURCE "
                        "for a recv)");
    }
    (*out)->p2p = kind;
    (*out)->peer = peer;
    (*out)->utag = tag;
    return ccl__op_submit(c, out);
}

int ccl_send_async(ccl_comm *c, const void *buf, uint64_t count, int dtype, int peer,
                   uint32_t tag, ccl_op **out)
{
    return p2p_new(c, &ccl__send_algo, CCL__P2P_SEND, buf, (void *)buf, count, dtype,
                   peer, tag, out);
}

int ccl_recv_async(ccl_comm *c, void *buf, uint64_t count, int dtype, int peer,
                   uint32_t tag, ccl_op **out)
{
    return p2p_new(c, &ccl__recv_algo, CCL__P2P_RECV, buf, buf, count, dtype, peer,
                   tag, out);
}

/* ---- direct exchanges (direct.c) ---- */

/* Makes an op whose blocks the caller fills: blocks[4 * size] set to
 * CCL__NO_BLOCK sizes, op->nbytes the largest buffer it touches. */
static int direct_new(ccl_comm *c, const ccl__algo *algo, const void *send, void *recv,
                      int dtype, int redop, int root, ccl_op **out)
{
    int rc = ccl__op_build(c, algo, send, recv, 0, 1, dtype, redop, root, out);
    if (rc)
        return rc;
    int n = ccl_comm_size(c);
    (*out)->blocks = malloc(4 * (size_t)n * sizeof *(*out)->blocks);
    if (!(*out)->blocks) {
        free(*out);
        *out = NULL;
        return ccl__api_err(c, CCL_ERR_NOMEM, "out of memory");
    }
    memset((*out)->blocks, 0, 4 * (size_t)n * sizeof *(*out)->blocks);
    for (int p = 0; p < n; p++) {
        (*out)->blocks[n + p] = CCL__NO_BLOCK;
        (*out)->blocks[3 * n + p] = CCL__NO_BLOCK;
    }
    return CCL_OK;
}

static void set_block(ccl_op *op, int n, int send_side, int p, uint64_t off_el,
                      uint64_t len_el)
{
    op->blocks[(send_side ? 0 : 2 * n) + p] = off_el * op->esize;
    op->blocks[(send_side ? n : 3 * n) + p] = len_el * op->esize;
}

/* Checks a per-rank count table: present and small enough that sizes in
 * bytes and their sums fit. */
static int counts_ok(ccl_comm *c, const uint64_t *counts, int dtype, int n,
                     uint64_t *sum)
{
    size_t es = ccl_dtype_size(dtype);
    *sum = 0;
    if (!counts || !es)
        return 0;
    for (int p = 0; p < n; p++) {
        if (counts[p] > (UINT64_MAX / 4) / es / (uint64_t)n)
            return 0;
        *sum += counts[p];
    }
    return 1;
}

static int direct_fail(ccl_comm *c, ccl_op **out, const char *why)
{
    if (*out) {
        free((*out)->blocks);
        free(*out);
        *out = NULL;
    }
    return ccl__api_err(c, CCL_ERR_INVALID_ARG, why);
}

static int direct_post(ccl_comm *c, ccl_op **out, uint64_t touched_el, int need_send,
                       int need_recv)
{
    ccl_op *op = *out;
    if (touched_el && ((need_send && !op->send) || (need_recv && !op->out)))
        return direct_fail(c, out, "NULL buffer");
    op->count = touched_el;
    op->nbytes = touched_el * op->esize;
    return ccl__op_submit(c, out);
}

/* An exchange with a root: every rank's block of count elements goes to
 * the root (to_root: gather, reduce; the root's slots are at p * count),
 * or the root's block p goes to rank p (scatter). */
static int rooted(ccl_comm *c, const ccl__algo *algo, const void *send, void *recv,
                  uint64_t count, int dtype, int redop, int root, int to_root,
                  ccl_op **out)
{
    int rc = direct_new(c, algo, send, recv, dtype, redop, root, out);
    if (rc)
        return rc;
    int n = ccl_comm_size(c), me = ccl_comm_rank(c);
    if (count > (UINT64_MAX / 4) / (*out)->esize / (uint64_t)n)
        return direct_fail(c, out, "count too large");
    set_block(*out, n, to_root, root, 0, count);
    if (me == root)
        for (int p = 0; p < n; p++)
            set_block(*out, n, !to_root, p, (uint64_t)p * count, count);
    /* The root's buffer holds n blocks, except a reduce's output. */
    uint64_t touched = me == root && algo != &ccl__reduce_algo ? count * (uint64_t)n
                                                                : count;
    return direct_post(c, out, touched, to_root || me == root, !to_root || me == root);
}

int ccl_gather_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int root, ccl_op **out)
{
    return rooted(c, &ccl__gather_algo, send, recv, count, dtype, CCL_SUM, root, 1, out);
}

int ccl_scatter_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                      int dtype, int root, ccl_op **out)
{
    return rooted(c, &ccl__scatter_algo, send, recv, count, dtype, CCL_SUM, root, 0,
                  out);
}

int ccl_reduce_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int redop, int root, ccl_op **out)
{
    return rooted(c, &ccl__reduce_algo, send, recv, count, dtype, redop, root, 1, out);
}

int ccl_alltoallv_async(ccl_comm *c, const void *send, const uint64_t *send_counts,
                        void *recv, const uint64_t *recv_counts, int dtype,
                        ccl_op **out)
{
    int rc = direct_new(c, &ccl__alltoallv_algo, send, recv, dtype, CCL_SUM, 0, out);
    if (rc)
        return rc;
    int n = ccl_comm_size(c);
    uint64_t ssum, rsum;
    if (!counts_ok(c, send_counts, dtype, n, &ssum) ||
        !counts_ok(c, recv_counts, dtype, n, &rsum))
        return direct_fail(c, out, "send_counts and recv_counts need one count per "
                           "rank, each small enough");
    uint64_t so = 0, ro = 0;
    for (int p = 0; p < n; p++) {
        set_block(*out, n, 1, p, so, send_counts[p]);
        set_block(*out, n, 0, p, ro, recv_counts[p]);
        so += send_counts[p];
        ro += recv_counts[p];
    }
    if (send_counts[ccl_comm_rank(c)] != recv_counts[ccl_comm_rank(c)])
        return direct_fail(c, out, "what a rank sends itself must equal what it "
                           "receives from itself");
    if ((ssum && !send) || (rsum && !recv))
        return direct_fail(c, out, "NULL buffer");
    return direct_post(c, out, ssum > rsum ? ssum : rsum, 0, 0);
}

int ccl_allgatherv_async(ccl_comm *c, const void *send, uint64_t count, void *recv,
                         const uint64_t *counts, int dtype, ccl_op **out)
{
    int rc = direct_new(c, &ccl__allgatherv_algo, send, recv, dtype, CCL_SUM, 0, out);
    if (rc)
        return rc;
    int n = ccl_comm_size(c), me = ccl_comm_rank(c);
    uint64_t sum;
    if (!counts_ok(c, counts, dtype, n, &sum) || counts[me] != count)
        return direct_fail(c, out, "counts needs one count per rank, and this rank's "
                           "must equal its count");
    uint64_t off = 0;
    for (int p = 0; p < n; p++) {
        set_block(*out, n, 1, p, 0, count);
        set_block(*out, n, 0, p, off, counts[p]);
        off += counts[p];
    }
    if ((count && !send) || (sum && !recv))
        return direct_fail(c, out, "NULL buffer");
    return direct_post(c, out, sum, 0, 0);
}

int ccl_reduce_scatterv_async(ccl_comm *c, const void *send, void *recv,
                              const uint64_t *counts, int dtype, int redop,
                              ccl_op **out)
{
    int rc = direct_new(c, &ccl__reduce_scatterv_algo, send, recv, dtype, redop, 0,
                        out);
    if (rc)
        return rc;
    int n = ccl_comm_size(c), me = ccl_comm_rank(c);
    uint64_t sum;
    if (!counts_ok(c, counts, dtype, n, &sum))
        return direct_fail(c, out, "counts needs one count per rank, each small enough");
    uint64_t off = 0;
    for (int p = 0; p < n; p++) {
        set_block(*out, n, 1, p, off, counts[p]);
        /* Every rank's contribution to our block lands in slot p. */
        set_block(*out, n, 0, p, (uint64_t)p * counts[me], counts[me]);
        off += counts[p];
    }
    if ((sum && !send) || (counts[me] && !recv))
        return direct_fail(c, out, "NULL buffer");
    return direct_post(c, out, sum, 0, 0);
}

int ccl_allreduce_quant_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                              int redop, int format, uint32_t block, uint64_t seed,
                              ccl_op **out)
{
    return ccl_allreduce_quant_algo_async(c, send, recv, count, redop, CCL_ALGO_AUTO,
                                          format, block, seed, out);
}

int ccl_allreduce_quant_algo_async(ccl_comm *c, const void *send, void *recv,
                                   uint64_t count, int redop, int algorithm, int format,
                                   uint32_t block, uint64_t seed, ccl_op **out)
{
    int log2b = 0;
    while (log2b < 17 && (1u << log2b) != block)
        log2b++;
    if (format == CCL_QUANT_F16 || format == CCL_QUANT_BF16)
        log2b = 0; /* no blocks */
    else if (format < CCL_QUANT_U8 || format > CCL_QUANT_E3M0 || log2b > 16)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "quantized all-reduce: format "
                            "u8, u4, e3m0, f16 or bf16; block a power of two up to "
                            "65536");
    if (algorithm < CCL_ALGO_AUTO || algorithm > CCL_ALGO_DIRECT)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "quantized all-reduce: algorithm "
                            "AUTO, RING, STAR or DIRECT");
    if (!c)
        return CCL_ERR_INVALID_ARG;
    /* AUTO as for plain all-reduce: a star for small ops, the direct or
     * ring algorithm for large ones (ranks must agree on star_max_bytes;
     * without it the epoch's threshold decides at activation,
     * ccl__algo_pick). */
    int tuned = algorithm == CCL_ALGO_AUTO && c->cfg.star_max_bytes == CCL_STAR_MAX_AUTO;
    uint64_t max = tuned ? CCL_TUNE_FLOOR_BYTES : c->cfg.star_max_bytes;
    int n = ccl_comm_size(c);
    const ccl__algo *algo = algorithm == CCL_ALGO_STAR    ? &ccl__star_q_algo
                            : algorithm == CCL_ALGO_RING   ? &ccl__ring_q_algo
                            : algorithm == CCL_ALGO_DIRECT ? &ccl__direct_q_algo
                            : count * 4 <= max || n <= 1   ? &ccl__star_q_algo
                                                           : ccl__quant_large(n);
    int rc = ccl__op_build(c, algo, send, recv, count, 1, CCL_F32, redop, 0, out);
    if (rc)
        return rc;
    ccl_op *op = *out;
    op->qfmt = format;
    op->qblock = 1u << log2b;
    op->qseed = seed;
    if (tuned)
        op->tuned = CCL__TUNED_ALLREDUCE;
    op->root = format | log2b << 3; /* carried in every frame: ranks must agree */
    return ccl__op_submit(c, out);
}

int ccl_op_source(ccl_op *op)
{
    if (!op || op->p2p != CCL__P2P_RECV || !__atomic_load_n(&op->done, __ATOMIC_ACQUIRE))
        return -1;
    return op->peer;
}

int ccl_send(ccl_comm *c, const void *buf, uint64_t count, int dtype, int peer,
             uint32_t tag)
{
    ccl_op *op = NULL;
    int rc = ccl_send_async(c, buf, count, dtype, peer, tag, &op);
    return ccl__wait_free(rc, op);
}

int ccl_recv(ccl_comm *c, void *buf, uint64_t count, int dtype, int peer, uint32_t tag,
             int *source)
{
    ccl_op *op = NULL;
    int rc = ccl_recv_async(c, buf, count, dtype, peer, tag, &op);
    if (rc == CCL_OK && source) {
        rc = ccl_op_wait(op, -1);
        *source = ccl_op_source(op);
        if (rc)
            ccl__engine_set_error(op->eng, op->err);
        ccl_op_free(op);
        return rc;
    }
    return ccl__wait_free(rc, op);
}

