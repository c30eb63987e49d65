/*
 * master_policy.c - the membership policy's events (register, reform,
 * lost, tick; rejoin is in master_rejoin.c) and its queries.  The rules
 * are written out in master_policy.h; forming epochs is in
 * master_epoch.c, the bookkeeping below them in master_peers.c.
 *
 * Invariants: a known connection is a peer in mp->peers, either waiting
 * or a member; a member of rank r is slots[r].peer and that slot is
 * SLOT_HERE; a peer the policy rejected or closed is forgotten at once,
 * so no later decision can name it.
 */
#include "master_policy.h"
#include "master_state.h"

#include "ccl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ccl__mpol_create(uint64_t now, uint32_t rejoin_grace_ms, ccl__mpol **out)
{
    ccl__mpol *mp = calloc(1, sizeof *mp);
    *out = mp;
    if (!mp)
        return CCL_ERR_NOMEM;
    mp->grace_end = now + rejoin_grace_ms;
    return CCL_OK;
}

void ccl__mpol_destroy(ccl__mpol *mp)
{
    if (!mp)
        return;
    for (int i = 0; i < mp->npeers; i++)
        ccl__mp_free(mp->peers[i]);
    free(mp->peers);
    free(mp->slots);
    free(mp->members);
    free(mp->forgiven);
    free(mp->acts);
    free(mp->ring);
    free(mp->links);
    free(mp);
}

/* ---- decisions ---- */

int ccl__mpol_next(ccl__mpol *mp, ccl__mpol_action *a)
{
    while (mp->head < mp->nacts) {
        ccl__mpol_action *q = &mp->acts[mp->head++];
        if (q->kind != CCL_MPOL_NONE) {
            *a = *q;
            return 1;
        }
    }
    return 0;
}

/* ---- events ---- */

int ccl__mpol_register(ccl__mpol *mp, void *conn, const ccl__register_msg *reg,
                       uint64_t now)
{
    char name[CCL_MAX_HOST + 8], oname[CCL_MAX_HOST + 8];
    mp_peer *p;
    int rc = ccl__mp_admit(mp, conn, reg, &p, name, sizeof name);
    if (rc)
        return rc;
    if (mp->run == RUN_NONE) {
        /* Peers waiting for a first group must agree.  A size conflict
         * means the run is misconfigured: everyone involved hears it now
         * rather than at connect_timeout. */
        for (int i = 0; i < mp->npeers; i++) {
            mp_peer *o = mp->peers[i];
            if (o == p || o->reg.world_size == reg->world_size)
                continue;
            uint32_t theirs = o->reg.world_size;
            ccl__mp_name(o, oname, sizeof oname);
            ccl__mp_refuse(mp, p, CCL_ERR_MISMATCH, "world_size %u differs from "
                           "world_size %u of peer %s, which is already waiting: "
                           "the peers of a run must agree", reg->world_size,
                           theirs, oname);
            for (int j = 0; j < mp->npeers;) {
                o = mp->peers[j];
                if (o->member || o->reg.world_size == reg->world_size) {
                    j++;
                    continue;
                }
                ccl__mp_refuse(mp, o, CCL_ERR_MISMATCH, "world_size %u differs "
                               "from world_size %u of peer %s, which registered "
                               "after it: the peers of a run must agree",
                               o->reg.world_size, reg->world_size, name);
            }
            return CCL_OK;
        }
        for (int i = 0; i < mp->npeers; i++) {
            mp_peer *o = mp->peers[i];
            if (o != p && reg->rank >= 0 && o->reg.rank == reg->rank) {
                ccl__mp_name(o, oname, sizeof oname);
                ccl__mp_refuse(mp, p, CCL_ERR_MISMATCH, "rank %d is already "
                               "taken by waiting peer %s", reg->rank, oname);
                return CCL_OK;
            }
        }
    }
    if (reg->rank >= 0)
        snprintf(oname, sizeof oname, "rank %d", reg->rank);
    else
        snprintf(oname, sizeof oname, "any rank");
    if (mp->run == RUN_NONE) {
        ccl__mp_log(mp, CCL_LOG_INFO, "master: peer %s registered (world_size %u, "
                    "%s): %d waiting", name, reg->world_size, oname,
                    ccl__mp_waiting(mp));
        ccl__mp_form_first(mp, now);
    } else {
        ccl__mp_log(mp, CCL_LOG_INFO, "master: peer %s waits to join epoch %u at "
                    "the next update_topology", name, mp->epoch);
        ccl__mp_announce(mp);
    }
    return CCL_OK;
}

