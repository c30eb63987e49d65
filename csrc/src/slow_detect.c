/*
 * slow_detect.c - robust z-scores over link rates (see slow_detect.h).
 * Pure: no I/O, no allocation; n is small (links of one member, or of a
 * group), so an insertion sort is enough.
 */
#include "slow_detect.h"

static void sort(double *a, int n)
{
    for (int i = 1; i < n; i++) {
        double v = a[i];
        int j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

double ccl__median(double *a, int n)
{
    if (n <= 0)
        return 0.0;
    sort(a, n);
    return n % 2 ? a[n / 2] : 0.5 * (a[n / 2 - 1] + a[n / 2]);
}

int ccl__slow_detect(const double *v, int n, double *z, uint8_t *flag,
                     double *scratch)
{
    double *vals = scratch, *dev = scratch + n;
    int m = 0;
    for (int i = 0; i < n; i++) {
        z[i] = 0.0;
        flag[i] = 0;
        if (v[i] > 0.0)
            vals[m++] = v[i];
    }
    if (m < CCL__SLOW_MIN_LINKS)
        return 0;
    double med = ccl__median(vals, m);
    for (int i = 0; i < m; i++)
        dev[i] = vals[i] > med ? vals[i] - med : med - vals[i];
    double mad = ccl__median(dev, m);
    if (mad < CCL__SLOW_MAD_FLOOR * med)
        mad = CCL__SLOW_MAD_FLOOR * med;
    if (mad <= 0.0)
        return 0;
    int flagged = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] <= 0.0)
            continue;
        z[i] = 0.6745 * (v[i] - med) / mad;
        if (z[i] < -CCL__SLOW_Z && v[i] * CCL__SLOW_RATIO < med) {
            flag[i] = 1;
            flagged++;
        }
    }
    return flagged;
}
