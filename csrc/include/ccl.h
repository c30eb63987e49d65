/*
 * ccl.h - the one public header of pyccl's C core.
 *
 * Anything not declared here is internal and unsupported.  The header is
 * plain C99 (a test compiles it with -std=c99 -pedantic).
 *
 * Conventions
 *  - Every fallible call returns an int: CCL_OK (0) or a ccl_result code.
 *    Outputs go through pointers.  Details of the last failure are kept as a
 *    string on the object that failed (ccl_comm_error, ccl_op_error,
 *    ccl_master_error) or written into a caller buffer where no object
 *    exists yet (ccl_comm_create).
 *  - A communicator is a long-lived handle; an op (ccl_op) is one request.
 *    An op returned by a *_async call is released with ccl_op_free, at
 *    any time: a pending op is detached and still completes inside the
 *    communicator (its buffers must stay valid until then).
 *  - Every blocking call has a deadline.  Nothing spins without bound.
 *  - Collectives must be issued in the same order on every rank (ops are
 *    matched by (epoch, tag), the tag being the op's sequence number).
 *
 * Threads
 *  - Every call on a communicator may be made from any thread, and calls
 *    from several threads at once are safe, with two limits: ops posted
 *    concurrently from several threads get tags in the order they reach
 *    the communicator, which must then be the same on every rank (so post
 *    from one thread, or order the posts yourself); and
 *    ccl_comm_destroy must be the last call (it may run while other
 *    threads wait in ccl_op_wait: they return CCL_ERR_CLOSED).
 *  - ccl_comm_update_topology holds the communicator for its whole
 *    duration: ops posted meanwhile start in the next epoch.
 *  - ccl_comm_rank, ccl_comm_size, ccl_comm_epoch, ccl_comm_error,
 *    ccl_comm_peers_pending and ccl_comm_stats never wait for the network.
 *  - An op may be waited for (ccl_op_wait, ccl_op_test) from any thread,
 *    by several at once; ccl_op_free must come after every other call on
 *    that op.
 *  - The core calls no callback: nothing of the caller's runs on the
 *    core's threads.  Log lines go to stderr or to the queue read by
 *    ccl_log_read.
 *  - The master's calls are thread-safe; ccl_master_destroy comes last.
 */
#ifndef CCL_H
#define CCL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCL_VERSION_MAJOR 0
#define CCL_VERSION_MINOR 1
#define CCL_VERSION_PATCH 0
/* The wire protocol version; both ends of every connection must match. */
#define CCL_PROTOCOL_VERSION 10

/* Result codes.  Values are part of the ABI: never renumber, only append. */
typedef enum ccl_result {
    CCL_OK = 0,
    CCL_ERR_INVALID_ARG = 1,      /* a bad argument from the caller */
    CCL_ERR_NOMEM = 2,            /* an allocation failed */
    CCL_ERR_IO = 3,               /* a socket call failed */
    CCL_ERR_TIMEOUT = 4,          /* a deadline passed */
    CCL_ERR_PEER_LOST = 5,        /* a peer closed, crashed or stalled */
    CCL_ERR_PROTOCOL = 6,         /* a peer sent bytes that break the protocol */
    CCL_ERR_VERSION = 7,          /* the other end speaks another version */
    CCL_ERR_MISMATCH = 8,         /* ranks disagree about an op (size, type, kind) */
    CCL_ERR_ABORTED = 9,          /* a peer aborted the op (it failed there) */
    CCL_ERR_MASTER_UNREACHABLE = 10, /* the master could not be reached */
    CCL_ERR_TOO_FEW_PEERS = 11,   /* not enough peers to run the op */
    CCL_ERR_CLOSED = 12,          /* the communicator was closed */
    CCL_ERR_INVALID_USAGE = 13,   /* a call not allowed in the current state */
    CCL_ERR_AUTH = 14,            /* authentication failed */
    CCL_ERR_REJECTED = 15,        /* the master refused the request */
    CCL_ERR_INTERNAL = 16,        /* a bug in pyccl; please report it */
    CCL_ERR_PENDING = 17,         /* ccl_op_wait ran out of time: the op is
                                     still running (not a failure) */
    CCL_ERR_INTERRUPTED = 18      /* the caller asked a blocking call to stop
                                     (cfg.cancel, ccl_comm_interrupt) */
} ccl_result;

