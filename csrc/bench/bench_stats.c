/*
 * bench_stats.c - what the stats hooks (src/stats.c) cost per call on one
 * core, for the numbers in docs/observability.md.  Not part of `make`;
 * from the repository root:
 *
 *   cc -O2 -std=c99 -D_GNU_SOURCE -Icsrc/include -Icsrc/src \
 *      csrc/bench/bench_stats.c csrc/src/stats.c csrc/src/slow_detect.c \
 *      csrc/src/stats_wire.c csrc/src/wire.c csrc/src/log.c csrc/src/result.c csrc/src/reduce.c \
 *      -pthread -o /tmp/bench_stats && /tmp/bench_stats
 *
 * Each row is the best of several runs of a loop long enough for the
 * clock to resolve it: the per-read/write counter (ccl__stats_rx), a
 * large frame's two clock reads and rate (frame_in), the end of an op in
 * a group of 4 (record, samples, verdict) and the public read.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "stats.h"

#define RUNS 7

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static ccl__stats s;
static ccl_op_record rec;

static void counter(long n)
{
    for (long i = 0; i < n; i++)
        ccl__stats_rx(&s, (int)(i & 3), 4096);
}

static void frame_in(long n)
{
    for (long i = 0; i < n; i++) {
        uint64_t t0 = ccl__stats_now_ns();
        ccl__stats_frame_in(&s, 1 + (int)(i % 3), 1u << 20, ccl__stats_now_ns() - t0 + 1000);
    }
}

static void op_end(long n)
{
    for (long i = 0; i < n; i++) {
        /* as in a ring: two large frames from the left neighbour per op */
        ccl__stats_frame_in(&s, 3, 1u << 20, 500000);
        ccl__stats_frame_in(&s, 3, 1u << 20, 510000);
        ccl__stats_op_end(&s, &rec);
    }
}

static void op_end_small(long n)
{
    for (long i = 0; i < n; i++)
        ccl__stats_op_end(&s, &rec);
}

static void read_all(long n)
{
    ccl_stats st;
    ccl_link_stats links[4];
    static ccl_op_record ops[64];
    int nl, no;
    for (long i = 0; i < n; i++)
        ccl__stats_read(&s, &st, links, 4, &nl, ops, 64, &no);
}

static void row(const char *name, void (*fn)(long), long n)
{
    double best = 1e30;
    for (int r = 0; r < RUNS; r++) {
        double t = now_seconds();
        fn(n);
        t = now_seconds() - t;
        if (t < best)
            best = t;
    }
    printf("%-44s %8.1f ns\n", name, best / (double)n * 1e9);
}

int main(void)
{
    const char *hosts[4] = {"h0", "h1", "h2", "h3"};
    int ports[4] = {1, 2, 3, 4};
    ccl__stats_init(&s);
    ccl__stats_new_epoch(&s, 0, 4, 1, hosts, ports);
    rec.epoch = 1;
    rec.size = 4;
    rec.bytes = 4u << 20;
    row("counter (per read/writev)", counter, 10000000);
    row("large frame in (2 clock reads, rate)", frame_in, 2000000);
    row("op end, small op (record only)", op_end_small, 1000000);
    row("op end (2 frames in, record, sample, verdict)", op_end, 200000);
    row("ccl_comm_get_stats: 4 links, 64 ops", read_all, 200000);
    ccl__stats_fini(&s);
    return 0;
}
