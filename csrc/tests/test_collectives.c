/* test_collectives.c - multi-peer runs: a master and N communicators in
 * threads of one process, talking over real sockets on 127.0.0.1. */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int port, world, rank, conns;
    uint64_t count;
    int algo;
    int failures;
} peer_arg;

static int check_f32(const float *v, uint64_t n, float (*expect)(uint64_t, int),
                     int world)
{
    for (uint64_t i = 0; i < n; i++)
        if (v[i] != expect(i, world)) {
            fprintf(stderr, "  element %llu: got %g want %g\n",
                    (unsigned long long)i, v[i], expect(i, world));
            return 0;
        }
    return 1;
}

static float val(uint64_t i, int rank) { return (float)((i % 97) + (uint64_t)rank); }
static float sum_expect(uint64_t i, int world)
{
    return (float)((i % 97) * (uint64_t)world + (uint64_t)(world * (world - 1) / 2));
}

static void *peer_main(void *p)
{
    peer_arg *a = p;
    ccl_comm_config cfg = harness_comm_config(a->port, a->world, a->rank);
    cfg.conns_per_peer = a->conns;
    cfg.op_timeout_ms = 20000;
    cfg.chunk_bytes = 4096; /* many units even for small tests */
    ccl_comm *c = NULL;
    char err[256];
    int rc = ccl_comm_create(&cfg, &c, err, sizeof err);
    if (rc) {
        fprintf(stderr, "rank %d: create: %s: %s\n", a->rank, ccl_strerror(rc), err);
        a->failures++;
        return NULL;
    }
    int r = ccl_comm_rank(c), n = ccl_comm_size(c);
    uint64_t cnt = a->count;
    float *x = malloc((cnt ? cnt : 1) * sizeof(float) * (size_t)n);
    float *y = malloc((cnt ? cnt : 1) * sizeof(float) * (size_t)n);
    /* all-reduce, in place */
    for (uint64_t i = 0; i < cnt; i++)
        x[i] = val(i, r);
    rc = ccl_allreduce(c, x, x, cnt, CCL_F32, CCL_SUM, a->algo);
    if (rc || !check_f32(x, cnt, sum_expect, n)) {
        fprintf(stderr, "rank %d: allreduce rc=%d %s\n", r, rc, ccl_comm_error(c));
        a->failures++;
    }
    /* out of place, max */
    for (uint64_t i = 0; i < cnt; i++)
        x[i] = val(i, r);
    rc = ccl_allreduce(c, x, y, cnt, CCL_F32, CCL_MAX, a->algo);
    for (uint64_t i = 0; i < cnt && !rc; i++)
        if (y[i] != val(i, n - 1) || x[i] != val(i, r)) {
            rc = -1;
            break;
        }
    if (rc) {
        fprintf(stderr, "rank %d: allreduce max rc=%d %s\n", r, rc, ccl_comm_error(c));
        a->failures++;
    }
    /* broadcast from the last rank */
    for (uint64_t i = 0; i < cnt; i++)
        x[i] = r == n - 1 ? (float)i : -1.0f;
    rc = ccl_broadcast(c, x, cnt, CCL_F32, n - 1);
    for (uint64_t i = 0; i < cnt && !rc; i++)
        if (x[i] != (float)i) {
            fprintf(stderr, "  broadcast element %llu: %g\n", (unsigned long long)i, x[i]);
            rc = -1;
        }
    if (rc) {
        fprintf(stderr, "rank %d: broadcast rc=%d %s\n", r, rc, ccl_comm_error(c));
        a->failures++;
    }
    /* all-gather */
    for (uint64_t i = 0; i < cnt; i++)
        x[i] = (float)(r * 1000) + (float)(i % 500);
    rc = ccl_allgather(c, x, y, cnt, CCL_F32);
    for (int q = 0; q < n && !rc; q++)
        for (uint64_t i = 0; i < cnt; i++)
            if (y[(uint64_t)q * cnt + i] != (float)(q * 1000) + (float)(i % 500)) {
                rc = -1;
                break;
            }
    if (rc) {
        fprintf(stderr, "rank %d: allgather rc=%d %s\n", r, rc, ccl_comm_error(c));
        a->failures++;
    }
    /* reduce-scatter */
    for (uint64_t i = 0; i < cnt * (uint64_t)n; i++)
        x[i] = (float)(i % 101);
    rc = ccl_reduce_scatter(c, x, y, cnt, CCL_F32, CCL_SUM);
    for (uint64_t i = 0; i < cnt && !rc; i++)
        if (y[i] != (float)(((uint64_t)r * cnt + i) % 101) * (float)n)
            rc = -1;
    if (rc) {
        fprintf(stderr, "rank %d: reduce_scatter rc=%d %s\n", r, rc, ccl_comm_error(c));
        a->failures++;
    }
    rc = ccl_barrier(c);
    if (rc) {
        fprintf(stderr, "rank %d: barrier rc=%d\n", r, rc);
        a->failures++;
    }
    /* many async ops in flight, waited in reverse order */
    enum { NOPS = 8 };
    ccl_op *ops[NOPS];
    int32_t bufs[NOPS][33];
    for (int k = 0; k < NOPS; k++) {
        for (int i = 0; i < 33; i++)
            bufs[k][i] = k + i + r;
        rc = ccl_allreduce_async(c, bufs[k], bufs[k], 33, CCL_I32, CCL_SUM,
                                 k % 3 == 2 ? CCL_ALGO_DIRECT
                                 : k % 2 ? CCL_ALGO_RING : CCL_ALGO_STAR, &ops[k]);
        if (rc)
            a->failures++;
    }
    for (int k = NOPS - 1; k >= 0; k--) {
        rc = ccl_op_wait(ops[k], 20000);
        if (rc) {
            fprintf(stderr, "rank %d: async op %d: %s\n", r, k, ccl_op_error(ops[k]));
            a->failures++;
        }
        for (int i = 0; i < 33 && !rc; i++)
            if (bufs[k][i] != (k + i) * n + n * (n - 1) / 2) {
                a->failures++;
                break;
            }
        ccl_op_free(ops[k]);
    }
    free(x);
    free(y);
    ccl_comm_destroy(c);
    return NULL;
}

