/*
 * progress.c - the event loop: readiness events dispatched through each
 * descriptor's handler (ccl__io_handler: transport connections, the
 * master's link), timers (the transport's liveness, the engine's
 * deadlines), and the progress thread, which runs the loop whenever no
 * caller drives it (see communicator.h for the threading rules).  A caller that
 * waits for an op drives the loop itself: no thread hand-off.
 */
#include "communicator.h"

#include <stdlib.h>

#define MAX_EVENTS 64

static int timer_ms(ccl_comm *c)
{
    int t = ccl__xport_timer_ms(c->xp, ccl__engine_busy(&c->eng));
    /* A STATS report is due after ops finished: wake up for it, so the
     * master hears of the last ops of a burst too. */
    if (c->cfg.stats_report_ms > 0 &&
        ccl__stats_unreported(ccl__xport_stats_of(c->xp))) {
        uint64_t now = ccl__now_ms();
        int left = c->next_report_ms > now ? (int)(c->next_report_ms - now) : 1;
        if (left < t)
            t = left;
    }
    return t;
}

static void process_events(ccl_comm *c, ccl__event *evs, int n)
{
    for (int i = 0; i < n; i++) {
        if (evs[i].ptr == NULL) {
            ccl__wakefd_drain(c->wakefd);
            continue;
        }
        ccl__io_handler *h = evs[i].ptr;
        h->on_event(h, evs[i].events);
    }
    /* Ops posted while update_topology waits start in the next epoch. */
    if (!c->awaiting)
        ccl__engine_drain_posts(&c->eng);
    ccl__xport_resume(c->xp);
    uint64_t now = ccl__now_ms();
    ccl__xport_tick(c->xp, now);
    ccl__engine_tick(&c->eng, now);
    if (c->tick_hook)
        c->tick_hook(c, now);
    ccl__engine_reap(&c->eng);
}

void ccl__loop_once(ccl_comm *c, int timeout_ms)
{
    ccl__event evs[MAX_EVENTS];
    if (timeout_ms > timer_ms(c))
        timeout_ms = timer_ms(c);
    int n = ccl__poller_wait(c->poller, evs, MAX_EVENTS, timeout_ms);
    process_events(c, evs, n);
}

static int stopping(ccl_comm *c)
{
    return __atomic_load_n(&c->stop, __ATOMIC_ACQUIRE);
}

/* Spin accounting (see ccl__loop_drive): waits stop spinning once the
 * debt reaches SPIN_DEBT_MAX; then one wait in SPIN_RETRY_EVERY spins. */
#define SPIN_DEBT_MAX 16
#define SPIN_RETRY_EVERY 32
/* A spin pays when its wait ends within this many times spin_us, even
 * if after the spin: such a wait is as short as a wake-up, which is what
 * spinning saves, and it is short because the peer is running.  Scoring
 * only the waits that ended within the spin itself had a trap: once two
 * peers had both stopped spinning, each waited for the other's wake-up
 * (40-70 us on this virtual CPU), longer than a 50 us spin, so no retry
 * ever paid: measured at N = 2, back-to-back 4-byte ops stayed at
 * 120-170 us, where spinning gives 31 us, in about half of the runs. */
#define SPIN_PAYS_WITHIN 4

/* Spinning (polling with a zero timeout) comes first when it is enabled
 * and the op is small (`may_spin`), because waking an idle CPU costs tens
 * of microseconds, more than a small op takes.  Then the loop blocks in
 * slices of at most 100 ms.
 *
 * Spinning pays only when the op ends soon.  On a machine whose
 * cores are busy with other work the peer we wait for is often not
 * running, so the spin ends first, and its CPU was taken from that other
 * work (maybe from the peer itself): measured with two ranks on two
 * loaded cores, a 4-byte op took 1.6 to 1.9x as long with spinning as
 * without.  So spins are scored: one whose wait lasts longer than
 * SPIN_PAYS_WITHIN spins adds 2 to a debt, one whose wait ends sooner
 * takes 1 off.  Waits spin while the debt
 * is under SPIN_DEBT_MAX (about two spins in three must pay), and once it
 * is reached, one wait in SPIN_RETRY_EVERY spins anyway, to notice when
 * spinning pays again. */
