/*
 * communicator.h - a communicator: the engine (op layer over the transport), the
 * loop that drives them, and membership (the master link, the mesh).
 * Only the loop, membership and the public API include this file.
 *
 * Threads and locks
 *  - `mu` is the drive lock: it guards the transport and the engine's op
 *    state.  Whoever holds it drives: the progress thread, or a caller
 *    waiting on an op (which then runs the event loop itself, so a
 *    blocking op costs no thread hand-off).  epoll_wait is called with
 *    `mu` held only by a driving caller; the progress thread waits
 *    without it.
 *  - The engine's post_mu guards newly posted ops (posting never waits
 *    for a driver; a poster that cannot take `mu` signals `wakefd`) and
 *    the error detail; done_mu/done_cv carry completion to waiters that
 *    do not drive; group_mu guards rank, size and epoch for readers on
 *    any thread.
 *  - An op's `done` flag is written once, with release order, after its
 *    result; readers load it with acquire order.
 */
#ifndef CCL_COMMUNICATOR_H
#define CCL_COMMUNICATOR_H

#include "auth.h"
#include "ccl.h"
#include "engine.h"
#include "log.h"
#include "sock.h"
#include "wire.h"
#include "xport.h"

#include <pthread.h>
#include <stdint.h>

struct ccl_comm {
    ccl_comm_config cfg;
    ccl__key key;     /* the pre-shared key (len 0: none); cfg.key is NULL */
    ccl__log_once refusals; /* strangers turned away during mesh setup */
    char listen_host[CCL_MAX_HOST + 1];
    uint8_t uuid[16];
    ccl__engine eng;
    ccl__xport *xp;
    /* The epoch's members (membership keeps them for the mesh). */
    ccl__group_msg group;

    /* the master's link (membership: master_link.c, comm_reform.c) */
    int master_fd;
    ccl__io_handler master_ev;
    char master_host[256];
    int master_port;
    uint8_t ctl_hbuf[CCL_HDR_LEN];
    size_t ctl_hpos;
    ccl__hdr ctl_h;
    uint8_t *ctl_payload;
    size_t ctl_ppos;
    struct ccl__link_mac *ctl_mac; /* keyed links: every frame MACed */
    uint8_t ctl_tag[16];
    size_t ctl_tpos;
    int pending;      /* atomic: joiners waiting, as last told by the master */
    int awaiting;     /* update_topology waits: the loop keeps the answer */
    int interrupt;    /* atomic: ccl_comm_interrupt asked update_topology to stop */
    int reform_lost;  /* peers lost in the last REFORM sent (or update) */
    int optimize;     /* this update_topology asks for a better ring order */
    int answered;     /* the answer to REFORM is in ctl_h / ctl_payload */
    int master_lost;  /* the control link ended */
    /* Coming back to the master in the background (master_revive.c). */
    int revive_fd;             /* -1: no attempt in flight */
    int revive_state;
    ccl__io_handler revive_ev;
    struct ccl__hsm *revive_hs;
    uint64_t revive_next_ms;   /* the next attempt, not before */
    uint64_t revive_until_ms;  /* the attempt in flight ends by then */
    int revive_backoff_ms;
    char rejected[CCL_MAX_ERRMSG + 1]; /* the master expelled us ("" if not) */
    int listen_fd;
    int listen_port;
    struct ccl__acceptor *acceptor; /* serves listen_fd (peer_accept.c) */

    /* the loop (progress.c) */
    int poller;
    int wakefd;
    int spin_us;
    int spin_debt;   /* under mu: grows by 2 per spin that ended before its op, shrinks by 1 per one that did not */
    int spin_skips;  /* under mu: waits without a spin since spinning stopped */
    pthread_mutex_t mu;
    pthread_t thread;
    int thread_started;
    int driving;    /* a caller runs the loop: the thread stays off it */
    uint64_t drive_end_ms; /* when the last caller's drive ended (progress.c) */
    int stop;       /* ask the thread to exit */
    pthread_cond_t idle_cv; /* the thread waits here while a caller drives */
    /* Run on every loop pass after the timers (membership fills it in:
     * stats_report.c), so the loop reaches the layer above only through
     * this pointer. */
    void (*tick_hook)(struct ccl_comm *c, uint64_t now_ms);
    uint64_t next_report_ms;
    uint64_t last_report_ms; /* when the last STATS report went out */
};

/* progress.c: the loop */
void ccl__loop_once(ccl_comm *c, int timeout_ms);
/* Drives the loop from the caller's thread until *done is set (acquire),
 * the deadline passes, or the communicator stops.  Holds mu. */
void ccl__loop_drive(ccl_comm *c, const int *done, uint64_t deadline_ms, int may_spin);
/* Activates posted ops now if nobody drives, else wakes the driver. */
void ccl__loop_kick(ccl_comm *c);
void *ccl__progress_main(void *arg);

/* master_link.c, mesh.c, comm_reform.c: membership */
int ccl__join_group(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
int ccl__mesh_build(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
int ccl__master_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
/* update_topology; `optimize`: the REFORM asks the master for a better
 * ring order, after a STATS report with this member's latest rates
 * (comm_reform.c). */
int ccl__comm_reform(ccl_comm *c, int timeout_ms, int optimize);
void ccl__master_link_watch(ccl_comm *c);
/* master_revive.c: with the control link gone, the loop comes back to
 * the master by itself (tick), until update_topology takes over or the
 * communicator closes (cancel). */
void ccl__master_revive_tick(ccl_comm *c, uint64_t now);
void ccl__master_revive_cancel(ccl_comm *c);
/* stats_report.c: STATS reports to the master from the loop */
void ccl__stats_report_start(ccl_comm *c);
/* Sends a report now if ops finished since the last one, first waiting
 * (driving the loop) until the master would take it (its minimum gap
 * between two reports of a member).  Caller holds mu and drives. */
void ccl__stats_report_now(ccl_comm *c, uint64_t deadline);

#endif
