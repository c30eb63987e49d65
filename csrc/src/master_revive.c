/*
 * master_revive.c - a member comes back to its master without waiting
 * for update_topology.  When the control link ends (the master was
 * restarted, or the link broke) while ops go on between peers, the loop
 * connects again in the background, runs the handshake without blocking
 * and sends REJOIN.  So a restarted master learns of the run within a
 * fraction of a second, before its grace for a first group ends
 * (master_policy.h, "Restart") and before a newcomer could take the
 * epoch, and it can announce joiners (PENDING) to members that call
 * update_topology only when told (DiLoCo).  Without this a member came
 * back only at its next update_topology, which such applications call
 * only after a failure.
 *
 * Attempts start 250 ms after the link ended and back off to 2 s; each
 * is bounded (REVIVE_ATTEMPT_MS) and costs the loop no waiting.  An
 * update_topology takes over (comm_reform.c cancels the attempt in
 * flight and comes back with its own deadline), as does closing.
 */
#include "handshake.h"
#include "log.h"
#include "master_link.h"
#include "sock.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REVIVE_FIRST_MS 250
#define REVIVE_MAX_MS 2000
#define REVIVE_ATTEMPT_MS 3000

enum { REV_IDLE = 0, REV_CONNECTING, REV_HANDSHAKE };

void ccl__master_revive_cancel(ccl_comm *c)
{
    if (c->revive_fd >= 0) {
        ccl__poller_del(c->poller, c->revive_fd);
        ccl__sock_close(c->revive_fd);
        c->revive_fd = -1;
    }
    if (c->revive_hs) {
        ccl__hsm_wipe(c->revive_hs);
        free(c->revive_hs);
        c->revive_hs = NULL;
    }
    c->revive_state = REV_IDLE;
}

/* This attempt failed: the next one after the back-off. */
static void attempt_failed(ccl_comm *c, uint64_t now)
{
    ccl__master_revive_cancel(c);
    int b = c->revive_backoff_ms > 0 ? c->revive_backoff_ms : REVIVE_FIRST_MS;
    c->revive_next_ms = now + (uint64_t)b;
    c->revive_backoff_ms = b * 2 < REVIVE_MAX_MS ? b * 2 : REVIVE_MAX_MS;
}

/* Writes what the handshake has to say; asks for writability while bytes
 * are left.  Returns 0, or a ccl_result. */
static int hs_flush(ccl_comm *c)
{
    const uint8_t *p;
    size_t n = ccl__hsm_to_write(c->revive_hs, &p);
    if (n) {
        struct iovec iov = {(void *)p, n};
        long w = ccl__sock_writev_some(c->revive_fd, &iov, 1, NULL, 0);
        if (w < 0)
            return (int)-w;
        ccl__hsm_wrote(c->revive_hs, (size_t)w);
        n -= (size_t)w;
    }
    return ccl__poller_set(c->poller, c->revive_fd, &c->revive_ev,
                           CCL_EV_IN | (n ? CCL_EV_OUT : 0), 0)
               ? CCL_ERR_IO
               : CCL_OK;
}

/* The handshake is done: the link becomes the control link, and REJOIN
 * goes out on it. */
static void adopt_link(ccl_comm *c, uint64_t now)
{
    char err[200];
    int rank, size;
    uint32_t epoch;
    if (ccl__master_link_keys(c, &c->revive_hs->result) != CCL_OK) {
        attempt_failed(c, now);
        return;
    }
    ccl__poller_del(c->poller, c->revive_fd);
    c->master_fd = c->revive_fd;
    c->revive_fd = -1;
    /* A small frame on a fresh link: the socket takes it at once. */
    int rc = ccl__master_send_rejoin(c, now + 1000, err, sizeof err);
    if (rc) {
        ccl__sock_close(c->master_fd);
        c->master_fd = -1;
        attempt_failed(c, now);
        return;
    }
    ccl__hsm_wipe(c->revive_hs);
    free(c->revive_hs);
    c->revive_hs = NULL;
    c->revive_state = REV_IDLE;
    c->revive_backoff_ms = 0;
    c->revive_next_ms = 0; /* the next loss starts over */
    c->master_lost = 0;
    c->ctl_hpos = 0;
    ccl__master_link_watch(c);
    ccl__engine_group(&c->eng, &rank, &size, &epoch);
    ccl__log(CCL_LOG_INFO, "rank %d, epoch %u: came back to the master at %s:%d "
             "(REJOIN)", rank, epoch, c->master_host, c->master_port);
}

