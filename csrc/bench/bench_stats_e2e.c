/*
 * bench_stats_e2e.c - the stats' cost end to end, in instructions: two
 * ranks (threads of this process, a real master, real sockets on
 * loopback) run `ops` ring all-reduces of `count` floats.  Built twice,
 * once as always and once with -DCCL_STATS_OFF (every stats hook on the
 * data path compiled to nothing), and run under callgrind, the two
 * instruction totals give the stats' share of the CPU work, which the
 * load of a shared machine does not move (docs/observability.md, "Cost").
 * Not part of `make`; from the repository root:
 *
 *   for v in on off; do
 *     d=$([ $v = off ] && echo -DCCL_STATS_OFF)
 *     cc -O2 -g -std=c99 -D_GNU_SOURCE -ffp-contract=off $d -Icsrc/include \
 *        -Icsrc/src -Icsrc/tests csrc/bench/bench_stats_e2e.c csrc/src/*.c \
 *        -pthread -lm -o /tmp/bench_stats_$v
 *     valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$v \
 *        /tmp/bench_stats_$v 1048576 40 2>&1 | grep -E "Collected|ops"
 *   done
 */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int port, rank, failed;
    uint64_t count;
    int ops;
} rank_t;

static void *rank_main(void *p)
{
    rank_t *r = p;
    ccl_comm_config cfg = harness_comm_config(r->port, 2, r->rank);
    cfg.conns_per_peer = 1;
    cfg.spin_us = 0; /* spinning would count time, not work */
    cfg.op_timeout_ms = 600000; /* callgrind runs some 50x slower */
    cfg.peer_timeout_ms = 600000;
    cfg.connect_timeout_ms = 600000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, err);
        r->failed = 1;
        return NULL;
    }
    /* Filled once: refilling would add instructions that are not the
     * library's (the values grow to inf, which costs the same to add). */
    float *x = malloc(r->count * sizeof *x);
    for (uint64_t i = 0; x && i < r->count; i++)
        x[i] = (float)(i % 7);
    for (int k = 0; k < r->ops && x; k++)
        if (ccl_allreduce(c, x, x, r->count, CCL_F32, CCL_SUM, CCL_ALGO_RING))
            r->failed = 1;
    free(x);
    ccl_comm_destroy(c);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 1048576;
    int ops = argc > 2 ? atoi(argv[2]) : 20;
    ccl_master *m = harness_master_on(0);
    if (!m)
        return 1;
    rank_t r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (rank_t){ccl_master_port(m), i, 0, count, ops};
        pthread_create(&th[i], NULL, rank_main, &r[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    ccl_master_destroy(m);
    printf("%d ops of %llu floats, %s\n", ops, (unsigned long long)count,
           r[0].failed || r[1].failed ? "FAILED" : "ok");
    return r[0].failed || r[1].failed;
}
