/*
 * master_ring.c - the membership policy's view of the links: the last
 * measured rate of each link by the identities of its ends, the ring
 * order of the next epoch (carried over, or re-planned with
 * ring_order.h), and the optional policies on slow links (master_policy.h,
 * "Ring order").
 *
 * The link table is a plain array searched linearly: it holds at most
 * MP_MAX_LINKS entries (the oldest is replaced when it is full), and a
 * report costs one search per link it carries, so it stays cheap for the
 * groups of tens of members this is for; a group of thousands would want
 * a hash here.
 */
#include "master_state.h"
#include "ring_order.h"

#include "ccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ccl__mpol_set_options(ccl__mpol *mp, const ccl__mpol_options *o)
{
    mp->opt = *o;
}

int ccl__mpol_ring_sent(const ccl__mpol *mp)
{
    return mp->ring != NULL;
}

int ccl__mpol_tuning(const ccl__mpol *mp, ccl__tuning *t)
{
    if (mp->has_tune)
        *t = mp->tune;
    else
        ccl__tune_default(t);
    return mp->has_tune;
}

static mp_link *link_find(const ccl__mpol *mp, const uint8_t *src, const uint8_t *dst)
{
    for (int i = 0; i < mp->nlinks; i++)
        if (!memcmp(mp->links[i].src, src, 16) && !memcmp(mp->links[i].dst, dst, 16))
            return &mp->links[i];
    return NULL;
}

/* The entry of src -> dst, made (or the oldest one reused) when new;
 * NULL without memory. */
static mp_link *link_entry(ccl__mpol *mp, const uint8_t *src, const uint8_t *dst)
{
    mp_link *l = link_find(mp, src, dst);
    if (l)
        return l;
    if (!mp->links) {
        mp->links = calloc(MP_MAX_LINKS, sizeof *mp->links);
        if (!mp->links)
            return NULL;
    }
    if (mp->nlinks < MP_MAX_LINKS) {
        l = &mp->links[mp->nlinks++];
    } else {
        l = &mp->links[0];
        for (int i = 1; i < mp->nlinks; i++)
            if (mp->links[i].at_ms < l->at_ms)
                l = &mp->links[i];
    }
    memset(l, 0, sizeof *l);
    memcpy(l->src, src, 16);
    memcpy(l->dst, dst, 16);
    return l;
}

void ccl__mpol_link(ccl__mpol *mp, uint32_t epoch, uint32_t src, uint32_t dst,
                    double rate, int slow, uint64_t now)
{
    if (epoch != mp->epoch || src >= mp->world || dst >= mp->world || src == dst ||
        mp->slots[src].state != SLOT_HERE || mp->slots[dst].state != SLOT_HERE)
        return;
    mp_peer *from = mp->slots[src].peer;
    mp_link *l = link_entry(mp, mp->slots[src].uuid, mp->slots[dst].uuid);
    if (l && rate > 0) {
        l->rate = rate;
        l->at_ms = now;
        l->slow = slow;
    }
    /* The sender's streak: a link from it flagged in this report, or not. */
    if (slow) {
        from->slow_streak++;
        memcpy(from->slow_to, mp->slots[dst].uuid, 16);
        from->slow_rate = rate;
    } else {
        from->slow_streak = 0;
    }
}

void ccl__mpol_link_rtt(ccl__mpol *mp, uint32_t epoch, uint32_t src, uint32_t dst,
                        double rtt_us)
{
    if (epoch != mp->epoch || src >= mp->world || dst >= mp->world || src == dst ||
        mp->slots[src].state != SLOT_HERE || mp->slots[dst].state != SLOT_HERE ||
        !(rtt_us > 0))
        return;
    mp_link *l = link_entry(mp, mp->slots[src].uuid, mp->slots[dst].uuid);
    if (l) {
        l->rtt_us = rtt_us;
        if (!l->at_ms)
            l->at_ms = 1; /* remembered like a rate (the oldest goes first) */
    }
}

void ccl__mpol_member_tx_peak(ccl__mpol *mp, uint32_t epoch, uint32_t rank,
                              double tx_peak)
{
    if (epoch != mp->epoch || rank >= mp->world || mp->slots[rank].state != SLOT_HERE ||
        !(tx_peak > 0))
        return;
    mp->slots[rank].peer->tx_peak = tx_peak;
}

/* ---- the ring order ---- */

int ccl__mp_ring_due(const ccl__mpol *mp)
{
    for (uint32_t r = 0; r < mp->world; r++)
        if (mp->slots[r].state == SLOT_HERE && mp->slots[r].peer->reported &&
            mp->slots[r].peer->optimize)
            return 1;
    if (!mp->opt.reorder_slow_links || mp->world < 3)
        return 0;
    for (uint32_t p = 0; p < mp->world; p++) {
        uint32_t a = mp->ring ? mp->ring[p] : p;
        uint32_t b = mp->ring ? mp->ring[(p + 1) % mp->world] : (p + 1) % mp->world;
        const mp_link *l = link_find(mp, mp->slots[a].uuid, mp->slots[b].uuid);
        if (l && l->slow)
            return 1;
    }
    return 0;
}

