/*
 * ring_order.c - the ring order that maximises the slowest link (see
 * ring_order.h for the problem and the rules).
 *
 * Exact search (n <= CCL__RING_EXACT_MAX): rotations of a cycle are the
 * same ring, so position 0 keeps the current order's first rank and the
 * other n-1 ranks are permuted by depth-first search: (n-1)! cycles,
 * 5040 for n = 8, each compared by its sorted link rates.
 *
 * Heuristic (larger n): the best of three cycles, improved by local
 * search.  The three: the current order; a greedy cycle (from the
 * current first rank, always the widest link to a rank not visited yet);
 * and a threshold search, which bisects over the link rates for the
 * highest t at which a depth-first search (Warnsdorff's rule: the rank
 * with the fewest onward links first) finds a cycle through links of at
 * least t only.  The local search: a move takes one end of the slowest
 * link and either moves it to another gap of the cycle or swaps it with
 * another rank; a move is
 * taken when it raises the bottleneck, or keeps it and leaves fewer links
 * at it.  Both moves keep the direction of every other link (a 2-opt
 * reversal would turn a whole segment round, and links are directed).
 * The threshold search stops after WORK_BUDGET link reads and the local
 * search (O(n^2) a pass) after as many again, so the cost stays bounded
 * for any n (the result is then only as good as the search got).
 */
#include "ring_order.h"

#include "ccl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WORK_BUDGET 20000000.0

/* The filled matrix: measured rates capped, unknown ones estimated. */
typedef struct ro_ctx {
    int n;
    double *w;
} ro_ctx;

static double cap_rate(double v)
{
    return v > CCL__RING_RATE_CAP ? CCL__RING_RATE_CAP : v;
}

static int by_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Fills ctx->w from bw: a link not measured is taken to be as fast as its
 * reverse (links are usually symmetric), else as the median measured
 * link (neither helps nor hurts a cycle against the others).  Returns
 * the number of measured links, or -1 without memory. */
static int fill(ro_ctx *ctx, int n, const double *bw)
{
    size_t nn = (size_t)n * (size_t)n;
    ctx->n = n;
    ctx->w = malloc(nn * sizeof *ctx->w);
    double *known = malloc(nn * sizeof *known);
    if (!ctx->w || !known) {
        free(known);
        return -1;
    }
    int nk = 0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            if (a != b && bw[(size_t)a * n + b] > 0)
                known[nk++] = cap_rate(bw[(size_t)a * n + b]);
    double median = 0;
    if (nk > 0) {
        qsort(known, (size_t)nk, sizeof *known, by_double);
        median = nk % 2 ? known[nk / 2] : (known[nk / 2 - 1] + known[nk / 2]) / 2;
    }
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            double v = bw[(size_t)a * n + b], r = bw[(size_t)b * n + a];
            ctx->w[(size_t)a * n + b] = v > 0 ? cap_rate(v) : r > 0 ? cap_rate(r)
                                                                   : median;
        }
    free(known);
    return nk;
}

static double link_w(const ro_ctx *ctx, uint32_t a, uint32_t b)
{
    return ctx->w[(size_t)a * ctx->n + b];
}

double ccl__ring_bottleneck(int n, const double *bw, const uint32_t *order)
{
    double m = INFINITY;
    for (int i = 0; n >= 2 && i < n; i++) {
        double v = cap_rate(bw[(size_t)order[i] * n + order[(i + 1) % n]]);
        if (v < m)
            m = v;
    }
    return m;
}

