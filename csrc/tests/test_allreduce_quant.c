/* test_allreduce_quant.c - the quantized all-reduce across 1 to 4 ranks
 * (threads, a real master), as a star, a ring and the direct algorithm:
 * every rank ends with the same bytes for every format; the result is
 * within the format's bound of the exact sum; small chunks (many units)
 * and an odd count; AVG; a rerun gives the same bits; NaN fails the op on
 * every rank with the input given back; ranks that disagree on the format
 * fail with MISMATCH; empty ops and ops with fewer elements than ranks
 * work; ranks with different chunk_bytes still get the same, right result
 * from the direct algorithm (its units do not depend on it). */
#include "ccl.h"
#include "harness.h"

#include <math.h>
#include <pthread.h>

#define N 1001
#define MAXW 4

typedef struct {
    int port, world, rank, bad;
    uint64_t star_max; /* 0: the large algorithm for everything but empty ops */
    int algo;          /* CCL_ALGO_AUTO, or one forced */
    int ragged;        /* chunk_bytes differs by rank */
    int noshm;         /* TCP between the ranks: every ring hop encoded */
    float res[6][N];
    int nan_rc, mismatch_rc;
    int restored;
} rank_t;

static float val(int r, int i)
{
    return (float)sin(0.37 * i + r) * (float)(1 + r);
}

static int g_algo; /* per run of main's loop: every rank's thread reads it */

static int run(ccl_comm *c, float *x, int n, int redop, int fmt, uint32_t block,
               uint64_t seed)
{
    ccl_op *op;
    int rc = ccl_allreduce_quant_algo_async(c, x, x, (uint64_t)n, redop, g_algo, fmt, block,
                                            seed, &op);
    if (rc)
        return rc;
    rc = ccl_op_wait(op, -1);
    if (rc && getenv("CCL_TEST_VERBOSE"))
        fprintf(stderr, "    rank %d: %s: %s\n", ccl_comm_rank(c), ccl_strerror(rc),
                ccl_op_error(op));
    ccl_op_free(op);
    return rc;
}

static void *rank_main(void *p)
{
    rank_t *r = p;
    ccl_comm_config cfg = harness_comm_config(r->port, r->world, r->rank);
    cfg.chunk_bytes = 256; /* 64 elements a unit: many units */
    if (r->ragged) /* rank 0: a unit per element, more than others plan */
        cfg.chunk_bytes = r->rank == 0 ? 4 : 256 + 96 * (uint32_t)r->rank;
    if (r->noshm)
        cfg.shm = 0;
    cfg.star_max_bytes = r->star_max;
    cfg.op_timeout_ms = 20000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        r->bad++;
        return NULL;
    }
    static const double tol[6] = {0, 0.01, 0.2, 0.5, 0.002, 0.02}; /* of the range */
    for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_BF16; fmt++) {
        float *x = r->res[fmt];
        for (int i = 0; i < N; i++)
            x[i] = val(r->rank, i);
        if (run(c, x, N, CCL_SUM, fmt, 64, fmt == CCL_QUANT_U4 ? 77 : 0)) {
            r->bad++;
            continue;
        }
        for (int i = 0; i < N; i++) {
            double want = 0;
            for (int k = 0; k < r->world; k++)
                want += val(k, i);
            /* a generous, format-scaled bound: the scale is the world's */
            if (fabs(x[i] - want) > tol[fmt] * 2.0 * r->world * r->world + 1e-6)
                r->bad++;
        }
    }
    /* A rerun gives the same bits; AVG divides once. */
    float a[N], b[N];
    for (int k = 0; k < 2; k++) {
        float *x = k ? b : a;
        for (int i = 0; i < N; i++)
            x[i] = val(r->rank, i);
        r->bad += run(c, x, N, CCL_AVG, CCL_QUANT_E3M0, 16, 5) != 0;
    }
    r->bad += memcmp(a, b, sizeof a) != 0;
    /* Empty, and fewer elements than ranks (empty segments). */
    r->bad += run(c, NULL, 0, CCL_SUM, CCL_QUANT_U8, 64, 0) != 0;
    float two[2] = {1.0f, (float)r->rank};
    r->bad += run(c, two, 2, CCL_SUM, CCL_QUANT_F16, 1, 0) != 0;
    r->bad += two[0] != (float)r->world || two[1] != (float)(r->world * (r->world - 1) / 2);
    if (r->world > 1) {
        /* NaN on one rank: every rank fails, inputs come back. */
        float z[N];
        for (int i = 0; i < N; i++)
            z[i] = val(r->rank, i);
        if (r->rank == r->world - 1)
            z[5] = NAN;
        r->nan_rc = run(c, z, N, CCL_SUM, CCL_QUANT_U8, 64, 0);
        r->restored = 1;
        for (int i = 0; i < N; i++)
            r->restored &= i == 5 && r->rank == r->world - 1 ? isnan(z[i])
                                                             : z[i] == val(r->rank, i);
        /* Formats that disagree. */
        for (int i = 0; i < N; i++)
            z[i] = val(r->rank, i);
        r->mismatch_rc = run(c, z, 8, CCL_SUM, r->rank ? CCL_QUANT_U4 : CCL_QUANT_U8, 64, 0);
        float one = 1;
        r->bad += ccl_allreduce(c, &one, &one, 1, CCL_F32, CCL_SUM, CCL_ALGO_AUTO) != 0 ||
                  one != (float)r->world;
    }
    ccl_comm_destroy(c);
    return NULL;
}

