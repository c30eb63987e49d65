/*
 * mesh.c - the connection pools between the members of one epoch.
 *
 * Every pair of ranks shares K connections.  The higher rank connects to
 * the lower one, so rank r first connects to every rank below it and then
 * accepts from every rank above it.  This cannot deadlock: a connect
 * completes in the kernel's backlog before the other side calls accept,
 * and each rank's accept phase depends only on lower ranks.  Each
 * connection is handshaken (handshake.c) and handed to the transport.
 */
#include "communicator.h"
#include "handshake.h"
#include "log.h"
#include "peer_accept.h"
#include "shm_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hello_mine(ccl_comm *c, ccl__hello *mine, uint32_t index)
{
    ccl__hello_fill(mine, CCL_ROLE_PEER_TO_PEER, c->group.epoch, c->group.your_rank,
                    index, c->uuid);
    if (c->cfg.frame_mac)
        mine->flags |= CCL_HELLO_FRAME_MAC;
    if (c->cfg.encrypt)
        mine->flags |= CCL_HELLO_ENCRYPT;
    if (c->cfg.shm)
        mine->flags |= CCL_HELLO_SHM;
}

static int mesh_connect(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    const ccl__group_msg *g = &c->group;
    char e[300], who[160];
    for (uint32_t p = 0; p < g->your_rank; p++) {
        const ccl__member *m = &g->members[p];
        snprintf(who, sizeof who, "peer %u (%s:%u)", p, m->host, m->port);
        for (int i = 0; i < g->conns_per_peer; i++) {
            int fd = -1;
            int rc = ccl__sock_connect(m->host, m->port, deadline, &fd, e, sizeof e);
            if (rc) {
                snprintf(err, errlen, "connect to %s: %s", who, e);
                return rc == CCL_ERR_TIMEOUT || rc == CCL_ERR_INTERRUPTED ? rc
                                                                  : CCL_ERR_PEER_LOST;
            }
            ccl__hello mine;
            ccl__hs hs;
            hello_mine(c, &mine, (uint32_t)i);
            rc = ccl__handshake(fd, CCL_SIDE_CONNECTOR, &mine, &c->key,
                                c->cfg.allow_insecure, deadline, who, &hs, err, errlen);
            /* The acceptor answers as soon as it accepts, possibly before
             * it learned of this epoch (peer_accept.c), so its HELLO may
             * carry its previous epoch and rank: who it is (the uuid,
             * proved with the key) is what must match. */
            if (!rc && (hs.theirs.role != CCL_ROLE_PEER_TO_PEER ||
                        memcmp(hs.theirs.uuid, m->uuid, 16))) {
                snprintf(err, errlen, "%s answered as someone else (epoch %u rank %u)",
                         who, hs.theirs.epoch, hs.theirs.rank);
                rc = CCL_ERR_PROTOCOL;
            }
            ccl__shm *shm = NULL;
            if (!rc && ccl__shm_wanted(c->cfg.shm, &hs, (uint32_t)i)) {
                char why[300] = "";
                rc = ccl__shm_setup_connect(fd, &hs, ccl__shm_ring_for(g->world_size),
                                            deadline, &shm, why, sizeof why, e,
                                            sizeof e);
                if (rc)
                    snprintf(err, errlen, "%s: %s", who, e);
                else if (!shm)
                    ccl__log(CCL_LOG_INFO, "rank %u, epoch %u: %s stays on TCP "
                             "(shared memory %s)", g->your_rank, g->epoch, who, why);
            }
            if (!rc) {
                char why[300];
                rc = ccl__xport_adopt(c->xp, (int)p, i, fd, &hs, c->cfg.frame_mac,
                                      c->cfg.encrypt, shm, why, sizeof why);
                if (rc) {
                    snprintf(err, errlen, "%s: %s", who, why);
                    ccl__shm_free(shm);
                }
            }
            if (rc) {
                ccl__sock_close(fd);
                return rc;
            }
        }
    }
    return CCL_OK;
}

/* Waits for the connections of every higher rank.  The acceptor
 * (peer_accept.c) accepts and handshakes them from the event loop, so the
 * loop runs here, and strangers on the port never hold the wait up: only
 * the members' own connections are waited for. */
static int mesh_accept(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    const ccl__group_msg *g = &c->group;
    int left = (int)(g->world_size - 1 - g->your_rank) * g->conns_per_peer;
    for (;;) {
        int n = ccl__acceptor_take(c, err, errlen);
        if (n < 0)
            return -n;
        left -= n;
        if (left <= 0)
            return CCL_OK;
        uint64_t now = ccl__now_ms();
        if (now >= deadline) {
            const char *why = ccl__acceptor_member_refused(c);
            snprintf(err, errlen, "waiting for %d connection(s) from higher ranks: "
                     "timed out%s%s%s", left, *why ? " (" : "", why,
                     *why ? ")" : "");
            return CCL_ERR_TIMEOUT;
        }
        if (ccl__sock_cancelled()) {
            snprintf(err, errlen, "waiting for %d connection(s) from higher ranks: "
                     "interrupted", left);
            return CCL_ERR_INTERRUPTED;
        }
        ccl__loop_once(c, deadline - now > 20 ? 20 : (int)(deadline - now));
    }
}

/* Spin only if every local process can have a core to itself: spinning
 * on an oversubscribed machine steals the very CPU the peer we wait for
 * needs. */
static void choose_spin(ccl_comm *c)
{
    if (c->cfg.spin_us >= 0) {
        c->spin_us = c->cfg.spin_us;
        return;
    }
    int local = 0;
    for (uint32_t p = 0; p < c->group.world_size; p++)
        local += strcmp(c->group.members[p].host, c->listen_host) == 0;
    c->spin_us = local <= ccl__ncpus() ? 50 : 0;
}

int ccl__mesh_build(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    const ccl__group_msg *g = &c->group;
    int size = (int)g->world_size;
    ccl__xport_member *m = calloc((size_t)size, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return CCL_ERR_NOMEM;
    }
    uint32_t *ring = calloc((size_t)size, sizeof *ring);
    if (!ring) {
        free(m);
        snprintf(err, errlen, "out of memory");
        return CCL_ERR_NOMEM;
    }
    for (int p = 0; p < size; p++) {
        m[p].host = g->members[p].host;
        m[p].port = g->members[p].port;
        ring[g->members[p].ring_pos] = (uint32_t)p; /* a permutation: decoded */
    }
    int rc = ccl__engine_new_epoch(&c->eng, (int)g->your_rank, size, g->epoch, ring,
                                   g->has_tune ? &g->tune : NULL);
    free(ring);
    if (!rc)
        rc = ccl__xport_reset(c->xp, size, (int)g->your_rank, g->conns_per_peer,
                              g->epoch, m);
    free(m);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    choose_spin(c);
    rc = mesh_connect(c, deadline, err, errlen);
    if (!rc)
        rc = mesh_accept(c, deadline, err, errlen);
    if (!rc && ccl__xport_start(c->xp, c->cfg.peer_timeout_ms)) {
        snprintf(err, errlen, "cannot watch the mesh's connections");
        rc = CCL_ERR_IO;
    }
    if (!rc)
        ccl__xport_set_auto(c->xp, c->cfg.conns_per_peer == 0);
    return rc;
}
