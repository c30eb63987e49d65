/*
 * engine.h - the op layer: the life of ops inside a communicator.
 *
 * Ops are posted (any thread, under post_mu), activated in tag order by
 * whoever drives the loop, run by their algorithm, and end in two stages:
 * complete here, then DONE from every live peer (see op_state.c).  The
 * engine sits on the transport and hears from it through the callback
 * table ccl__engine_xport_ops; it never touches a socket.
 *
 * Locks (see communicator.h for the drive lock `mu`): every function here runs
 * with mu held, except ccl__engine_post, ccl__engine_set_error,
 * ccl__engine_error, ccl__engine_pending and ccl__engine_group, which
 * take the engine's own small locks and may be called from any thread.
 */
#ifndef CCL_ENGINE_H
#define CCL_ENGINE_H

#include <pthread.h>
#include <stdint.h>

#include "op_types.h"
#include "xport.h"

/* Early frames (for ops not posted here yet) are kept up to this many
 * bytes; past it a connection stops reading, so TCP holds the sender.
 * The cap is soft: if posted ops make no progress while a connection is
 * parked (their frames may sit behind the parked one in the same stream),
 * the connections read on after PARK_STUCK_MS. */
#define EARLY_CAP_BYTES (64ull << 20)
#define PARK_STUCK_MS 100
/* An op that made no progress for this long describes itself to its
 * peers once (a probe), so ranks that issued different ops learn it. */
#define PROBE_AFTER_MS 200

typedef struct ccl__early ccl__early;
typedef struct ccl__early_done ccl__early_done;
typedef struct ccl__aborted ccl__aborted;
typedef struct ccl__p2p_seq ccl__p2p_seq;
typedef struct ccl__early_query ccl__early_query;

struct ccl__engine {
    ccl__xport *xp;
    int op_timeout_ms;
    int restore_input;
    /* The epoch's group (written under group_mu and mu; read by any
     * thread through ccl__engine_group). */
    pthread_mutex_t group_mu;
    int rank, size;
    uint32_t epoch;
    /* Ops that succeeded in this epoch (the progress thread's; read by
     * update_topology, which runs with no op pending): a member with none
     * tells the master so (CCL_REFORM_IDLE). */
    uint64_t succeeded;
    uint8_t *lost; /* per rank: out of this epoch */
    /* Gathered agreement (op_state.c): the rank that collects the DONEs
     * of the epoch's collectives and answers with the group's COMMIT, or
     * -1 when every member tells every other (ccl__gather_coordinator,
     * tune.h). */
    int agree_coord;
    /* The epoch's ring order (the rank at each position), NULL when it is
     * the rank order, and this rank's position on it. */
    uint32_t *ring;
    int ring_pos;
    /* The epoch's thresholds (the master's cost model in the GROUP, or the
     * defaults), and whether the GROUP carried them (tune.h). */
    ccl__tuning tune;
    int has_tune;
    /* Filled by the API layer (op.c): the algorithm of an op whose choice
     * waits for the epoch's thresholds (op->tuned), called at activation
     * with op->star_max_bytes set from them. */
    const ccl__algo *(*pick)(const ccl_op *op);

    /* under mu */
    ccl_op *active;
    ccl_op *reap; /* finished ops whose engine reference is still held */
    uint64_t activated_upto; /* every tag below this has been activated */
    ccl__early *early_head, *early_tail;
    uint64_t early_bytes;
    int force_early; /* unparking stuck connections: keep over the cap */
    ccl__aborted *aborted;
    ccl__early_done *early_done;
    ccl__p2p_seq *p2p_seqs; /* message counters per (peer, user tag) */
    /* op_confirm.c: collectives of the epoch that failed here, QUERYs for
     * ops not posted yet, and whether a failure went unrecorded. */
    uint64_t *failed_tags;
    size_t nfailed, capfailed;
    uint64_t refuse_from; /* collectives from this tag on were refused */
    int failed_unknown;
    ccl__early_query *early_query;
    /* Big working buffers (input backups, scratch) kept for the next op:
     * fresh memory costs a page fault per 4 KiB, more than the copy. */
    void *spare[2];
    size_t spare_len[2];
    uint64_t next_check_ms;
    int broken; /* a peer is out: ops of this epoch fail with this code */
    char broken_msg[400];
    /* Only peers that left in order (BYE) are out: collectives below
     * bye_from (the least tag a leaver did not finish) still run, since
     * every leaver completed them and its bytes for them are in. */
    int broken_hard;
    uint64_t bye_from;

    /* posting and the error detail, under post_mu */
    pthread_mutex_t post_mu;
    ccl_op *post_head, *post_tail;
    uint64_t next_tag;
    int closed;
    char errbuf[512];
    int error_final; /* errbuf holds why the master removed us: kept */

    /* completion, under done_mu */
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    int waiters; /* callers inside ccl_op_wait */
};

/* The transport's view of the engine (op_rx.c). */
extern const ccl__xport_ops ccl__engine_xport_ops;

/* op_input.c */
void ccl__op_release(ccl_op *op);
void ccl__engine_buffers_free(ccl__engine *e);

/* op_state.c */
int ccl__engine_init(ccl__engine *e, int op_timeout_ms, int restore_input);
void ccl__engine_fini(ccl__engine *e);
/* Enters a new epoch: forgets what arrived for the last one.  ring: the
 * ring order (size ranks, the rank at each position; copied), or NULL
 * for the rank order. */
int ccl__engine_new_epoch(ccl__engine *e, int rank, int size, uint32_t epoch,
                          const uint32_t *ring, const ccl__tuning *tune);
void ccl__engine_group(ccl__engine *e, int *rank, int *size, uint32_t *epoch);
void ccl__engine_set_error(ccl__engine *e, const char *msg);
/* Sets the detail for good (the master removed this member): later
 * failures, such as the others closing the old epoch's connections, do
 * not replace it. */
void ccl__engine_set_final_error(ccl__engine *e, const char *msg);
void ccl__engine_error(ccl__engine *e, char *buf, size_t cap);
/* Posts an op (tags it); CCL_ERR_CLOSED after ccl__engine_close. */
int ccl__engine_post(ccl__engine *e, ccl_op *op);
/* Whether ops are posted or running. */
int ccl__engine_pending(ccl__engine *e);
void ccl__engine_reap(ccl__engine *e);
void ccl__engine_fail_all(ccl__engine *e, int code, const char *why);
/* Ops of this epoch fail with code from now on (first cause kept); after
 * a BYE (bye_tag) only collectives from that tag on. */
void ccl__engine_mark_broken(ccl__engine *e, int code, const char *msg);
void ccl__engine_mark_left(ccl__engine *e, uint64_t bye_tag, const char *msg);
/* Ends every op (CCL_ERR_CLOSED); returns the tag of the first op this
 * peer did not finish (what BYE carries). */
uint64_t ccl__engine_close(ccl__engine *e);

/* op_rx.c (ccl__engine_tick: op_tick.c) */
/* Activates posted ops: starts them and hands them their early frames. */
void ccl__engine_drain_posts(ccl__engine *e);
/* Op deadlines and stuck parked connections. */
void ccl__engine_tick(ccl__engine *e, uint64_t now_ms);
int ccl__engine_busy(const ccl__engine *e);

#endif