/* A static, human-readable name for a result code ("peer lost", ...). */
const char *ccl_strerror(int rc);
/* The library version as "major.minor.patch". */
const char *ccl_version(void);

/* A fast 64-bit hash of bytes, identical on every platform (used to check
 * that shared state is bit-identical across peers). */
uint64_t ccl_hash64(const void *data, size_t len, uint64_t seed);

/* Log lines of the core (membership changes, refusals, warnings).  By
 * default each line goes to stderr as it happens.  ccl_log_capture(1)
 * keeps them in a bounded process-wide queue instead, to be taken with
 * ccl_log_read: for host languages that must not be called from the
 * core's threads.  Thread-safe. */
typedef enum ccl_log_level {
    CCL_LOG_ERROR = 0, CCL_LOG_WARNING = 1, CCL_LOG_INFO = 2, CCL_LOG_DEBUG = 3
} ccl_log_level;
/* Lines above this level are not produced (default CCL_LOG_INFO). */
void ccl_log_set_level(int level);
void ccl_log_capture(int on);
/* Waits up to timeout_ms (0: not at all) for a captured line.  Returns 1
 * with the line (NUL-terminated, cut to cap) in buf and its level in
 * *level, or 0 when there is none. */
int ccl_log_read(int *level, char *buf, size_t cap, int timeout_ms);

/* Element types.  Values travel on the wire: never renumber. */
typedef enum ccl_dtype {
    CCL_F32 = 0, CCL_F64 = 1, CCL_F16 = 2, CCL_BF16 = 3,
    CCL_I8 = 4, CCL_I16 = 5, CCL_I32 = 6, CCL_I64 = 7,
    CCL_U8 = 8, CCL_U16 = 9, CCL_U32 = 10, CCL_U64 = 11
} ccl_dtype;
#define CCL_DTYPE_COUNT 12
/* Size of one element in bytes, or 0 for an unknown dtype. */
size_t ccl_dtype_size(int dtype);

/* Reduction operators.  Values travel on the wire: never renumber. */
typedef enum ccl_redop {
    CCL_SUM = 0, CCL_AVG = 1, CCL_MIN = 2, CCL_MAX = 3, CCL_PROD = 4,
    CCL_BAND = 5, CCL_BOR = 6, CCL_BXOR = 7 /* bitwise: integer dtypes only */
} ccl_redop;
#define CCL_REDOP_COUNT 8

/* All-reduce algorithms.  AUTO picks by size and world size, against
 * star_max_bytes or, by default, the epoch's threshold from the master's
 * cost model (ccl_comm_get_tuning). */
typedef enum ccl_algo {
    CCL_ALGO_AUTO = 0, CCL_ALGO_RING = 1, CCL_ALGO_STAR = 2,
    CCL_ALGO_DIRECT = 3  /* reduce-scatter and all-gather straight between
                            every pair: 2 hops (docs/design.md); AUTO takes
                            it where the cost model gives it a range */
} ccl_algo;
/* star_max_bytes: take the epoch's thresholds (the default). */
#define CCL_STAR_MAX_AUTO UINT64_MAX

/* ------------------------------------------------------------------ */
/* Master: the coordinator peers register with.  It moves no tensor data. */

typedef struct ccl_master ccl_master;

typedef struct ccl_master_config {
    const char *host;   /* address to bind, default "127.0.0.1" */
    int port;           /* 0 picks a free port (see ccl_master_port) */
    const void *key;    /* pre-shared key (16..1024 bytes), or NULL: every
                           connection must then prove it holds the same key
                           (mutual HMAC-SHA256 challenge-response).  Copied. */
    size_t key_len;
    int allow_insecure; /* 0 (default): without a key, only loopback peers
                           are accepted and only a loopback host may be
                           bound.  1: accept unauthenticated peers from
                           anywhere (trusted networks only) */
    int reorder_slow_links; /* 1: when a link of the ring is flagged slow, the
                               next update_topology re-plans the ring order
                               (as ccl_comm_optimize_topology).  Default 0 */
    int expel_slow_after;   /* > 0: a member whose sending link was flagged
                               slow in this many consecutive STATS reports of
                               its receivers is dropped at the next
                               update_topology.  Default 0: never */
} ccl_master_config;

