/* test_master_policy.c - the master's membership policy without sockets:
 * feed it events (register, rejoin, reform, a lost link, the clock), then
 * check the decisions it queued (GROUP, NOCHANGE, PENDING, REJECT, CLOSE,
 * log lines), as hiredis tests its parser.  Time is a plain number here,
 * so deadlines and graces are checked to the millisecond. */
#include "ccl.h"
#include "harness.h"
#include "master_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connections are opaque handles to the policy: addresses in here. */
static int conn_ids[32];
#define CONN(i) ((void *)&conn_ids[i])

enum { MAXACT = 512 };

typedef struct {
    ccl__mpol_action a[MAXACT];
    int n;
} decisions;

static decisions d; /* what the last drain() took */

static void drain(ccl__mpol *mp)
{
    d.n = 0;
    while (d.n < MAXACT && ccl__mpol_next(mp, &d.a[d.n]))
        d.n++;
}

/* The decision of `kind` about connection i (-1: any), or NULL. */
static const ccl__mpol_action *find(int kind, int i)
{
    for (int k = 0; k < d.n; k++)
        if (d.a[k].kind == kind && (i < 0 || d.a[k].conn == CONN(i)))
            return &d.a[k];
    return NULL;
}

static int count(int kind)
{
    int n = 0;
    for (int k = 0; k < d.n; k++)
        n += d.a[k].kind == kind;
    return n;
}

/* 1 if the last drain took nothing but log lines. */
static int quiet(void)
{
    return count(CCL_MPOL_LOG) == d.n;
}

/* 1 if a decision of `kind` (LOG, REJECT) has text containing `s`. */
static int said(int kind, const char *s)
{
    for (int k = 0; k < d.n; k++)
        if (d.a[k].kind == kind && strstr(d.a[k].text, s))
            return 1;
    return 0;
}

/* Peer i: uuid i+1, listening on 10.0.0.<i>:5000+i. */
static ccl__register_msg reg_of(int i, uint32_t world, int32_t rank)
{
    ccl__register_msg r;
    memset(&r, 0, sizeof r);
    r.world_size = world;
    r.rank = rank;
    r.listen_port = (uint16_t)(5000 + i);
    r.conns_per_peer = 1;
    memset(r.uuid, i + 1, 16);
    snprintf(r.host, sizeof r.host, "10.0.0.%d", i);
    return r;
}

static ccl__reform_msg *reform_msg(uint32_t epoch, uint32_t wait_ms)
{
    ccl__reform_msg *m = harness_xmalloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->epoch = epoch;
    m->wait_ms = wait_ms;
    return m;
}

static void lose(ccl__reform_msg *m, uint32_t rank, int expel)
{
    m->lost[m->nlost] = rank;
    m->expel[m->nlost++] = (uint8_t)expel;
}

/* Member i reports at `now`, having lost the ranks in lost[0..nlost). */
static void report(ccl__mpol *mp, int i, uint32_t epoch, uint32_t wait,
                   const uint32_t *lost, int nlost, uint64_t now)
{
    ccl__reform_msg *m = reform_msg(epoch, wait);
    for (int k = 0; k < nlost; k++)
        lose(m, lost[k], 0);
    PASS_RC(ccl__mpol_reform(mp, CONN(i), m, now));
    free(m);
}

/* The same, saying that no op succeeded on it in the epoch (the REFORM
 * tag's CCL_REFORM_IDLE). */
static void report_idle(ccl__mpol *mp, int i, uint32_t epoch, uint32_t wait,
                        const uint32_t *lost, int nlost, uint64_t now)
{
    ccl__reform_msg *m = reform_msg(epoch, wait);
    m->idle = 1;
    for (int k = 0; k < nlost; k++)
        lose(m, lost[k], 0);
    PASS_RC(ccl__mpol_reform(mp, CONN(i), m, now));
    free(m);
}

/* A policy without grace whose peers 0..n-1 formed epoch 1, rank = i. */
static ccl__mpol *formed(int n)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    for (int i = 0; i < n; i++) {
        ccl__register_msg r = reg_of(i, (uint32_t)n, i);
        PASS_RC(ccl__mpol_register(mp, CONN(i), &r, 0));
    }
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == n && ccl__mpol_epoch(mp) == 1);
    return mp;
}

