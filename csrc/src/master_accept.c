/*
 * master_accept.c - admission at the master's port under floods.
 *
 * Every connection is accepted; what is capped is how many strangers
 * (connections not registered yet) are held: MAX_STRANGERS_PER_PREFIX per
 * network prefix, max_strangers in all, within a budget of fds that
 * follows the open-file limit.  At a cap the newcomer is not refused:
 * the stranger that has shown the least is pushed out (see shed_one), so
 * a flood only ever competes with itself, while a legitimate peer, which
 * finishes its handshake in one round trip, gets in.  The budget starts
 * below the open-file limit (raised to the hard limit first); if accept
 * still fails for want of fds (EMFILE, ENFILE: the process holds more
 * than assumed), the budget shrinks to what fits, strangers are shed
 * down to it and accepting pauses for ACCEPT_BACKOFF_MS (the pending
 * connection waits in the backlog): no busy loop.
 */
#include "master_int.h"
#include "sock.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The connection that holds a stranger node. */
static mconn *conn_of(ccl__stranger *n)
{
    return n ? (mconn *)((char *)n - offsetof(mconn, node)) : NULL;
}

/* Makes room for a newcomer: the stranger that has shown the least
 * (silent before heard, heard before registered-to-be; then the one
 * longest in its class), among those of `prefix` when only that prefix is
 * full.  A member's handshake takes one round trip, so members get in
 * while a flood's connections are pushed out in turn, rather than
 * newcomers being refused while the flood holds every slot.  The index
 * (master_strangers.c) answers without walking the connections.  Returns
 * 1 if one was closed. */
static int shed_one(ccl_master *m, uint64_t prefix, int only_prefix)
{
    mconn *victim = conn_of(ccl__strangers_victim(&m->strangers,
                                                  only_prefix ? &prefix : NULL));
    if (!victim)
        return 0;
    ccl__log_refusal(&m->refusals, "pyccl master", victim->addr,
                     "pushed out of the handshake by newer connections (too "
                     "many at once from its network or in all)");
    ccl__master_conn_close(m, victim);
    m->shed++;
    return 1;
}

/* Stops accepting for a while (out of fds): the listen socket stays
 * readable, so retrying at once would spin. */
static void pause_accepting(ccl_master *m, uint64_t now)
{
    m->accept_paused_until = now + ACCEPT_BACKOFF_MS;
    ccl__poller_set(m->poller, m->lfd, &ccl__master_listen_marker, 0, 0);
}

void ccl__master_on_accept(ccl_master *m)
{
    static const uint8_t no_uuid[16];
    uint64_t now = ccl__now_ms();
    /* A small batch per wakeup (a fraction of the stranger slots), so
     * that the loop reads the connections it has between batches: a
     * member's HELLO must be seen (it is then no longer silent) before
     * the flood behind it could push it out. */
    for (int batch = 0; batch < 64; batch++) {
        int fd = -1, loopback = 0;
        char addr[80] = "";
        int arc = ccl__sock_accept_cheap(m->lfd, &fd, addr, sizeof addr, &loopback);
        if (arc == CCL_ERR_NOMEM) {
            /* Out of fds before our budget: something else in the process
             * holds more than we counted on.  Shrink the budget to what
             * fits (a few fds below where accept failed), shed strangers
             * down to it, and back off briefly; from then on every
             * newcomer replaces a stranger instead of failing again. */
            int all = ccl__strangers_count(&m->strangers);
            int ctl = m->nconns - all;
            if (m->nconns - 4 < m->max_conns)
                m->max_conns = m->nconns - 4 > ctl + 4 ? m->nconns - 4 : ctl + 4;
            m->max_strangers = m->max_conns - ctl - 2 > 2 ? m->max_conns - ctl - 2 : 2;
            while (all-- > m->max_strangers && shed_one(m, 0, 0))
                ;
            pause_accepting(m, now);
            return;
        }
        if (arc || fd < 0)
            return;
        uint64_t prefix = ccl__sock_prefix_key(addr);
        if (ccl__strangers_in_prefix(&m->strangers, prefix) >= MAX_STRANGERS_PER_PREFIX)
            shed_one(m, prefix, 1);
        else if (ccl__strangers_count(&m->strangers) >= m->max_strangers ||
                 m->nconns >= m->max_conns)
            shed_one(m, 0, 0);
        mconn *k = m->nconns < m->max_conns ? calloc(1, sizeof *k) : NULL;
        if (k)
            ccl__stranger_init(&k->node);
        if (!k || ccl__strangers_add(&m->strangers, &k->node, prefix, now)) {
            ccl__log_refusal(&m->refusals, "pyccl master", addr,
                             "too many connections");
            ccl__sock_close(fd);
            free(k);
            continue;
        }
        k->fd = fd;
        snprintf(k->addr, sizeof k->addr, "%s", addr);
        k->prefix = prefix;
        k->started_ms = now;
        k->phase = P_HANDSHAKE;
        k->deadline_ms = now + HANDSHAKE_MS;
        ccl__hello h;
        ccl__hello_fill(&h, CCL_ROLE_MASTER, 0, 0xffffffffu, 0, no_uuid);
        if (ccl__hsm_start(&k->hs, CCL_SIDE_ACCEPTOR, &h, &m->key,
                           m->allow_insecure, loopback,
                           CCL_ROLE_PEER_TO_MASTER, "the peer") ||
            ccl__poller_set(m->poller, fd, k, CCL_EV_IN, 1)) {
            ccl__strangers_remove(&m->strangers, &k->node);
            ccl__sock_close(fd);
            free(k);
            continue;
        }
        k->next = m->conns;
        if (m->conns)
            m->conns->prev = k;
        m->conns = k;
        m->nconns++;
        /* Our HELLO goes out at once (docs/protocol.md: both ends send
         * theirs without waiting).  A peer's HELLO is often here already;
         * the poller reports it on the next turn. */
        ccl__master_hs_progress(m, k);
    }
}