static void run(int world, uint64_t count, int algo, int conns)
{
    ccl_master *m = NULL;
    char err[256];
    PASS_RC(ccl_master_create(NULL, &m, err, sizeof err));
    if (!m)
        return;
    pthread_t th[16];
    peer_arg args[16];
    for (int i = 0; i < world; i++) {
        args[i] = (peer_arg){ccl_master_port(m), world, i, conns, count, algo, 0};
        pthread_create(&th[i], NULL, peer_main, &args[i]);
    }
    int fails = 0;
    for (int i = 0; i < world; i++) {
        pthread_join(th[i], NULL);
        fails += args[i].failures;
    }
    printf("  world %d count %llu algo %d conns %d: %s\n", world,
           (unsigned long long)count, algo, conns, fails ? "FAIL" : "ok");
    PASS(fails == 0);
    ccl_master_destroy(m);
}

static void test_bad_master(void)
{
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = 1; /* nothing listens there */
    cfg.connect_timeout_ms = 2000;
    ccl_comm *c = NULL;
    char err[256];
    int rc = ccl_comm_create(&cfg, &c, err, sizeof err);
    PASS(rc == CCL_ERR_MASTER_UNREACHABLE);
    PASS(c == NULL);
    PASS(strstr(err, "master") != NULL);
    cfg.world_size = 0;
    PASS(ccl_comm_create(&cfg, &c, err, sizeof err) == CCL_ERR_INVALID_ARG);
}

int main(int argc, char **argv)
{
    if (argc == 5) { /* one configuration, for debugging */
        for (int i = 0; i < atoi(argv[4]); i++)
            run(atoi(argv[1]), (uint64_t)atoll(argv[2]), atoi(argv[3]), 2);
        return HARNESS_DONE("test_collectives");
    }
    test_bad_master();
    run(1, 10, CCL_ALGO_AUTO, 1);
    for (int w = 2; w <= 5; w++) {
        run(w, 0, CCL_ALGO_RING, 1);
        run(w, 1, CCL_ALGO_RING, 1);
        run(w, 3, CCL_ALGO_STAR, 1);
        run(w, 1001, CCL_ALGO_RING, 2);
        run(w, 1001, CCL_ALGO_STAR, 1);
        run(w, 3, CCL_ALGO_DIRECT, 1);
        run(w, 1001, CCL_ALGO_DIRECT, 2);
        run(w, 100000, CCL_ALGO_AUTO, 3);
    }
    return HARNESS_DONE("test_collectives");
}
