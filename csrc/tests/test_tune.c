/* test_tune.c - the cost model behind the automatic algorithm choice
 * (tune.h, docs/design.md "Choosing the algorithm"): its thresholds for
 * loopback-like and wide-area links against the formulas worked by hand,
 * its floor and caps, and what it does with links it does not know. */
#include "ccl.h"
#include "harness.h"
#include "tune.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAXN 8

static double rtt[MAXN * MAXN], rate[MAXN * MAXN];

/* Every link of an n-group at one round trip and one rate. */
static void uniform(int n, double rtt_us, double bytes_per_s)
{
    memset(rtt, 0, sizeof rtt);
    memset(rate, 0, sizeof rate);
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            if (a != b) {
                rtt[a * n + b] = rtt_us;
                rate[a * n + b] = bytes_per_s;
            }
}

static int near(uint64_t got, double want)
{
    return fabs((double)got - want) <= 2 + want * 1e-9;
}

static void test_wide_area(void)
{
    ccl__tuning t;
    /* 4 members, 50 ms round trips, 1 Gbit/s: the ring pays 6 hops of
     * 25 ms (0.15 s), the star 2 (0.05 s); per byte the star costs
     * 1/r + 3/r against the ring's 1.5/r: they cross at
     * 0.1 s * 125e6 B/s / 2.5 = 5,000,000 bytes. */
    uniform(4, 50000, 125e6);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e6));
    /* The broadcast's chain (3 hops) against direct sends (1 hop, 3 times
     * the bytes): a * r = 0.025 s * 125e6 B/s. */
    PASS(near(t.bcast_direct_max, 3.125e6));
    PASS(t.latency_us == 25000 && t.rate_kbs == 125000);
    /* The direct all-reduce: 2 hops of 25 ms against the ring's 6, its
     * bytes at 0.6 of the ring's rate: 1.5 n / r (1/0.6 - 1) = n / r
     * against 0.1 s: up to 12,500,000 bytes. */
    PASS(near(t.allreduce_direct_max, 12.5e6));
}

static void test_loopback_and_floor(void)
{
    ccl__tuning t;
    /* 50 us round trips at 2 GB/s: the model gives 80,000 bytes, just
     * above the floor. */
    uniform(4, 50, 2e9);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 80000));
    PASS(t.bcast_direct_max == CCL_TUNE_FLOOR_BYTES); /* 25 us * 2e9 = 50,000 */
    /* Shorter round trips, 1 GB/s: 16,000 bytes by the model; the floor,
     * never below it. */
    uniform(4, 20, 1e9);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(t.allreduce_star_max == CCL_TUNE_FLOOR_BYTES);
    /* Two members: ring and star both take one round trip; the floor, and
     * no direct range (it would be the ring's exchange). */
    uniform(2, 50000, 125e6);
    PASS(ccl__tune_plan(2, rtt, rate, NULL, NULL, &t) == 1);
    PASS(t.allreduce_star_max == CCL_TUNE_FLOOR_BYTES &&
         t.bcast_direct_max == CCL_TUNE_FLOOR_BYTES && t.allreduce_direct_max == 0);
    /* Loopback-like links (20 us, 1 GB/s, 4 members): the direct range
     * would end at 40 us * 1e9 = 40,000 bytes, below the floor: none. */
    uniform(4, 20, 1e9);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(t.allreduce_direct_max == 0);
}

static void test_caps(void)
{
    ccl__tuning t;
    /* 8 members, 200 ms, 10 Gbit/s: the crossover (about 1.4 GB) is
     * capped so the hub keeps at most 64 MiB of contributions: 64 MiB / 7;
     * the broadcast at 16 MiB. */
    uniform(8, 200000, 1.25e9);
    PASS(ccl__tune_plan(8, rtt, rate, NULL, NULL, &t) == 1);
    PASS(t.allreduce_star_max == (64u << 20) / 7);
    PASS(t.bcast_direct_max == CCL_TUNE_CAP_BYTES);
    /* 3 members: 64 MiB / 2 is over 16 MiB, so 16 MiB. */
    uniform(3, 200000, 1.25e9);
    PASS(ccl__tune_plan(3, rtt, rate, NULL, NULL, &t) == 1);
    PASS(t.allreduce_star_max == CCL_TUNE_CAP_BYTES);
}