/* The rank in byrank[0..n) of the peer with this uuid, or -1. */
static int rank_of(mp_peer *const *byrank, uint32_t n, const uint8_t *uuid)
{
    for (uint32_t r = 0; r < n; r++)
        if (!memcmp(byrank[r]->reg.uuid, uuid, 16))
            return (int)r;
    return -1;
}

/* The current order carried over to byrank: members that stay in their
 * order around the ring, then the others (joiners) in rank order. */
static void carry(const ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                  uint32_t *order, uint8_t *placed)
{
    uint32_t k = 0;
    memset(placed, 0, n);
    for (uint32_t p = 0; mp->run != RUN_NONE && p < mp->world && mp->slots; p++) {
        uint32_t old = mp->ring ? mp->ring[p] : p;
        const mp_slot *s = &mp->slots[old];
        int r = s->state == SLOT_HERE ? rank_of(byrank, n, s->peer->reg.uuid) : -1;
        if (r >= 0 && !placed[r]) {
            order[k++] = (uint32_t)r;
            placed[r] = 1;
        }
    }
    for (uint32_t r = 0; r < n; r++)
        if (!placed[r])
            order[k++] = r;
}

/* The rate (and, if rtt is not NULL, round trip) of each remembered link
 * whose ends are both in byrank[0..n), into n x n matrices (0: unknown). */
static void link_matrix(const ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                        double *bw, double *rtt)
{
    for (int i = 0; i < mp->nlinks; i++) {
        int a = rank_of(byrank, n, mp->links[i].src);
        int b = a >= 0 ? rank_of(byrank, n, mp->links[i].dst) : -1;
        if (b < 0)
            continue;
        bw[(size_t)a * n + b] = mp->links[i].rate;
        if (rtt)
            rtt[(size_t)a * n + b] = mp->links[i].rtt_us;
    }
}

int ccl__mp_plan_tune(const ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                      const uint32_t *order, ccl__tuning *t)
{
    ccl__tune_default(t);
    if (n < 2 || n > MP_MAX_RING_PLAN)
        return 0;
    double *bw = calloc((size_t)n * n, sizeof *bw);
    double *rtt = calloc((size_t)n * n, sizeof *rtt);
    double *up = calloc(n, sizeof *up);
    int has = 0;
    if (bw && rtt && up) {
        link_matrix(mp, byrank, n, bw, rtt);
        for (uint32_t r = 0; r < n; r++)
            up[r] = byrank[r]->tx_peak;
        has = ccl__tune_plan((int)n, rtt, bw, up, order, t);
    }
    free(bw);
    free(rtt);
    free(up);
    return has;
}

int ccl__mp_plan_ring(ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                      int replan, uint32_t *order)
{
    uint8_t *placed = malloc(n ? n : 1);
    if (!placed) {
        for (uint32_t r = 0; r < n; r++)
            order[r] = r;
        return 0;
    }
    carry(mp, byrank, n, order, placed);
    free(placed);
    if (!replan || n < 3 || n > MP_MAX_RING_PLAN)
        return 0;
    double *bw = calloc((size_t)n * n, sizeof *bw);
    uint32_t *out = malloc(n * sizeof *out);
    int changed = 0;
    if (bw && out) {
        link_matrix(mp, byrank, n, bw, NULL);
        changed = ccl__ring_order_choose((int)n, bw, order, out) == 1;
        if (changed) {
            char text[CCL_MPOL_TEXT];
            int len = snprintf(text, sizeof text, "master: new ring order for epoch "
                               "%u (slowest link %.1f -> %.1f MB/s):", mp->epoch + 1,
                               ccl__ring_bottleneck((int)n, bw, order) / 1e6,
                               ccl__ring_bottleneck((int)n, bw, out) / 1e6);
            for (uint32_t p = 0; p < n && len > 0 && len < (int)sizeof text - 12; p++)
                len += snprintf(text + len, sizeof text - (size_t)len, " %u", out[p]);
            ccl__mp_log(mp, CCL_LOG_INFO, "%s", text);
            memcpy(order, out, n * sizeof *out);
        }
    }
    free(bw);
    free(out);
    return changed;
}

/* ---- expelling a member that stays slow ---- */

void ccl__mp_expel_slow(ccl__mpol *mp)
{
    uint32_t limit = mp->opt.expel_slow_after;
    if (limit == 0)
        return;
    for (uint32_t r = 0; r < mp->world; r++) {
        mp_slot *s = &mp->slots[r];
        if (s->state != SLOT_HERE || s->peer->slow_streak < limit)
            continue;
        mp_peer *p = s->peer;
        int to = -1;
        for (uint32_t q = 0; q < mp->world; q++)
            if (mp->slots[q].known && !memcmp(mp->slots[q].uuid, p->slow_to, 16))
                to = (int)q;
        char why[200];
        snprintf(why, sizeof why, "expelled as a slow peer: its link to rank %d was "
                 "flagged slow in %u consecutive reports (%.1f MB/s at the last; "
                 "the limit is %u, expel_slow_after)", to, p->slow_streak,
                 p->slow_rate / 1e6, limit);
        ccl__mp_drop(mp, p, why);
    }
}
