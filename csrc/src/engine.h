/*
 * engine.h - what the parts of the progress engine share.  The engine is
 * split by job: send.c (frames out), recv.c (frames in), op_state.c (op
 * completion, failure, input backup, lost peers, activation) and
 * progress.c (the loop, timers, the progress thread).  Every function
 * here runs with comm->mu held.
 */
#ifndef CCL_ENGINE_H
#define CCL_ENGINE_H

#include "comm.h"

/* Early frames (for ops not posted here yet) are kept up to this many
 * bytes; past it a connection stops reading, so TCP holds the sender.  The
 * cap is soft: if ops that are posted make no progress while a connection
 * is parked (their frames may sit behind the parked one in the same
 * stream), the connection reads on after PARK_STUCK_MS. */
#define EARLY_CAP_BYTES (64ull << 20)
#define PARK_STUCK_MS 100
#define DISCARD_CHUNK 65536
#define READ_BUDGET (4u << 20)

/* send.c */
void ccl__conn_flush(ccl_comm *c, ccl__conn *k);
void ccl__conn_update_events(ccl_comm *c, ccl__conn *k);
void ccl__enqueue_abort(ccl_comm *c, int peer, uint64_t tag, int code,
                         const char *msg);
void ccl__enqueue_ctl(ccl_comm *c, int peer, int type, uint64_t tag);
void ccl__peer_kick(ccl_comm *c, int peer);
void ccl__peer_push(ccl__peer *p, ccl__sendreq *r);
void ccl__purge_sends(ccl_comm *c, ccl_op *op);
ccl__sendreq *ccl__req_alloc(ccl_comm *c);
void ccl__req_free(ccl_comm *c, ccl__sendreq *r);

/* recv.c */
void ccl__conn_read(ccl_comm *c, ccl__conn *k);
void ccl__conn_unpark(ccl_comm *c, ccl__conn *k);
void ccl__deliver_early(ccl_comm *c, ccl_op *op, ccl__early *e);
void ccl__unpark_all(ccl_comm *c);

/* op_state.c */
int ccl__abort_code(int theirs);
ccl_op *ccl__active_find(ccl_comm *c, uint64_t tag);
void ccl__conn_broken(ccl_comm *c, ccl__conn *k, int code, const char *why);
void ccl__conn_bye(ccl_comm *c, ccl__conn *k);
int ccl__save_region(ccl_op *op, int mode, uint8_t *dst, uint64_t len);

/* progress.c */

#endif