static void test_first_group(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    ccl__register_msg r0 = reg_of(0, 3, -1), r1 = reg_of(1, 3, 1),
                      r2 = reg_of(2, 3, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(0), &r0, 1));
    PASS_RC(ccl__mpol_register(mp, CONN(1), &r1, 2));
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 0 && said(CCL_MPOL_LOG, "10.0.0.1:5001 registered"));
    PASS_RC(ccl__mpol_register(mp, CONN(2), &r2, 3));
    drain(mp);
    /* Wanted ranks first, the rest in arrival order. */
    PASS(find(CCL_MPOL_GROUP, 0) && find(CCL_MPOL_GROUP, 0)->rank == 0);
    PASS(find(CCL_MPOL_GROUP, 1) && find(CCL_MPOL_GROUP, 1)->rank == 1);
    PASS(find(CCL_MPOL_GROUP, 2) && find(CCL_MPOL_GROUP, 2)->rank == 2);
    PASS(find(CCL_MPOL_GROUP, 2)->epoch == 1 && ccl__mpol_epoch(mp) == 1);
    uint32_t world = 0;
    uint16_t k = 0;
    const ccl__member *mem = ccl__mpol_members(mp, &world, &k);
    PASS(world == 3 && k == 1 && mem[1].port == 5001 && !strcmp(mem[2].host, "10.0.0.2"));
    /* Joins and the epoch, one log line each, naming rank and address. */
    PASS(said(CCL_MPOL_LOG, "rank 2 (10.0.0.2:5002) joined epoch 1"));
    PASS(said(CCL_MPOL_LOG, "epoch 1 formed"));
    ccl__mpol_destroy(mp);
}

/* B3: two peers that disagree on world_size both hear why, at once. */
static void test_world_size_mismatch(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    ccl__register_msg a = reg_of(0, 2, -1), b = reg_of(1, 3, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(0), &a, 0));
    PASS_RC(ccl__mpol_register(mp, CONN(1), &b, 1));
    drain(mp);
    const ccl__mpol_action *ra = find(CCL_MPOL_REJECT, 0), *rb = find(CCL_MPOL_REJECT, 1);
    PASS(ra && rb && ra->code == CCL_ERR_MISMATCH && rb->code == CCL_ERR_MISMATCH);
    PASS(ra && strstr(ra->text, "world_size 2") && strstr(ra->text, "world_size 3"));
    PASS(rb && strstr(rb->text, "world_size 3") && strstr(rb->text, "world_size 2"));
    PASS(ccl__mpol_waiting_count(mp) == 0);
    /* A rank wanted twice: only the second is refused. */
    ccl__register_msg c = reg_of(2, 2, 0), e = reg_of(3, 2, 0);
    PASS_RC(ccl__mpol_register(mp, CONN(2), &c, 2));
    PASS_RC(ccl__mpol_register(mp, CONN(3), &e, 3));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 3) && !find(CCL_MPOL_REJECT, 2));
    ccl__mpol_destroy(mp);
}

/* A fresh master on a fixed port forms no first group during the grace. */
static void test_grace_holds_first_group(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(1000, 1500, &mp));
    ccl__register_msg r = reg_of(0, 1, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(0), &r, 1010));
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 0);
    PASS(ccl__mpol_timer_ms(mp, 1010, 5000) == 1490);
    ccl__mpol_tick(mp, 2499);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 0);
    ccl__mpol_tick(mp, 2500);
    drain(mp);
    PASS(find(CCL_MPOL_GROUP, 0) && ccl__mpol_epoch(mp) == 1);
    ccl__mpol_destroy(mp);
}

/* B1: members come back (REJOIN) to a restarted master where a joiner
 * already waits: the master adopts their epoch and folds the joiner in;
 * nobody is rejected. */
static void test_restart_with_early_joiner(int joiner_world)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 1500, &mp));
    ccl__register_msg j = reg_of(9, (uint32_t)joiner_world, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(9), &j, 10));
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 0);
    for (int i = 0; i < 3; i++) {
        ccl__register_msg r = reg_of(i, 3, i);
        PASS_RC(ccl__mpol_rejoin(mp, CONN(i), 5, &r, 400 + (uint64_t)i));
        drain(mp);
        PASS(count(CCL_MPOL_REJECT) == 0);
        /* It hears of the joiner at once. */
        PASS(find(CCL_MPOL_PENDING, i) && find(CCL_MPOL_PENDING, i)->count == 1);
        if (i == 0)
            PASS(said(CCL_MPOL_LOG, "adopted epoch 5"));
    }
    PASS(ccl__mpol_epoch(mp) == 5 && ccl__mpol_members_count(mp) == 3);
    for (int i = 0; i < 3; i++)
        report(mp, i, 5, 10000, NULL, 0, 500);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 4 && count(CCL_MPOL_REJECT) == 0);
    PASS(find(CCL_MPOL_GROUP, 9) && find(CCL_MPOL_GROUP, 9)->rank == 3);
    PASS(find(CCL_MPOL_GROUP, 0) && find(CCL_MPOL_GROUP, 0)->epoch == 6);
    PASS(said(CCL_MPOL_LOG, "rank 3 (10.0.0.9:5009) joined epoch 6"));
    ccl__mpol_destroy(mp);
}