int ccl__ring_order_valid(int n, const uint32_t *order)
{
    uint8_t *seen = calloc(n > 0 ? (size_t)n : 1, 1);
    int ok = seen != NULL && n > 0;
    for (int i = 0; ok && i < n; i++) {
        ok = order[i] < (uint32_t)n && !seen[order[i]];
        if (ok)
            seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

/* ---- exact search ---- */

typedef struct ro_exact {
    const ro_ctx *ctx;
    uint32_t path[CCL__RING_EXACT_MAX];
    uint8_t used[CCL__RING_EXACT_MAX];
    uint32_t best[CCL__RING_EXACT_MAX];
    double best_key[CCL__RING_EXACT_MAX];
    int have_best;
} ro_exact;

/* The sorted link rates of a cycle of n <= CCL__RING_EXACT_MAX ranks. */
static void sorted_key(const ro_ctx *ctx, const uint32_t *order, double *key)
{
    int n = ctx->n;
    for (int i = 0; i < n; i++) {
        double v = link_w(ctx, order[i], order[(i + 1) % n]);
        int j = i;
        while (j > 0 && key[j - 1] > v) {
            key[j] = key[j - 1];
            j--;
        }
        key[j] = v;
    }
}

/* -1, 0, 1 as a's sorted rates are lexicographically below, equal to or
 * above b's. */
static int key_cmp(const double *a, const double *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

static void exact_dfs(ro_exact *x, int depth)
{
    int n = x->ctx->n;
    if (depth == n) {
        double key[CCL__RING_EXACT_MAX];
        sorted_key(x->ctx, x->path, key);
        if (!x->have_best || key_cmp(key, x->best_key, n) > 0) {
            memcpy(x->best, x->path, (size_t)n * sizeof *x->path);
            memcpy(x->best_key, key, (size_t)n * sizeof *key);
            x->have_best = 1;
        }
        return;
    }
    for (uint32_t r = 0; r < (uint32_t)n; r++) {
        if (x->used[r])
            continue;
        x->used[r] = 1;
        x->path[depth] = r;
        exact_dfs(x, depth + 1);
        x->used[r] = 0;
    }
}

static void exact_search(const ro_ctx *ctx, const uint32_t *cur, uint32_t *out)
{
    ro_exact x;
    memset(&x, 0, sizeof x);
    x.ctx = ctx;
    x.path[0] = cur[0];
    x.used[cur[0]] = 1;
    exact_dfs(&x, 1);
    memcpy(out, x.best, (size_t)ctx->n * sizeof *out);
}

/* ---- heuristic ---- */

/* The bottleneck of a cycle and how many links sit at it. */
static double bottleneck_count(const ro_ctx *ctx, const uint32_t *o, int *count,
                               int *at)
{
    int n = ctx->n;
    double m = INFINITY;
    *count = 0;
    for (int i = 0; i < n; i++) {
        double v = link_w(ctx, o[i], o[(i + 1) % n]);
        if (v < m) {
            m = v;
            *count = 1;
            if (at)
                *at = i;
        } else if (v == m) {
            (*count)++;
        }
    }
    return m;
}

static int better(double m1, int c1, double m0, int c0)
{
    return m1 > m0 || (m1 == m0 && c1 < c0);
}

static void greedy_cycle(const ro_ctx *ctx, uint32_t first, uint32_t *o, uint8_t *used)
{
    int n = ctx->n;
    memset(used, 0, (size_t)n);
    o[0] = first;
    used[first] = 1;
    for (int i = 1; i < n; i++) {
        int pick = -1;
        for (uint32_t r = 0; r < (uint32_t)n; r++)
            if (!used[r] && (pick < 0 || link_w(ctx, o[i - 1], r) >
                                             link_w(ctx, o[i - 1], (uint32_t)pick)))
                pick = (int)r;
        o[i] = (uint32_t)pick;
        used[pick] = 1;
    }
}

/* Moves the rank at position i to just after the rank now at position j
 * (j != i), in place. */
static void relocate(uint32_t *o, int n, int i, int j)
{
    uint32_t u = o[i];
    if (i < j) {
        memmove(o + i, o + i + 1, (size_t)(j - i) * sizeof *o);
        o[j] = u;
    } else {
        memmove(o + j + 2, o + j + 1, (size_t)(i - j - 1) * sizeof *o);
        o[j + 1] = u;
    }
    (void)n;
}

/* One improving move around the bottleneck, or 0 when none helps.
 * *work counts link reads. */
static int improve_once(const ro_ctx *ctx, uint32_t *o, uint32_t *t, double *work)
{
    int n = ctx->n, c0, at = 0;
    double m0 = bottleneck_count(ctx, o, &c0, &at);
    int ends[2] = {at, (at + 1) % n};
    for (int e = 0; e < 2; e++) {
        int i = ends[e];
        for (int j = 0; j < n; j++) {
            if (j == i)
                continue;
            for (int kind = 0; kind < 2; kind++) {
                memcpy(t, o, (size_t)n * sizeof *t);
                if (kind == 0) {
                    if (j == (i + n - 1) % n)
                        continue; /* already right after it */
                    relocate(t, n, i, j);
                } else {
                    uint32_t s = t[i];
                    t[i] = t[j];
                    t[j] = s;
                }
                int c1;
                double m1 = bottleneck_count(ctx, t, &c1, NULL);
                *work += n;
                if (better(m1, c1, m0, c0)) {
                    memcpy(o, t, (size_t)n * sizeof *o);
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* ---- threshold search ---- */

/* A depth-first search for a Hamiltonian cycle through links of at least
 * `t`, from path[0]: the next rank is tried in order of how few onward
 * links of at least t it has left (Warnsdorff's rule, which finds a cycle
 * in dense graphs almost without backtracking).  Gives up when *work
 * passes `limit`. */
typedef struct ro_ham {
    const ro_ctx *ctx;
    double t, limit, *work;
    uint32_t *path;
    uint8_t *used;
    int *cand;    /* n * n: candidates per depth */
    int *degree;  /* n * n: their onward degrees */
} ro_ham;

static int ham_dfs(ro_ham *h, int depth)
{
    int n = h->ctx->n;
    uint32_t last = h->path[depth - 1];
    if (depth == n)
        return link_w(h->ctx, last, h->path[0]) >= h->t;
    if (*h->work > h->limit)
        return 0;
    int *cand = h->cand + (size_t)depth * n, *deg = h->degree + (size_t)depth * n;
    int nc = 0;
    for (uint32_t v = 0; v < (uint32_t)n; v++) {
        if (h->used[v] || link_w(h->ctx, last, v) < h->t)
            continue;
        int d = 0;
        for (uint32_t u = 0; u < (uint32_t)n; u++)
            d += !h->used[u] && u != v && link_w(h->ctx, v, u) >= h->t;
        *h->work += n;
        /* Insertion by degree, fewest onward links first. */
        int j = nc++;
        while (j > 0 && deg[j - 1] > d) {
            cand[j] = cand[j - 1];
            deg[j] = deg[j - 1];
            j--;
        }
        cand[j] = (int)v;
        deg[j] = d;
    }
    for (int i = 0; i < nc; i++) {
        /* A rank with no onward link can only come last. */
        if (deg[i] == 0 && depth != n - 1)
            continue;
        uint32_t v = (uint32_t)cand[i];
        h->used[v] = 1;
        h->path[depth] = v;
        if (ham_dfs(h, depth + 1))
            return 1;
        h->used[v] = 0;
    }
    return 0;
}

/* The best threshold for which the search finds a cycle, by bisection
 * over the distinct link rates; its cycle in `out`.  Returns 1 if a
 * cycle was found at all. */
static int threshold_search(const ro_ctx *ctx, uint32_t first, uint32_t *out,
                            double *work)
{
    int n = ctx->n, found = 0;
    size_t nn = (size_t)n * n, nv = 0;
    double *vals = malloc(nn * sizeof *vals);
    ro_ham h;
    memset(&h, 0, sizeof h);
    h.path = malloc((size_t)n * sizeof *h.path);
    h.used = malloc((size_t)n);
    h.cand = malloc(nn * sizeof *h.cand);
    h.degree = malloc(nn * sizeof *h.degree);
    if (vals && h.path && h.used && h.cand && h.degree) {
        for (size_t i = 0; i < nn; i++)
            if (i / n != i % n)
                vals[nv++] = ctx->w[i];
        qsort(vals, nv, sizeof *vals, by_double);
        size_t u = 0;
        for (size_t i = 0; i < nv; i++)
            if (u == 0 || vals[i] != vals[u - 1])
                vals[u++] = vals[i];
        h.ctx = ctx;
        h.work = work;
        /* Each threshold gets an eighth of the work left. */
        size_t lo = 0, hi = u; /* vals[lo] feasible (the least always is) */
        while (lo < hi && *work < WORK_BUDGET) {
            size_t mid = found ? (lo + hi + 1) / 2 : lo;
            h.t = vals[mid];
            h.limit = *work + (WORK_BUDGET - *work) / 8;
            memset(h.used, 0, (size_t)n);
            h.path[0] = first;
            h.used[first] = 1;
            if (ham_dfs(&h, 1)) {
                memcpy(out, h.path, (size_t)n * sizeof *out);
                found = 1;
                lo = mid;
                if (lo + 1 >= hi)
                    break;
            } else if (!found) {
                break;
            } else {
                hi = mid;
                if (lo + 1 >= hi)
                    break;
            }
        }
    }
    free(vals);
    free(h.path);
    free(h.used);
    free(h.cand);
    free(h.degree);
    return found;
}

static int heuristic_search(const ro_ctx *ctx, const uint32_t *cur, uint32_t *out)
{
    int n = ctx->n, c0, c1;
    uint32_t *g = malloc((size_t)n * sizeof *g), *t = malloc((size_t)n * sizeof *t);
    uint8_t *used = malloc((size_t)n);
    if (!g || !t || !used) {
        free(g);
        free(t);
        free(used);
        return CCL_ERR_NOMEM;
    }
    /* The best of: the current order, the greedy cycle, the threshold
     * search's cycle; then local moves on it. */
    double work = 2.0 * n * n;
    memcpy(out, cur, (size_t)n * sizeof *out);
    double m0 = bottleneck_count(ctx, out, &c0, NULL), m1;
    greedy_cycle(ctx, cur[0], g, used);
    m1 = bottleneck_count(ctx, g, &c1, NULL);
    if (better(m1, c1, m0, c0)) {
        memcpy(out, g, (size_t)n * sizeof *out);
        m0 = m1;
        c0 = c1;
    }
    if (threshold_search(ctx, cur[0], g, &work)) {
        m1 = bottleneck_count(ctx, g, &c1, NULL);
        if (better(m1, c1, m0, c0))
            memcpy(out, g, (size_t)n * sizeof *out);
    }
    while (work < 2 * WORK_BUDGET && improve_once(ctx, out, t, &work))
        ;
    free(g);
    free(t);
    free(used);
    return CCL_OK;
}

int ccl__ring_order_choose(int n, const double *bw, const uint32_t *cur,
                           uint32_t *out)
{
    if (n > 0)
        memcpy(out, cur, (size_t)n * sizeof *out);
    if (n < 3)
        return 0;
    ro_ctx ctx;
    int known = fill(&ctx, n, bw);
    if (known < 0)
        return CCL_ERR_NOMEM;
    int rc = 0;
    if (known > 0) {
        if (n <= CCL__RING_EXACT_MAX)
            exact_search(&ctx, cur, out);
        else
            rc = heuristic_search(&ctx, cur, out);
    }
    if (rc == 0) {
        double before = ccl__ring_bottleneck(n, ctx.w, cur);
        double after = ccl__ring_bottleneck(n, ctx.w, out);
        if (after >= before * CCL__RING_MIN_GAIN && memcmp(out, cur, (size_t)n * sizeof *out))
            rc = 1;
        else
            memcpy(out, cur, (size_t)n * sizeof *out);
    } else {
        memcpy(out, cur, (size_t)n * sizeof *out);
    }
    free(ctx.w);
    return rc;
}