static void revive_step(ccl_comm *c, unsigned events)
{
    uint64_t now = ccl__now_ms();
    if (c->revive_state == REV_CONNECTING) {
        if (ccl__sock_connect_result(c->revive_fd) != CCL_OK) {
            attempt_failed(c, now);
            return;
        }
        ccl__hello mine;
        ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_MASTER, 0, 0xffffffffu, 0, c->uuid);
        c->revive_hs = calloc(1, sizeof *c->revive_hs);
        if (!c->revive_hs ||
            ccl__hsm_start(c->revive_hs, CCL_SIDE_CONNECTOR, &mine, &c->key,
                           c->cfg.allow_insecure,
                           ccl__sock_peer_is_loopback(c->revive_fd), CCL_ROLE_MASTER,
                           "the master")) {
            attempt_failed(c, now);
            return;
        }
        c->revive_state = REV_HANDSHAKE;
        if (hs_flush(c)) {
            attempt_failed(c, now);
            return;
        }
        return;
    }
    if (c->revive_state != REV_HANDSHAKE)
        return;
    if (events & CCL_EV_OUT && hs_flush(c)) {
        attempt_failed(c, now);
        return;
    }
    while (!ccl__hsm_done(c->revive_hs) && !ccl__hsm_failed(c->revive_hs)) {
        uint8_t *p;
        size_t want = ccl__hsm_to_read(c->revive_hs, &p);
        if (want == 0)
            break; /* ours is still being written */
        long n = ccl__sock_read_some(c->revive_fd, p, want, NULL, 0);
        if (n < 0) {
            attempt_failed(c, now);
            return;
        }
        if (n == 0)
            return;
        ccl__hsm_read(c->revive_hs, (size_t)n);
        if (hs_flush(c)) {
            attempt_failed(c, now);
            return;
        }
    }
    if (ccl__hsm_failed(c->revive_hs)) {
        /* A key or version mismatch will not go away by retrying, but
         * update_topology reports it with its cause; here, try again
         * later, at the slowest pace. */
        ccl__log(CCL_LOG_WARNING, "coming back to the master at %s:%d: %s",
                 c->master_host, c->master_port, c->revive_hs->err);
        c->revive_backoff_ms = REVIVE_MAX_MS;
        attempt_failed(c, now);
        return;
    }
    const uint8_t *left;
    if (ccl__hsm_done(c->revive_hs) && ccl__hsm_to_write(c->revive_hs, &left) == 0)
        adopt_link(c, now);
}

static void revive_event(ccl__io_handler *h, unsigned events)
{
    revive_step((ccl_comm *)((char *)h - offsetof(ccl_comm, revive_ev)), events);
}

void ccl__master_revive_tick(ccl_comm *c, uint64_t now)
{
    if (c->revive_state != REV_IDLE) {
        if (now > c->revive_until_ms)
            attempt_failed(c, now);
        return;
    }
    int rank, size;
    uint32_t epoch;
    ccl__engine_group(&c->eng, &rank, &size, &epoch);
    if (!c->master_lost || c->master_fd >= 0 || c->awaiting || c->rejected[0] ||
        epoch == 0 || c->master_port <= 0)
        return;
    if (c->revive_next_ms == 0) { /* the link just ended */
        c->revive_next_ms = now + REVIVE_FIRST_MS;
        c->revive_backoff_ms = REVIVE_FIRST_MS;
        return;
    }
    if (now < c->revive_next_ms)
        return;
    char err[200];
    if (ccl__sock_connect_start(c->master_host, c->master_port, &c->revive_fd, err,
                                sizeof err) != CCL_OK) {
        c->revive_fd = -1;
        attempt_failed(c, now);
        return;
    }
    c->revive_ev.on_event = revive_event;
    if (ccl__poller_set(c->poller, c->revive_fd, &c->revive_ev, CCL_EV_OUT, 1)) {
        attempt_failed(c, now);
        return;
    }
    c->revive_state = REV_CONNECTING;
    c->revive_until_ms = now + REVIVE_ATTEMPT_MS;
}