void ccl_master_config_init(ccl_master_config *cfg);
/* Binds, listens and starts the master's thread. */
int ccl_master_create(const ccl_master_config *cfg, ccl_master **out,
                      char *err, size_t errlen);
int ccl_master_port(const ccl_master *m);
/* The run's current epoch: bumped by every membership change; a restarted
 * master adopts the epoch its members come back with. */
uint32_t ccl_master_epoch(ccl_master *m);
/* Stops the thread, closes every connection and frees the master. */
void ccl_master_destroy(ccl_master *m);

/* The master's view of its members, from their STATS reports (members
 * report at most every stats_report_ms, and only after ops finished). */
typedef struct ccl_master_member_stats {
    uint32_t epoch;
    int rank, size;
    char addr[80];       /* the control link's remote address */
    uint64_t ops_ok, ops_failed, tx_bytes, rx_bytes, op_bytes, op_time_us;
    uint64_t age_ms;     /* since its last report */
    uint64_t reports;    /* reports taken from it */
} ccl_master_member_stats;

/* A link as its receiver reported it, with the master's verdict across
 * every reported link of the epoch. */
typedef struct ccl_master_link_stats {
    uint32_t epoch;
    int from, to;        /* ranks: data flows from -> to */
    double rx_rate;      /* bytes/s (0: no sample yet) */
    double rtt_us;
    uint64_t rx_bytes;
    uint32_t samples;
    double z;            /* robust z-score among the epoch's links */
    int slow;            /* flagged by the master */
    int slow_local;      /* flagged by its receiver */
    uint64_t flagged_at_ops; /* receiver's ops_ok in the report that
                                first flagged it this epoch (0: never) */
} ccl_master_link_stats;

typedef struct ccl_master_stats_totals {
    uint64_t reports, reports_dropped, reports_unknown_version;
    uint64_t slow_flags_raised;
} ccl_master_stats_totals;

/* Copies the view (members and links of the current reports; *n_*: how
 * many were filled).  Any output may be NULL. */
int ccl_master_get_stats(ccl_master *m, ccl_master_stats_totals *totals,
                         ccl_master_member_stats *members, int max_members,
                         int *n_members, ccl_master_link_stats *links,
                         int max_links, int *n_links);

/* ------------------------------------------------------------------ */
/* Communicator: one peer's membership in a group. */

typedef struct ccl_comm ccl_comm;

