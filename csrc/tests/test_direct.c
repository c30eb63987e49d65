/* test_direct.c - reduce, gather, scatter, all-to-all(v), all-gather(v)
 * and reduce-scatter(v) against results computed here, exactly, for
 * world sizes 1 to 4 (threads, a real master), with every root, counts of
 * 0, 1 and odd, unequal sizes per rank and per pair, several connections
 * and small chunks (many frames); bit-identical reductions on a rerun;
 * disagreeing sizes fail with MISMATCH on both sides. */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>

#define MAXW 4

typedef struct {
    int port, world, rank, bad, ran;
} rank_t;

/* The value rank `from` contributes at element i (small integers: exact
 * in f32 sums). */
static float val(int from, uint64_t i)
{
    return (float)((from + 1) * 100 + (int)(i % 50));
}

/* Elements rank i sends rank j in the all-to-all: varies with both. */
static uint64_t a2a(int i, int j)
{
    return (uint64_t)((i * 3 + j * 5) % 7);
}

static uint64_t vcount(int r)
{
    return (uint64_t)(r * 2 + 1) % 5; /* 1, 3, 0, 2: includes 0 */
}

static int wait1(ccl_op *op, int rc)
{
    if (rc)
        return rc;
    rc = ccl_op_wait(op, -1);
    if (rc)
        fprintf(stderr, "  op failed: %s\n", ccl_op_error(op));
    ccl_op_free(op);
    return rc;
}

