/*
 * stats.h - a communicator's counters: per link (peer of the current
 * epoch) and per finished op, plus the local slow-link verdict.  Read by
 * ccl_comm_get_stats from any thread; written by whoever drives the loop.
 *
 * Cost and locking.  The hot counters (bytes per link, busy time of large
 * frames) are relaxed atomic adds done by the driver, which holds the
 * drive lock `mu`; nobody else writes them.  Everything else (the link
 * table's allocation, the op ring, rate samples, verdicts) is under the
 * stats' own small mutex, taken once per finished op and once per RTT
 * sample, never while waiting for anything.  A reader takes only that
 * mutex, so reading stats never waits for the network or for `mu`.  The
 * link table is replaced only at an epoch change, which holds both `mu`
 * and the stats mutex, so a writer (under `mu`) and a reader (under the
 * stats mutex) never see it move.
 *
 * Rates.  A link's rate is what its receiver measures: the bytes the peer
 * delivered, on all its connections, from the header of a DATA frame of
 * at least CCL__STATS_MIN_FRAME bytes to that frame's last byte, divided
 * by that time.  Counting every connection's bytes makes it the link's
 * rate whether an op's frames arrive side by side (striped, each at a
 * share of the link) or one after another.  That is the speed at which
 * the link delivers a frame once the sender has started it, and is
 * independent of how long the sender had to wait for its own input (in a
 * ring every link waits for the slowest one; only the slow link is slow
 * inside a frame).  Each finished op closes a sample per link that
 * delivered at least 2 such frames since the last sample: the median of
 * their rates (of the last CCL__STATS_FRAMES), so a frame whose sender
 * was preempted halfway does not move it.  The link's rate is the median
 * of its last 3 samples.  The frame rates are kept by the driver (under
 * `mu`) and read when an op ends, also under `mu`.
 */
#ifndef CCL_STATS_H
#define CCL_STATS_H

#include <pthread.h>
#include <stdint.h>

#include "ccl.h"

#define CCL__STATS_OPS 64                 /* finished ops kept */
#define CCL__STATS_MIN_FRAME (64u << 10)  /* frames that give a rate */
#define CCL__STATS_FRAMES 32              /* frame rates kept per sample */
#define CCL__STATS_WINDOW 3               /* samples in a link's median */
#define CCL__STATS_PEAK_MIN (1u << 20)    /* ops that count for tx_peak */

typedef struct ccl__link {
    /* hot: relaxed atomics, written by the driver */
    uint64_t tx_bytes, rx_bytes;
    uint64_t connects, errors;
    int conns_open;
    int shm_open; /* of them, through shared memory */
    /* under the stats mutex */
    char host[65];
    int port;
    /* under mu (the driver): rates of large frames since the last sample */
    double frames[CCL__STATS_FRAMES];
    int nframes;
    /* under the stats mutex */
    double window[CCL__STATS_WINDOW];
    int nwin, wpos;
    uint32_t samples;
    double rate, rate_ewma, rtt_us, z;
    int slow;
} ccl__link;

typedef struct ccl__stats {
    pthread_mutex_t mu;
    uint32_t epoch;
    int rank, size;
    ccl__link *links; /* size entries */
    ccl_op_record ops[CCL__STATS_OPS];
    uint64_t nops; /* finished ops recorded (seq of the last) */
    uint64_t ops_ok, ops_failed, op_bytes, op_time_ns;
    /* The send rate (bytes/s) of this member's fastest op that sent at
     * least CCL__STATS_PEAK_MIN bytes, over the communicator's life: a
     * lower bound of its uplink, for the master's cost model (tune.h). */
    double tx_peak;
    uint64_t reports_sent;
    uint64_t reported_ops; /* nops at the last report */
    int slow_links;
    uint64_t flags_raised; /* times a link became slow (local verdict) */
    uint32_t failure_logged_epoch; /* a failed op of this epoch was logged */
} ccl__stats;

int ccl__stats_init(ccl__stats *s);
void ccl__stats_fini(ccl__stats *s);
/* A new epoch: a fresh link table (hosts may be NULL).  Caller holds mu. */
int ccl__stats_new_epoch(ccl__stats *s, int rank, int size, uint32_t epoch,
                         const char *const *hosts, const int *ports);

/* Hot counters (caller holds mu; peer checked against the table).
 * CCL_STATS_OFF (never in a real build) compiles every hook on the data
 * path to nothing, so that csrc/bench/bench_stats_e2e.c can count what
 * the stats cost end to end (docs/observability.md, "Cost"). */
static inline void ccl__stats_tx(ccl__stats *s, int peer, uint64_t n)
{
#ifndef CCL_STATS_OFF
    if (s->links && peer >= 0 && peer < s->size)
        __atomic_fetch_add(&s->links[peer].tx_bytes, n, __ATOMIC_RELAXED);
#endif
}
static inline void ccl__stats_rx(ccl__stats *s, int peer, uint64_t n)
{
#ifndef CCL_STATS_OFF
    if (s->links && peer >= 0 && peer < s->size)
        __atomic_fetch_add(&s->links[peer].rx_bytes, n, __ATOMIC_RELAXED);
#endif
}
void ccl__stats_frame_in(ccl__stats *s, int peer, uint64_t bytes, uint64_t ns);
/* A connection to peer opened (+1) or closed (-1); a link error. */
void ccl__stats_conn(ccl__stats *s, int peer, int delta);
/* A connection through shared memory opened (+1) or closed (-1). */
void ccl__stats_shm(ccl__stats *s, int peer, int delta);
void ccl__stats_error(ccl__stats *s, int peer);

/* An op finished: records it, closes rate samples, runs the local
 * slow-link check (logging a line when a verdict changes). */
void ccl__stats_op_end(ccl__stats *s, const ccl_op_record *rec);
/* A kernel RTT sample of a connection to peer, in microseconds. */
void ccl__stats_rtt(ccl__stats *s, int peer, double rtt_us);

/* Snapshot for the public API (takes the stats mutex). */
void ccl__stats_read(ccl__stats *s, ccl_stats *out, ccl_link_stats *links,
                     int max_links, int *n_links, ccl_op_record *ops,
                     int max_ops, int *n_ops);

/* The member's report to the master (wire layout in stats_wire.h):
 * encodes into buf (cap bytes) if ops finished since the last report.
 * Returns the length, or 0 when there is nothing new. */
size_t ccl__stats_report(ccl__stats *s, uint8_t *buf, size_t cap);

/* 1 the first time it is called for an epoch (log levels). */
int ccl__stats_first_failure(ccl__stats *s, uint32_t epoch);
/* Whether ops finished since the last report (no lock: a hint for the
 * loop's timer). */
int ccl__stats_unreported(ccl__stats *s);

uint64_t ccl__stats_now_ns(void);

#endif
