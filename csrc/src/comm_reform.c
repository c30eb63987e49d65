/*
 * comm_reform.c - a member's side of membership changes: the safe point
 * ccl_comm_update_topology, which reports the peers this member lost,
 * waits for the master's answer, and moves the communicator to the next
 * epoch (new ranks, a new mesh) when the group changed.
 */
#include "communicator.h"
#include "master_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(ccl_comm *c, int rc, const char *fmt, const char *detail)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    /* Why the master removed us outlives what follows (the others closing
     * the connections of the epoch we were removed from). */
    if (rc == CCL_ERR_REJECTED)
        ccl__engine_set_final_error(&c->eng, msg);
    else
        ccl__engine_set_error(&c->eng, msg);
    return rc;
}

static int send_reform(ccl_comm *c, int timeout_ms, uint64_t deadline, int update);
static int lost_peers(ccl_comm *c);

/* Waits for the master's answer to REFORM.  The event loop keeps running
 * meanwhile (the answer is left for us by the master link's handler), so
 * heartbeats go on both ways and a member that waits here is never taken
 * for a silent one, however long the others take to arrive; a peer that
 * dies meanwhile is still noticed. */
static int await_answer(ccl_comm *c, int timeout_ms, uint64_t deadline)
{
    c->answered = 0;
    while (!c->answered && c->master_fd >= 0 && !c->master_lost &&
           !ccl__sock_cancelled()) {
        uint64_t now = ccl__now_ms();
        if (now >= deadline)
            break;
        ccl__loop_once(c, deadline - now > 50 ? 50 : (int)(deadline - now));
        /* A peer that died while everyone waits here is reported at once:
         * the master may be waiting for it (a member that never came back
         * to a restarted master has no control link to close). */
        if (!c->answered && c->master_fd >= 0 && lost_peers(c) > c->reform_lost)
            send_reform(c, timeout_ms, deadline, CCL_REFORM_UPDATE);
    }
    if (c->answered)
        return CCL_OK;
    if (ccl__sock_cancelled())
        return CCL_ERR_INTERRUPTED;
    return c->master_fd < 0 || c->master_lost ? CCL_ERR_MASTER_UNREACHABLE
                                              : CCL_ERR_TIMEOUT;
}

/* Moves to the epoch of the GROUP in c->ctl_payload: new ranks, a new
 * mesh. */
static int apply_group(ccl_comm *c, uint64_t deadline)
{
    uint32_t world = 0;
    if (ccl__group_peek(c->ctl_payload, c->ctl_h.length, &world) != 0)
        return fail(c, CCL_ERR_PROTOCOL, "%s", "malformed GROUP");
    ccl__group_msg g;
    memset(&g, 0, sizeof g);
    g.members = calloc(world, sizeof *g.members);
    if (!g.members)
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    if (ccl__group_decode(c->ctl_payload, c->ctl_h.length, &g) != 0) {
        free(g.members);
        return fail(c, CCL_ERR_PROTOCOL, "%s", "malformed GROUP");
    }
    free(c->group.members);
    c->group = g;
    __atomic_store_n(&c->pending, 0, __ATOMIC_RELEASE);
    char err[400];
    int rc = ccl__mesh_build(c, deadline, err, sizeof err);
    if (rc) {
        /* The new mesh is incomplete: this communicator cannot run ops
         * until the next update_topology. */
        int broken = rc == CCL_ERR_TIMEOUT || rc == CCL_ERR_INTERRUPTED
                         ? CCL_ERR_PEER_LOST : rc;
        ccl__engine_mark_broken(&c->eng, broken, err);
        return fail(c, rc == CCL_ERR_INTERRUPTED ? rc : broken,
                    "building the mesh of the new epoch: %s", err);
    }
    return CCL_OK;
}

/* How many peers of this epoch this member lost (every connection
 * closed). */
static int lost_peers(ccl_comm *c)
{
    int rank, size, n = 0;
    uint32_t epoch;
    ccl__engine_group(&c->eng, &rank, &size, &epoch);
    for (int p = 0; p < size; p++)
        n += p != rank && !ccl__xport_peer_open(c->xp, p);
    return n;
}

/* Sends REFORM: this member's epoch, how long it waits, and the peers it
 * lost (every connection closed), marking those that broke the protocol;
 * `bits`: the header's tag, CCL_REFORM_UPDATE for a later report while
 * waiting for the answer; c->optimize adds CCL_REFORM_OPTIMIZE to every
 * report of this update_topology. */
static int send_reform(ccl_comm *c, int timeout_ms, uint64_t deadline, int bits)
{
    int rank, size;
    uint32_t epoch;
    ccl__engine_group(&c->eng, &rank, &size, &epoch);
    ccl__reform_msg *msg = calloc(1, sizeof *msg); /* 16 KiB: not on the stack */
    if (!msg)
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    msg->epoch = epoch;
    msg->wait_ms = (uint32_t)timeout_ms;
    for (int p = 0; p < size; p++)
        if (p != rank && !ccl__xport_peer_open(c->xp, p)) {
            msg->expel[msg->nlost] = (uint8_t)ccl__xport_peer_misbehaved(c->xp, p);
            msg->lost[msg->nlost++] = (uint32_t)p;
        }
    size_t cap = 12 + 4 * (size_t)msg->nlost;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        free(msg);
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    }
    size_t n = ccl__reform_encode(buf, cap, msg);
    c->reform_lost = (int)msg->nlost;
    free(msg);
    char err[200];
    if (c->optimize)
        bits |= CCL_REFORM_OPTIMIZE;
    /* No op pending (reform_locked checked), so none can succeed after
     * this report: "idle" stays true for the rest of the epoch. */
    if (c->eng.succeeded == 0)
        bits |= CCL_REFORM_IDLE;
    int rc = ccl__ctl_send_tagged(c, CCL_FT_REFORM, epoch, (uint64_t)bits, buf,
                                  (uint32_t)n,
                                  deadline, err, sizeof err);
    free(buf);
    if (rc) {
        /* A master that closed the link after a REJECT resets what we send:
         * the REJECT may still be waiting to be read. */
        ccl__master_link_read(c);
        ccl__master_gone(c);
        return fail(c, CCL_ERR_MASTER_UNREACHABLE, "sending REFORM: %s", err);
    }
    return CCL_OK;
}

