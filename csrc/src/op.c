/*
 * op.c - the public op calls: argument checks, posting, waiting, freeing.
 *
 * An op holds two references: the caller's (dropped by ccl_op_free) and
 * the engine's (dropped after completion, in ccl__reap).  The last one
 * frees it, so a caller may free a pending op and the engine still
 * finishes it safely.
 */
#include "comm.h"
#include "reduce.h"
#include "sock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ccl__op_release(ccl_op *op)
{
    if (__atomic_sub_fetch(&op->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(op->scratch);
        free(op->peer_rx);
        free(op->done_seen);
        free(op->backup);
        free(op->saved);
        free(op);
    }
}

void ccl__set_error(ccl_comm *c, const char *msg)
{
    pthread_mutex_lock(&c->post_mu);
    strncpy(c->errbuf, msg, sizeof c->errbuf - 1);
    c->errbuf[sizeof c->errbuf - 1] = 0;
    pthread_mutex_unlock(&c->post_mu);
}

static int comm_err(ccl_comm *c, int rc, const char *msg)
{
    if (c)
        ccl__set_error(c, msg);
    return rc;
}

static int op_new(ccl_comm *c, const ccl__algo *algo, const void *send,
                  void *recv, uint64_t count, int dtype, int redop, int root,
                  ccl_op **out)
{
    if (!out)
        return CCL_ERR_INVALID_ARG;
    *out = NULL;
    if (!c)
        return CCL_ERR_INVALID_ARG;
    size_t esize = ccl_dtype_size(dtype);
    if (esize == 0)
        return comm_err(c, CCL_ERR_INVALID_ARG, "unknown dtype");
    if (redop < 0 || redop >= CCL_REDOP_COUNT)
        return comm_err(c, CCL_ERR_INVALID_ARG, "unknown reduction op");
    if (count > (UINT64_MAX / 2) / esize / (uint64_t)c->size)
        return comm_err(c, CCL_ERR_INVALID_ARG, "count too large");
    if (count > 0 && (!send || !recv))
        return comm_err(c, CCL_ERR_INVALID_ARG, "NULL buffer");
    if (root < 0 || root >= c->size)
        return comm_err(c, CCL_ERR_INVALID_ARG, "root out of range");
    ccl_op *op = calloc(1, sizeof *op);
    if (!op)
        return comm_err(c, CCL_ERR_NOMEM, "out of memory");
    op->comm = c;
    op->refs = 2;
    op->algo = algo;
    op->dtype = dtype;
    op->redop = redop;
    op->root = root;
    op->esize = esize;
    op->send = send;
    op->out = recv;
    op->count = count;
    op->nbytes = count * esize;
    *out = op;
    return CCL_OK;
}

int ccl__op_post(ccl_comm *c, ccl_op *op, ccl_op **out)
{
    pthread_mutex_lock(&c->post_mu);
    if (c->closed) {
        pthread_mutex_unlock(&c->post_mu);
        free(op->scratch);
        free(op);
        *out = NULL;
        return comm_err(c, CCL_ERR_CLOSED, "communicator closed");
    }
    op->tag = c->next_tag++;
    op->epoch = c->epoch;
    op->next = NULL;
    if (c->post_tail)
        c->post_tail->next = op;
    else
        c->post_head = op;
    c->post_tail = op;
    pthread_mutex_unlock(&c->post_mu);
    /* Start the op right here when nobody else drives: its first frames go
     * out without waking the progress thread. */
    if (pthread_mutex_trylock(&c->mu) == 0) {
        ccl__drain_posts(c);
        ccl__reap(c);
        pthread_mutex_unlock(&c->mu);
    } else {
        ccl__wakefd_signal(c->wakefd);
    }
    *out = op;
    return CCL_OK;
}

static const ccl__algo *allreduce_algo(ccl_comm *c, uint64_t nbytes, int algo)
{
    if (algo == CCL_ALGO_RING && nbytes > 0)
        return &ccl__ring_allreduce_algo;
    if (algo == CCL_ALGO_STAR || nbytes == 0 || c->size <= 1)
        return &ccl__star_allreduce_algo;
    /* AUTO: a star costs 2 hops but sends everything through one hub; a
     * ring costs 2(N-1) hops and spreads the bytes.  Small ops are latency
     * bound, large ones bandwidth bound. */
    return nbytes <= c->cfg.star_max_bytes ? &ccl__star_allreduce_algo
                                           : &ccl__ring_allreduce_algo;
}

int ccl_allreduce_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, int redop, int algo,
                        ccl_op **out)
{
    if (algo < CCL_ALGO_AUTO || algo > CCL_ALGO_STAR)
        return comm_err(c, CCL_ERR_INVALID_ARG, "unknown algorithm");
    size_t es = ccl_dtype_size(dtype);
    int rc = op_new(c, c ? allreduce_algo(c, count * (es ? es : 1), algo) : NULL,
                    send, recv, count, dtype, redop, 0, out);
    return rc ? rc : ccl__op_post(c, *out, out);
}

int ccl_broadcast_async(ccl_comm *c, void *buf, uint64_t count, int dtype,
                        int root, ccl_op **out)
{
    int rc = op_new(c, &ccl__broadcast_algo, buf, buf, count, dtype, CCL_SUM,
                    root, out);
    return rc ? rc : ccl__op_post(c, *out, out);
}