static void test_unknown_links(void)
{
    ccl__tuning t;
    /* Nothing known, or no rate, or no round trip: the defaults. */
    uniform(4, 0, 0);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 0);
    PASS(t.allreduce_star_max == CCL_TUNE_FLOOR_BYTES && t.latency_us == 0);
    uniform(4, 50000, 0);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 0);
    uniform(4, 0, 125e6);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 0);
    PASS(ccl__tune_plan(1, rtt, rate, NULL, NULL, &t) == 0);
    /* One round trip and one rate known: the others take them (the
     * median), which gives the uniform answer. */
    uniform(4, 0, 0);
    rtt[1 * 4 + 2] = 50000;
    rate[0 * 4 + 2] = 125e6;
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e6));
    /* A round trip known one way only serves the other way too. */
    uniform(4, 50000, 125e6);
    rtt[0 * 4 + 1] = 0;
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e6));
}

static void test_slow_ring_link(void)
{
    ccl__tuning t;
    /* The ring's slowest link is the rate of the model (for the star's
     * links too): with 1 -> 2 at a tenth of the rate, a tenth of the
     * threshold.  In the ring order 0 2 1 3 (no 1 -> 2) the crossover is
     * as for uniform links.  Rates of links off the ring do not count
     * (optimize_topology's short probe reads them far too low on long
     * links). */
    uniform(4, 50000, 125e6);
    rate[1 * 4 + 2] = 12.5e6;
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e5) && t.rate_kbs == 12500);
    static const uint32_t order[4] = {0, 2, 1, 3};
    PASS(ccl__tune_plan(4, rtt, rate, NULL, order, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e6));
    uniform(4, 50000, 125e6);
    rate[0 * 4 + 2] = rate[2 * 4 + 0] = 1e6; /* hub links off the ring */
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 5e6));
}

static void test_uplink(void)
{
    ccl__tuning t;
    /* One connection at 22 MB/s on a 50 ms link (TCP's window still
     * opening), 4 members.  Without an uplink known the hub's copies share
     * r: 0.1 s * 22e6 / 2.5 = 880,000 bytes.  With an uplink of 100 MB/s
     * (above 3 r) they go side by side: 1/r + 1/r - 1.5/r = 0.5/r, so
     * 0.1 * 22e6 / 0.5 = 4,400,000.  Between, 3/C per byte out: C = 44 MB/s
     * gives 1/r + 3/C - 1.5/r = 1/r, so 2,200,000. */
    uniform(4, 50000, 22e6);
    PASS(ccl__tune_plan(4, rtt, rate, NULL, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 880000));
    double up[4] = {100e6, 0, 0, 0};
    PASS(ccl__tune_plan(4, rtt, rate, up, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 4.4e6));
    up[0] = 44e6;
    PASS(ccl__tune_plan(4, rtt, rate, up, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 2.2e6));
    /* An uplink below r counts as r; only the hub's counts. */
    double low[4] = {1e6, 1e9, 1e9, 1e9};
    PASS(ccl__tune_plan(4, rtt, rate, low, NULL, &t) == 1);
    PASS(near(t.allreduce_star_max, 880000));
}

static void test_differs(void)
{
    ccl__tuning a, b;
    ccl__tune_default(&a);
    b = a;
    PASS(!ccl__tune_differs(&a, &b));
    b.allreduce_star_max = 4 * a.allreduce_star_max;
    PASS(!ccl__tune_differs(&a, &b));
    b.allreduce_star_max++;
    PASS(ccl__tune_differs(&a, &b) && ccl__tune_differs(&b, &a));
    b = a;
    b.bcast_direct_max = a.bcast_direct_max / 5;
    PASS(ccl__tune_differs(&a, &b));
}

/* Gathered agreement: groups of 3 or more, unless the measured latency
 * is above 25 us per DONE saved at each member (N-2). */
static void test_gather(void)
{
    ccl__tuning t;
    ccl__tune_default(&t);
    PASS(ccl__gather_coordinator(1, NULL) == -1);
    PASS(ccl__gather_coordinator(2, NULL) == -1);
    PASS(ccl__gather_coordinator(3, NULL) == 0);
    PASS(ccl__gather_coordinator(64, NULL) == 0);
    PASS(ccl__gather_coordinator(3, &t) == 0); /* latency 0: unknown */
    t.latency_us = 25;
    PASS(ccl__gather_coordinator(3, &t) == 0);
    PASS(ccl__gather_coordinator(2, &t) == -1);
    t.latency_us = 26;
    PASS(ccl__gather_coordinator(3, &t) == -1);
    PASS(ccl__gather_coordinator(4, &t) == 0);
    t.latency_us = 25000; /* a 50 ms round trip */
    PASS(ccl__gather_coordinator(64, &t) == -1);
    PASS(ccl__gather_coordinator(1002, &t) == 0);
}

int main(void)
{
    test_gather();
    test_wide_area();
    test_loopback_and_floor();
    test_caps();
    test_unknown_links();
    test_slow_ring_link();
    test_uplink();
    test_differs();
    printf("test_tune: %d checks, %d failed\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