static int reform_locked(ccl_comm *c, int timeout_ms)
{
    uint64_t deadline = ccl__now_ms() + (uint64_t)timeout_ms;
    if (ccl__engine_pending(&c->eng))
        return fail(c, CCL_ERR_INVALID_USAGE, "%s",
                    "update_topology with ops pending: wait for them first");
    /* The master may have told us something the loop has not read yet (a
     * REJECT just before it closed the link).  Read as outside a reform,
     * so that frame is recorded rather than taken for the answer to the
     * REFORM not yet sent. */
    c->awaiting = 0;
    ccl__master_link_read(c);
    c->awaiting = 1;
    if (c->rejected[0])
        return fail(c, CCL_ERR_REJECTED, "the master refused: %s", c->rejected);
    /* A return to the master in flight in the background (master_revive.c)
     * gives way: this call comes back with its own deadline. */
    if (c->master_lost)
        ccl__master_revive_cancel(c);
    if (c->master_fd < 0 || c->master_lost) {
        /* The master went away (it may have been restarted): come back to
         * it as a member; a new master rebuilds its view from us. */
        char err[300];
        if (c->master_fd >= 0)
            ccl__master_gone(c);
        int rc = ccl__master_rejoin(c, deadline, err, sizeof err);
        if (rc)
            return fail(c, rc, "the master is gone and could not be reached "
                        "again: %s", err);
    }
    /* The master plans the ring from the rates its members reported:
     * this member's latest (the probe's, ccl_comm_optimize_topology) go
     * first, on the same link, so they are in before the REFORM. */
    if (c->optimize)
        ccl__stats_report_now(c, deadline);
    int rc = send_reform(c, timeout_ms, deadline, 0);
    if (rc && c->rejected[0])
        return fail(c, CCL_ERR_REJECTED, "the master refused: %s", c->rejected);
    if (rc)
        return rc;
    rc = await_answer(c, timeout_ms, deadline);
    if (rc == CCL_ERR_TIMEOUT) {
        /* The answer may still come, for this REFORM: a fresh link at the
         * next update_topology keeps it from being taken for that one's. */
        ccl__master_gone(c);
        return fail(c, rc, "%s", "no answer from the master before the deadline");
    }
    if (rc == CCL_ERR_INTERRUPTED) {
        /* The answer may still come: read it at the next update_topology
         * from a fresh link rather than mistake it for that one's. */
        ccl__master_gone(c);
        return fail(c, rc, "%s", "interrupted while waiting for the master");
    }
    if (rc) {
        ccl__master_gone(c);
        return fail(c, CCL_ERR_MASTER_UNREACHABLE, "%s",
                    "the master closed the link during update_topology");
    }
    if (c->ctl_h.type == CCL_FT_NOCHANGE)
        return CCL_OK;
    if (c->ctl_h.type == CCL_FT_REJECT) {
        char text[CCL_MAX_ERRMSG + 1];
        ccl__ctl_reject_text(c, text);
        return fail(c, CCL_ERR_REJECTED, "the master refused: %s", text);
    }
    if (c->ctl_h.type != CCL_FT_GROUP)
        return fail(c, CCL_ERR_PROTOCOL, "%s", "unexpected answer to REFORM");
    return apply_group(c, deadline);
}

int ccl_comm_update_topology(ccl_comm *c, int timeout_ms)
{
    return ccl__comm_reform(c, timeout_ms, 0);
}

int ccl__comm_reform(ccl_comm *c, int timeout_ms, int optimize)
{
    if (!c || timeout_ms <= 0)
        return CCL_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    c->optimize = optimize;
    /* Keep the progress thread off the loop while the mesh is rebuilt. */
    c->driving = 1;
    ccl__engine_drain_posts(&c->eng);
    ccl__engine_reap(&c->eng);
    /* Every blocking wait below (the master, the mesh) stops within 50 ms
     * of ccl_comm_interrupt. */
    __atomic_store_n(&c->interrupt, 0, __ATOMIC_RELEASE);
    ccl__sock_set_cancel(&c->interrupt);
    /* While it waits (for a restarted master, for the answer) the loop
     * keeps running, so heartbeats go on both ways; ops posted meanwhile
     * start in the next epoch. */
    c->awaiting = 1;
    int rc = reform_locked(c, timeout_ms);
    c->awaiting = 0;
    c->optimize = 0;
    ccl__sock_set_cancel(NULL);
    if (rc == CCL_OK)
        ccl__engine_set_error(&c->eng, "");
    c->driving = 0;
    pthread_cond_signal(&c->idle_cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void ccl_comm_interrupt(ccl_comm *c)
{
    if (c)
        __atomic_store_n(&c->interrupt, 1, __ATOMIC_RELEASE);
}
