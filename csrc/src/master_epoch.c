/*
 * master_epoch.c - where the membership policy forms epochs: the first
 * group of a run, and the end of a reform (who stays, who goes, NOCHANGE
 * or the next epoch).  The rules are written out in master_policy.h.
 */
#include "master_state.h"

#include "ccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether order is 0, 1, ..., n-1. */
static int mp_is_identity(const uint32_t *order, uint32_t n)
{
    for (uint32_t p = 0; p < n; p++)
        if (order[p] != p)
            return 0;
    return 1;
}

int ccl__mp_form(ccl__mpol *mp, mp_peer **byrank, uint32_t n,
                 const uint32_t *order)
{
    char name[CCL_MAX_HOST + 8];
    mp_slot *slots = calloc(n, sizeof *slots);
    ccl__member *mem = calloc(n, sizeof *mem);
    uint32_t *ring = NULL;
    for (uint32_t p = 0; order && p < n && !ring; p++)
        if (order[p] != p)
            ring = malloc(n * sizeof *ring); /* not the rank order: kept */
    if (!slots || !mem || (ring == NULL && order && !mp_is_identity(order, n))) {
        free(slots);
        free(mem);
        free(ring);
        return CCL_ERR_NOMEM;
    }
    for (uint32_t p = 0; p < n; p++)
        mem[order ? order[p] : p].ring_pos = p;
    if (ring)
        memcpy(ring, order, n * sizeof *ring);
    free(mp->ring);
    mp->ring = ring;
    mp->has_tune = ccl__mp_plan_tune(mp, byrank, n, order, &mp->tune);
    uint32_t joined = 0, first = mp->ever_run == 0 || mp->run == RUN_NONE;
    mp->epoch++;
    for (uint32_t r = 0; r < n; r++) {
        mp_peer *p = byrank[r];
        mem[r].port = p->reg.listen_port;
        memcpy(mem[r].uuid, p->reg.uuid, 16);
        memcpy(mem[r].host, p->reg.host, sizeof mem[r].host);
        slots[r].state = SLOT_HERE;
        slots[r].peer = p;
        slots[r].known = 1;
        memcpy(slots[r].uuid, p->reg.uuid, 16);
        if (!p->member) {
            joined++;
            ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u (%s) joined epoch %u", r,
                        ccl__mp_name(p, name, sizeof name), mp->epoch);
        }
        p->member = 1;
        p->rank = r;
        p->reported = 0;
        p->nlost = 0;
        p->optimize = 0;
        p->idle = 0;
    }
    if (mp->has_tune)
        ccl__mp_log(mp, CCL_LOG_INFO, "master: epoch %u tuning: star all-reduce up "
                    "to %llu bytes, direct all-reduce up to %llu, direct broadcast "
                    "up to %llu (latency %u us, rate %.1f MB/s)", mp->epoch,
                    (unsigned long long)mp->tune.allreduce_star_max,
                    (unsigned long long)mp->tune.allreduce_direct_max,
                    (unsigned long long)mp->tune.bcast_direct_max,
                    mp->tune.latency_us, mp->tune.rate_kbs / 1e3);
    if (first)
        ccl__mp_log(mp, CCL_LOG_INFO, "master: epoch %u formed: a new group of %u",
                    mp->epoch, n);
    else
        ccl__mp_log(mp, CCL_LOG_INFO, "master: epoch %u formed: %u members (%u "
                    "joined, %d left since epoch %u)", mp->epoch, n, joined,
                    mp->left_in_epoch, mp->epoch - 1);
    free(mp->slots);
    free(mp->members);
    mp->slots = slots;
    mp->members = mem;
    mp->world = mp->members_world = n;
    mp->conns_per_peer = byrank[0]->reg.conns_per_peer;
    mp->run = RUN_FORMED;
    mp->ever_run = 1;
    mp->adopted_untouched = 0;
    mp->reforming = 0;
    mp->lost_any = 0;
    mp->left_in_epoch = 0;
    mp->last_pending_sent = 0;
    for (uint32_t r = 0; r < n; r++) {
        ccl__mpol_action *a = ccl__mp_act(mp, CCL_MPOL_GROUP, byrank[r]->conn);
        if (a)
            a->rank = r;
    }
    return CCL_OK;
}

