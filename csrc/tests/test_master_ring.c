/* test_master_ring.c - the membership policy's ring order and its
 * policies on slow links, without sockets (as test_master_policy.c):
 * link reports in, REFORMs in, then the GROUP's ring order, NOCHANGE or a
 * REJECT out. */
#include "ccl.h"
#include "harness.h"
#include "master_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int conn_ids[16];
#define CONN(i) ((void *)&conn_ids[i])

static ccl__mpol_action acts[256];
static int nacts;

static void drain(ccl__mpol *mp)
{
    nacts = 0;
    while (nacts < 256 && ccl__mpol_next(mp, &acts[nacts]))
        nacts++;
}

static int count(int kind)
{
    int n = 0;
    for (int k = 0; k < nacts; k++)
        n += acts[k].kind == kind;
    return n;
}

static const ccl__mpol_action *find(int kind, int i)
{
    for (int k = 0; k < nacts; k++)
        if (acts[k].kind == kind && acts[k].conn == CONN(i))
            return &acts[k];
    return NULL;
}

static ccl__mpol *formed(int n, const ccl__mpol_options *opt)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    if (opt)
        ccl__mpol_set_options(mp, opt);
    for (int i = 0; i < n; i++) {
        ccl__register_msg r;
        memset(&r, 0, sizeof r);
        r.world_size = (uint32_t)n;
        r.rank = i;
        r.listen_port = (uint16_t)(5000 + i);
        r.conns_per_peer = 1;
        memset(r.uuid, i + 1, 16);
        snprintf(r.host, sizeof r.host, "10.0.0.%d", i);
        PASS_RC(ccl__mpol_register(mp, CONN(i), &r, 0));
    }
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == n && !ccl__mpol_ring_sent(mp));
    return mp;
}

/* Every member of an n-group reports at `now`, `optimize` asking for a
 * better ring. */
static void reform_all(ccl__mpol *mp, int n, uint32_t epoch, int optimize,
                       uint64_t now)
{
    ccl__reform_msg *m = harness_xmalloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->epoch = epoch;
    m->wait_ms = 10000;
    m->optimize = optimize;
    for (int i = 0; i < n; i++)
        PASS_RC(ccl__mpol_reform(mp, CONN(i), m, now));
    free(m);
    drain(mp);
}

/* The ring order the policy sends now (rank at each position). */
static void ring_of(ccl__mpol *mp, uint32_t *order)
{
    uint32_t world = 0;
    uint16_t k = 0;
    const ccl__member *mem = ccl__mpol_members(mp, &world, &k);
    for (uint32_t r = 0; r < world; r++)
        order[mem[r].ring_pos] = r;
}

static int uses(const uint32_t *o, int n, uint32_t a, uint32_t b)
{
    for (int i = 0; i < n; i++)
        if (o[i] == a && o[(i + 1) % n] == b)
            return 1;
    return 0;
}

/* The ring 0 -> 1 -> 2 -> 3 -> 0 as its receivers report it, 2 -> 3 at
 * `slow_rate` and flagged when slow_flag. */
static void ring_reports(ccl__mpol *mp, uint32_t epoch, double slow_rate,
                         int slow_flag, uint64_t now)
{
    ccl__mpol_link(mp, epoch, 0, 1, 100e6, 0, now);
    ccl__mpol_link(mp, epoch, 1, 2, 100e6, 0, now);
    ccl__mpol_link(mp, epoch, 2, 3, slow_rate, slow_flag, now);
    ccl__mpol_link(mp, epoch, 3, 0, 100e6, 0, now);
}

static void test_optimize_moves_the_ring(void)
{
    ccl__mpol *mp = formed(4, NULL);
    ring_reports(mp, 1, 25e6, 1, 10);
    /* Without the request (and without the policy), nothing changes. */
    reform_all(mp, 4, 1, 0, 100);
    PASS(count(CCL_MPOL_NOCHANGE) == 4 && ccl__mpol_epoch(mp) == 1);
    /* Asked: a new epoch, same ranks, a ring that avoids 2 -> 3. */
    reform_all(mp, 4, 1, 1, 200);
    PASS(count(CCL_MPOL_GROUP) == 4 && ccl__mpol_epoch(mp) == 2);
    for (int i = 0; i < 4; i++)
        PASS(find(CCL_MPOL_GROUP, i) && find(CCL_MPOL_GROUP, i)->rank == (uint32_t)i);
    uint32_t o[4];
    ring_of(mp, o);
    PASS(ccl__mpol_ring_sent(mp) && !uses(o, 4, 2, 3));
    /* Asked again with nothing better to find: NOCHANGE, ring kept. */
    ccl__mpol_link(mp, 2, o[0], o[1], 100e6, 0, 300);
    reform_all(mp, 4, 2, 1, 400);
    PASS(count(CCL_MPOL_NOCHANGE) == 4 && ccl__mpol_epoch(mp) == 2);
    uint32_t again[4];
    ring_of(mp, again);
    PASS(!memcmp(o, again, sizeof o));
    ccl__mpol_destroy(mp);
}

