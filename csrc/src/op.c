/*
 * op.c - the public op calls: argument checks, choosing the algorithm,
 * posting, waiting, freeing.  An op returned by a *_async call holds two
 * references: the caller's (ccl_op_free) and the engine's; the last one
 * frees it, so a caller may free a pending op and the engine still
 * finishes it safely.
 */
#include "algos.h"
#include "api.h"
#include "communicator.h"
#include "reduce.h"

#include <stdlib.h>
#include <string.h>

int ccl__api_err(ccl_comm *c, int rc, const char *msg)
{
    if (c)
        ccl__engine_set_error(&c->eng, msg);
    return rc;
}

/* The pipelining unit: chunk_bytes cut to the frame cap and to whole
 * elements. */
static uint32_t unit_bytes(const ccl_comm *c, size_t esize)
{
    uint32_t u = c->cfg.chunk_bytes;
    if (u > CCL_MAX_DATA_PAYLOAD)
        u = CCL_MAX_DATA_PAYLOAD;
    u -= u % (uint32_t)esize;
    return u ? u : (uint32_t)esize;
}

/* Checks the arguments and makes an op over `blocks` blocks of count
 * elements (the full buffer every frame describes), not posted yet. */
int ccl__op_build(ccl_comm *c, const ccl__algo *algo, const void *send, void *recv,
                  uint64_t count, uint64_t blocks, int dtype, int redop, int root,
                    ccl_op **out)
{
    if (!out)
        return CCL_ERR_INVALID_ARG;
    *out = NULL;
    if (!c)
        return CCL_ERR_INVALID_ARG;
    int size = ccl_comm_size(c);
    size_t esize = ccl_dtype_size(dtype);
    if (esize == 0)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "unknown dtype");
    if (redop < 0 || redop >= CCL_REDOP_COUNT)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "unknown reduction op");
    if (!ccl__redop_valid(dtype, redop))
        return ccl__api_err(c, CCL_ERR_INVALID_ARG,
                        "bitwise reductions (band, bor, bxor) need an integer dtype");
    if (count > (UINT64_MAX / 2) / esize / (uint64_t)size)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "count too large");
    if (count > 0 && (!send || !recv))
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "NULL buffer");
    if (root < 0 || root >= size)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "root out of range");
    ccl_op *op = calloc(1, sizeof *op);
    if (!op)
        return ccl__api_err(c, CCL_ERR_NOMEM, "out of memory");
    op->eng = &c->eng;
    op->refs = 2;
    op->algo = algo;
    op->dtype = dtype;
    op->redop = redop;
    op->root = root;
    op->esize = esize;
    op->unit = unit_bytes(c, esize);
    op->star_max_bytes = c->cfg.star_max_bytes;
    /* A broadcast without the caller's threshold takes the epoch's. */
    if (algo == &ccl__broadcast_algo && c->cfg.star_max_bytes == CCL_STAR_MAX_AUTO)
        op->tuned = CCL__TUNED_BCAST;
    op->send = send;
    op->out = recv;
    op->count = count * blocks;
    op->nbytes = op->count * esize;
    *out = op;
    return CCL_OK;
}

/* Posts a built op: it is the caller's from here on. */
int ccl__op_submit(ccl_comm *c, ccl_op **out)
{
    if (ccl__engine_post(&c->eng, *out) != CCL_OK) {
        free(*out);
        *out = NULL;
        return ccl__api_err(c, CCL_ERR_CLOSED, "communicator closed");
    }
    ccl__loop_kick(c);
    return CCL_OK;
}

static int op_new(ccl_comm *c, const ccl__algo *algo, const void *send, void *recv,
                  uint64_t count, uint64_t blocks, int dtype, int redop, int root,
                  ccl_op **out)
{
    int rc = ccl__op_build(c, algo, send, recv, count, blocks, dtype, redop, root, out);
    return rc ? rc : ccl__op_submit(c, out);
}