typedef struct ccl_comm_config {
    const char *master_host;  /* required */
    int master_port;          /* required */
    int world_size;           /* number of peers that form the first group (>= 1) */
    int rank;                 /* wanted rank, or -1 for "any" (assigned in join order) */
    int conns_per_peer;       /* TCP connections per peer pair (1..64); or
                                 0, the default: automatic, 4 opened and as
                                 many used as the pair's round trip needs
                                 (docs/quantization.md, "Connections") */
    const char *listen_host;  /* address peers connect to, default "127.0.0.1" */
    int connect_timeout_ms;   /* deadline for registration and the mesh, default 60000 */
    int op_timeout_ms;        /* an op that completes no frame for this long fails, default 60000 */
    int spin_us;              /* busy-poll before blocking: -1 auto, 0 never, else microseconds
                                 (small ops only, and only while spinning pays) */
    uint64_t star_max_bytes;  /* AUTO all-reduce uses the star up to this size,
                                 and a broadcast sends directly up to it;
                                 every peer must agree.  Default
                                 CCL_STAR_MAX_AUTO: the epoch's thresholds
                                 from the master's cost model
                                 (ccl_comm_get_tuning) */
    uint32_t chunk_bytes;     /* pipelining unit of the ring, default 1 MiB */
    int peer_timeout_ms;      /* a peer silent this long is lost (stopped, hung or
                                 cut off); heartbeats go out every quarter of
                                 it.  Default 30000 */
    int restore_input;        /* 1 (default): an in-place all-reduce that fails
                                 puts the caller's input back, at the cost of
                                 one copy of each region it overwrites */
    const void *key;          /* pre-shared key (16..1024 bytes) or NULL; the
                                 master and every peer need the same one.
                                 Copied */
    size_t key_len;
    int allow_insecure;       /* as in ccl_master_config */
    int frame_mac;            /* 1: every frame between peers carries a MAC
                                 (needs a key; every peer must agree).
                                 Default 0: TCP's checksum only */
    const int *cancel;        /* NULL, or a flag the caller may set from any
                                 thread while ccl_comm_create waits (for a
                                 signal handler's sake): creation then fails
                                 with CCL_ERR_INTERRUPTED within ~50 ms.
                                 Read only during ccl_comm_create */
    int stats_report_ms;      /* at most one STATS report to the master per
                                 this many ms, sent only after ops finished;
                                 0: never.  Default 1000, at least 100 */
    int encrypt;              /* 1: every frame between peers is encrypted
                                 and authenticated (AES-256-GCM from the
                                 system's libcrypto, loaded at run time; needs
                                 a key; every peer must agree).  Creation
                                 fails with CCL_ERR_INVALID_ARG, naming the
                                 library, where libcrypto cannot be loaded.
                                 Default 0 (docs/security.md) */
    int shm;                  /* 1 (default): a peer on the same host, in the
                                 same network namespace and reached directly
                                 (no relay, proxy or NAT) gets its frames
                                 through shared memory, the TCP connection
                                 carrying only wake-ups; 0: TCP only.  Either
                                 end's 0 keeps a pair on TCP (docs/design.md,
                                 "Same-host connections") */
} ccl_comm_config;

void ccl_comm_config_init(ccl_comm_config *cfg);
/* Registers with the master, waits until the group is complete, connects
 * the mesh and starts the progress thread.  On failure *out is NULL and err
 * holds the reason. */
int ccl_comm_create(const ccl_comm_config *cfg, ccl_comm **out,
                    char *err, size_t errlen);
int ccl_comm_rank(const ccl_comm *c);
int ccl_comm_size(const ccl_comm *c);
uint32_t ccl_comm_epoch(const ccl_comm *c);
/* Detail of the communicator's last failure ("" if none): a copy owned by
 * the calling thread, valid until its next ccl_comm_error call. */
const char *ccl_comm_error(ccl_comm *c);
/* The safe point for membership changes.  Every member calls it (with no
 * op pending); the master then admits waiting joiners and drops lost
 * peers, and all members continue in the next epoch with new ranks (the
 * survivors keep their order).  When nothing changed it costs one round
 * trip to the master and keeps the mesh.  CCL_ERR_INVALID_USAGE if ops are
 * pending; CCL_ERR_REJECTED if this peer was removed from the group. */
int ccl_comm_update_topology(ccl_comm *c, int timeout_ms);
/* update_topology that also asks the master for a better ring order: the
 * order of the ranks around the ring that maximises its slowest link,
 * from the link rates members measured and reported (docs/
 * observability.md, "Ring order").  Every member calls it at the same safe
 * point instead of update_topology, with no op pending.  First a short
 * probe measures the links nobody has measured yet (about 128 KiB per
 * link, one round per peer at most; nothing when every link has a rate).
 * When the master finds an order whose slowest link is at least 1.25x
 * faster, every member continues in a new epoch with that ring order and
 * the same ranks; else nothing changes.  Membership changes as in
 * update_topology.  Results of ring ops stay bit-identical across ranks,
 * but a new order adds partial sums in another order than before.  The
 * master also re-runs its cost model (ccl_comm_get_tuning) and starts a
 * new epoch when a threshold moves by more than 4x (or for its first
 * answer). */
int ccl_comm_optimize_topology(ccl_comm *c, int timeout_ms);
/* The automatic algorithm choice's thresholds in the current epoch
 * (docs/design.md, "Choosing the algorithm"). */