static void test_one_asks_enough(void)
{
    /* Only rank 1's REFORM asks; the others do a plain update_topology:
     * a GROUP is a valid answer to theirs too. */
    ccl__mpol *mp = formed(4, NULL);
    ring_reports(mp, 1, 10e6, 0, 10);
    ccl__reform_msg *m = harness_xmalloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->epoch = 1;
    m->wait_ms = 10000;
    for (int i = 0; i < 4; i++) {
        m->optimize = i == 1;
        PASS_RC(ccl__mpol_reform(mp, CONN(i), m, 100));
    }
    free(m);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 4 && ccl__mpol_epoch(mp) == 2);
    ccl__mpol_destroy(mp);
}

static void test_reorder_policy(void)
{
    ccl__mpol_options opt = {1, 0};
    ccl__mpol *mp = formed(4, &opt);
    /* Slow but not flagged: the policy waits for the master's verdict. */
    ring_reports(mp, 1, 25e6, 0, 10);
    reform_all(mp, 4, 1, 0, 100);
    PASS(count(CCL_MPOL_NOCHANGE) == 4);
    /* Flagged: the next reform re-plans. */
    ring_reports(mp, 1, 25e6, 1, 200);
    reform_all(mp, 4, 1, 0, 300);
    PASS(count(CCL_MPOL_GROUP) == 4 && ccl__mpol_epoch(mp) == 2);
    uint32_t o[4];
    ring_of(mp, o);
    PASS(!uses(o, 4, 2, 3));
    /* A report from an old epoch, or naming a rank outside, is ignored. */
    ccl__mpol_link(mp, 1, 0, 1, 1e6, 1, 400);
    ccl__mpol_link(mp, 2, 0, 9, 1e6, 1, 400);
    reform_all(mp, 4, 2, 0, 500);
    PASS(count(CCL_MPOL_NOCHANGE) == 4);
    ccl__mpol_destroy(mp);
}

static void test_ring_carried_over_membership_changes(void)
{
    /* After a re-plan, rank 3 leaves: the survivors keep their places on
     * the ring (in the renumbered ranks). */
    ccl__mpol *mp = formed(5, NULL);
    ccl__mpol_link(mp, 1, 1, 2, 1e6, 1, 10);
    for (uint32_t a = 0; a < 5; a++)
        for (uint32_t b = 0; b < 5; b++)
            if (a != b && !(a == 1 && b == 2))
                ccl__mpol_link(mp, 1, a, b, 100e6, 0, 10);
    reform_all(mp, 5, 1, 1, 100);
    uint32_t o[5];
    ring_of(mp, o);
    PASS(ccl__mpol_epoch(mp) == 2 && !uses(o, 5, 1, 2));
    ccl__mpol_lost(mp, CONN(3), 200);
    ccl__reform_msg *m = harness_xmalloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->epoch = 2;
    m->wait_ms = 10000;
    for (int i = 0; i < 5; i++)
        if (i != 3)
            PASS_RC(ccl__mpol_reform(mp, CONN(i), m, 300));
    free(m);
    drain(mp);
    PASS(ccl__mpol_epoch(mp) == 3 && count(CCL_MPOL_GROUP) == 4);
    uint32_t n4[4], want[4];
    ring_of(mp, n4);
    /* Old ranks 0,1,2,4 are now 0,1,2,3: the old order without 3. */
    int k = 0;
    for (int p = 0; p < 5; p++)
        if (o[p] != 3)
            want[k++] = o[p] == 4 ? 3 : o[p];
    PASS(!memcmp(n4, want, sizeof want));
    ccl__mpol_destroy(mp);
}

static void test_expel_after_consecutive_reports(void)
{
    ccl__mpol_options opt = {0, 3};
    ccl__mpol *mp = formed(4, &opt);
    /* Two flagged reports, one clean: the count starts again. */
    ring_reports(mp, 1, 2e6, 1, 10);
    ring_reports(mp, 1, 2e6, 1, 20);
    ring_reports(mp, 1, 9e6, 0, 30);
    ring_reports(mp, 1, 2e6, 1, 40);
    ring_reports(mp, 1, 2e6, 1, 50);
    reform_all(mp, 4, 1, 0, 100);
    PASS(count(CCL_MPOL_NOCHANGE) == 4);
    /* Three more in a row (five since the clean one): rank 2, the slow
     * link's sender, goes, told why. */
    ring_reports(mp, 1, 2e6, 1, 200);
    ring_reports(mp, 1, 2e6, 1, 210);
    ring_reports(mp, 1, 2e6, 1, 220);
    reform_all(mp, 4, 1, 0, 300);
    const ccl__mpol_action *rej = find(CCL_MPOL_REJECT, 2);
    PASS(rej && rej->code == CCL_ERR_REJECTED);
    PASS(rej && strstr(rej->text, "slow peer") &&
         strstr(rej->text, "link to rank 3") && strstr(rej->text, "5 consecutive"));
    PASS(count(CCL_MPOL_GROUP) == 3 && ccl__mpol_epoch(mp) == 2);
    PASS(find(CCL_MPOL_GROUP, 3) && find(CCL_MPOL_GROUP, 3)->rank == 2);
    ccl__mpol_destroy(mp);
}

