/*
 * tune.h - the cost model that picks, per epoch, where the automatic
 * algorithm choice switches from the star all-reduce to the ring and
 * from a broadcast's direct sends to its chain.  The master runs it over
 * the round trips and rates its members measured (STATS) and sends the
 * answer in the GROUP, so every member of an epoch uses the same
 * thresholds: an op's algorithm must be the same on every rank.
 *
 * The model, its inputs and its limits are written out in docs/design.md
 * ("Choosing the algorithm").  Pure: no I/O, no state.
 */
#ifndef CCL_TUNE_H
#define CCL_TUNE_H

#include <stdint.h>

/* The thresholds without a model (no GROUP tuning, or a master without
 * measurements): tuned on loopback, where a frame's software cost, not
 * the wire's latency, decides.  The model never goes below them. */
#define CCL_TUNE_FLOOR_BYTES 65536u
/* The model's thresholds are capped so that a star's hub, which keeps
 * every contribution in a slot of its own, holds at most
 * CCL_TUNE_HUB_BYTES of them (and a threshold is at most 16 MiB). */
#define CCL_TUNE_CAP_BYTES (16u << 20)
#define CCL_TUNE_HUB_BYTES (64u << 20)
/* A decoder refuses thresholds above this (1 GiB): no sane model gives
 * them, and they would let a hub be asked for unbounded staging. */
#define CCL_TUNE_MAX_BYTES (1ull << 30)

typedef struct ccl__tuning {
    uint64_t allreduce_star_max; /* AUTO all-reduce: star up to this many bytes */
    /* AUTO all-reduce: the direct all-reduce up to this many bytes, 0:
     * never.  When nonzero it takes over from the star above the floor
     * (the star stays below CCL_TUNE_FLOOR_BYTES). */
    uint64_t allreduce_direct_max;
    uint64_t bcast_direct_max;   /* broadcast: direct sends up to this many bytes */
    uint32_t latency_us;         /* the one-way latency the model used (median) */
    uint32_t rate_kbs;           /* the rate it used (the ring's slowest
                                    link), 1000 bytes/s */
} ccl__tuning;

/* The direct all-reduce's bandwidth against the ring's in the model: its
 * N-1 streams out of every rank at once moved a 64 MiB op at 0.6 of the
 * rate the ring reached on the emulated 1 Gbit/s, 50 ms link (4 peers;
 * docs/benchmarks.md), and it never pipelines its two steps. */
#define CCL_TUNE_DIRECT_EFF 0.6

/* The default tuning (the floors; latency and rate 0: unknown). */
void ccl__tune_default(ccl__tuning *t);

/* The thresholds for a group of n members (n >= 1) from its links:
 * rtt_us[a * n + b] and rate[a * n + b] (bytes/s) of the link a -> b as
 * its receiver b measured them, 0 where unknown; uplink[r] (bytes/s, 0
 * unknown; NULL: none known) a lower bound of member r's uplink: the send
 * rate of its fastest op; ring[p] the rank at ring position p (NULL: the
 * rank order); the star's hub is rank 0.  Unknown links take the median
 * of the known ones.  Returns 1 with *out filled, or 0 (and the default in
 * *out) when no round trip or no rate is known, or n < 2. */
int ccl__tune_plan(int n, const double *rtt_us, const double *rate,
                   const double *uplink, const uint32_t *ring, ccl__tuning *out);

/* Whether two tunings differ enough to make a new epoch for (a
 * threshold by more than a factor of 4: round trips measured on a busy
 * host jitter by more than 2x, and a new epoch rebuilds the mesh). */
int ccl__tune_differs(const ccl__tuning *a, const ccl__tuning *b);

/* Groups of at least this many members gather the DONEs of a collective
 * at one rank (op_state.c): 2(N-1) agreement messages per op instead of
 * N(N-1), for one more one-way latency.  Unless the epoch's cost model
 * (the GROUP's tuning, the same at every member) measured a one-way
 * latency above CCL__GATHER_US_PER_PEER per DONE saved at each member
 * (N-2 of them): the software cost of receiving one, a wake-up on a busy
 * host.  Part of the protocol: every member decides alike from the same
 * GROUP. */
#define CCL__GATHER_MIN 3
#define CCL__GATHER_US_PER_PEER 25

/* The coordinator of an epoch of size members (rank 0), or -1 when its
 * members all tell each other; t: the GROUP's tuning, NULL if it had
 * none. */
int ccl__gather_coordinator(int size, const ccl__tuning *t);

#endif