typedef struct ccl_tuning {
    uint64_t allreduce_star_max; /* AUTO all-reduce (quantized: its float32
                                    bytes): the star up to this size, the
                                    ring above */
    uint64_t allreduce_direct_max; /* AUTO all-reduce (not quantized): the
                                    direct algorithm from 64 KiB up to this
                                    size; 0: never */
    uint64_t bcast_direct_max;   /* broadcast: direct sends up to this size,
                                    a chain above */
    uint32_t latency_us;         /* the model's one-way latency (median of
                                    the links); 0 without a model */
    uint32_t rate_kbs;           /* the model's rate (median), 1000 bytes/s */
    int source;                  /* CCL_TUNING_* */
} ccl_tuning;
enum {
    CCL_TUNING_DEFAULT = 0, /* no model yet: the loopback-tuned 65536 bytes */
    CCL_TUNING_MODEL = 1,   /* the master's cost model, from measured links */
    CCL_TUNING_FIXED = 2    /* star_max_bytes set by the caller */
};
int ccl_comm_get_tuning(ccl_comm *c, ccl_tuning *out);
/* The ring order of the current epoch: order[p] = the rank at ring
 * position p (rank order unless the master chose another), for
 * p < max.  Returns the world size (order may be NULL), or
 * CCL_ERR_INVALID_ARG.  Waits while update_topology runs. */
int ccl_comm_ring_order(ccl_comm *c, int *order, int max);
/* Makes an ccl_comm_update_topology running in another thread return
 * CCL_ERR_INTERRUPTED within ~50 ms (the communicator is then left as a
 * failed update leaves it: call update_topology again, or destroy it).
 * Has no effect on a later call.  Thread-safe. */
void ccl_comm_interrupt(ccl_comm *c);
/* Joiners waiting for the next update_topology, as the master last said.
 * Costs no network round trip. */
int ccl_comm_peers_pending(ccl_comm *c);

/* Traffic counters (payload and header bytes, all connections). */
void ccl_comm_stats(ccl_comm *c, uint64_t *tx_bytes, uint64_t *rx_bytes);

/* Observability (docs/observability.md).  Everything below is counted by
 * the core as ops run; reading it takes a small lock of its own and never
 * waits for the network or for a running op. */
typedef struct ccl_stats {
    uint32_t epoch;
    int rank, size;
    uint64_t tx_bytes, rx_bytes; /* as ccl_comm_stats */
    uint64_t ops_ok, ops_failed; /* ops finished since creation */
    uint64_t op_bytes;           /* sum of the finished ops' sizes */
    uint64_t op_time_ns;         /* sum of their wall times */
    uint64_t reports_sent;       /* STATS reports sent to the master */
    int slow_links;              /* links flagged slow now (local verdict) */
    uint64_t slow_flags_raised;  /* times a link was newly flagged */
} ccl_stats;

/* One peer of the current epoch, as this member sees the link (reset at
 * every epoch: ranks change). */
typedef struct ccl_link_stats {
    int rank;
    char host[65];
    int port;
    uint64_t tx_bytes, rx_bytes; /* bytes sent to / received from it */
    double rx_rate;      /* bytes/s at which large frames from it arrive:
                            median of the last 3 samples; 0 = none yet */
    double rx_rate_ewma; /* the same, moving average (alpha 0.25) */
    double rtt_us;       /* kernel's smoothed RTT, moving average; 0 = none */
    uint32_t samples;    /* rate samples this epoch */
    int conns_open;      /* connections open now */
    uint64_t connects, errors; /* connections adopted / failed this epoch */
    double z;            /* robust z-score of rx_rate among this member's
                            links (0: fewer than 3 links measured) */
    int slow;            /* flagged slow by this member */
    int shm_conns;       /* of conns_open, those whose frames go through
                            shared memory (same host: ccl_comm_config.shm) */
} ccl_link_stats;

/* One finished op. */
typedef struct ccl_op_record {
    uint64_t seq;        /* 1 for the communicator's first finished op */
    uint32_t epoch;
    uint64_t tag;
    int coll;            /* the algorithm that ran: protocol.md's kinds
                            (1 ring all-reduce, 2 star all-reduce, ...) */
    int dtype, redop, size; /* size: ranks in the op's epoch */
    int result;          /* CCL_OK or the op's error */
    uint64_t bytes;      /* the op's buffer size */
    uint64_t tx_bytes, rx_bytes; /* DATA payload bytes it sent / received here */
    uint64_t wall_ns;    /* from posting to the end */
} ccl_op_record;