/* Of two REJOINs for different epochs the later epoch is the run's. */
static void test_rejoin_later_epoch_wins(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    ccl__register_msg old = reg_of(0, 3, 0), b = reg_of(1, 2, 0), c = reg_of(2, 2, 1);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(0), 4, &old, 0));
    PASS_RC(ccl__mpol_rejoin(mp, CONN(1), 6, &b, 1));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 0) && strstr(find(CCL_MPOL_REJECT, 0)->text, "epoch 6"));
    PASS(!find(CCL_MPOL_REJECT, 1) && ccl__mpol_epoch(mp) == 6);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(2), 6, &c, 2));
    /* A straggler of the earlier epoch is told its epoch is over. */
    ccl__register_msg late = reg_of(3, 3, 2);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(3), 4, &late, 3));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 3) && strstr(find(CCL_MPOL_REJECT, 3)->text, "over"));
    report(mp, 1, 6, 10000, NULL, 0, 4);
    report(mp, 2, 6, 10000, NULL, 0, 5);
    drain(mp);
    PASS(count(CCL_MPOL_NOCHANGE) == 2 && ccl__mpol_epoch(mp) == 6);
    ccl__mpol_destroy(mp);
}

/* After a restart, a member that never comes back is waited for until
 * the deadline, then given up: the others form the next epoch. */
static void test_restart_member_never_back(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    for (int i = 0; i < 2; i++) {
        ccl__register_msg r = reg_of(i, 3, i);
        PASS_RC(ccl__mpol_rejoin(mp, CONN(i), 2, &r, 0));
        report(mp, i, 2, 5000, NULL, 0, 0);
    }
    /* wait 5000, reserve min(1250, 2000): the deadline is 3750. */
    ccl__mpol_tick(mp, 3749);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 0);
    ccl__mpol_tick(mp, 3750);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 2 && ccl__mpol_epoch(mp) == 3);
    PASS(said(CCL_MPOL_LOG, "rank 2 left epoch 2: it did not come back"));
    ccl__mpol_destroy(mp);
}

/* Everyone reports, nothing changed: NOCHANGE, the epoch stays. */
static void test_nochange(void)
{
    ccl__mpol *mp = formed(3);
    for (int i = 0; i < 3; i++)
        report(mp, i, 1, 10000, NULL, 0, 100);
    drain(mp);
    PASS(count(CCL_MPOL_NOCHANGE) == 3 && ccl__mpol_epoch(mp) == 1);
    ccl__mpol_destroy(mp);
}

/* Ranks 1 and 2 reach update_topology at once, rank 0 2.5 s later
 * reporting both lost (its links broke: 1 and 2 may have completed ops
 * without it).  The member with the most broken links goes at once; the
 * other two continue as one group.  (Members waiting at the safe point
 * keep their links alive, so a late arrival alone breaks nothing: see
 * tests/test_master_policy_live.py.) */
static void test_broken_links_drop_the_most_broken(void)
{
    ccl__mpol *mp = formed(3);
    uint32_t both[2] = {1, 2};
    report(mp, 1, 1, 60000, NULL, 0, 0);
    report(mp, 2, 1, 60000, NULL, 0, 0);
    ccl__mpol_tick(mp, 2499);
    drain(mp);
    PASS(quiet());
    report(mp, 0, 1, 60000, both, 2, 2500);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 0) && strstr(find(CCL_MPOL_REJECT, 0)->text, "broke"));
    PASS(count(CCL_MPOL_GROUP) == 2 && find(CCL_MPOL_GROUP, 1)->rank == 0);
    PASS(find(CCL_MPOL_GROUP, 2) && find(CCL_MPOL_GROUP, 2)->rank == 1);
    PASS(said(CCL_MPOL_LOG, "rank 0 (10.0.0.0:5000) left epoch 1: dropped"));
    ccl__mpol_destroy(mp);
}

