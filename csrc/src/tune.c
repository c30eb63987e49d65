/*
 * tune.c - the cost model of tune.h.
 *
 * Times are modelled as latency + bytes / rate per phase (docs/design.md,
 * "Choosing the algorithm"), with a(x, y) the one-way latency of the link
 * x -> y (half its round trip) and r(x, y) its rate:
 *
 *   ring (pipelined, ring order):  2(N-1)/N * sum of a over the ring's N
 *                                  links  +  2(N-1)/N * n / r
 *   star (hub 0):                  max a(p, 0) + max a(0, p)
 *                                  + n / r                    (in)
 *                                  + n * max(1/r, (N-1)/C)    (out)
 *
 * with r the slowest link of the ring and C the hub's uplink.  The
 * contributions arrive side by side.  The result leaves the hub N-1 times
 * at once, each copy on its own connections: at r each while the uplink
 * can carry them all, else sharing C.  C is known only as a lower bound,
 * the send rate of the hub's fastest op (stats.h, tx_peak), and is taken
 * as at least r.  Both matter on a long link: there one connection's rate
 * is set by TCP's window as it opens (a 1 MiB op ends while it still
 * grows), far below the link, and parallel copies do add up; the
 * measurement that showed it is in docs/benchmarks.md.  The threshold is
 * where the two lines cross; below it the star's two hops beat the
 * ring's 2(N-1).
 *
 * One rate for both, the ring's, because only bulk traffic measures a
 * long link's rate: the ring links carry the large ops, while the other
 * links were measured, if at all, by optimize_topology's 128 KiB probe,
 * which on a 50 ms round trip reads about 1 MB/s whatever the link (TCP
 * is still opening its window).  Taking those for the hub's links put the
 * threshold at the floor on a 1 Gbit/s link where the star was 1.7x
 * faster at 1 MiB (docs/benchmarks.md).  So the model assumes the hub's
 * links are as fast as the ring's slowest; a hub link that is really
 * slower is not seen (the ring order, ring_order.h, is what copes with
 * one slow link).
 *
 * The direct all-reduce (direct_ar.c) takes 2 hops, max a over all
 * pairs each, and moves the ring's bytes: 2(N-1)/N * n / (eff * r), with
 * eff = CCL_TUNE_DIRECT_EFF: measured, its N-1 streams at once and its
 * two steps that do not overlap move large ops slower than the ring.  So
 * it beats the ring up to the size where the ring's extra 2(N-2) hops
 * are paid back, and the star (whose hub sends N-1 copies) from the floor
 * on; the model gives it the range from the floor to that size, when that
 * range is not empty.
 *
 * A broadcast's chain costs N-1 hops against the direct sends' one, and
 * sends n once against N-1 times: they cross near a * r (a the median
 * latency, r as below).
 *
 * What the model leaves out (software cost per frame, reduction speed,
 * TCP's ramp) favours the ring at small sizes on fast links: the floor
 * (the loopback-tuned default) covers it, so the model only ever raises
 * the thresholds, where latency is what it saves.
 */
#include "tune.h"

#include <stdlib.h>