static int by_order(const void *x, const void *y)
{
    const mp_peer *a = *(mp_peer *const *)x, *b = *(mp_peer *const *)y;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* The waiting peers in arrival order; *n of them.  NULL without memory
 * (or when none wait). */
static mp_peer **waiting_in_order(ccl__mpol *mp, int *n)
{
    *n = 0;
    mp_peer **v = malloc((size_t)(mp->npeers ? mp->npeers : 1) * sizeof *v);
    for (int i = 0; v && i < mp->npeers; i++)
        if (!mp->peers[i]->member)
            v[(*n)++] = mp->peers[i];
    if (v)
        qsort(v, (size_t)*n, sizeof *v, by_order);
    return v;
}

/* Peers that waited through a run registered unchecked, and may disagree:
 * the earliest sets the world size; a later one that conflicts with it
 * (another size, a rank already wanted) is refused rather than allowed to
 * corrupt the group. */
void ccl__mp_form_first(ccl__mpol *mp, uint64_t now)
{
    char first[CCL_MAX_HOST + 8], name[CCL_MAX_HOST + 8], text[CCL_MPOL_TEXT];
    if (mp->run != RUN_NONE || (!mp->ever_run && now < mp->grace_end))
        return;
    int n = 0;
    mp_peer **pend = waiting_in_order(mp, &n);
    uint32_t world = n ? pend[0]->reg.world_size : 0;
    mp_peer **byrank = NULL;
    if (n > 0 && (uint32_t)n >= world)
        byrank = calloc(world, sizeof *byrank);
    if (!byrank) {
        free(pend);
        return;
    }
    ccl__mp_name(pend[0], first, sizeof first);
    uint32_t placed = 0;
    int nany = 0;
    for (int i = 0; i < n; i++) {
        mp_peer *p = pend[i];
        int32_t want = p->reg.rank;
        text[0] = 0;
        if (p->reg.world_size != world)
            snprintf(text, sizeof text, "world_size %u differs from world_size %u "
                     "of peer %s, which waited before it", p->reg.world_size,
                     world, first);
        else if (want >= 0 && ((uint32_t)want >= world || byrank[want]))
            snprintf(text, sizeof text, "rank %d is already wanted by another "
                     "waiting peer", want);
        if (text[0]) {
            ccl__mp_log(mp, CCL_LOG_WARNING, "master: refused peer %s: %s",
                        ccl__mp_name(p, name, sizeof name), text);
            ccl__mp_reject(mp, p, CCL_ERR_MISMATCH, text);
        } else if (want >= 0) {
            byrank[want] = p;
            placed++;
        } else {
            pend[nany++] = p; /* (only entries already read are reused) */
        }
    }
    if (placed + (uint32_t)nany >= world) {
        uint32_t next = 0;
        for (int i = 0; i < nany && placed < world; i++) {
            while (byrank[next])
                next++;
            byrank[next] = pend[i];
            placed++;
        }
        ccl__mp_form(mp, byrank, world, NULL);
    }
    free(byrank);
    free(pend);
}

/* ---- the end of a reform ---- */

static int pair_is(const mp_pair *q, const uint8_t *a, const uint8_t *b)
{
    return (!memcmp(q->a, a, 16) && !memcmp(q->b, b, 16)) ||
           (!memcmp(q->a, b, 16) && !memcmp(q->b, a, 16));
}

static int by_value(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

/* The broken links between members that both reported, each once, as
 * (low rank << 32 | high rank), sorted.  NULL without memory. */
static uint64_t *broken_links(ccl__mpol *mp, size_t *n)
{
    size_t cap = 1;
    *n = 0;
    for (uint32_t a = 0; a < mp->world; a++)
        if (mp->slots[a].state == SLOT_HERE)
            cap += mp->slots[a].peer->nlost;
    uint64_t *e = malloc(cap * sizeof *e);
    for (uint32_t a = 0; e && a < mp->world; a++) {
        const mp_peer *p = mp->slots[a].peer;
        if (mp->slots[a].state != SLOT_HERE || !p->reported)
            continue;
        for (uint32_t i = 0; i < p->nlost; i++) {
            uint32_t b = p->lost[i];
            const mp_slot *s = &mp->slots[b];
            if (s->state != SLOT_HERE || !s->peer->reported)
                continue;
            uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
            e[(*n)++] = (uint64_t)lo << 32 | hi;
        }
    }
    if (!e)
        return NULL;
    qsort(e, *n, sizeof *e, by_value);
    size_t u = 0;
    for (size_t i = 0; i < *n; i++)
        if (u == 0 || e[i] != e[u - 1])
            e[u++] = e[i];
    *n = u;
    return e;
}

/* Broken links between members that both reported, but for those
 * between two members that had no op succeed in the epoch.  Members go,
 * most broken links first (ties: the lower rank), until no broken link
 * remains.  No link is forgiven: a member that lost a peer may have
 * completed ops without it (their DONE no longer awaited) that the peer
 * then failed, so keeping both would let one group hold two outcomes of
 * one op.  (Members waiting at the safe point keep their links alive, so
 * a late arrival no longer breaks links.)  Returns 1 if a broken link
 * stays (between idle members): the next epoch must rebuild the mesh. */
static int settle_links(ccl__mpol *mp)
{
    size_t n = 0, nf = 0;
    int kept = 0; /* links between idle members: kept, the mesh rebuilt */
    uint64_t *e = broken_links(mp, &n);
    mp_pair *fresh = calloc(n ? n : 1, sizeof *fresh);
    int *degree = calloc(mp->world ? mp->world : 1, sizeof *degree);
    if (!e || !fresh || !degree) {
        /* Without memory, keep everyone and rebuild the mesh. */
        free(e);
        free(fresh);
        free(degree);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t a = (uint32_t)(e[i] >> 32), b = (uint32_t)e[i];
        const uint8_t *ua = mp->slots[a].uuid, *ub = mp->slots[b].uuid;
        if (mp->slots[a].peer->idle && mp->slots[b].peer->idle) {
            /* Neither succeeded in any op of this epoch (CCL_REFORM_IDLE):
             * whatever failed, failed on both, so there is no outcome for
             * them to disagree on.  A link that never formed (a peer
             * died while the epoch's mesh was being built, and every
             * member's build failed) must not empty the group. */
            e[i] = UINT64_MAX;
            kept = 1;
            continue;
        }
        int again = 1; /* see above: every broken link counts */
        for (int k = 0; k < mp->nforgiven && !again; k++)
            again = pair_is(&mp->forgiven[k], ua, ub);
        if (again) {
            degree[a]++;
            degree[b]++;
            continue;
        }
        memcpy(fresh[nf].a, ua, 16);
        memcpy(fresh[nf].b, ub, 16);
        nf++;
        e[i] = UINT64_MAX; /* forgiven: not part of the partition */
    }
    for (;;) {
        uint32_t worst = 0;
        for (uint32_t r = 1; r < mp->world; r++)
            if (degree[r] > degree[worst])
                worst = r;
        if (mp->world == 0 || degree[worst] == 0)
            break;
        uint32_t other = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t a = (uint32_t)(e[i] >> 32), b = (uint32_t)e[i];
            if (e[i] == UINT64_MAX || (a != worst && b != worst))
                continue;
            other = a == worst ? b : a;
            degree[other]--;
            e[i] = UINT64_MAX;
        }
        degree[worst] = 0;
        char why[160];
        snprintf(why, sizeof why, "its link to rank %u broke (the member with the "
                 "most broken links goes: the others may have completed ops without "
                 "it)", other);
        ccl__mp_drop(mp, mp->slots[worst].peer, why);
    }
    free(mp->forgiven);
    mp->forgiven = fresh;
    mp->nforgiven = (int)nf;
    free(e);
    free(degree);
    return nf > 0 || kept;
}

/* Members that did not report by the end of the reform are dropped; an
 * adopted run's members that never came back are given up. */
static void drop_silent(ccl__mpol *mp)
{
    char why[160];
    for (uint32_t r = 0; r < mp->world; r++) {
        mp_slot *s = &mp->slots[r];
        if (s->state == SLOT_HERE && !s->peer->reported) {
            if (s->accused)
                snprintf(why, sizeof why, "rank %u lost it and it did not call "
                         "update_topology within %d ms (stopped, hung or cut off)",
                         s->accuser, CCL_MPOL_ACCUSED_GRACE_MS);
            else
                snprintf(why, sizeof why, "it did not call update_topology "
                         "before the others' deadline");
            ccl__mp_drop(mp, s->peer, why);
        } else if (s->state == SLOT_AWAITED) {
            ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u left epoch %u: it did "
                        "not come back after the master restart", r, mp->epoch);
            s->state = SLOT_GONE;
            mp->lost_any = 1;
            mp->left_in_epoch++;
        }
    }
}