/* A cut link between two live members: the lower rank goes (the same
 * answer every time), the other continues alone. */
static void test_mutual_loss(void)
{
    ccl__mpol *mp = formed(2);
    uint32_t r0 = 0, r1 = 1;
    report(mp, 0, 1, 10000, &r1, 1, 0);
    report(mp, 1, 1, 10000, &r0, 1, 0);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 0) && find(CCL_MPOL_GROUP, 1));
    PASS(find(CCL_MPOL_GROUP, 1)->rank == 0 && ccl__mpol_epoch(mp) == 2);
    ccl__mpol_destroy(mp);
}

/* After a restart, all members report all others lost: members go, most
 * broken links first, until none remains (one is left). */
static void test_all_lost_all_after_restart(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 1500, &mp));
    for (int i = 0; i < 3; i++) {
        ccl__register_msg r = reg_of(i, 3, i);
        PASS_RC(ccl__mpol_rejoin(mp, CONN(i), 1, &r, (uint64_t)i * 300));
        uint32_t others[2] = {(uint32_t)(i + 1) % 3, (uint32_t)(i + 2) % 3};
        if (others[0] > others[1]) {
            uint32_t t = others[0];
            others[0] = others[1];
            others[1] = t;
        }
        report(mp, i, 1, 20000, others, 2, (uint64_t)i * 300);
    }
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 1 && count(CCL_MPOL_REJECT) == 2);
    PASS(find(CCL_MPOL_GROUP, 2) && find(CCL_MPOL_GROUP, 2)->rank == 0);
    ccl__mpol_destroy(mp);
}

/* A peer died while the members built a new epoch's mesh: every build
 * failed, every member lost every other, and no op succeeded anywhere
 * (all report idle).  Nobody goes: those links hold no outcome to
 * disagree on (seen in a churn run, where the old rule dropped members
 * down to one and the shared state with them). */
static void test_idle_members_keep_their_broken_links(void)
{
    ccl__mpol *mp = formed(4);
    for (int i = 0; i < 4; i++) {
        uint32_t others[3], k = 0;
        for (uint32_t r = 0; r < 4; r++)
            if (r != (uint32_t)i)
                others[k++] = r;
        report_idle(mp, i, 1, 20000, others, 3, (uint64_t)i);
    }
    drain(mp);
    PASS(count(CCL_MPOL_REJECT) == 0 && count(CCL_MPOL_GROUP) == 4);
    PASS(ccl__mpol_epoch(mp) == 2);
    ccl__mpol_destroy(mp);
    /* One member had ops succeed (rank 3): its broken links count, the
     * idle ones' links among themselves do not.  Rank 3 goes, the other
     * three stay. */
    mp = formed(4);
    uint32_t all3[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++) {
        uint32_t lost[3], k = 0;
        for (uint32_t r = 0; r < 4; r++)
            if (r != (uint32_t)i)
                lost[k++] = r;
        report_idle(mp, i, 1, 20000, lost, 3, (uint64_t)i);
    }
    report(mp, 3, 1, 20000, all3, 3, 3);
    drain(mp);
    PASS(count(CCL_MPOL_REJECT) == 1 && find(CCL_MPOL_REJECT, 3));
    PASS(count(CCL_MPOL_GROUP) == 3 && !find(CCL_MPOL_GROUP, 3));
    ccl__mpol_destroy(mp);
}

/* A member silent at the safe point is dropped at the deadline; one that
 * another member lost is waited for only the accused grace. */
