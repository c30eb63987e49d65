/*
 * comm.h - internal structures of a communicator and its ops.
 *
 * Threads and locks
 *  - `mu` guards every socket, queue and op-progress field.  Whoever holds
 *    it "drives": the progress thread, or a caller waiting on an op (which
 *    then runs the event loop itself, so a blocking op costs no thread
 *    hand-off).  epoll_wait is called with `mu` held only by a driving
 *    caller; the progress thread waits without it.
 *  - `post_mu` guards the queue of newly posted ops, so posting never waits
 *    for a driver.  A poster that cannot take `mu` signals `wakefd`.
 *  - `done_mu`/`done_cv` carry op completion to waiters that do not drive.
 *  - An op's `done` flag is written once, with release order, after its
 *    result; readers load it with acquire order.
 */
#ifndef CCL_COMM_H
#define CCL_COMM_H

#include "auth.h"
#include "ccl.h"
#include "log.h"
#include "mac.h"
#include "wire.h"

#include <pthread.h>
#include <stdint.h>

typedef struct ccl__sendreq ccl__sendreq;
typedef struct ccl__conn ccl__conn;
typedef struct ccl__peer ccl__peer;
typedef struct ccl__algo ccl__algo;

/* One frame waiting to be written: header bytes plus a payload that points
 * into the op's buffers (or into `owned` for control frames). */
struct ccl__sendreq {
    ccl__sendreq *next;
    ccl_op *op; /* NULL for control frames */
    uint8_t hdr[CCL_HDR_LEN];
    const uint8_t *data;
    uint32_t len;
    uint8_t *owned;
};

enum ccl__rx_state { RX_HDR, RX_PAYLOAD, RX_TAG };

/* Frame MAC state of one connection (cfg.frame_mac).  Each direction has
 * its own key, and its frame count is the MAC's sequence number.  The MAC
 * is computed as bytes are written and checked as they are read, so it
 * stays off the pipeline's critical path; what a frame does to an op
 * (completing it, forwarding data, DONE, BYE, ABORT) happens only after
 * its tag checked out.  A received payload may already sit in the op's
 * buffer when its tag fails: the op then fails like on any lost peer (and
 * restore_input puts an in-place input back). */
typedef struct ccl__conn_mac {
    ccl__frame_mac_key tx_key, rx_key;
    ccl__frame_mac_ctx tx, rx;   /* the frames being written and read */
    uint64_t tx_seq, rx_seq;     /* frames started in each direction */
    uint8_t tx_tag[CCL_FRAME_MAC_TAG_LEN]; /* the written frame's tag ... */
    int tx_sealed;                         /* ... once its body is out */
    uint8_t rx_tag[CCL_FRAME_MAC_TAG_LEN];
    size_t rx_tag_have;
} ccl__conn_mac;
enum ccl__rx_mode { RXM_LAND, RXM_REDUCE, RXM_DISCARD, RXM_KEEP };

struct ccl__conn {
    int fd;
    int peer;  /* rank */
    int index; /* position in the pool */
    /* send side */
    ccl__sendreq *cur;
    size_t cur_off; /* bytes of hdr + payload already written */
    int out_armed;  /* EPOLLOUT registered */
    /* receive side */
    int rstate;
    uint8_t hbuf[CCL_HDR_LEN];
    size_t hpos;
    ccl__hdr h;
    ccl_op *rop;
    int rmode;
    uint8_t *rdst;       /* where payload bytes go */
    size_t rdone;        /* payload bytes received */
    size_t rreduced;     /* payload bytes already reduced (RXM_REDUCE) */
    uint8_t *reduce_dst; /* RXM_REDUCE: destination of the reduction */
    uint8_t *staging;
    size_t staging_cap;
    uint8_t *keep; /* RXM_KEEP: heap copy of an early frame */
    int parked;    /* reading paused: too much early data buffered */
    int over_cap;  /* the next early frame may exceed the cap (see progress.c) */
    ccl__conn_mac *mac; /* frame MACs (cfg.frame_mac), or NULL */
};