/* The next epoch: survivors in their old rank order, then the joiners in
 * arrival order (as many as fit); the ring order carried over, re-planned
 * when `replan`.  With `only_if_better` (nobody left or joins) the epoch
 * is formed only when the plan found a better ring or the cost model's
 * thresholds moved (by more than 4x, or it has a first answer): returns
 * 1 if it was formed. */
static int next_epoch(ccl__mpol *mp, int replan, int only_if_better)
{
    int nj = 0, formed = 0;
    mp_peer **join = waiting_in_order(mp, &nj);
    mp_peer **byrank = calloc(CCL_MAX_WORLD, sizeof *byrank);
    uint32_t *order = calloc(CCL_MAX_WORLD, sizeof *order);
    uint32_t n = 0;
    if (join && byrank && order) {
        for (uint32_t r = 0; r < mp->world; r++)
            if (mp->slots[r].state == SLOT_HERE)
                byrank[n++] = mp->slots[r].peer;
        for (int i = 0; i < nj && n < CCL_MAX_WORLD; i++)
            byrank[n++] = join[i];
        int better = ccl__mp_plan_ring(mp, byrank, n, replan, order);
        ccl__tuning t;
        int has = only_if_better && ccl__mp_plan_tune(mp, byrank, n, order, &t);
        if (has && (!mp->has_tune || ccl__tune_differs(&t, &mp->tune)))
            better = 1;
        if (better || !only_if_better)
            formed = ccl__mp_form(mp, byrank, n, order) == CCL_OK;
    }
    /* Without memory nothing is sent: the members time out and retry. */
    free(join);
    free(byrank);
    free(order);
    return formed || !only_if_better;
}

