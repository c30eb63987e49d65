/*
 * master_view.c - members' STATS reports, kept one per member, and the
 * group verdict on slow links (see master_view.h).
 *
 * The verdict is over the links of the newest epoch any member reported:
 * each link is reported by its receiver with its recent receive rate
 * (stats.h: the median of its last 3 samples), and ccl__slow_detect
 * compares every link with the group.  In a ring a member receives on
 * one link only, so only the master, which sees all of them, can tell a
 * slow link from a slow group.  A link newly flagged is logged once (and
 * once more when it recovers).
 */
#include "master_view.h"

#include "log.h"
#include "sock.h"
#include "slow_detect.h"
#include "stats_wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct mv_link {
    ccl__stats_link_msg m;
    double z;
    int slow;
    uint64_t flagged_at_ops;
} mv_link;

typedef struct mv_member {
    struct mv_member *next;
    const void *who;
    char addr[80];
    ccl__stats_msg hdr; /* links unused: they are in `links` */
    mv_link *links;
    int nlinks;
    uint64_t last_ms, reports;
} mv_member;

struct ccl__mview {
    pthread_mutex_t mu;
    mv_member *members;
    int nmembers;
    ccl_master_stats_totals totals;
    ccl__stats_msg scratch;
    int dirty;             /* reports since the last verdict */
    uint64_t judged_ms;    /* when the last verdict ran */
};

/* The verdict runs at most this often while reports arrive (and on a read
 * when reports came since): with thousands of members reporting every
 * second, judging on each report would cost O(n^2 log n) a second. */
#define JUDGE_EVERY_MS 50

int ccl__mview_create(ccl__mview **out)
{
    ccl__mview *v = calloc(1, sizeof *v);
    if (!v || pthread_mutex_init(&v->mu, NULL)) {
        free(v);
        return CCL_ERR_NOMEM;
    }
    *out = v;
    return CCL_OK;
}

static void member_free(mv_member *mb)
{
    free(mb->links);
    free(mb);
}

void ccl__mview_destroy(ccl__mview *v)
{
    if (!v)
        return;
    while (v->members) {
        mv_member *mb = v->members;
        v->members = mb->next;
        member_free(mb);
    }
    pthread_mutex_destroy(&v->mu);
    free(v);
}

static mv_member *find(ccl__mview *v, const void *who)
{
    for (mv_member *mb = v->members; mb; mb = mb->next)
        if (mb->who == who)
            return mb;
    return NULL;
}

/* Judges every link of the newest epoch.  Under v->mu. */
static void judge(ccl__mview *v)
{
    uint32_t epoch = 0;
    int n = 0;
    for (mv_member *mb = v->members; mb; mb = mb->next)
        if (mb->hdr.epoch > epoch)
            epoch = mb->hdr.epoch;
    for (mv_member *mb = v->members; mb; mb = mb->next)
        if (mb->hdr.epoch == epoch)
            n += mb->nlinks;
    if (n == 0)
        return;
    double *val = malloc((size_t)n * 4 * sizeof *val);
    uint8_t *flag = malloc((size_t)n);
    if (!val || !flag) {
        free(val);
        free(flag);
        return; /* no verdict this time; the next report tries again */
    }
    double *z = val + n, *scratch = val + 2 * n;
    int i = 0;
    for (mv_member *mb = v->members; mb; mb = mb->next)
        if (mb->hdr.epoch == epoch)
            for (int l = 0; l < mb->nlinks; l++) {
                flag[i] = (uint8_t)mb->links[l].slow;
                val[i++] = mb->links[l].m.rate_kbs * 1000.0;
            }
    ccl__slow_detect(val, n, z, flag, flag, scratch);
    i = 0;
    for (mv_member *mb = v->members; mb; mb = mb->next) {
        if (mb->hdr.epoch != epoch)
            continue;
        for (int l = 0; l < mb->nlinks; l++, i++) {
            mv_link *lk = &mb->links[l];
            lk->z = z[i];
            if (flag[i] && !lk->slow) {
                if (!lk->flagged_at_ops)
                    lk->flagged_at_ops = mb->hdr.ops_ok;
                v->totals.slow_flags_raised++;
                ccl__log(CCL_LOG_WARNING,
                         "pyccl master: slow link from rank %u to rank %u "
                         "(reported by %s): %.1f MB/s, robust z %.1f among "
                         "%d links of epoch %u", lk->m.peer, mb->hdr.rank,
                         mb->addr, val[i] / 1e6, z[i], n, epoch);
            } else if (!flag[i] && lk->slow) {
                ccl__log(CCL_LOG_INFO,
                         "pyccl master: link from rank %u to rank %u is no "
                         "longer slow: %.1f MB/s (epoch %u)", lk->m.peer,
                         mb->hdr.rank, val[i] / 1e6, epoch);
            }
            lk->slow = flag[i];
        }
    }
    free(val);
    free(flag);
}