struct ccl__peer {
    char host[CCL_MAX_HOST + 1];
    uint16_t port;
    uint8_t uuid[16];
    ccl__conn *conns;
    int nconns;
    ccl__sendreq *qhead, *qtail; /* frames not yet taken by a connection */
    uint64_t last_rx_ms; /* any byte from this peer */
    uint64_t last_tx_ms; /* any frame queued to this peer */
    int lost;            /* a connection failed or it said BYE: out of this epoch */
    int misbehaved;      /* it broke the protocol: the master is asked to expel it */
};

/* A frame that arrived before its op was posted here. */
typedef struct ccl__early {
    struct ccl__early *next;
    int peer;
    ccl__hdr h;
    uint8_t *data;
} ccl__early;

/* A DONE that arrived before its op was posted here. */
typedef struct ccl__early_done {
    struct ccl__early_done *next;
    uint64_t tag;
    int peer;
} ccl__early_done;

/* A tag aborted by a peer before it was posted here. */
typedef struct ccl__aborted {
    struct ccl__aborted *next;
    uint64_t tag;
    int code;
    char msg[CCL_MAX_ERRMSG + 32];
} ccl__aborted;

/* An algorithm: a table of functions driven by the progress engine. */
struct ccl__algo {
    uint8_t coll; /* enum ccl__coll, travels in every frame */
    /* Sets counters and queues the first frames. */
    int (*start)(ccl_comm *c, ccl_op *op);
    /* Validates a DATA header for this op and says where its payload goes:
     * sets *mode (RXM_LAND or RXM_REDUCE) and *dst.  Nonzero: protocol
     * violation, with op->err filled. */
    int (*on_header)(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h,
                     int *mode, uint8_t **dst);
    /* The payload of h has fully arrived (and been reduced, if REDUCE). */
    int (*on_data)(ccl_comm *c, ccl_op *op, int peer, const ccl__hdr *h);
    /* Whether landing (not only reducing) overwrites input that
     * restore_input must save first. */
    int save_on_land;
};

struct ccl_op {
    ccl_comm *comm;
    int refs; /* atomic: the caller's and the engine's */
    ccl_op *next;
    const ccl__algo *algo;
    int dtype, redop, root;
    size_t esize;
    uint64_t tag;
    uint32_t epoch;
    const uint8_t *send; /* the caller's input */
    uint8_t *buf;        /* the buffer the algorithm works in */
    uint8_t *out;        /* the caller's output */
    uint64_t count;      /* elements in the op's full buffer */
    uint64_t nbytes;     /* bytes of the full buffer: checked in every frame */
    uint8_t *scratch;    /* owned working memory (ccl__buf_get) */
    size_t scratch_len;
    /* In-place ops keep the caller's input bytes of every region they
     * overwrite, to put them back if the op fails (restore_input). */
    uint8_t *backup;
    size_t backup_len;
    uint64_t (*saved)[2]; /* (offset, length) of each saved region */
    size_t nsaved, capsaved;
    uint64_t recv_left;  /* payload bytes still to receive */
    uint64_t send_left;  /* payload bytes still to write to sockets */
    uint32_t frames_left; /* star/broadcast: frames still expected */
    uint64_t *peer_rx;   /* star hub: bytes received per peer */
    uint64_t last_progress_ms;
    int committing; /* complete here; waiting for DONE from the others */
    uint8_t *done_seen; /* per rank: DONE received (or the rank is lost) */
    int active; /* in the engine's active list */
    int hold;   /* >0 while an algorithm callback runs: no completion */
    int done;   /* atomic */
    int result;
    char err[256];
};

struct ccl_comm {
    ccl_comm_config cfg;
    ccl__key key;     /* the pre-shared key (len 0: none); cfg.key is NULL */
    ccl__log_once refusals; /* strangers turned away during mesh setup */
    char listen_host[CCL_MAX_HOST + 1];
    int rank, size;
    uint32_t epoch;
    uint8_t uuid[16];
    int master_fd;
    char master_host[256];
    int master_port;
    /* control link reader (frames from the master after GROUP) */
    uint8_t ctl_hbuf[CCL_HDR_LEN];
    size_t ctl_hpos;
    ccl__hdr ctl_h;
    uint8_t *ctl_payload;
    size_t ctl_ppos;
    int pending;      /* atomic: joiners waiting, as last told by the master */
    int master_lost;  /* the control link ended */
    char rejected[CCL_MAX_ERRMSG + 1]; /* the master expelled us ("" if not) */
    int listen_fd;
    int listen_port;
    int poller;
    int wakefd;
    ccl__peer *peers; /* size entries; peers[rank] has no connections */
    uint64_t mesh_gen; /* under mu: bumped whenever peers are freed */
    int spin_us;