void ccl__loop_drive(ccl_comm *c, const int *done, uint64_t deadline_ms, int may_spin)
{
    c->driving = 1;
    int spun = 0;
    uint64_t t0 = 0;
    if (c->spin_us > 0 && may_spin &&
        (c->spin_debt < SPIN_DEBT_MAX || ++c->spin_skips >= SPIN_RETRY_EVERY)) {
        c->spin_skips = 0;
        spun = 1;
        t0 = ccl__now_us();
        uint64_t until = t0 + (uint64_t)c->spin_us;
        while (!__atomic_load_n(done, __ATOMIC_ACQUIRE) && !stopping(c) &&
               ccl__now_us() < until)
            ccl__loop_once(c, 0);
    }
    while (!__atomic_load_n(done, __ATOMIC_ACQUIRE) && !stopping(c)) {
        uint64_t now = ccl__now_ms();
        if (now >= deadline_ms)
            break;
        uint64_t left = deadline_ms - now;
        ccl__loop_once(c, left > 100 ? 100 : (int)left);
    }
    if (spun) {
        int paid = __atomic_load_n(done, __ATOMIC_ACQUIRE) &&
                   ccl__now_us() - t0 <= (uint64_t)c->spin_us * SPIN_PAYS_WITHIN;
        if (paid)
            c->spin_debt -= c->spin_debt > 0;
        else
            c->spin_debt = c->spin_debt + 2 < SPIN_DEBT_MAX ? c->spin_debt + 2 : SPIN_DEBT_MAX;
    }
    c->driving = 0;
    c->drive_end_ms = ccl__now_ms();
    /* The thread takes over at once only for ops still in flight (async
     * ones); otherwise it waits out the hand-off (ccl__progress_main). */
    if (ccl__engine_pending(&c->eng))
        pthread_cond_signal(&c->idle_cv);
}

void ccl__loop_kick(ccl_comm *c)
{
    /* Start the op right here when nobody else drives: its first frames
     * go out without waking the progress thread. */
    if (pthread_mutex_trylock(&c->mu) == 0) {
        ccl__engine_drain_posts(&c->eng);
        ccl__engine_reap(&c->eng);
        pthread_mutex_unlock(&c->mu);
    } else {
        ccl__wakefd_signal(c->wakefd);
    }
}

/* The progress thread stays off the loop while a caller drives it, and
 * for HANDOFF_MS after a drive ended with no op in flight: a caller that
 * runs ops back to back drives again within microseconds.  Had the thread
 * gone back to epoll_wait at once, each op would have woken it two or
 * three times (the end of the drive, the next op's first frame, the
 * caller's unlock of mu), each wake-up taking a CPU from a spinning
 * caller or its peer; on 2 cores that showed as N = 2 4-byte ops at 130
 * to 180 us in some runs against 31 to 60 us in others.  It now wakes
 * every HANDOFF_MS at most while callers drive.  What it delays: timers
 * (heartbeats, deadlines) and reading frames for ops not posted yet, by
 * at most HANDOFF_MS after a sync op; an async op in flight ends the
 * hand-off at once (the drive's end signals), and one posted during it
 * waits at most HANDOFF_MS for the thread, or less for its own wait. */
#define HANDOFF_MS 2

void *ccl__progress_main(void *arg)
{
    ccl_comm *c = arg;
    ccl__event evs[MAX_EVENTS];
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (stopping(c))
            break;
        if (c->driving ||
            (ccl__now_ms() < c->drive_end_ms + HANDOFF_MS && !ccl__engine_pending(&c->eng))) {
            ccl__cond_wait_ms(&c->idle_cv, &c->mu, HANDOFF_MS);
            continue;
        }
        int timeout = timer_ms(c);
        uint64_t gen = ccl__xport_generation(c->xp);
        pthread_mutex_unlock(&c->mu);
        int n = ccl__poller_wait(c->poller, evs, MAX_EVENTS, timeout);
        pthread_mutex_lock(&c->mu);
        if (stopping(c))
            break;
        /* Events gathered before a mesh rebuild point at freed
         * connections: drop them (level-triggered epoll reports live ones
         * again). */
        if (!c->driving)
            process_events(c, evs, gen == ccl__xport_generation(c->xp) ? n : 0);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}