/* Rank r is reported for breaking the protocol: out at once, for good. */
static void expel(ccl__mpol *mp, uint32_t r, const mp_peer *accuser)
{
    char name[CCL_MAX_HOST + 8] = "not connected";
    mp_slot *s = &mp->slots[r];
    if (s->state == SLOT_GONE)
        return;
    if (s->known && mp->nexpelled < MP_MAX_EXPELLED)
        memcpy(mp->expelled[mp->nexpelled++], s->uuid, 16);
    if (s->state == SLOT_HERE)
        ccl__mp_name(s->peer, name, sizeof name);
    ccl__mp_log(mp, CCL_LOG_WARNING, "master: rank %u (%s) left epoch %u: "
                "expelled, rank %u reports that it broke the protocol", r, name,
                mp->epoch, accuser->rank);
    if (s->state == SLOT_HERE) {
        char text[CCL_MPOL_TEXT];
        snprintf(text, sizeof text, "this peer was expelled: rank %u reports that "
                 "it broke the protocol (malformed frames or failed frame MACs)",
                 accuser->rank);
        ccl__mp_reject(mp, s->peer, CCL_ERR_REJECTED, text);
    } else {
        s->state = SLOT_GONE;
        mp->lost_any = 1;
        mp->left_in_epoch++;
    }
}

/* Whether rank r is among the first n of p's reported losses. */
static int reported_lost(const mp_peer *p, uint32_t n, uint32_t r)
{
    for (uint32_t i = 0; i < n; i++)
        if (p->lost[i] == r)
            return 1;
    return 0;
}

int ccl__mpol_reform(ccl__mpol *mp, void *conn, const ccl__reform_msg *msg,
                     uint64_t now)
{
    mp_peer *p = ccl__mp_find(mp, conn);
    if (!p)
        return CCL_ERR_INVALID_ARG;
    if (msg->update && (!p->member || msg->epoch != mp->epoch || !mp->reforming ||
                        !p->reported))
        return CCL_OK; /* its reform ended while the update was on its way */
    if (!p->member) {
        ccl__mp_refuse(mp, p, CCL_ERR_PROTOCOL, "REFORM from a peer that is "
                       "not a member of the group");
        return CCL_OK;
    }
    if (msg->epoch != mp->epoch) {
        ccl__mp_refuse(mp, p, CCL_ERR_REJECTED, "REFORM for epoch %u, which is "
                       "over (the group is at epoch %u): this peer was removed "
                       "from the group", msg->epoch, mp->epoch);
        return CCL_OK;
    }
    /* An update keeps what was reported before, with its times: an
     * accused member's grace runs from the first report of its loss. */
    uint32_t keep = msg->update ? p->nlost : 0;
    uint32_t cap = keep + msg->nlost + 1;
    uint32_t *lost = malloc(cap * sizeof *lost);
    uint64_t *lost_ms = malloc(cap * sizeof *lost_ms);
    if (!lost || !lost_ms) {
        free(lost);
        free(lost_ms);
        return CCL_ERR_NOMEM;
    }
    if (keep) {
        memcpy(lost, p->lost, keep * sizeof *lost);
        memcpy(lost_ms, p->lost_ms, keep * sizeof *lost_ms);
    }
    free(p->lost);
    free(p->lost_ms);
    p->lost = lost;
    p->lost_ms = lost_ms;
    p->nlost = keep;
    p->optimize |= msg->optimize;
    p->idle = msg->idle;
    if (!msg->update) {
        p->reported = 1;
        p->report_ms = now;
        uint32_t wait = msg->wait_ms ? msg->wait_ms : 1;
        uint32_t reserve = wait / 4;
        if (reserve > CCL_MPOL_RESERVE_MAX_MS)
            reserve = CCL_MPOL_RESERVE_MAX_MS;
        uint64_t deadline = now + wait - reserve;
        if (!mp->reforming || deadline < mp->reform_deadline)
            mp->reform_deadline = deadline;
        mp->reforming = 1;
    }
    /* The ranks it lost: gone at once if they broke the protocol, else
     * judged at the end of the reform (master_epoch.c). */
    for (uint32_t i = 0; i < msg->nlost; i++) {
        uint32_t r = msg->lost[i];
        if (r >= mp->world || r == p->rank || reported_lost(p, keep, r))
            continue;
        if (msg->expel[i]) {
            expel(mp, r, p);
            continue;
        }
        p->lost_ms[p->nlost] = now;
        p->lost[p->nlost++] = r;
    }
    char name[CCL_MAX_HOST + 8];
    ccl__mp_log(mp, CCL_LOG_DEBUG, "master: rank %u (%s) %s in epoch %u, reporting "
                "%u lost", p->rank, ccl__mp_name(p, name, sizeof name),
                msg->update ? "updated its report" : "reached update_topology",
                mp->epoch, p->nlost);
    ccl__mp_recount(mp);
    ccl__mp_finish_reform(mp, now);
    return CCL_OK;
}

