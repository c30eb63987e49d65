/* test_p2p.c - send and recv between ranks (threads in one process, a
 * real master, real sockets): messages meet recvs in posting order per
 * (source, destination, tag); many in flight, posted in different orders
 * on the two sides; from any source; empty and multi-frame messages over
 * several connections; mixed with collectives; counts that disagree fail
 * both sides with MISMATCH and leave the communicator usable; a peer that
 * leaves fails the recvs waiting for it. */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>

#define BIG (3u << 20) /* 3 MiB: several 1 MiB units */
#define NASYNC 16

/* The ranks are threads: they count their own failed calls (the
 * harness's counters belong to the main thread). */
#define OK(call)                                                           \
    do {                                                                   \
        int ok_rc_ = (call);                                               \
        if (ok_rc_) {                                                      \
            r->bad++;                                                      \
            fprintf(stderr, "rank %d: %s -> %s\n", r->rank, #call,         \
                    ccl_strerror(ok_rc_));                                 \
        }                                                                  \
    } while (0)

typedef struct {
    int port, rank, bad;
    pthread_barrier_t *bar;
    int ok[9];
    int src[2];
    int mismatch_rc[2];
    int lost_rc;
} rank_t;

static float fill(int from, int k, uint64_t i)
{
    return (float)(from * 1000 + k * 10) + (float)(i % 7);
}

static int check(const float *x, uint64_t n, int from, int k)
{
    for (uint64_t i = 0; i < n; i++)
        if (x[i] != fill(from, k, i))
            return 0;
    return 1;
}