static void test_policies_off_by_default(void)
{
    ccl__mpol *mp = formed(4, NULL);
    for (int k = 0; k < 20; k++)
        ring_reports(mp, 1, 1e6, 1, (uint64_t)k);
    reform_all(mp, 4, 1, 0, 100);
    PASS(count(CCL_MPOL_NOCHANGE) == 4 && count(CCL_MPOL_REJECT) == 0);
    ccl__mpol_destroy(mp);
}

/* Every link of a 3-group at one round trip and rate, as its receivers
 * report them in epoch `epoch`. */
static void all_links(ccl__mpol *mp, uint32_t epoch, double rtt_us, double rate,
                      uint64_t now)
{
    for (uint32_t a = 0; a < 3; a++)
        for (uint32_t b = 0; b < 3; b++)
            if (a != b) {
                ccl__mpol_link(mp, epoch, a, b, rate, 0, now);
                ccl__mpol_link_rtt(mp, epoch, a, b, rtt_us);
            }
}

static void test_tuning_in_group(void)
{
    ccl__tuning t;
    ccl__mpol *mp = formed(3, NULL);
    /* The first group knows no link: no tuning in its GROUP. */
    PASS(ccl__mpol_tuning(mp, &t) == 0 && t.allreduce_star_max == CCL_TUNE_FLOOR_BYTES);
    /* 50 ms, 1 Gbit/s.  A plain update_topology changes nothing... */
    all_links(mp, 1, 50000, 125e6, 10);
    reform_all(mp, 3, 1, 0, 100);
    PASS(count(CCL_MPOL_NOCHANGE) == 3 && ccl__mpol_tuning(mp, &t) == 0);
    /* ... optimize_topology makes an epoch for the model's first answer
     * (3 members: 4 hops of 25 ms against 2, 1/r + 2/r against 4/3r per
     * byte: 0.05 s * 125e6 / (5/3) = 3.75 MB), same ranks, no ring. */
    reform_all(mp, 3, 1, 1, 200);
    PASS(count(CCL_MPOL_GROUP) == 3 && ccl__mpol_epoch(mp) == 2);
    PASS(ccl__mpol_tuning(mp, &t) == 1 && !ccl__mpol_ring_sent(mp));
    PASS(t.allreduce_star_max > 3749000 && t.allreduce_star_max < 3751000);
    PASS(t.latency_us == 25000 && t.rate_kbs == 125000);
    /* Asked again with the same links: NOCHANGE, the tuning kept. */
    all_links(mp, 2, 50000, 125e6, 300);
    reform_all(mp, 3, 2, 1, 400);
    PASS(count(CCL_MPOL_NOCHANGE) == 3 && ccl__mpol_epoch(mp) == 2);
    /* Round trips 3.2x longer: 12 MB, 3.2x: not enough for a new epoch. */
    all_links(mp, 2, 160000, 125e6, 500);
    reform_all(mp, 3, 2, 1, 600);
    PASS(count(CCL_MPOL_NOCHANGE) == 3 && ccl__mpol_epoch(mp) == 2);
    /* 8x longer: the cap (16 MiB), more than 4x: a new epoch. */
    all_links(mp, 2, 400000, 125e6, 650);
    reform_all(mp, 3, 2, 1, 660);
    PASS(count(CCL_MPOL_GROUP) == 3 && ccl__mpol_epoch(mp) == 3);
    PASS(ccl__mpol_tuning(mp, &t) == 1 && t.allreduce_star_max == CCL_TUNE_CAP_BYTES);
    /* A member lost: the next epoch is tuned from what is known. */
    ccl__mpol_lost(mp, CONN(2), 700);
    drain(mp);
    reform_all(mp, 2, 3, 0, 800);
    PASS(ccl__mpol_epoch(mp) == 4 && ccl__mpol_tuning(mp, &t) == 1);
    PASS(t.allreduce_star_max == CCL_TUNE_FLOOR_BYTES); /* two members */
    ccl__mpol_destroy(mp);
}

int main(void)
{
    test_tuning_in_group();
    test_optimize_moves_the_ring();
    test_one_asks_enough();
    test_reorder_policy();
    test_ring_carried_over_membership_changes();
    test_expel_after_consecutive_reports();
    test_policies_off_by_default();
    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