    pthread_mutex_t mu;
    pthread_t thread;
    int thread_started;
    int driving;    /* a caller runs the loop: the thread stays off it */
    int stop;       /* ask the thread to exit */
    pthread_cond_t idle_cv; /* the thread waits here while a caller drives */

    pthread_mutex_t post_mu;
    ccl_op *post_head, *post_tail;
    uint64_t next_tag;   /* under post_mu: tag of the next posted op */
    int closed;          /* under post_mu: no more posts */

    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    int waiters;         /* under done_mu: callers inside ccl_op_wait */

    /* under mu */
    ccl_op *active;
    ccl_op *reap; /* finished ops whose engine reference is still held */
    uint64_t activated_upto; /* every tag below this has been activated */
    ccl__early *early_head, *early_tail;
    uint64_t early_bytes;
    ccl__aborted *aborted;
    ccl__early_done *early_done;
    ccl__sendreq *free_reqs;
    /* Big working buffers (input backups, scratch) kept for the next op:
     * fresh memory costs a page fault per 4 KiB, more than the copy. */
    void *spare[2];
    size_t spare_len[2];
    uint64_t next_deadline_check_ms;
    uint64_t tx_bytes, rx_bytes;
    int broken;            /* a connection failed: ops fail with this code */
    uint64_t bye_tag;      /* first tag this peer did not finish (for BYE) */
    char broken_msg[400];
    char errbuf[512];
};

/* the engine: progress.c, send.c, recv.c, op_state.c (see engine.h) */
void ccl__loop_once(ccl_comm *c, int timeout_ms);
void ccl__drain_posts(ccl_comm *c);
void ccl__reap(ccl_comm *c);
int ccl__timer_ms(ccl_comm *c);
void *ccl__progress_main(void *arg);
int ccl__enqueue_data(ccl_comm *c, ccl_op *op, int peer, uint16_t step,
                      uint64_t offset, const uint8_t *data, uint32_t len);
void ccl__op_fail(ccl_comm *c, ccl_op *op, int code, int notify_peers,
                  const char *fmt, ...);
void ccl__op_check_done(ccl_comm *c, ccl_op *op);
int ccl__op_save(ccl_op *op, uint64_t off, uint64_t len);
void *ccl__buf_get(ccl_comm *c, size_t len, size_t *got);
void ccl__buf_put(ccl_comm *c, void *p, size_t len);
int ccl__op_keep_input(ccl_comm *c, ccl_op *op);
void ccl__fail_all(ccl_comm *c, int code, int notify_peers, const char *why);
void ccl__say_bye(ccl_comm *c);

/* master_link.c, mesh.c, comm.c: joining, the mesh, membership */
int ccl__join_group(ccl_comm *c, uint64_t deadline, ccl__group_msg *g,
                    char *err, size_t errlen);
int ccl__build_peers(ccl_comm *c, const ccl__group_msg *g);
int ccl__mesh_connect(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
int ccl__mesh_accept(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
int ccl__engine_add_conns(ccl_comm *c);
void ccl__peers_free(ccl_comm *c);
void ccl__forget_epoch(ccl_comm *c);
int ccl__master_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);

/* comm_reform.c: the master's link after joining */
void ccl__ctl_readable(ccl_comm *c);

/* op.c */
/* Sets the communicator's error detail (under post_mu: callers of
 * ccl_comm_error and the engine write it from different threads). */
void ccl__set_error(ccl_comm *c, const char *msg);
void ccl__op_release(ccl_op *op);
int ccl__op_post(ccl_comm *c, ccl_op *op, ccl_op **out);

/* Chunking helpers shared by the algorithms. */
uint32_t ccl__unit_bytes(const ccl_comm *c, size_t esize);

/* Algorithms. */
extern const ccl__algo ccl__ring_allreduce_algo;
extern const ccl__algo ccl__ring_allgather_algo;
extern const ccl__algo ccl__ring_reduce_scatter_algo;
extern const ccl__algo ccl__star_allreduce_algo;
extern const ccl__algo ccl__broadcast_algo;
extern const ccl__algo ccl__barrier_algo;

#endif
