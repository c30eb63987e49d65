/*
 * slow_detect.c - robust z-scores over link rates (see slow_detect.h).
 * Pure: no I/O, no allocation beyond the caller's scratch.
 *
 * Each link is compared with the *other* links (leave-one-out): in a
 * group of 4 links, one slow link inflates the MAD of all four enough to
 * hide itself (rates 10, 40, 45, 60 MB/s give z = -2.2 with it included,
 * -4.7 without).  Beyond LOO_MAX links one link barely moves the median
 * and the MAD, and leaving each out would cost O(n^2 log n), so the
 * whole group's are used.
 */
#include "slow_detect.h"

#include <stdlib.h>

#define LOO_MAX 32
/* A rate as the verdict sees it (slow_detect.h: the ceiling). */
#define V(i) (v[i] > CCL__SLOW_RATE_CEIL ? CCL__SLOW_RATE_CEIL : v[i])

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double ccl__median(double *a, int n)
{
    if (n <= 0)
        return 0.0;
    qsort(a, (size_t)n, sizeof *a, cmp);
    return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

/* Median and floored MAD of the m values in vals (reordered); dev is
 * scratch for m values. */
static void centre(double *vals, int m, double *dev, double *med, double *mad)
{
    *med = ccl__median(vals, m);
    for (int i = 0; i < m; i++)
        dev[i] = vals[i] > *med ? vals[i] - *med : *med - vals[i];
    *mad = ccl__median(dev, m);
    if (*mad < CCL__SLOW_MAD_FLOOR * *med)
        *mad = CCL__SLOW_MAD_FLOOR * *med;
}

int ccl__slow_detect(const double *v, int n, double *z, uint8_t *flag,
                     const uint8_t *prev, double *scratch)
{
    double *vals = scratch, *dev = scratch + n;
    int m = 0;
    for (int i = 0; i < n; i++)
        m += V(i) > 0.0;
    /* z (scratch of the caller's) first: prev may alias flag. */
    for (int i = 0; i < n; i++)
        z[i] = prev && prev[i] ? 1.0 : 0.0;
    for (int i = 0; i < n; i++) {
        flag[i] = z[i] != 0.0;
        z[i] = 0.0;
    }
    if (m < CCL__SLOW_MIN_LINKS) {
        for (int i = 0; i < n; i++)
            flag[i] = 0;
        return 0;
    }
    double med = 0.0, mad = 0.0;
    if (m > LOO_MAX) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (V(i) > 0.0)
                vals[k++] = V(i);
        centre(vals, m, dev, &med, &mad);
    }
    int flagged = 0;
    for (int i = 0; i < n; i++) {
        if (V(i) <= 0.0)
            continue;
        if (m <= LOO_MAX) {
            int k = 0;
            for (int j = 0; j < n; j++)
                if (j != i && V(j) > 0.0)
                    vals[k++] = V(j);
            centre(vals, k, dev, &med, &mad);
        }
        int was = flag[i];
        flag[i] = 0;
        if (mad <= 0.0)
            continue;
        z[i] = 0.6745 * (V(i) - med) / mad;
        if (was)
            flag[i] = z[i] < -CCL__SLOW_Z_CLEAR && V(i) * CCL__SLOW_RATIO_CLEAR < med;
        else
            flag[i] = z[i] < -CCL__SLOW_Z && V(i) * CCL__SLOW_RATIO < med;
        flagged += flag[i];
    }
    for (int i = 0; i < n; i++)
        if (V(i) <= 0.0)
            flag[i] = 0; /* no measurement: no verdict */
    return flagged;
}