/* Fills *out; up to max_links links (*n_links: how many filled) and the
 * up to max_ops most recent finished ops, oldest first (at most 64 are
 * kept).  Any output may be NULL. */
int ccl_comm_get_stats(ccl_comm *c, ccl_stats *out, ccl_link_stats *links,
                       int max_links, int *n_links, ccl_op_record *ops,
                       int max_ops, int *n_ops);
/* Fails every pending op with CCL_ERR_CLOSED, closes every socket, joins
 * the progress thread and frees the communicator.  Ops still held by the
 * caller stay valid for ccl_op_wait/ccl_op_free. */
void ccl_comm_destroy(ccl_comm *c);

/* ------------------------------------------------------------------ */
/* Ops.  Buffers must stay valid and untouched until the op completes.
 * send == recv means in place.  count is in elements. */

typedef struct ccl_op ccl_op;

/* recv[i] = op over ranks of send[i], for i < count. */
int ccl_allreduce_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, int redop, int algo,
                        ccl_op **out);
/* Every rank's buf ends equal to root's buf. */
int ccl_broadcast_async(ccl_comm *c, void *buf, uint64_t count, int dtype,
                        int root, ccl_op **out);
/* recv holds size*count elements: rank r's send lands at r*count. */
int ccl_allgather_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, ccl_op **out);
/* send holds size*count elements; recv (count elements) gets block r of
 * the reduction on rank r. */
int ccl_reduce_scatter_async(ccl_comm *c, const void *send, void *recv,
                             uint64_t count, int dtype, int redop,
                             ccl_op **out);
int ccl_barrier_async(ccl_comm *c, ccl_op **out);

/* Collectives with a root or a size per rank (one hop each way: every
 * block goes straight from its source to its destination).  Sizes in
 * elements; blocks packed in rank order.  Like every collective, they
 * must be issued in the same order on every rank, and what two ranks say
 * about the block between them must agree (else CCL_ERR_MISMATCH).
 * Reductions combine contributions in rank order (the same bits on a
 * retry).  recv may be NULL on ranks that receive nothing, send on ranks
 * that send nothing. */
/* recv (root only) = op over ranks of send, count elements. */
int ccl_reduce_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int redop, int root, ccl_op **out);
/* recv (root only, size*count elements): rank r's send lands at r*count. */
int ccl_gather_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int root, ccl_op **out);
/* send (root only, size*count elements): block r goes to rank r's recv. */
int ccl_scatter_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                      int dtype, int root, ccl_op **out);
/* send_counts[j] elements of send go to rank j; recv_counts[i] elements
 * come from rank i.  This rank's own two counts must be equal. */
int ccl_alltoallv_async(ccl_comm *c, const void *send, const uint64_t *send_counts,
                        void *recv, const uint64_t *recv_counts, int dtype,
                        ccl_op **out);
/* Every rank sends count elements; recv gets counts[r] from rank r
 * (counts[this rank] == count). */
int ccl_allgatherv_async(ccl_comm *c, const void *send, uint64_t count, void *recv,
                         const uint64_t *counts, int dtype, ccl_op **out);
/* send holds sum(counts) elements; rank r's recv gets counts[r] elements:
 * block r of the reduction. */
int ccl_reduce_scatterv_async(ccl_comm *c, const void *send, void *recv,
                              const uint64_t *counts, int dtype, int redop,
                              ccl_op **out);

/* Quantized all-reduce of f32 data: every contribution crosses the wire
 * encoded in `format`, the sum is taken in f32, encoded once, and every
 * rank (the one that reduced too) ends with that encoding decoded: the
 * same bits everywhere.  Formats: min-max u8 and u4 and the e3m0 format
 * (sign and 3-bit exponent) with per-block scales over `block` elements
 * (a power of two up to 65536), f16 and bf16 per element.  seed 0 rounds
 * to nearest; any other seed rounds stochastically, every rank drawing
 * the same numbers for the same element (the direct algorithm mixes
 * each rank's number into the seed for its own input's encoding).  It
 * runs as a star up to star_max_bytes, as a ring above (AUTO;
 * ccl_allreduce_quant_algo_async chooses, and offers the direct
 * algorithm too: each input encoded once, less error).  NaN or infinity in the input
 * of u8/u4/e3m0 fail the op with CCL_ERR_INVALID_ARG; f16/bf16 carry them.
 * Error bounds: docs/quantization.md. */
