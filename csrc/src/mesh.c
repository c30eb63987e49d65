/*
 * mesh.c - the connection pools between the members of one epoch.
 *
 * Every pair of ranks shares K connections.  The higher rank connects to
 * the lower one, so rank r first connects to every rank below it and then
 * accepts from every rank above it.  This cannot deadlock: a connect
 * completes in the kernel's backlog before the other side calls accept,
 * and each rank's accept phase depends only on lower ranks.
 */
#include "comm.h"
#include "handshake.h"
#include "sock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

/* Keys the frame MACs of a connection from its handshake's secrets. */
static int conn_set_mac(ccl_comm *c, ccl__conn *k, ccl__hs *hs)
{
    if (!c->cfg.frame_mac)
        return CCL_OK;
    if (!hs->authed)
        return CCL_ERR_AUTH; /* cannot happen: frame_mac requires a key */
    k->mac = calloc(1, sizeof *k->mac);
    if (!k->mac)
        return CCL_ERR_NOMEM;
    ccl__frame_mac_key_init(&k->mac->tx_key, hs->seed_tx);
    ccl__frame_mac_key_init(&k->mac->rx_key, hs->seed_rx);
    ccl__wipe(hs->seed_tx, sizeof hs->seed_tx);
    ccl__wipe(hs->seed_rx, sizeof hs->seed_rx);
    return CCL_OK;
}

static void conn_free_mac(ccl__conn *k)
{
    if (!k->mac)
        return;
    ccl__wipe(k->mac, sizeof *k->mac);
    free(k->mac);
    k->mac = NULL;
}

int ccl__mesh_connect(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    char e[300], who[160];
    for (int p = 0; p < c->rank; p++) {
        ccl__peer *pe = &c->peers[p];
        snprintf(who, sizeof who, "peer %d (%s:%u)", p, pe->host, pe->port);
        for (int i = 0; i < pe->nconns; i++) {
            int fd = -1;
            int rc = ccl__sock_connect(pe->host, pe->port, deadline, &fd, e, sizeof e);
            if (rc) {
                ERRF("connect to %s: %s", who, e);
                return rc == CCL_ERR_TIMEOUT ? rc : CCL_ERR_PEER_LOST;
            }
            pe->conns[i].fd = fd;
            ccl__hello mine;
            ccl__hs hs;
            ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, c->epoch, (uint32_t)c->rank,
                       (uint32_t)i, c->uuid);
            if (c->cfg.frame_mac)
                mine.flags |= CCL_HELLO_FRAME_MAC;
            rc = ccl__handshake(fd, CCL_SIDE_CONNECTOR, &mine, &c->key,
                                c->cfg.allow_insecure, deadline, who, &hs, err, errlen);
            if (rc)
                return rc;
            const ccl__hello theirs = hs.theirs;
            if (theirs.role != CCL_ROLE_PEER_TO_PEER || theirs.epoch != c->epoch ||
                theirs.rank != (uint32_t)p || memcmp(theirs.uuid, pe->uuid, 16)) {
                ERRF("%s answered as someone else (epoch %u rank %u)", who,
                     theirs.epoch, theirs.rank);
                return CCL_ERR_PROTOCOL;
            }
            rc = conn_set_mac(c, &pe->conns[i], &hs);
            if (rc) {
                ERRF("out of memory for frame MAC keys");
                return rc;
            }
        }
    }
    return CCL_OK;
}