void ccl__mpol_lost(ccl__mpol *mp, void *conn, uint64_t now)
{
    char name[CCL_MAX_HOST + 8];
    (void)now;
    mp_peer *p = ccl__mp_find(mp, conn);
    if (!p)
        return;
    for (size_t i = mp->head; i < mp->nacts; i++)
        if (mp->acts[i].conn == conn)
            mp->acts[i].kind = CCL_MPOL_NONE;
    ccl__mp_name(p, name, sizeof name);
    if (!p->member) {
        ccl__mp_log(mp, CCL_LOG_INFO, "master: peer %s stopped waiting: its link "
                    "closed", name);
        ccl__mp_remove(mp, p);
        ccl__mp_announce(mp);
        return;
    }
    ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u (%s) left epoch %u: its control "
                "link closed", p->rank, name, mp->epoch);
    ccl__mp_vacate(mp, p, SLOT_LEFT);
    ccl__mp_remove(mp, p);
    if (ccl__mp_members(mp) == 0) {
        ccl__mp_log(mp, CCL_LOG_INFO, "master: epoch %u ended: no member is left",
                    mp->epoch);
        ccl__mp_end_run(mp);
    }
}

void ccl__mpol_tick(ccl__mpol *mp, uint64_t now)
{
    ccl__mp_finish_reform(mp, now);
    if (mp->run == RUN_NONE)
        ccl__mp_form_first(mp, now); /* the run ended: waiting peers start anew */
    ccl__mp_announce(mp);
}

/* ---- queries ---- */

int ccl__mpol_timer_ms(const ccl__mpol *mp, uint64_t now, int cap)
{
    uint64_t next = now + (uint64_t)(cap > 0 ? cap : 0);
    if (mp->reforming) {
        if (mp->reform_deadline < next)
            next = mp->reform_deadline;
        for (uint32_t r = 0; r < mp->world; r++) {
            const mp_slot *s = &mp->slots[r];
            uint64_t end = s->accused_ms + CCL_MPOL_ACCUSED_GRACE_MS;
            if (s->accused && end < next)
                next = end;
        }
    }
    if (!mp->ever_run && mp->grace_end < next && ccl__mp_waiting(mp))
        next = mp->grace_end;
    return next <= now ? 0 : (int)(next - now);
}

uint32_t ccl__mpol_epoch(const ccl__mpol *mp)
{
    return mp->epoch;
}

const ccl__member *ccl__mpol_members(const ccl__mpol *mp, uint32_t *world,
                                     uint16_t *conns_per_peer)
{
    *world = mp->members_world;
    *conns_per_peer = mp->conns_per_peer;
    return mp->members;
}

int ccl__mpol_members_count(const ccl__mpol *mp)
{
    return ccl__mp_members(mp);
}

int ccl__mpol_waiting_count(const ccl__mpol *mp)
{
    return ccl__mp_waiting(mp);
}