void ccl__tune_default(ccl__tuning *t)
{
    t->allreduce_star_max = CCL_TUNE_FLOOR_BYTES;
    t->allreduce_direct_max = 0;
    t->bcast_direct_max = CCL_TUNE_FLOOR_BYTES;
    t->latency_us = 0;
    t->rate_kbs = 0;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* The median of the positive entries off the diagonal, or 0 if none. */
static double median_known(int n, const double *m)
{
    double *v = malloc((size_t)n * (size_t)n * sizeof *v);
    size_t k = 0;
    if (!v)
        return 0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            if (a != b && m[(size_t)a * n + b] > 0)
                v[k++] = m[(size_t)a * n + b];
    double med = 0;
    if (k) {
        qsort(v, k, sizeof *v, cmp_double);
        med = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
    }
    free(v);
    return med;
}

typedef struct model {
    int n;
    const double *rtt, *rate;
    double rtt_med, rate_med;
} model;

/* One-way latency of a -> b in seconds: half its round trip, that of
 * b -> a (a round trip is the same both ways), or the median. */
static double lat(const model *m, int a, int b)
{
    double r = m->rtt[(size_t)a * m->n + b];
    if (r <= 0)
        r = m->rtt[(size_t)b * m->n + a];
    if (r <= 0)
        r = m->rtt_med;
    return r / 2e6;
}

static double rate(const model *m, int a, int b)
{
    double r = m->rate[(size_t)a * m->n + b];
    return r > 0 ? r : m->rate_med;
}

static uint64_t clamp(double v, uint64_t lo, uint64_t hi)
{
    if (!(v > (double)lo)) /* also NaN */
        return lo;
    return v >= (double)hi ? hi : (uint64_t)v;
}

int ccl__tune_plan(int n, const double *rtt_us, const double *rates,
                   const double *uplink, const uint32_t *ring, ccl__tuning *out)
{
    ccl__tune_default(out);
    if (n < 2 || !rtt_us || !rates)
        return 0;
    model m = {n, rtt_us, rates, median_known(n, rtt_us), median_known(n, rates)};
    if (m.rtt_med <= 0 || m.rate_med <= 0)
        return 0;
    double N = n;
    uint64_t cap = CCL_TUNE_HUB_BYTES / (uint64_t)(n - 1);
    if (cap > CCL_TUNE_CAP_BYTES)
        cap = CCL_TUNE_CAP_BYTES;
    if (cap < CCL_TUNE_FLOOR_BYTES)
        cap = CCL_TUNE_FLOOR_BYTES;

    double lring = 0, bring = 0;
    for (int p = 0; p < n; p++) {
        int a = ring ? (int)ring[p] : p, b = ring ? (int)ring[(p + 1) % n] : (p + 1) % n;
        lring += lat(&m, a, b);
        double r = rate(&m, a, b);
        bring = p == 0 || r < bring ? r : bring;
    }
    lring *= 2 * (N - 1) / N;
    double in_lat = 0, out_lat = 0;
    for (int p = 1; p < n; p++) {
        double li = lat(&m, p, 0), lo = lat(&m, 0, p);
        in_lat = li > in_lat ? li : in_lat;
        out_lat = lo > out_lat ? lo : out_lat;
    }
    double up = uplink && uplink[0] > bring ? uplink[0] : bring;
    double out_per_byte = 1 / bring > (N - 1) / up ? 1 / bring : (N - 1) / up;
    double num = lring - (in_lat + out_lat);
    double den = 1 / bring + out_per_byte - 2 * (N - 1) / (N * bring);
    if (num <= 0)
        out->allreduce_star_max = CCL_TUNE_FLOOR_BYTES;
    else if (den <= 0)
        out->allreduce_star_max = cap;
    else
        out->allreduce_star_max = clamp(num / den, CCL_TUNE_FLOOR_BYTES, cap);

    /* The direct all-reduce: 2 hops of the slowest pair, the ring's bytes
     * at eff of the ring's rate. */
    double amax = 0;
    for (int x = 0; x < n; x++)
        for (int y = 0; y < n; y++)
            if (x != y && lat(&m, x, y) > amax)
                amax = lat(&m, x, y);
    double dnum = lring - 2 * amax;
    double dden = 2 * (N - 1) / (N * bring) * (1 / CCL_TUNE_DIRECT_EFF - 1);
    if (n > 2 && dnum > 0) {
        /* Its scratch is one buffer's worth whatever N: no cap but the
         * wire's. */
        out->allreduce_direct_max = clamp(dnum / dden, 0, CCL_TUNE_MAX_BYTES);
        if (out->allreduce_direct_max <= CCL_TUNE_FLOOR_BYTES)
            out->allreduce_direct_max = 0;
    }

    double a_med = m.rtt_med / 2e6;
    out->bcast_direct_max = n > 2 ? clamp(a_med * bring, CCL_TUNE_FLOOR_BYTES,
                                           CCL_TUNE_CAP_BYTES)
                                  : CCL_TUNE_FLOOR_BYTES;
    out->latency_us = (uint32_t)clamp(a_med * 1e6, 0, UINT32_MAX);
    out->rate_kbs = (uint32_t)clamp(bring / 1000, 0, UINT32_MAX);
    return 1;
}

static int off_by_4x(uint64_t a, uint64_t b)
{
    return a > 4 * b || b > 4 * a;
}

int ccl__tune_differs(const ccl__tuning *a, const ccl__tuning *b)
{
    return off_by_4x(a->allreduce_star_max, b->allreduce_star_max) ||
           off_by_4x(a->bcast_direct_max, b->bcast_direct_max) ||
           (a->allreduce_direct_max == 0) != (b->allreduce_direct_max == 0) ||
           off_by_4x(a->allreduce_direct_max, b->allreduce_direct_max);
}

int ccl__gather_coordinator(int size, const ccl__tuning *t)
{
    if (size < CCL__GATHER_MIN)
        return -1;
    /* A measured latency above the cost of the DONEs it saves: the extra
     * hop costs more than it gains. */
    if (t && t->latency_us > (uint64_t)CCL__GATHER_US_PER_PEER * (uint64_t)(size - 2))
        return -1;
    return 0;
}