void ccl__mp_finish_reform(ccl__mpol *mp, uint64_t now)
{
    if (!mp->reforming)
        return;
    int missing = 0;
    for (uint32_t r = 0; r < mp->world; r++) {
        const mp_slot *s = &mp->slots[r];
        int given_up = s->accused &&
                       now >= s->accused_ms + CCL_MPOL_ACCUSED_GRACE_MS;
        if (s->state == SLOT_HERE)
            missing += !s->peer->reported && !given_up;
        else if (s->state == SLOT_AWAITED)
            missing += !given_up;
    }
    if (missing && now < mp->reform_deadline)
        return;
    mp->reforming = 0;
    mp->adopted_untouched = 0;
    drop_silent(mp);
    ccl__mp_expel_slow(mp);
    int relink = settle_links(mp);
    if (ccl__mp_members(mp) == 0) {
        ccl__mp_log(mp, CCL_LOG_INFO, "master: epoch %u ended: no member is left",
                    mp->epoch);
        ccl__mp_end_run(mp);
        return;
    }
    int replan = ccl__mp_ring_due(mp);
    if (mp->lost_any || relink || ccl__mp_waiting(mp) > 0) {
        next_epoch(mp, replan, 0);
        return;
    }
    /* Nobody left or joins: a better ring order alone makes a new epoch. */
    if (replan && next_epoch(mp, 1, 1))
        return;
    ccl__mp_log(mp, CCL_LOG_DEBUG, "master: epoch %u stays as it is", mp->epoch);
    for (uint32_t r = 0; r < mp->world; r++) {
        mp_slot *s = &mp->slots[r];
        s->accused = 0;
        if (s->state == SLOT_HERE) {
            s->peer->reported = 0;
            s->peer->optimize = 0;
            s->peer->nlost = 0;
            ccl__mp_act(mp, CCL_MPOL_NOCHANGE, s->peer->conn);
        }
    }
}