typedef enum ccl_quant {
    CCL_QUANT_U8 = 1, CCL_QUANT_U4 = 2, CCL_QUANT_E3M0 = 3, CCL_QUANT_F16 = 4,
    CCL_QUANT_BF16 = 5
} ccl_quant;
int ccl_allreduce_quant_async(ccl_comm *c, const void *send, void *recv,
                              uint64_t count, int redop, int format, uint32_t block,
                              uint64_t seed, ccl_op **out);
/* The same with the algorithm chosen: CCL_ALGO_AUTO (as above),
 * CCL_ALGO_STAR, CCL_ALGO_RING or CCL_ALGO_DIRECT; ranks must agree. */
int ccl_allreduce_quant_algo_async(ccl_comm *c, const void *send, void *recv,
                                   uint64_t count, int redop, int algorithm, int format,
                                   uint32_t block, uint64_t seed, ccl_op **out);

/* Point-to-point.  The k-th send from rank a to rank b with a tag meets
 * the k-th recv at b from a with that tag (a recv from CCL_ANY_SOURCE
 * takes the oldest message of its tag that is next in line from some
 * rank); many may be in flight.  Counts (and dtypes) of a send and its
 * recv must agree, else both fail with CCL_ERR_MISMATCH.  They have the
 * deadlines and failure rules of collectives (a lost peer fails them),
 * and end the same way on both sides.  Recvs from any source are matched
 * in the order they were posted; a recv from a given rank takes the next
 * message from that rank even while an older recv from any source with
 * the same tag is still unmatched.
 * Unlike collectives they need not be posted in the same order on every
 * rank. */
#define CCL_ANY_SOURCE (-1)
int ccl_send_async(ccl_comm *c, const void *buf, uint64_t count, int dtype,
                   int peer, uint32_t tag, ccl_op **out);
int ccl_recv_async(ccl_comm *c, void *buf, uint64_t count, int dtype, int peer,
                   uint32_t tag, ccl_op **out);
/* The rank a finished recv got its message from (-1 if not a finished
 * recv). */
int ccl_op_source(ccl_op *op);

/* Waits up to timeout_ms (-1: until the op ends, which its own deadline
 * bounds).  Returns the op's result (CCL_ERR_TIMEOUT there means the op
 * failed on its own deadline), or CCL_ERR_PENDING if it is still running
 * (then it stays valid and pending). */
int ccl_op_wait(ccl_op *op, int timeout_ms);
/* *done = 1 and returns the result if finished; else *done = 0, CCL_OK. */
int ccl_op_test(ccl_op *op, int *done);
/* Detail string of a failed op ("" on success). */
const char *ccl_op_error(ccl_op *op);
/* Releases the op.  A pending op is detached: it still completes inside
 * the communicator, so its buffers must stay valid until then. */
void ccl_op_free(ccl_op *op);

/* Blocking forms: the async call, then wait and free. */
int ccl_allreduce(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype, int redop, int algo);
int ccl_broadcast(ccl_comm *c, void *buf, uint64_t count, int dtype, int root);
int ccl_allgather(ccl_comm *c, const void *send, void *recv, uint64_t count,
                  int dtype);
int ccl_reduce_scatter(ccl_comm *c, const void *send, void *recv,
                       uint64_t count, int dtype, int redop);
int ccl_barrier(ccl_comm *c);
int ccl_send(ccl_comm *c, const void *buf, uint64_t count, int dtype, int peer,
             uint32_t tag);
/* *source (may be NULL) gets the sender's rank. */
int ccl_recv(ccl_comm *c, void *buf, uint64_t count, int dtype, int peer,
             uint32_t tag, int *source);

#ifdef __cplusplus
}
#endif
#endif /* CCL_H */