static void test_silent_and_accused(void)
{
    ccl__mpol *mp = formed(3);
    report(mp, 0, 1, 10000, NULL, 0, 0);
    report(mp, 1, 1, 10000, NULL, 0, 0);
    PASS(ccl__mpol_timer_ms(mp, 0, 100000) == 8000); /* 10000 - 2000 */
    ccl__mpol_tick(mp, 7999);
    drain(mp);
    PASS(quiet());
    ccl__mpol_tick(mp, 8000);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 2) && find(CCL_MPOL_REJECT, 2)->code == CCL_ERR_REJECTED);
    PASS(said(CCL_MPOL_REJECT, "did not call update_topology"));
    PASS(count(CCL_MPOL_GROUP) == 2 && ccl__mpol_epoch(mp) == 2);

    uint32_t r1 = 1;
    report(mp, 0, 2, 10000, &r1, 1, 9000);
    PASS(ccl__mpol_timer_ms(mp, 9000, 100000) == CCL_MPOL_ACCUSED_GRACE_MS);
    ccl__mpol_tick(mp, 9000 + CCL_MPOL_ACCUSED_GRACE_MS - 1);
    drain(mp);
    PASS(quiet());
    ccl__mpol_tick(mp, 9000 + CCL_MPOL_ACCUSED_GRACE_MS);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 1) && said(CCL_MPOL_REJECT, "rank 0 lost it"));
    PASS(find(CCL_MPOL_GROUP, 0) && ccl__mpol_epoch(mp) == 3);
    ccl__mpol_destroy(mp);
}

/* One member names every other one lost (a member cut off, or delayed,
 * while the others still wait out their op for it): its word does not
 * shorten their wait.  They report it lost later, and it goes, with the
 * most broken links.  A report naming only some of the others still
 * gets the accused grace. */
static void test_one_against_all(void)
{
    ccl__mpol *mp = formed(4);
    uint32_t others[3] = {1, 2, 3}, r0 = 0;
    report(mp, 0, 1, 10000, others, 3, 0);
    PASS(ccl__mpol_timer_ms(mp, 0, 100000) == 8000); /* the deadline only */
    ccl__mpol_tick(mp, 2 * CCL_MPOL_ACCUSED_GRACE_MS);
    drain(mp);
    PASS(quiet());
    report(mp, 1, 1, 10000, &r0, 1, 2500);
    report(mp, 2, 1, 10000, &r0, 1, 2600);
    drain(mp);
    PASS(quiet());
    report(mp, 3, 1, 10000, &r0, 1, 2700);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 0) && said(CCL_MPOL_REJECT, "broke"));
    PASS(count(CCL_MPOL_GROUP) == 3 && ccl__mpol_epoch(mp) == 2);
    PASS(find(CCL_MPOL_GROUP, 1) && find(CCL_MPOL_GROUP, 2) && find(CCL_MPOL_GROUP, 3));

    /* Epoch 2, ranks 0..2 on connections 1..3: rank 0 names rank 1 only,
     * and rank 2 reports nothing lost: rank 1 gets the accused grace and
     * goes. */
    report(mp, 1, 2, 10000, &others[0], 1, 5000);
    report(mp, 3, 2, 10000, NULL, 0, 5000);
    ccl__mpol_tick(mp, 5000 + CCL_MPOL_ACCUSED_GRACE_MS);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 2) && said(CCL_MPOL_REJECT, "rank 0 lost it"));
    PASS(count(CCL_MPOL_GROUP) == 2 && ccl__mpol_epoch(mp) == 3);
    ccl__mpol_destroy(mp);
}

/* A member whose control link ended on its side comes back on a new
 * link while the master still holds the old one: the new link takes the
 * rank, the old one is closed, nobody is refused, and the epoch goes on
 * (no new epoch for it). */
static void test_rejoin_replaces_a_stale_link(void)
{
    ccl__mpol *mp = formed(3);
    uint32_t epoch = ccl__mpol_epoch(mp);
    ccl__register_msg back = reg_of(1, 3, 1);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(9), epoch, &back, 10));
    drain(mp);
    PASS(find(CCL_MPOL_CLOSE, 1) != NULL);
    PASS(!find(CCL_MPOL_REJECT, 9) && !find(CCL_MPOL_REJECT, 1));
    PASS(said(CCL_MPOL_LOG, "came back on a new link"));
    PASS(ccl__mpol_epoch(mp) == epoch);
    /* Another peer claiming rank 1 (another uuid) is still refused. */
    ccl__register_msg other = reg_of(7, 3, 1);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(10), epoch, &other, 11));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 10) != NULL && !find(CCL_MPOL_CLOSE, 9));
    /* The new link is the member's: losing it is losing the member. */
    ccl__mpol_lost(mp, CONN(9), 12);
    drain(mp);
    PASS(said(CCL_MPOL_LOG, "rank 1 (10.0.0.1:5001) left epoch"));
    ccl__mpol_destroy(mp);
}