int ccl_allgather_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, ccl_op **out)
{
    int rc = op_new(c, &ccl__ring_allgather_algo, send, recv, count, dtype,
                    CCL_SUM, 0, out);
    if (rc)
        return rc;
    /* Frames describe the whole gathered buffer. */
    (*out)->count = count * (uint64_t)c->size;
    (*out)->nbytes = (*out)->count * (*out)->esize;
    return ccl__op_post(c, *out, out);
}

int ccl_reduce_scatter_async(ccl_comm *c, const void *send, void *recv,
                             uint64_t count, int dtype, int redop, ccl_op **out)
{
    int rc = op_new(c, &ccl__ring_reduce_scatter_algo, send, recv, count,
                    dtype, redop, 0, out);
    if (rc)
        return rc;
    (*out)->count = count * (uint64_t)c->size;
    (*out)->nbytes = (*out)->count * (*out)->esize;
    return ccl__op_post(c, *out, out);
}

int ccl_barrier_async(ccl_comm *c, ccl_op **out)
{
    int rc = op_new(c, &ccl__barrier_algo, NULL, NULL, 0, CCL_U8, CCL_SUM, 0, out);
    return rc ? rc : ccl__op_post(c, *out, out);
}

static int op_is_done(ccl_op *op)
{
    return __atomic_load_n(&op->done, __ATOMIC_ACQUIRE);
}

/* Drives the event loop from the caller's thread until the op ends, the
 * deadline passes, or the communicator closes.  Spinning (polling with a
 * zero timeout) comes first when it is enabled, because waking an idle CPU
 * costs tens of microseconds, more than a small op takes. */
static void drive(ccl_comm *c, ccl_op *op, uint64_t deadline_ms)
{
    c->driving = 1;
    if (c->spin_us > 0) {
        uint64_t until = ccl__now_us() + (uint64_t)c->spin_us;
        while (!op_is_done(op) && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) &&
               ccl__now_us() < until)
            ccl__loop_once(c, 0);
    }
    while (!op_is_done(op) && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
        uint64_t now = ccl__now_ms();
        if (now >= deadline_ms)
            break;
        uint64_t left = deadline_ms - now;
        ccl__loop_once(c, left > 100 ? 100 : (int)left);
    }
    c->driving = 0;
    pthread_cond_signal(&c->idle_cv);
}

int ccl_op_wait(ccl_op *op, int timeout_ms)
{
    if (!op)
        return CCL_ERR_INVALID_ARG;
    if (op_is_done(op))
        return op->result;
    ccl_comm *c = op->comm;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX / 2
                                       : ccl__now_ms() + (uint64_t)timeout_ms;
    pthread_mutex_lock(&c->done_mu);
    c->waiters++;
    pthread_mutex_unlock(&c->done_mu);
    while (!op_is_done(op)) {
        uint64_t now = ccl__now_ms();
        if (now >= deadline)
            break;
        if (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) &&
            pthread_mutex_trylock(&c->mu) == 0) {
            drive(c, op, deadline);
            pthread_mutex_unlock(&c->mu);
            continue;
        }
        /* Someone else drives (or the communicator is closing): sleep until
         * an op completes, waking now and then to try driving ourselves. */
        pthread_mutex_lock(&c->done_mu);
        if (!op_is_done(op)) {
            uint64_t until = now + 20 < deadline ? now + 20 : deadline;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t add = until - now;
            ts.tv_sec += (time_t)(add / 1000);
            ts.tv_nsec += (long)(add % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->done_cv, &c->done_mu, &ts);
        }
        pthread_mutex_unlock(&c->done_mu);
    }
    pthread_mutex_lock(&c->done_mu);
    c->waiters--;
    pthread_cond_broadcast(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
    return op_is_done(op) ? op->result : CCL_ERR_PENDING;
}

int ccl_op_test(ccl_op *op, int *done)
{
    if (!op || !done)
        return CCL_ERR_INVALID_ARG;
    if (!op_is_done(op)) {
        /* Make progress if nobody else does right now. */
        ccl_comm *c = op->comm;
        if (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE) &&
            pthread_mutex_trylock(&c->mu) == 0) {
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

static int wait_free(int rc, ccl_op *op)
{
    if (rc)
        return rc;
    rc = ccl_op_wait(op, -1);
    if (rc) {
        ccl__set_error(op->comm, op->err);
    }
    ccl_op_free(op);
    return rc;
}

int ccl_allreduce(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype, int redop, int algo)
{
    ccl_op *op = NULL;
    int rc = ccl_allreduce_async(c, send, recv, count, dtype, redop, algo, &op);
    return wait_free(rc, op);
}

int ccl_broadcast(ccl_comm *c, void *buf, uint64_t count, int dtype, int root)
{
    ccl_op *op = NULL;
    int rc = ccl_broadcast_async(c, buf, count, dtype, root, &op);
    return wait_free(rc, op);
}

int ccl_allgather(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype)
{
    ccl_op *op = NULL;
    int rc = ccl_allgather_async(c, send, recv, count, dtype, &op);
    return wait_free(rc, op);
}

int ccl_reduce_scatter(ccl_comm *c, const void *send, void *recv,
                       uint64_t count, int dtype, int redop)
{
    ccl_op *op = NULL;
    int rc = ccl_reduce_scatter_async(c, send, recv, count, dtype, redop, &op);
    return wait_free(rc, op);
}

int ccl_barrier(ccl_comm *c)
{
    ccl_op *op = NULL;
    int rc = ccl_barrier_async(c, &op);
    return wait_free(rc, op);
}