int ccl__mesh_accept(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    int expected = 0;
    for (int p = c->rank + 1; p < c->size; p++)
        expected += c->peers[p].nconns;
    char e[300], addr[80];
    while (expected > 0) {
        int fd = -1;
        int rc = ccl__sock_accept(c->listen_fd, deadline, &fd, addr, sizeof addr,
                                  e, sizeof e);
        if (rc) {
            ERRF("waiting for %d connection(s) from higher ranks: %s", expected, e);
            return rc;
        }
        ccl__hello mine;
        ccl__hs hs;
        ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, c->epoch, (uint32_t)c->rank, 0,
                   c->uuid);
        if (c->cfg.frame_mac)
            mine.flags |= CCL_HELLO_FRAME_MAC;
        /* The address is in the log line already; a cause without it lets
         * the log limiter group repeats. */
        const char *who = "the connecting end";
        /* A stranger gets a short deadline so it cannot hold the mesh up. */
        uint64_t hs_deadline = ccl__now_ms() + 5000;
        if (hs_deadline > deadline)
            hs_deadline = deadline;
        char herr[400];
        rc = ccl__handshake(fd, CCL_SIDE_ACCEPTOR, &mine, &c->key,
                            c->cfg.allow_insecure, hs_deadline, who, &hs, herr,
                            sizeof herr);
        const ccl__hello theirs = hs.theirs;
        int ok = rc == 0 && theirs.role == CCL_ROLE_PEER_TO_PEER &&
                 theirs.epoch == c->epoch && theirs.rank > (uint32_t)c->rank &&
                 theirs.rank < (uint32_t)c->size;
        if (ok) {
            ccl__peer *pe = &c->peers[theirs.rank];
            ok = memcmp(theirs.uuid, pe->uuid, 16) == 0 &&
                 theirs.conn_index < (uint32_t)pe->nconns &&
                 pe->conns[theirs.conn_index].fd < 0;
            if (ok) {
                ccl__conn *k = &pe->conns[theirs.conn_index];
                rc = conn_set_mac(c, k, &hs);
                if (rc) {
                    ccl__sock_close(fd);
                    ERRF("out of memory for frame MAC keys");
                    return rc;
                }
                k->fd = fd;
                expected--;
                continue;
            }
        }
        /* Not one of ours: say so once, drop it, keep waiting for the real
         * peers. */
        char me[48];
        snprintf(me, sizeof me, "pyccl rank %d", c->rank);
        ccl__log_refusal(&c->refusals, me, addr,
                         rc ? herr : "not a member of this group");
        ccl__sock_close(fd);
    }
    return CCL_OK;
}

int ccl__build_peers(ccl_comm *c, const ccl__group_msg *g)
{
    c->rank = (int)g->your_rank;
    c->size = (int)g->world_size;
    c->epoch = g->epoch;
    c->peers = calloc((size_t)c->size, sizeof *c->peers);
    if (!c->peers)
        return CCL_ERR_NOMEM;
    int local = 0;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        memcpy(pe->host, g->members[p].host, sizeof pe->host);
        pe->port = g->members[p].port;
        memcpy(pe->uuid, g->members[p].uuid, 16);
        if (strcmp(pe->host, c->listen_host) == 0)
            local++;
        if (p == c->rank)
            continue;
        pe->nconns = g->conns_per_peer;
        pe->conns = calloc((size_t)pe->nconns, sizeof *pe->conns);
        if (!pe->conns) {
            pe->nconns = 0; /* keep the table walkable for the teardown */
            return CCL_ERR_NOMEM;
        }
        for (int i = 0; i < pe->nconns; i++) {
            pe->conns[i].fd = -1;
            pe->conns[i].peer = p;
            pe->conns[i].index = i;
        }
    }
    if (c->cfg.spin_us >= 0)
        c->spin_us = c->cfg.spin_us;
    else
        /* Spin only if every local process can have a core to itself:
         * spinning on an oversubscribed machine steals the very CPU the
         * peer we wait for needs. */
        c->spin_us = local <= ccl__ncpus() ? 50 : 0;
    return CCL_OK;
}

/* Puts the mesh's connections into the event loop. */
int ccl__engine_add_conns(ccl_comm *c)
{
    uint64_t now = ccl__now_ms();
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        pe->last_rx_ms = pe->last_tx_ms = now;
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            ccl__sock_set_nonblock(k->fd);
            ccl__sock_set_nodelay(k->fd);
            if (ccl__poller_set(c->poller, k->fd, k, CCL_EV_IN, 1))
                return CCL_ERR_IO;
        }
    }
    return CCL_OK;
}

/* Forgets what arrived for ops of this epoch that never ran here: early
 * frames, aborts and DONEs. */
void ccl__forget_epoch(ccl_comm *c)
{
    while (c->early_head) {
        ccl__early *e = c->early_head;
        c->early_head = e->next;
        free(e->data);
        free(e);
    }
    c->early_tail = NULL;
    c->early_bytes = 0;
    while (c->aborted) {
        ccl__aborted *a = c->aborted;
        c->aborted = a->next;
        free(a);
    }
    while (c->early_done) {
        ccl__early_done *d = c->early_done;
        c->early_done = d->next;
        free(d);
    }
}

/* Closes the mesh and forgets every peer (sockets, queues, staging). */
void ccl__peers_free(ccl_comm *c)
{
    if (!c->peers)
        return;
    c->mesh_gen++;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            if (k->fd >= 0 && c->poller >= 0)
                ccl__poller_del(c->poller, k->fd);
            ccl__sock_close(k->fd);
            free(k->staging);
            free(k->keep);
            conn_free_mac(k);
            if (k->cur) {
                free(k->cur->owned);
                free(k->cur);
            }
        }
        while (pe->qhead) {
            ccl__sendreq *r = pe->qhead;
            pe->qhead = r->next;
            free(r->owned);
            free(r);
        }
        free(pe->conns);
    }
    free(c->peers);
    c->peers = NULL;
}
