/*
 * comm_reform.c - a member's side of membership changes: reading the
 * master's link (PENDING counts, and the answer to REFORM), and the safe
 * point ccl_comm_update_topology that moves the communicator to the next
 * epoch.
 *
 * The control link is read by the event loop (nonblocking, a frame may
 * arrive in pieces) and by update_topology (which waits for the answer);
 * both go through ctl_step so a half-read frame is never lost between them.
 */
#include "comm.h"
#include "sock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CTL_NONE = 0, CTL_FRAME = 1 };

/* Reads what is available; returns CTL_FRAME with a whole frame in
 * c->ctl_h / c->ctl_payload, CTL_NONE if more bytes are needed, or a
 * negative ccl_result when the link failed. */
static int ctl_step(ccl_comm *c)
{
    char err[128];
    if (c->ctl_hpos < CCL_HDR_LEN) {
        long n = ccl__sock_read_some(c->master_fd, c->ctl_hbuf + c->ctl_hpos,
                                     CCL_HDR_LEN - c->ctl_hpos, err, sizeof err);
        if (n < 0)
            return (int)n;
        c->ctl_hpos += (size_t)n;
        if (c->ctl_hpos < CCL_HDR_LEN)
            return CTL_NONE;
        if (ccl__hdr_decode(c->ctl_hbuf, &c->ctl_h) != 0)
            return -CCL_ERR_PROTOCOL;
        free(c->ctl_payload);
        c->ctl_payload = malloc(c->ctl_h.length ? c->ctl_h.length : 1);
        c->ctl_ppos = 0;
        if (!c->ctl_payload)
            return -CCL_ERR_NOMEM;
    }
    if (c->ctl_ppos < c->ctl_h.length) {
        long n = ccl__sock_read_some(c->master_fd, c->ctl_payload + c->ctl_ppos,
                                     c->ctl_h.length - c->ctl_ppos, err, sizeof err);
        if (n < 0)
            return (int)n;
        c->ctl_ppos += (size_t)n;
        if (c->ctl_ppos < c->ctl_h.length)
            return CTL_NONE;
    }
    c->ctl_hpos = 0; /* the next call starts a new frame */
    return CTL_FRAME;
}

static void master_gone(ccl_comm *c)
{
    if (c->master_fd >= 0) {
        ccl__poller_del(c->poller, c->master_fd);
        ccl__sock_close(c->master_fd);
        c->master_fd = -1;
    }
    /* Ops between peers do not need the master: only the next membership
     * change will. */
    c->master_lost = 1;
}

/* The event loop saw the control link readable (caller holds mu). */
void ccl__ctl_readable(ccl_comm *c)
{
    for (;;) {
        int rc = ctl_step(c);
        if (rc < 0) {
            master_gone(c);
            return;
        }
        if (rc == CTL_NONE)
            return;
        if (c->ctl_h.type == CCL_FT_PENDING)
            __atomic_store_n(&c->pending, (int)(c->ctl_h.tag > 1000000 ? 1000000
                                                : c->ctl_h.tag), __ATOMIC_RELEASE);
        if (c->ctl_h.type == CCL_FT_REJECT) {
            /* Expelled: remembered, so the next update_topology says so
             * instead of trying to come back. */
            int code = 0;
            char text[CCL_MAX_ERRMSG + 1] = "";
            ccl__errmsg_decode(c->ctl_payload, c->ctl_h.length, &code, text);
            snprintf(c->rejected, sizeof c->rejected, "%s",
                     text[0] ? text : "removed from the group");
        }
        /* Anything else outside update_topology is ignored. */
    }
}

int ccl_comm_peers_pending(ccl_comm *c)
{
    return c ? __atomic_load_n(&c->pending, __ATOMIC_ACQUIRE) : 0;
}

static int fail(ccl_comm *c, int rc, const char *fmt, const char *detail)
{
    char msg[sizeof c->errbuf];
    snprintf(msg, sizeof msg, fmt, detail);
    ccl__set_error(c, msg);
    return rc;
}

/* Waits for the master's answer to REFORM, skipping PENDING updates. */
static int await_answer(ccl_comm *c, uint64_t deadline)
{
    char err[200];
    for (;;) {
        int rc = ctl_step(c);
        if (rc < 0)
            return -rc;
        if (rc == CTL_FRAME) {
            if (c->ctl_h.type == CCL_FT_PENDING)
                continue;
            return CCL_OK;
        }
        uint64_t now = ccl__now_ms();
        if (now >= deadline)
            return CCL_ERR_TIMEOUT;
        rc = ccl__sock_wait_readable(c->master_fd, deadline, err, sizeof err);
        if (rc)
            return rc;
    }
}