static const ccl__algo *allreduce_algo(ccl_comm *c, uint64_t nbytes, int algo)
{
    if (algo == CCL_ALGO_RING && nbytes > 0)
        return &ccl__ring_allreduce_algo;
    if (algo == CCL_ALGO_DIRECT && nbytes > 0 && ccl_comm_size(c) > 1)
        return &ccl__direct_allreduce_algo;
    if (algo == CCL_ALGO_STAR || nbytes == 0 || ccl_comm_size(c) <= 1)
        return &ccl__star_allreduce_algo;
    /* AUTO: a star costs 2 hops but sends everything through one hub; a
     * ring costs 2(N-1) hops and spreads the bytes.  Small ops are latency
     * bound, large ones bandwidth bound.  Without the caller's threshold
     * this is only a first guess: ccl__algo_pick decides at activation. */
    uint64_t max = c->cfg.star_max_bytes == CCL_STAR_MAX_AUTO ? CCL_TUNE_FLOOR_BYTES
                                                              : c->cfg.star_max_bytes;
    return nbytes <= max ? &ccl__star_allreduce_algo : &ccl__ring_allreduce_algo;
}

int ccl_allreduce_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, int redop, int algo,
                        ccl_op **out)
{
    if (algo < CCL_ALGO_AUTO || algo > CCL_ALGO_DIRECT)
        return ccl__api_err(c, CCL_ERR_INVALID_ARG, "unknown algorithm");
    size_t es = ccl_dtype_size(dtype);
    int rc = ccl__op_build(c, c ? allreduce_algo(c, count * (es ? es : 1), algo) : NULL,
                           send, recv, count, 1, dtype, redop, 0, out);
    if (rc)
        return rc;
    if (algo == CCL_ALGO_AUTO && c->cfg.star_max_bytes == CCL_STAR_MAX_AUTO)
        (*out)->tuned = CCL__TUNED_ALLREDUCE;
    return ccl__op_submit(c, out);
}

int ccl_broadcast_async(ccl_comm *c, void *buf, uint64_t count, int dtype,
                        int root, ccl_op **out)
{
    return op_new(c, &ccl__broadcast_algo, buf, buf, count, 1, dtype, CCL_SUM, root,
                  out);
}

/* All-gather and reduce-scatter frames describe the whole buffer of
 * size blocks. */
int ccl_allgather_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, ccl_op **out)
{
    return op_new(c, &ccl__ring_allgather_algo, send, recv, count,
                  c ? (uint64_t)ccl_comm_size(c) : 1, dtype, CCL_SUM, 0, out);
}

int ccl_reduce_scatter_async(ccl_comm *c, const void *send, void *recv,
                             uint64_t count, int dtype, int redop, ccl_op **out)
{
    return op_new(c, &ccl__ring_reduce_scatter_algo, send, recv, count,
                  c ? (uint64_t)ccl_comm_size(c) : 1, dtype, redop, 0, out);
}

int ccl_barrier_async(ccl_comm *c, ccl_op **out)
{
    return op_new(c, &ccl__barrier_algo, NULL, NULL, 0, 1, CCL_U8, CCL_SUM, 0, out);
}

static int op_is_done(ccl_op *op)
{
    return __atomic_load_n(&op->done, __ATOMIC_ACQUIRE);
}

static ccl_comm *op_comm(ccl_op *op)
{
    return (ccl_comm *)((char *)op->eng - offsetof(ccl_comm, eng));
}