int ccl__mview_report(ccl__mview *v, const void *who, const char *addr,
                      const uint8_t *payload, size_t len, uint64_t now_ms,
                      int *taken)
{
    int dummy;
    if (!taken)
        taken = &dummy;
    *taken = 0;
    pthread_mutex_lock(&v->mu);
    ccl__stats_msg *m = &v->scratch;
    int rc = ccl__stats_msg_decode(payload, len, m);
    if (rc == CCL_ERR_VERSION) {
        v->totals.reports_unknown_version++;
        pthread_mutex_unlock(&v->mu);
        return CCL_OK;
    }
    if (rc) {
        pthread_mutex_unlock(&v->mu);
        return CCL_ERR_PROTOCOL;
    }
    mv_member *mb = find(v, who);
    if (mb && now_ms - mb->last_ms < CCL__MVIEW_MIN_GAP_MS) {
        v->totals.reports_dropped++;
        pthread_mutex_unlock(&v->mu);
        return CCL_OK;
    }
    if (!mb) {
        mb = calloc(1, sizeof *mb);
        if (!mb) {
            pthread_mutex_unlock(&v->mu);
            return CCL_OK; /* a report lost for memory: the next one comes */
        }
        mb->who = who;
        mb->next = v->members;
        v->members = mb;
        v->nmembers++;
    }
    snprintf(mb->addr, sizeof mb->addr, "%s", addr ? addr : "");
    mv_link *links = m->nlinks ? calloc(m->nlinks, sizeof *links) : NULL;
    if (m->nlinks && !links) {
        pthread_mutex_unlock(&v->mu);
        return CCL_OK;
    }
    /* A link keeps its verdict across reports of the same epoch. */
    for (int i = 0; i < m->nlinks; i++) {
        links[i].m = m->links[i];
        for (int j = 0; mb->hdr.epoch == m->epoch && j < mb->nlinks; j++)
            if (mb->links[j].m.peer == m->links[i].peer) {
                links[i].slow = mb->links[j].slow;
                links[i].flagged_at_ops = mb->links[j].flagged_at_ops;
                links[i].z = mb->links[j].z;
            }
    }
    free(mb->links);
    mb->links = links;
    mb->nlinks = m->nlinks;
    memcpy(&mb->hdr, m, offsetof(ccl__stats_msg, links));
    mb->last_ms = now_ms;
    mb->reports++;
    v->totals.reports++;
    *taken = 1;
    v->dirty = 1;
    if (now_ms - v->judged_ms >= JUDGE_EVERY_MS) {
        judge(v);
        v->dirty = 0;
        v->judged_ms = now_ms;
    }
    pthread_mutex_unlock(&v->mu);
    return CCL_OK;
}

/* One link of a member's report as the public stats show it. */
static void link_out(const mv_member *mb, const mv_link *lk, ccl_master_link_stats *o)
{
    memset(o, 0, sizeof *o);
    o->epoch = mb->hdr.epoch;
    o->from = (int)lk->m.peer;
    o->to = (int)mb->hdr.rank;
    o->rx_rate = lk->m.rate_kbs * 1000.0;
    o->rtt_us = lk->m.rtt_us;
    o->rx_bytes = lk->m.rx_bytes;
    o->samples = lk->m.samples;
    o->z = lk->z;
    o->slow = lk->slow;
    o->slow_local = (lk->m.flags & CCL_STATS_LINK_SLOW) != 0;
    o->flagged_at_ops = lk->flagged_at_ops;
}

int ccl__mview_member_links(ccl__mview *v, const void *who,
                            ccl_master_link_stats *out, int max)
{
    int n = 0;
    pthread_mutex_lock(&v->mu);
    const mv_member *mb = find(v, who);
    for (int l = 0; mb && l < mb->nlinks && n < max; l++)
        link_out(mb, &mb->links[l], &out[n++]);
    pthread_mutex_unlock(&v->mu);
    return n;
}

int ccl__mview_member_tx_peak(ccl__mview *v, const void *who, uint32_t *epoch,
                              uint32_t *rank, double *tx_peak)
{
    pthread_mutex_lock(&v->mu);
    const mv_member *mb = find(v, who);
    if (mb) {
        *epoch = mb->hdr.epoch;
        *rank = mb->hdr.rank;
        *tx_peak = (double)mb->hdr.tx_peak;
    }
    pthread_mutex_unlock(&v->mu);
    return mb != NULL;
}

void ccl__mview_forget(ccl__mview *v, const void *who)
{
    pthread_mutex_lock(&v->mu);
    for (mv_member **pp = &v->members; *pp; pp = &(*pp)->next)
        if ((*pp)->who == who) {
            mv_member *mb = *pp;
            *pp = mb->next;
            member_free(mb);
            v->nmembers--;
            break;
        }
    pthread_mutex_unlock(&v->mu);
}

int ccl__mview_read(ccl__mview *v, ccl_master_stats_totals *totals,
                    ccl_master_member_stats *members, int max_members,
                    int *n_members, ccl_master_link_stats *links, int max_links,
                    int *n_links)
{
    int nm = 0, nl = 0;
    uint64_t now = ccl__now_ms();
    pthread_mutex_lock(&v->mu);
    if (v->dirty) {
        judge(v);
        v->dirty = 0;
        v->judged_ms = now;
    }
    if (totals)
        *totals = v->totals;
    for (mv_member *mb = v->members; mb; mb = mb->next) {
        if (members && nm < max_members) {
            ccl_master_member_stats *o = &members[nm++];
            memset(o, 0, sizeof *o);
            o->epoch = mb->hdr.epoch;
            o->rank = (int)mb->hdr.rank;
            o->size = (int)mb->hdr.size;
            memcpy(o->addr, mb->addr, sizeof o->addr);
            o->ops_ok = mb->hdr.ops_ok;
            o->ops_failed = mb->hdr.ops_failed;
            o->tx_bytes = mb->hdr.tx_bytes;
            o->rx_bytes = mb->hdr.rx_bytes;
            o->op_bytes = mb->hdr.op_bytes;
            o->op_time_us = mb->hdr.op_time_us;
            o->age_ms = now - mb->last_ms;
            o->reports = mb->reports;
        }
        for (int l = 0; links && l < mb->nlinks && nl < max_links; l++) {
            link_out(mb, &mb->links[l], &links[nl++]);
        }
    }
    if (n_members)
        *n_members = nm;
    if (n_links)
        *n_links = nl;
    pthread_mutex_unlock(&v->mu);
    return CCL_OK;
}