int main(void)
{
    static rank_t r[MAXW];
    /* star: AUTO under a threshold the ops fit; auto-large: AUTO with no
     * star (the ring); ring and direct forced; direct with chunk_bytes
     * different on every rank; the ring so, through shared memory (raw
     * partial sums) and over TCP (every hop encoded): units cut smaller
     * than a rank planned for overflow its arena (ring_q.c). */
    static const char *const mode_name[] = {"star", "auto-large", "ring", "direct",
                                            "direct, ragged units", "ring, ragged units",
                                            "ring, ragged units, TCP"};
    for (int world = 1; world <= MAXW; world++)
        for (int mode = 0; mode < 7; mode++) {
        g_algo = mode == 2 || mode >= 5 ? CCL_ALGO_RING
                 : mode >= 3            ? CCL_ALGO_DIRECT
                                        : CCL_ALGO_AUTO;
        ccl_master *m = harness_master_on(0);
        PASS(m != NULL);
        if (!m)
            break;
        pthread_t th[MAXW];
        for (int i = 0; i < world; i++) {
            memset(&r[i], 0, sizeof r[i]);
            r[i].port = ccl_master_port(m);
            r[i].world = world;
            r[i].rank = i;
            r[i].star_max = mode == 0 ? 65536 : 0;
            r[i].ragged = mode >= 4;
            r[i].noshm = mode == 6;
            pthread_create(&th[i], NULL, rank_main, &r[i]);
        }
        for (int i = 0; i < world; i++)
            pthread_join(th[i], NULL);
        int bad = 0, same = 1;
        for (int i = 0; i < world; i++) {
            bad += r[i].bad;
            same &= memcmp(r[i].res, r[0].res, sizeof r[0].res) == 0;
            if (world > 1) {
                PASS(r[i].nan_rc == (i == world - 1 ? CCL_ERR_INVALID_ARG
                                                    : CCL_ERR_ABORTED));
                PASS(r[i].restored);
                PASS(r[i].mismatch_rc == CCL_ERR_MISMATCH);
            }
        }
        fprintf(stderr, "  world %d (%s): %d wrong, identical on every rank: %d\n", world,
                mode_name[mode], bad, same);
        PASS(bad == 0 && same);
        ccl_master_destroy(m);
    }
    return HARNESS_DONE("test_allreduce_quant");
}