static void run_all(rank_t *r, ccl_comm *c)
{
    int n = r->world, me = r->rank;
    float send[64], recv[64 * MAXW], again[64 * MAXW];
    ccl_op *op;
    for (int root = 0; root < n; root++) {
        uint64_t counts[] = {0, 1, 7};
        for (int ci = 0; ci < 3; ci++) {
            uint64_t cnt = counts[ci];
            /* reduce (sum) */
            for (uint64_t i = 0; i < cnt; i++)
                send[i] = val(me, i);
            memset(recv, 0, sizeof recv);
            r->bad += wait1(op, ccl_reduce_async(c, send, me == root ? recv : NULL, cnt,
                                                 CCL_F32, CCL_SUM, root, &op)) != 0;
            if (me == root)
                for (uint64_t i = 0; i < cnt; i++) {
                    float want = 0;
                    for (int p = 0; p < n; p++)
                        want += val(p, i);
                    r->bad += recv[i] != want;
                }
            /* gather */
            memset(recv, 0, sizeof recv);
            r->bad += wait1(op, ccl_gather_async(c, send, me == root ? recv : NULL, cnt,
                                                 CCL_F32, root, &op)) != 0;
            if (me == root)
                for (int p = 0; p < n; p++)
                    for (uint64_t i = 0; i < cnt; i++)
                        r->bad += recv[(uint64_t)p * cnt + i] != val(p, i);
            /* scatter */
            float big[64 * MAXW];
            for (int p = 0; p < n; p++)
                for (uint64_t i = 0; i < cnt; i++)
                    big[(uint64_t)p * cnt + i] = val(p, i + 1000);
            memset(recv, 0, sizeof recv);
            r->bad += wait1(op, ccl_scatter_async(c, me == root ? big : NULL, recv, cnt,
                                                  CCL_F32, root, &op)) != 0;
            for (uint64_t i = 0; i < cnt; i++)
                r->bad += recv[i] != val(me, i + 1000);
        }
    }
    /* all-to-all with a size per pair */
    uint64_t sc[MAXW] = {0}, rc[MAXW] = {0}, so = 0, ro = 0;
    float a2send[64] = {0};
    for (int p = 0; p < n; p++) {
        sc[p] = a2a(me, p);
        rc[p] = a2a(p, me);
        for (uint64_t i = 0; i < sc[p]; i++)
            a2send[so + i] = val(me, (uint64_t)p * 10 + i);
        so += sc[p];
    }
    memset(recv, 0, sizeof recv);
    r->bad += wait1(op, ccl_alltoallv_async(c, a2send, sc, recv, rc, CCL_F32, &op)) != 0;
    for (int p = 0; p < n; p++) {
        for (uint64_t i = 0; i < rc[p]; i++)
            r->bad += recv[ro + i] != val(p, (uint64_t)me * 10 + i);
        ro += rc[p];
    }
    /* all-gather with a size per rank */
    uint64_t vc[MAXW], tot = 0;
    for (int p = 0; p < n; p++)
        vc[p] = vcount(p);
    for (uint64_t i = 0; i < vc[me]; i++)
        send[i] = val(me, i + 7);
    memset(recv, 0, sizeof recv);
    r->bad += wait1(op, ccl_allgatherv_async(c, send, vc[me], recv, vc, CCL_F32, &op)) != 0;
    for (int p = 0; p < n; p++) {
        for (uint64_t i = 0; i < vc[p]; i++)
            r->bad += recv[tot + i] != val(p, i + 7);
        tot += vc[p];
    }
    /* reduce-scatter with a size per rank (max), twice: same bits */
    float rs[64];
    for (uint64_t i = 0; i < tot; i++)
        rs[i] = val(me, i) * 0.1f;
    for (int k = 0; k < 2; k++) {
        float *out = k ? again : recv;
        memset(out, 0, sizeof recv);
        r->bad += wait1(op, ccl_reduce_scatterv_async(c, rs, out, vc, CCL_F32, CCL_MAX,
                                                      &op)) != 0;
    }
    uint64_t off = 0;
    for (int p = 0; p < me; p++)
        off += vc[p];
    for (uint64_t i = 0; i < vc[me]; i++) {
        float want = 0;
        for (int p = 0; p < n; p++)
            want = p == 0 || val(p, off + i) * 0.1f > want ? val(p, off + i) * 0.1f : want;
        r->bad += recv[i] != want || memcmp(&recv[i], &again[i], 4) != 0;
    }
    /* Sizes that disagree: rank 0 gathers 2, the others send 3. */
    if (n > 1) {
        int rc0 = wait1(op, ccl_gather_async(c, send, recv, me == 0 ? 2 : 3, CCL_F32, 0,
                                             &op));
        r->bad += rc0 != CCL_ERR_MISMATCH;
        float one = 1;
        r->bad += ccl_allreduce(c, &one, &one, 1, CCL_F32, CCL_SUM, CCL_ALGO_AUTO) != 0 ||
                  one != (float)n;
    }
    r->ran = 1;
}

static void *rank_main(void *p)
{
    rank_t *r = p;
    ccl_comm_config cfg = harness_comm_config(r->port, r->world, r->rank);
    cfg.conns_per_peer = 2;
    cfg.chunk_bytes = 8; /* two floats a frame: many frames per block */
    cfg.op_timeout_ms = 20000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, err);
        r->bad++;
        return NULL;
    }
    run_all(r, c);
    ccl_comm_destroy(c);
    return NULL;
}

int main(void)
{
    for (int world = 1; world <= MAXW; world++) {
        ccl_master *m = harness_master_on(0);
        PASS(m != NULL);
        if (!m)
            break;
        rank_t r[MAXW];
        pthread_t th[MAXW];
        for (int i = 0; i < world; i++) {
            r[i] = (rank_t){ccl_master_port(m), world, i, 0, 0};
            pthread_create(&th[i], NULL, rank_main, &r[i]);
        }
        int bad = 0, ran = 1;
        for (int i = 0; i < world; i++) {
            pthread_join(th[i], NULL);
            bad += r[i].bad;
            ran &= r[i].ran;
        }
        fprintf(stderr, "  world %d: %d wrong\n", world, bad);
        PASS(ran && bad == 0);
        ccl_master_destroy(m);
    }
    return HARNESS_DONE("test_direct");
}
