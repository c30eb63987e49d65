/*
 * op_tick.c - the op layer's timers, run from the event loop's tick: op
 * deadlines (op_timeout), the probe an idle op sends, and parked
 * connections that must read on because the posted ops are stuck.
 */
#include "op_int.h"
#include "sock.h"

/* Parked connections read on when the posted ops make no progress: their
 * frames may sit behind the parked one in the same stream. */
static void unpark_stuck(ccl__engine *e, uint64_t now)
{
    uint64_t last = 0;
    for (ccl_op *op = e->active; op; op = op->next)
        if (op->last_progress_ms > last)
            last = op->last_progress_ms;
    if (!e->active || ccl__since(now, last) < PARK_STUCK_MS)
        return;
    e->force_early = 1;
    ccl__xport_unpark_all(e->xp);
    e->force_early = 0;
}

void ccl__engine_tick(ccl__engine *e, uint64_t now)
{
    if (now < e->next_check_ms)
        return;
    e->next_check_ms = now + 50;
    unpark_stuck(e, now);
    uint64_t limit = (uint64_t)e->op_timeout_ms;
    /* A failure can end other ops too (telling the peers may break a
     * connection), so the scan starts over after each one. */
    for (int again = 1; again;) {
        again = 0;
        for (ccl_op *op = e->active; op; op = op->next) {
            /* Ops complete here wait for DONE under the same deadline: a
             * peer that is alive but never posts the op has sent DONE to
             * nobody, so nobody can have succeeded, and failing stays
             * consistent.  (A silent peer is lost sooner, at
             * peer_timeout.) */
            /* Unparking above may have stamped progress after `now`. */
            uint64_t idle = ccl__since(now, op->last_progress_ms);
            if (idle <= limit) {
                if (!op->probed && idle >= PROBE_AFTER_MS)
                    ccl__op_probe(op);
                continue;
            }
            ccl__op_fail(op, CCL_ERR_TIMEOUT,
                         "op %llu made no progress for %d ms (a peer may be "
                         "stalled, or ranks issued different ops)",
                         (unsigned long long)op->tag, e->op_timeout_ms);
            again = 1;
            break;
        }
    }
}