/* Expelled at once, and refused when it comes back. */
static void test_expel(void)
{
    ccl__mpol *mp = formed(3);
    ccl__reform_msg *m = reform_msg(1, 10000);
    lose(m, 1, 1);
    PASS_RC(ccl__mpol_reform(mp, CONN(0), m, 0));
    free(m);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 1) && said(CCL_MPOL_REJECT, "expelled"));
    PASS(said(CCL_MPOL_LOG, "rank 1 (10.0.0.1:5001) left epoch 1: expelled"));
    report(mp, 2, 1, 10000, NULL, 0, 1);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 2);
    ccl__register_msg back = reg_of(1, 3, 1);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(1), 2, &back, 2));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 1) && said(CCL_MPOL_REJECT, "expelled"));
    ccl__mpol_destroy(mp);
}

/* A lost link: logged, the next reform forms a new epoch; decisions
 * still queued for the lost connection are dropped. */
static void test_lost_link(void)
{
    ccl__mpol *mp = formed(3);
    ccl__register_msg j = reg_of(5, 1, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(5), &j, 0));
    ccl__mpol_lost(mp, CONN(1), 1); /* before the PENDING went out */
    drain(mp);
    PASS(!find(CCL_MPOL_PENDING, 1) && find(CCL_MPOL_PENDING, 0));
    PASS(said(CCL_MPOL_LOG, "rank 1 (10.0.0.1:5001) left epoch 1: its control link closed"));
    PASS(said(CCL_MPOL_LOG, "peer 10.0.0.5:5005 waits to join epoch 1"));
    report(mp, 0, 1, 10000, NULL, 0, 2);
    report(mp, 2, 1, 10000, NULL, 0, 2);
    drain(mp);
    PASS(count(CCL_MPOL_GROUP) == 3 && find(CCL_MPOL_GROUP, 5)->rank == 2);
    PASS(said(CCL_MPOL_LOG, "epoch 2 formed: 3 members (1 joined, 1 left"));
    /* A peer of another run at the same epoch number is refused. */
    ccl__register_msg stranger = reg_of(7, 3, 1);
    PASS_RC(ccl__mpol_rejoin(mp, CONN(7), 2, &stranger, 3));
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 7));
    /* The last member gone: the run ends, the next peers start anew. */
    for (int i = 0; i < 6; i++)
        ccl__mpol_lost(mp, CONN(i), 4);
    drain(mp);
    PASS(said(CCL_MPOL_LOG, "epoch 2 ended"));
    ccl__register_msg n = reg_of(8, 1, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(8), &n, 5));
    drain(mp);
    PASS(find(CCL_MPOL_GROUP, 8) && ccl__mpol_epoch(mp) == 3);
    ccl__mpol_destroy(mp);
}

/* Protocol misuse: REFORM from a waiting peer, an unknown connection. */
static void test_misuse(void)
{
    ccl__mpol *mp = NULL;
    PASS_RC(ccl__mpol_create(0, 0, &mp));
    ccl__register_msg r = reg_of(0, 2, -1);
    PASS_RC(ccl__mpol_register(mp, CONN(0), &r, 0));
    PASS(ccl__mpol_register(mp, CONN(0), &r, 0) == CCL_ERR_INVALID_ARG);
    ccl__reform_msg *m = reform_msg(0, 100);
    PASS(ccl__mpol_reform(mp, CONN(3), m, 0) == CCL_ERR_INVALID_ARG);
    PASS_RC(ccl__mpol_reform(mp, CONN(0), m, 0));
    free(m);
    drain(mp);
    PASS(find(CCL_MPOL_REJECT, 0) && find(CCL_MPOL_REJECT, 0)->code == CCL_ERR_PROTOCOL);
    ccl__mpol_lost(mp, CONN(0), 1); /* already forgotten: nothing happens */
    drain(mp);
    PASS(quiet());
    ccl__mpol_destroy(mp);
}

int main(void)
{
    test_first_group();
    test_world_size_mismatch();
    test_grace_holds_first_group();
    test_restart_with_early_joiner(3);
    test_restart_with_early_joiner(1);
    test_rejoin_later_epoch_wins();
    test_rejoin_replaces_a_stale_link();
    test_restart_member_never_back();
    test_nochange();
    test_broken_links_drop_the_most_broken();
    test_mutual_loss();
    test_all_lost_all_after_restart();
    test_idle_members_keep_their_broken_links();
    test_silent_and_accused();
    test_one_against_all();
    test_expel();
    test_lost_link();
    test_misuse();
    return HARNESS_DONE("test_master_policy");
}