/* Moves to the epoch of GROUP g: new ranks, a new mesh. */
static int apply_group(ccl_comm *c, ccl__group_msg *g, uint64_t deadline)
{
    char err[400];
    ccl__peers_free(c);
    ccl__forget_epoch(c);
    pthread_mutex_lock(&c->post_mu);
    c->next_tag = 0; /* tags count from zero in every epoch */
    pthread_mutex_unlock(&c->post_mu);
    c->activated_upto = 0;
    c->broken = 0;
    c->broken_msg[0] = 0;
    __atomic_store_n(&c->pending, 0, __ATOMIC_RELEASE);
    int rc = ccl__build_peers(c, g);
    if (rc) {
        c->broken = rc;
        snprintf(c->broken_msg, sizeof c->broken_msg, "out of memory");
        return fail(c, rc, "%s", "out of memory");
    }
    rc = ccl__mesh_connect(c, deadline, err, sizeof err);
    if (!rc)
        rc = ccl__mesh_accept(c, deadline, err, sizeof err);
    if (!rc)
        rc = ccl__engine_add_conns(c);
    if (rc) {
        /* The new mesh is incomplete: this communicator cannot run ops
         * until the next update_topology. */
        c->broken = rc == CCL_ERR_TIMEOUT ? CCL_ERR_PEER_LOST : rc;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", err);
        return fail(c, c->broken, "building the mesh of the new epoch: %s", err);
    }
    return CCL_OK;
}

static int reform_locked(ccl_comm *c, int timeout_ms)
{
    uint64_t deadline = ccl__now_ms() + (uint64_t)timeout_ms;
    if (c->active || c->post_head)
        return fail(c, CCL_ERR_INVALID_USAGE, "%s",
                    "update_topology with ops pending: wait for them first");
    if (c->rejected[0])
        return fail(c, CCL_ERR_REJECTED, "the master refused: %s", c->rejected);
    if (c->master_fd < 0 || c->master_lost) {
        /* The master went away (it may have been restarted): come back to
         * it as a member; a new master rebuilds its view from us. */
        char err[300];
        if (c->master_fd >= 0)
            master_gone(c);
        int rc = ccl__master_rejoin(c, deadline, err, sizeof err);
        if (rc)
            return fail(c, rc, "the master is gone and could not be reached "
                        "again: %s", err);
    }
    /* Report the peers this member lost: every connection closed. */
    ccl__reform_msg *msg = calloc(1, sizeof *msg); /* 16 KiB: not on the stack */
    if (!msg)
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    msg->epoch = c->epoch;
    msg->wait_ms = (uint32_t)timeout_ms;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        int open = 0;
        for (int i = 0; i < pe->nconns; i++)
            open |= pe->conns[i].fd >= 0;
        if (p != c->rank && !open) {
            msg->expel[msg->nlost] = (uint8_t)pe->misbehaved;
            msg->lost[msg->nlost++] = (uint32_t)p;
        }
    }
    size_t cap = CCL_HDR_LEN + 12 + 4 * (size_t)msg->nlost;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        free(msg);
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    }
    size_t n = ccl__reform_encode(buf + CCL_HDR_LEN, cap - CCL_HDR_LEN, msg);
    free(msg);
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_REFORM;
    h.epoch = c->epoch;
    h.length = (uint32_t)n;
    ccl__hdr_encode(buf, &h);
    char err[200];
    int rc = ccl__sock_send_all(c->master_fd, buf, CCL_HDR_LEN + n, deadline, err,
                                sizeof err);
    free(buf);
    if (rc) {
        master_gone(c);
        return fail(c, CCL_ERR_MASTER_UNREACHABLE, "sending REFORM: %s", err);
    }
    rc = await_answer(c, deadline);
    if (rc == CCL_ERR_TIMEOUT)
        return fail(c, rc, "%s", "no answer from the master before the deadline");
    if (rc) {
        master_gone(c);
        return fail(c, CCL_ERR_MASTER_UNREACHABLE, "%s",
                    "the master closed the link during update_topology");
    }
    if (c->ctl_h.type == CCL_FT_NOCHANGE)
        return CCL_OK;
    if (c->ctl_h.type == CCL_FT_REJECT) {
        int code = 0;
        char text[CCL_MAX_ERRMSG + 1] = "";
        ccl__errmsg_decode(c->ctl_payload, c->ctl_h.length, &code, text);
        return fail(c, CCL_ERR_REJECTED, "the master refused: %s", text);
    }
    if (c->ctl_h.type != CCL_FT_GROUP)
        return fail(c, CCL_ERR_PROTOCOL, "%s", "unexpected answer to REFORM");
    uint32_t world = 0;
    ccl__group_msg g;
    memset(&g, 0, sizeof g);
    if (ccl__group_peek(c->ctl_payload, c->ctl_h.length, &world) != 0)
        return fail(c, CCL_ERR_PROTOCOL, "%s", "malformed GROUP");
    g.members = calloc(world, sizeof *g.members);
    if (!g.members)
        return fail(c, CCL_ERR_NOMEM, "%s", "out of memory");
    rc = ccl__group_decode(c->ctl_payload, c->ctl_h.length, &g);
    if (rc == 0)
        rc = apply_group(c, &g, deadline);
    else
        rc = fail(c, CCL_ERR_PROTOCOL, "%s", "malformed GROUP");
    free(g.members);
    return rc;
}

int ccl_comm_update_topology(ccl_comm *c, int timeout_ms)
{
    if (!c || timeout_ms <= 0)
        return CCL_ERR_INVALID_ARG;
    pthread_mutex_lock(&c->mu);
    /* Keep the progress thread off the loop while the mesh is rebuilt. */
    c->driving = 1;
    ccl__drain_posts(c);
    ccl__reap(c);
    int rc = reform_locked(c, timeout_ms);
    if (rc == CCL_OK)
        ccl__set_error(c, "");
    c->driving = 0;
    pthread_cond_signal(&c->idle_cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