static void *rank_main(void *p)
{
    rank_t *r = p;
    ccl_comm_config cfg = harness_comm_config(r->port, 3, r->rank);
    cfg.conns_per_peer = 2;
    cfg.op_timeout_ms = 20000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, err);
        pthread_barrier_wait(r->bar);
        return NULL;
    }
    static float bufs[3][NASYNC][64];
    float (*b)[64] = bufs[r->rank];
    /* 1. Three messages with one tag, 0 -> 1: they arrive in order. */
    if (r->rank == 0) {
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 64; i++)
                b[k][i] = fill(0, k, (uint64_t)i);
            OK(ccl_send(c, b[k], 64, CCL_F32, 1, 5));
        }
        r->ok[0] = 1;
    } else if (r->rank == 1) {
        r->ok[0] = 1;
        for (int k = 0; k < 3; k++) {
            int src = -2;
            OK(ccl_recv(c, b[k], 64, CCL_F32, 0, 5, &src));
            r->ok[0] &= check(b[k], 64, 0, k) && src == 0;
        }
    } else {
        r->ok[0] = 1;
    }
    /* 2. Many in flight, 1 -> 2, tags k, posted in opposite orders. */
    ccl_op *ops[NASYNC];
    if (r->rank == 1) {
        for (int k = 0; k < NASYNC; k++) {
            for (int i = 0; i < 64; i++)
                b[k][i] = fill(1, k, (uint64_t)i);
            OK(ccl_send_async(c, b[k], 64, CCL_F32, 2, (uint32_t)k, &ops[k]));
        }
    } else if (r->rank == 2) {
        for (int k = NASYNC - 1; k >= 0; k--)
            OK(ccl_recv_async(c, b[k], 64, CCL_F32, 1, (uint32_t)k, &ops[k]));
    }
    r->ok[1] = 1;
    if (r->rank >= 1)
        for (int k = 0; k < NASYNC; k++) {
            r->ok[1] &= ccl_op_wait(ops[k], -1) == CCL_OK;
            if (r->rank == 2)
                r->ok[1] &= check(b[k], 64, 1, k) && ccl_op_source(ops[k]) == 1;
            ccl_op_free(ops[k]);
        }
    /* 3. A collective between point-to-point traffic, then from any
     * source: ranks 0 and 1 each send rank 2 one message with tag 9. */
    float x[4] = {1, 1, 1, 1};
    OK(ccl_allreduce(c, x, x, 4, CCL_F32, CCL_SUM, CCL_ALGO_RING));
    r->ok[2] = x[0] == 3.0f;
    static float any[3][2][8];
    if (r->rank < 2) {
        for (int i = 0; i < 8; i++)
            any[r->rank][0][i] = fill(r->rank, 9, (uint64_t)i);
        OK(ccl_send(c, any[r->rank][0], 8, CCL_F32, 2, 9));
    } else {
        r->ok[3] = 1;
        for (int k = 0; k < 2; k++) {
            OK(ccl_recv(c, any[2][k], 8, CCL_F32, CCL_ANY_SOURCE, 9, &r->src[k]));
            r->ok[3] &= check(any[2][k], 8, r->src[k], 9);
        }
        r->ok[3] &= r->src[0] != r->src[1] && r->src[0] >= 0 && r->src[1] >= 0;
    }
    /* 4. An empty message and a big one (several frames on 2 connections),
     * 0 -> 2. */
    float *big = harness_xmalloc(BIG);
    uint64_t nbig = BIG / 4;
    if (r->rank == 0) {
        for (uint64_t i = 0; i < nbig; i++)
            big[i] = fill(0, 4, i);
        OK(ccl_send(c, NULL, 0, CCL_F32, 2, 4));
        OK(ccl_send(c, big, nbig, CCL_F32, 2, 4));
        r->ok[4] = 1;
    } else if (r->rank == 2) {
        OK(ccl_recv(c, NULL, 0, CCL_F32, 0, 4, NULL));
        OK(ccl_recv(c, big, nbig, CCL_F32, 0, 4, NULL));
        r->ok[4] = check(big, nbig, 0, 4);
    } else {
        r->ok[4] = 1;
    }
    free(big);
    /* 5. Counts that disagree: both fail with MISMATCH; a collective
     * still works after. */
    if (r->rank == 0) {
        r->mismatch_rc[0] = ccl_send(c, b[0], 16, CCL_F32, 1, 11);
    } else if (r->rank == 1) {
        r->mismatch_rc[1] = ccl_recv(c, b[0], 32, CCL_F32, 0, 11, NULL);
    }
    x[0] = 1;
    OK(ccl_allreduce(c, x, x, 1, CCL_F32, CCL_SUM, CCL_ALGO_STAR));
    r->ok[5] = x[0] == 3.0f;
    /* 6. Ranks 0 and 1 exchange with one tag, each posting its recv and
     * then its send: a send and a recv with the same peer and tag on each
     * side.  Once with counts that agree (data arrives), once with counts
     * that disagree (all four ops fail with MISMATCH). */
    if (r->rank < 2) {
        int other = 1 - r->rank;
        float mine[4], theirs[4];
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < 4; i++)
                mine[i] = fill(r->rank, 13, (uint64_t)i);
            ccl_op *rv, *sd;
            uint64_t rcount = round ? 3 : 4;
            OK(ccl_recv_async(c, theirs, rcount, CCL_F32, other, 13, &rv));
            OK(ccl_send_async(c, mine, 4, CCL_F32, other, 13, &sd));
            int rrc = ccl_op_wait(rv, -1), src = ccl_op_wait(sd, -1);
            ccl_op_free(rv);
            ccl_op_free(sd);
            if (round == 0)
                r->ok[6] = rrc == 0 && src == 0 && check(theirs, 4, other, 13);
            else
                r->ok[7] = rrc == CCL_ERR_MISMATCH && src == CCL_ERR_MISMATCH;
        }
    } else {
        r->ok[6] = r->ok[7] = 1;
    }
    /* 7. The same exchange again and again with one tag, each side
     * posting its send first, then its recv: the k-th messages of both
     * directions share a wire tag. */
    r->ok[8] = 1;
    if (r->rank < 2) {
        int other = 1 - r->rank;
        float mine[16], theirs[16];
        for (int k = 0; k < 40; k++) {
            for (int i = 0; i < 16; i++)
                mine[i] = fill(r->rank, k, (uint64_t)i);
            ccl_op *rv, *sd;
            OK(ccl_send_async(c, mine, 16, CCL_F32, other, 14, &sd));
            OK(ccl_recv_async(c, theirs, 16, CCL_F32, other, 14, &rv));
            int src = ccl_op_wait(sd, -1), rrc = ccl_op_wait(rv, -1);
            if (src || rrc)
                fprintf(stderr, "rank %d exchange %d: send %s (%s), recv %s (%s)\n",
                        r->rank, k, ccl_strerror(src), ccl_op_error(sd),
                        ccl_strerror(rrc), ccl_op_error(rv));
            ccl_op_free(rv);
            ccl_op_free(sd);
            r->ok[8] &= src == 0 && rrc == 0 && check(theirs, 16, other, k);
        }
    }
    pthread_barrier_wait(r->bar);
    /* 6. Rank 0 leaves while rank 1 waits for a message from it. */
    if (r->rank == 1) {
        ccl_op *op;
        OK(ccl_recv_async(c, b[0], 64, CCL_F32, 0, 12, &op));
        pthread_barrier_wait(r->bar); /* posted: rank 0 may close */
        r->lost_rc = ccl_op_wait(op, -1);
        ccl_op_free(op);
    } else {
        pthread_barrier_wait(r->bar);
    }
    ccl_comm_destroy(c);
    return NULL;
}

int main(void)
{
    ccl_master *m = harness_master_on(0);
    PASS(m != NULL);
    if (!m)
        return HARNESS_DONE("test_p2p");
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    rank_t r[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].port = ccl_master_port(m);
        r[i].rank = i;
        r[i].bar = &bar;
        pthread_create(&th[i], NULL, rank_main, &r[i]);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    const char *what[9] = {"in order", "many in flight", "collective between",
                           "any source", "empty and big", "usable after mismatch",
                           "exchange", "exchange that disagrees",
                           "repeated exchange, send first"};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 9; k++) {
            if (k == 3 && i != 2)
                continue;
            if (!r[i].ok[k])
                fprintf(stderr, "rank %d: %s failed\n", i, what[k]);
            PASS(r[i].ok[k]);
        }
    for (int i = 0; i < 3; i++)
        PASS(r[i].bad == 0);
    PASS(r[0].mismatch_rc[0] == CCL_ERR_MISMATCH);
    PASS(r[1].mismatch_rc[1] == CCL_ERR_MISMATCH);
    PASS(r[1].lost_rc == CCL_ERR_PEER_LOST);
    fprintf(stderr, "  mismatch: %s / %s; lost: %s\n", ccl_strerror(r[0].mismatch_rc[0]),
            ccl_strerror(r[1].mismatch_rc[1]), ccl_strerror(r[1].lost_rc));
    pthread_barrier_destroy(&bar);
    ccl_master_destroy(m);
    return HARNESS_DONE("test_p2p");
}