static int stopping(ccl_comm *c)
{
    return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

/* Sleeps until an op completes or `until` (whichever is first). */
static void sleep_for_completion(ccl__engine *e, ccl_op *op, uint64_t now,
                                 uint64_t until)
{
    pthread_mutex_lock(&e->done_mu);
    if (!op_is_done(op))
        ccl__cond_wait_ms(&e->done_cv, &e->done_mu, until - now);
    pthread_mutex_unlock(&e->done_mu);
}

/* A wait spins (progress.c, ccl__loop_drive) only for ops up to this
 * size: a larger one cannot end within a spin, whose CPU is then lost. */
#define SPIN_MAX_BYTES (256u << 10)

int ccl_op_wait(ccl_op *op, int timeout_ms)
{
    if (!op)
        return CCL_ERR_INVALID_ARG;
    if (op_is_done(op))
        return op->result;
    ccl_comm *c = op_comm(op);
    ccl__engine *e = &c->eng;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX / 2
                                       : ccl__now_ms() + (uint64_t)timeout_ms;
    pthread_mutex_lock(&e->done_mu);
    e->waiters++;
    pthread_mutex_unlock(&e->done_mu);
    while (!op_is_done(op)) {
        uint64_t now = ccl__now_ms();
        if (now >= deadline)
            break;
        if (!stopping(c) && pthread_mutex_trylock(&c->mu) == 0) {
            ccl__loop_drive(c, &op->done, deadline, op->nbytes <= SPIN_MAX_BYTES);
            pthread_mutex_unlock(&c->mu);
            continue;
        }
        /* Someone else drives (or the communicator is closing): sleep until
         * an op completes, waking now and then to try driving ourselves. */
        sleep_for_completion(e, op, now, now + 20 < deadline ? now + 20 : deadline);
    }
    pthread_mutex_lock(&e->done_mu);
    e->waiters--;
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->done_mu);
    return op_is_done(op) ? op->result : CCL_ERR_PENDING;
}

int ccl_op_test(ccl_op *op, int *done)
{
    if (!op || !done)
        return CCL_ERR_INVALID_ARG;
    if (!op_is_done(op)) {
        /* Make progress if nobody else does right now. */
        ccl_comm *c = op_comm(op);
        if (!stopping(c) && pthread_mutex_trylock(&c->mu) == 0) {
            ccl__loop_once(c, 0);
            pthread_mutex_unlock(&c->mu);
        }
    }
    *done = op_is_done(op);
    return *done ? op->result : CCL_OK;
}

const char *ccl_op_error(ccl_op *op)
{
    if (!op || !op_is_done(op))
        return "";
    return op->err;
}

void ccl_op_free(ccl_op *op)
{
    if (op)
        ccl__op_release(op);
}

/* The blocking forms: post, wait, free. */
int ccl__wait_free(int rc, ccl_op *op)
{
    if (rc)
        return rc;
    rc = ccl_op_wait(op, -1);
    if (rc)
        ccl__engine_set_error(op->eng, op->err);
    ccl_op_free(op);
    return rc;
}

int ccl_allreduce(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype, int redop, int algo)
{
    ccl_op *op = NULL;
    int rc = ccl_allreduce_async(c, send, recv, count, dtype, redop, algo, &op);
    return ccl__wait_free(rc, op);
}

int ccl_broadcast(ccl_comm *c, void *buf, uint64_t count, int dtype, int root)
{
    ccl_op *op = NULL;
    int rc = ccl_broadcast_async(c, buf, count, dtype, root, &op);
    return ccl__wait_free(rc, op);
}

int ccl_allgather(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype)
{
    ccl_op *op = NULL;
    int rc = ccl_allgather_async(c, send, recv, count, dtype, &op);
    return ccl__wait_free(rc, op);
}

int ccl_reduce_scatter(ccl_comm *c, const void *send, void *recv,
                       uint64_t count, int dtype, int redop)
{
    ccl_op *op = NULL;
    int rc = ccl_reduce_scatter_async(c, send, recv, count, dtype, redop, &op);
    return ccl__wait_free(rc, op);
}

int ccl_barrier(ccl_comm *c)
{
    ccl_op *op = NULL;
    int rc = ccl_barrier_async(c, &op);
    return ccl__wait_free(rc, op);
}
