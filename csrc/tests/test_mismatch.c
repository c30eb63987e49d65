/* test_mismatch.c - ranks that issue different ops under one tag made a
 * usage error, not an attack: every rank fails that op with MISMATCH
 * naming what differs, at once (not at op_timeout), the communicator stays
 * usable, and nobody is expelled at the next update_topology.  Two ranks
 * as threads, a real master, op_timeout 60 s. */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>

#define N 4096

typedef struct {
    int port, rank;
    int rc[4];
    char err[4][512];
    double secs[4];
    int after_ok, size_after;
} rank_t;

/* Runs one op of `kind` for this rank and records its outcome. */
static void run(rank_t *r, ccl_comm *c, int i, int kind)
{
    static float bufs[2][N];
    float *x = bufs[r->rank];
    for (int k = 0; k < N; k++)
        x[k] = (float)(k + r->rank);
    double t0 = harness_now_seconds();
    ccl_op *op = NULL;
    int rc;
    switch (kind) {
    case 0: /* broadcast from "my own" rank: the roots disagree */
        rc = ccl_broadcast_async(c, x, N, CCL_F32, r->rank, &op);
        break;
    case 1: /* rank 0 all-reduces (star), rank 1 broadcasts: no frame flows */
        rc = r->rank == 0 ? ccl_allreduce_async(c, x, x, 16, CCL_F32, CCL_SUM,
                                                CCL_ALGO_STAR, &op)
                          : ccl_broadcast_async(c, x, 16, CCL_F32, 0, &op);
        break;
    case 2: /* dtypes and operators differ */
        rc = ccl_allreduce_async(c, x, x, N / 2, r->rank ? CCL_F64 : CCL_F32,
                                 r->rank ? CCL_MAX : CCL_SUM, CCL_ALGO_RING, &op);
        break;
    default: /* both agree again */
        rc = ccl_allreduce_async(c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING, &op);
        break;
    }
    if (rc == 0) {
        rc = ccl_op_wait(op, -1);
        snprintf(r->err[i], sizeof r->err[i], "%s", ccl_op_error(op));
        ccl_op_free(op);
    }
    r->rc[i] = rc;
    r->secs[i] = harness_now_seconds() - t0;
    if (kind == 3)
        r->after_ok = rc == 0 && x[5] == 11.0f;
}

static void *rank_main(void *p)
{
    rank_t *r = p;
    ccl_comm_config cfg = harness_comm_config(r->port, 2, r->rank);
    cfg.op_timeout_ms = 60000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, err);
        return NULL;
    }
    for (int i = 0; i < 3; i++)
        run(r, c, i, i);
    if (ccl_comm_update_topology(c, 20000) == 0)
        r->size_after = ccl_comm_size(c);
    run(r, c, 3, 3);
    ccl_comm_destroy(c);
    return NULL;
}

int main(void)
{
    ccl_master *m = harness_master_on(0);
    PASS(m != NULL);
    if (!m)
        return HARNESS_DONE("test_mismatch");
    rank_t r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].port = ccl_master_port(m);
        r[i].rank = i;
        pthread_create(&th[i], NULL, rank_main, &r[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    const char *want[3] = {"broadcast root", "all_reduce (star)",
                           "dtype float"};
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 3; k++) {
            PASS(r[i].rc[k] == CCL_ERR_MISMATCH);
            /* The rank that saw the difference names it; the other learns it
             * from its ABORT, which carries the same text. */
            PASS(strstr(r[i].err[k], want[k]) != NULL);
            PASS(r[i].secs[k] < 5.0);
            fprintf(stderr, "  rank %d op %d (%.2f s): %s\n", i, k, r[i].secs[k],
                    r[i].err[k]);
        }
        PASS(r[i].size_after == 2); /* nobody expelled */
        PASS(r[i].after_ok);
    }
    PASS(strstr(r[0].err[2], "op sum vs max") || strstr(r[1].err[2], "op max vs sum"));
    ccl_master_destroy(m);
    return HARNESS_DONE("test_mismatch");
}
