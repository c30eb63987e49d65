/*
 * progress.c - the event loop: readiness events, timers (op deadlines,
 * heartbeats, silent peers, stuck parked connections) and the progress
 * thread, which runs the loop whenever no caller drives it (see comm.h
 * for the threading rules).
 */

#include "engine.h"
#include "reduce.h"
#include "sock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the loop ---- */

static void unpark_stuck(ccl_comm *c, uint64_t now)
{
    uint64_t last = 0;
    if (!c->active)
        return;
    for (ccl_op *op = c->active; op; op = op->next)
        if (op->last_progress_ms > last)
            last = op->last_progress_ms;
    if (now - last < PARK_STUCK_MS)
        return;
    for (int p = 0; p < c->size; p++)
        for (int i = 0; i < c->peers[p].nconns; i++) {
            ccl__conn *k = &c->peers[p].conns[i];
            if (k->fd >= 0 && k->parked) {
                k->over_cap = 1;
                ccl__conn_unpark(c, k);
            }
        }
}

/* Heartbeats keep an idle but healthy peer from looking dead; silence
 * longer than peer_timeout_ms means the peer is stopped, hung or cut off
 * (a stopped process keeps its sockets open, so only a deadline catches
 * it). */
static void check_peers(ccl_comm *c, uint64_t now)
{
    uint64_t hb = (uint64_t)c->cfg.peer_timeout_ms / 4;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        int open = 0, parked = 0;
        for (int i = 0; i < pe->nconns; i++) {
            open |= pe->conns[i].fd >= 0;
            parked |= pe->conns[i].fd >= 0 && pe->conns[i].parked;
        }
        if (!open)
            continue;
        if (parked) /* we stopped reading it ourselves: it is not silent */
            pe->last_rx_ms = now;
        if (now - pe->last_rx_ms > (uint64_t)c->cfg.peer_timeout_ms) {
            char why[160];
            snprintf(why, sizeof why, "silent for %llu ms (stopped, hung or cut off)",
                     (unsigned long long)(now - pe->last_rx_ms));
            for (int i = 0; i < pe->nconns; i++)
                ccl__conn_broken(c, &pe->conns[i], CCL_ERR_PEER_LOST, why);
            continue;
        }
        if (now - pe->last_tx_ms >= hb && !pe->qhead) {
            ccl__sendreq *r = ccl__req_alloc(c);
            if (!r)
                continue;
            ccl__hdr h;
            memset(&h, 0, sizeof h);
            h.type = CCL_FT_HEARTBEAT;
            h.epoch = c->epoch;
            ccl__hdr_encode(r->hdr, &h);
            ccl__peer_push(pe, r);
            ccl__peer_kick(c, p);
        }
    }
}

/* The longest the loop may sleep before timers need it. */
int ccl__timer_ms(ccl_comm *c)
{
    int hb = c->cfg.peer_timeout_ms / 8;
    if (c->active && hb > 50)
        hb = 50;
    return hb > 1000 ? 1000 : hb;
}

static void check_deadlines(ccl_comm *c)
{
    uint64_t now = ccl__now_ms();
    if (now < c->next_deadline_check_ms)
        return;
    c->next_deadline_check_ms = now + (uint64_t)(c->active ? 50 : ccl__timer_ms(c));
    check_peers(c, now);
    unpark_stuck(c, now);
    uint64_t limit = (uint64_t)c->cfg.op_timeout_ms;
    ccl_op *op = c->active;
    while (op) {
        ccl_op *next = op->next;
        /* Ops complete here wait for DONE under the same deadline: a peer
         * that is alive but never posts the op has sent DONE to nobody, so
         * nobody can have succeeded, and failing stays consistent.  (A
         * peer that is silent is lost sooner, at peer_timeout.) */
        if (now - op->last_progress_ms > limit)
            ccl__op_fail(c, op, CCL_ERR_TIMEOUT, 1,
                         "op %llu made no progress for %d ms (a peer may be "
                         "stalled, or ranks issued different ops)",
                         (unsigned long long)op->tag, c->cfg.op_timeout_ms);
        op = next;
    }
}

static void process_events(ccl_comm *c, ccl__event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        if (evs[i].ptr == NULL) {
            ccl__wakefd_drain(c->wakefd);
            continue;
        }
        if (evs[i].ptr == &c->master_fd) {
            ccl__ctl_readable(c);
            continue;
        }
        ccl__conn *k = evs[i].ptr;
        if (k->fd < 0)
            continue;
        if (evs[i].events & CCL_EV_OUT)
            ccl__conn_flush(c, k);
        if (k->fd >= 0 && (evs[i].events & CCL_EV_IN))
            ccl__conn_read(c, k);
    }
    ccl__drain_posts(c);
    check_deadlines(c);
    ccl__reap(c);
}

void ccl__loop_once(ccl_comm *c, int timeout_ms)
{
    ccl__event evs[64];
    if (timeout_ms > ccl__timer_ms(c))
        timeout_ms = ccl__timer_ms(c);
    int n = ccl__poller_wait(c->poller, evs, 64, timeout_ms);
    process_events(c, evs, n);
}

void *ccl__progress_main(void *arg)
{
    ccl_comm *c = arg;
    ccl__event evs[64];
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (c->driving && !__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            pthread_cond_wait(&c->idle_cv, &c->mu);
        if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            break;
        int timeout = ccl__timer_ms(c);
        uint64_t gen = c->mesh_gen;
        pthread_mutex_unlock(&c->mu);
        int n = ccl__poller_wait(c->poller, evs, 64, timeout);
        pthread_mutex_lock(&c->mu);
        if (__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE))
            break;
        /* Events gathered before a mesh rebuild point at freed
         * connections: drop them (level-triggered epoll reports live ones
         * again). */
        if (!c->driving)
            process_events(c, evs, gen == c->mesh_gen ? n : 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
