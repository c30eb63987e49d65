/*
 * master_rejoin.c - members coming back to a master (REJOIN): after the
 * master was restarted (it knows nothing, and rebuilds its view from
 * them), or after a member's control link broke.  The rules are written
 * out in master_policy.h ("Restart").
 */
#include "master_policy.h"
#include "master_state.h"

#include "ccl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_expelled(const ccl__mpol *mp, const uint8_t uuid[16])
{
    for (int i = 0; i < mp->nexpelled; i++)
        if (memcmp(mp->expelled[i], uuid, 16) == 0)
            return 1;
    return 0;
}

/* Takes on the run a member came back from: nothing is known of it but
 * its epoch and size; its members are awaited. */
static int adopt(ccl__mpol *mp, uint32_t epoch, uint32_t world)
{
    mp_slot *slots = calloc(world, sizeof *slots);
    if (!slots)
        return CCL_ERR_NOMEM;
    ccl__mp_end_run(mp);
    mp->slots = slots; /* calloc: every slot SLOT_AWAITED */
    mp->world = world;
    mp->epoch = epoch;
    mp->run = RUN_ADOPTED;
    mp->adopted_untouched = 1;
    mp->ever_run = 1;
    return CCL_OK;
}

/* A REJOIN for a later epoch than the adopted one: the members that came
 * back for the earlier epoch had been dropped before the restart. */
static void supersede(ccl__mpol *mp, uint32_t epoch)
{
    for (uint32_t r = 0; r < mp->world; r++)
        if (mp->slots[r].state == SLOT_HERE)
            ccl__mp_refuse(mp, mp->slots[r].peer, CCL_ERR_REJECTED,
                           "another member came back from epoch %u, later than "
                           "this peer's %u: this peer was removed from the group",
                           epoch, mp->epoch);
}

int ccl__mpol_rejoin(ccl__mpol *mp, void *conn, uint32_t epoch,
                     const ccl__register_msg *reg, uint64_t now)
{
    char name[CCL_MAX_HOST + 8], oname[CCL_MAX_HOST + 8];
    (void)now;
    mp_peer *p;
    int rc = ccl__mp_admit(mp, conn, reg, &p, name, sizeof name);
    if (rc)
        return rc;
    if (is_expelled(mp, reg->uuid)) {
        ccl__mp_refuse(mp, p, CCL_ERR_REJECTED, "this peer was expelled for "
                       "breaking the protocol");
        return CCL_OK;
    }
    if (reg->rank < 0 || (uint32_t)reg->rank >= reg->world_size) {
        ccl__mp_refuse(mp, p, CCL_ERR_PROTOCOL, "REJOIN with rank %d outside "
                       "its world size %u", reg->rank, reg->world_size);
        return CCL_OK;
    }
    uint32_t rank = (uint32_t)reg->rank;
    int fresh = mp->run == RUN_NONE && epoch >= mp->epoch;
    int later = mp->run == RUN_ADOPTED && mp->adopted_untouched &&
                epoch > mp->epoch;
    if (later)
        supersede(mp, epoch);
    if (fresh || later) {
        if (adopt(mp, epoch, reg->world_size) != CCL_OK) {
            ccl__mp_remove(mp, p);
            return CCL_ERR_NOMEM;
        }
        ccl__mp_log(mp, CCL_LOG_INFO, "master: adopted epoch %u (a group of %u) "
                    "from the REJOIN of rank %u (%s): this master was restarted, "
                    "or the members' links to it broke", epoch, reg->world_size,
                    rank, name);
    }
    if (epoch != mp->epoch || mp->run == RUN_NONE) {
        ccl__mp_refuse(mp, p, CCL_ERR_REJECTED, "REJOIN for epoch %u, which is "
                       "over (the master is at epoch %u): this peer was "
                       "removed from the group", epoch, mp->epoch);
        return CCL_OK;
    }
    if (reg->world_size != mp->world) {
        ccl__mp_refuse(mp, p, CCL_ERR_MISMATCH, "REJOIN for a group of %u at "
                       "epoch %u, but that epoch has %u members",
                       reg->world_size, epoch, mp->world);
        return CCL_OK;
    }
    mp_slot *s = &mp->slots[rank];
    if (s->state == SLOT_HERE && s->known && memcmp(s->uuid, reg->uuid, 16) == 0 &&
        s->peer != p) {
        /* The same member on a new link: its end of the old one is gone
         * (it would not come back otherwise: master_revive.c does so a
         * moment after its control link ends), though this end has not
         * seen it yet.  The old link is closed and the new one holds the
         * rank: refusing it would drop a live member for a glitch. */
        mp_peer *old = s->peer;
        ccl__mp_name(old, oname, sizeof oname);
        for (size_t i = mp->head; i < mp->nacts; i++)
            if (mp->acts[i].conn == old->conn)
                mp->acts[i].kind = CCL_MPOL_NONE;
        ccl__mp_act(mp, CCL_MPOL_CLOSE, old->conn);
        int recount = old->reported;
        s->state = SLOT_LEFT;
        s->peer = NULL;
        ccl__mp_remove(mp, old);
        if (recount)
            ccl__mp_recount(mp);
        ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u of epoch %u came back on a "
                    "new link (%s); its old one is closed", rank, epoch, name);
    }
    if (s->state == SLOT_HERE) {
        ccl__mp_name(s->peer, oname, sizeof oname);
        ccl__mp_refuse(mp, p, CCL_ERR_REJECTED, "rank %u of epoch %u is held "
                       "by another member (%s)", rank, epoch, oname);
        return CCL_OK;
    }
    if (s->state == SLOT_GONE || (s->known && memcmp(s->uuid, reg->uuid, 16))) {
        ccl__mp_refuse(mp, p, CCL_ERR_REJECTED, "rank %u of epoch %u is no "
                       "longer this peer's: it was removed from the group",
                       rank, epoch);
        return CCL_OK;
    }
    s->state = SLOT_HERE;
    s->peer = p;
    s->known = 1;
    memcpy(s->uuid, reg->uuid, 16);
    p->member = 1;
    p->rank = rank;
    ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u (%s) came back to epoch %u",
                rank, name, epoch);
    /* Joiners may have come while it was away. */
    int waiting = ccl__mp_waiting(mp);
    if (waiting) {
        ccl__mpol_action *a = ccl__mp_act(mp, CCL_MPOL_PENDING, conn);
        if (a)
            a->count = (uint64_t)waiting;
    }
    return CCL_OK;
}
