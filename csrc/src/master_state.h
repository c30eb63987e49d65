/*
 * master_state.h - the insides of the membership policy (master_policy.h),
 * shared by its files, each using only those below it: master_peers.c
 * (the decision queue, the peers, what happens to a member's rank),
 * master_epoch.c (forming epochs: the first group, the end of a reform),
 * master_rejoin.c (members coming back) and master_policy.c (the other
 * events).  Nothing else includes it.
 */
#ifndef CCL_MASTER_STATE_H
#define CCL_MASTER_STATE_H

#include "master_decision.h"
#include "wire.h"

/* A connection that registered or came back. */
typedef struct mp_peer {
    void *conn;
    int member;              /* 1: in the current epoch, else waiting */
    ccl__register_msg reg;   /* who it is, where it listens */
    uint64_t order;          /* arrival order */
    uint32_t rank;           /* members: rank in the current epoch */
    int reported;            /* members: sent REFORM in this reform */
    uint64_t report_ms;      /* when */
    uint32_t *lost;          /* the ranks it reported lost in this reform */
    uint64_t *lost_ms;       /* when it first reported each */
    uint32_t nlost;
    int optimize;            /* members: its REFORM asked for a better ring */
    int idle;                /* members: its last REFORM said no op succeeded */
    double tx_peak;          /* its last report's tx_peak (bytes/s), 0: none */
    /* Consecutive reports that flagged a link from it slow, and the last
     * such link's receiver (its uuid) and rate. */
    uint32_t slow_streak;
    uint8_t slow_to[16];
    double slow_rate;
} mp_peer;

/* A link's last measured rate, by the identities of its ends (ranks
 * change between epochs; identities do not). */
typedef struct mp_link {
    uint8_t src[16], dst[16];
    double rate;     /* bytes/s, as its receiver reported it */
    double rtt_us;   /* the receiver's smoothed round trip to the sender */
    uint64_t at_ms;  /* when */
    int slow;        /* the master's verdict then */
} mp_link;

/* Links remembered at most; the oldest goes first. */
#define MP_MAX_LINKS 4096
/* Groups above this many members keep the ring order they have: the
 * plan needs an n x n matrix of rates. */
#define MP_MAX_RING_PLAN 1024

/* What became of one rank of the current epoch. */
enum mp_slot_state {
    SLOT_AWAITED, /* adopted run: this member has not come back yet */
    SLOT_HERE,    /* attached: slot->peer */
    SLOT_LEFT,    /* its control link closed; it may come back (REJOIN) */
    SLOT_GONE     /* dropped or expelled: it may not */
};

typedef struct mp_slot {
    int state;           /* enum mp_slot_state */
    mp_peer *peer;       /* SLOT_HERE */
    int known;           /* uuid is known (formed here, or seen in a REJOIN) */
    uint8_t uuid[16];
    /* Whether a member that is still here reported losing this rank in
     * this reform, the first such report and who made it (recounted when
     * reports come or reporters go: an accusation by a member that is gone
     * itself is void). */
    int accused;
    uint64_t accused_ms;
    uint32_t accuser;
} mp_slot;

/* Two identities whose link broke; forgiven once (see master_policy.h). */
typedef struct mp_pair {
    uint8_t a[16], b[16];
} mp_pair;

enum mp_run { RUN_NONE, RUN_FORMED, RUN_ADOPTED };

#define MP_MAX_EXPELLED 64

struct ccl__mpol {
    uint64_t grace_end;      /* no first group before, unless ever_run */
    int ever_run;            /* a group was formed or adopted */
    int run;                 /* enum mp_run */
    int adopted_untouched;   /* adopted, and no epoch formed from it yet */
    uint32_t epoch;
    uint32_t world;          /* size of the current epoch */
    mp_slot *slots;          /* world entries, by rank */
    ccl__member *members;    /* the last GROUP's member table */
    uint32_t members_world;
    uint16_t conns_per_peer;
    mp_peer **peers;         /* every known connection, unordered */
    int npeers, cap_peers;
    uint64_t arrivals;
    int reforming;
    uint64_t reform_deadline;
    int lost_any;            /* the epoch lost a member: a new one is due */
    int left_in_epoch;       /* members lost since the epoch began */
    int last_pending_sent;
    uint8_t expelled[MP_MAX_EXPELLED][16];
    int nexpelled;
    mp_pair *forgiven;       /* broken links forgiven at the last reform */
    int nforgiven;
    ccl__mpol_action *acts;  /* the decision queue: [head, nacts) */
    size_t head, nacts, cap_acts;
    ccl__mpol_options opt;
    uint32_t *ring;          /* the epoch's ring order (world ranks), or NULL:
                                the rank order */
    mp_link *links;          /* measured links (master_ring.c) */
    int nlinks;
    int has_tune;            /* the epoch's GROUP carries `tune` */
    ccl__tuning tune;        /* the cost model's thresholds (tune.h) */
};

/* ---- master_peers.c ---- */

/* Queues a decision of `kind` about conn; NULL without memory. */
ccl__mpol_action *ccl__mp_act(ccl__mpol *mp, int kind, void *conn);
void ccl__mp_log(ccl__mpol *mp, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The peer of a connection, or NULL; a new peer for a connection (NULL
 * without memory); forgetting one (a member's slot is the caller's);
 * freeing one's memory. */
mp_peer *ccl__mp_find(const ccl__mpol *mp, const void *conn);
mp_peer *ccl__mp_add(ccl__mpol *mp, void *conn, const ccl__register_msg *reg);
/* Records the peer of a new connection and names it (find, add, name);
 * CCL_ERR_INVALID_ARG if the connection has a peer already. */
int ccl__mp_admit(ccl__mpol *mp, void *conn, const ccl__register_msg *reg,
                  mp_peer **out, char *name, size_t namelen);
void ccl__mp_remove(ccl__mpol *mp, mp_peer *p);
void ccl__mp_free(mp_peer *p);
/* "host:port" where the peer listens, for log lines and messages. */
const char *ccl__mp_name(const mp_peer *p, char *buf, size_t len);
/* Peers waiting to join; members of the current epoch. */
int ccl__mp_waiting(const ccl__mpol *mp);
int ccl__mp_members(const ccl__mpol *mp);
/* A member's rank no longer has it (state SLOT_LEFT or SLOT_GONE): the
 * epoch must change, and its reports stop counting. */
void ccl__mp_vacate(ccl__mpol *mp, mp_peer *p, int state);
/* Recomputes the slots' accusations from the reports of present members. */
void ccl__mp_recount(ccl__mpol *mp);
/* REJECTs the peer with `text` and forgets it; a member's rank becomes
 * SLOT_GONE (it may not come back) and the epoch is due to change. */
void ccl__mp_reject(ccl__mpol *mp, mp_peer *p, int code, const char *text);
/* Rejects with a formatted text, logged as a refusal too. */
void ccl__mp_refuse(ccl__mpol *mp, mp_peer *p, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Drops a member at the end of a reform: logs who and why, and tells it. */
void ccl__mp_drop(ccl__mpol *mp, mp_peer *p, const char *why);
/* Ends the run: every rank is forgotten, the epoch number stays. */
void ccl__mp_end_run(ccl__mpol *mp);
/* Tells every member how many joiners wait, when that number changed. */
void ccl__mp_announce(ccl__mpol *mp);

/* ---- master_ring.c ---- */

/* The ring order for an epoch of byrank[0..n) into order (n entries):
 * the current order carried over (members that left taken out, the
 * others in their order, then the rest in rank order), re-planned from
 * the measured links when `replan`.  Returns 1 when the plan changed the
 * carried order. */
int ccl__mp_plan_ring(ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                      int replan, uint32_t *order);
/* Whether the ring should be re-planned at this reform: a member asked,
 * or reorder_slow_links is on and a link of the current ring is flagged. */
int ccl__mp_ring_due(const ccl__mpol *mp);
/* The cost model's tuning for an epoch of byrank[0..n) with ring order
 * `order` (tune.h), from the measured links: 1 with *t filled, 0 when
 * too little is known (or n is over MP_MAX_RING_PLAN). */
int ccl__mp_plan_tune(const ccl__mpol *mp, mp_peer *const *byrank, uint32_t n,
                      const uint32_t *order, ccl__tuning *t);
/* Drops the members that stayed slow past expel_slow_after. */
void ccl__mp_expel_slow(ccl__mpol *mp);

/* ---- master_epoch.c ---- */

/* Forms epoch+1 from byrank[0..n) with the ring order `order` (NULL:
 * the rank order): GROUP to each, joins logged. */
int ccl__mp_form(ccl__mpol *mp, mp_peer **byrank, uint32_t n,
                 const uint32_t *order);
/* The first group, when enough compatible peers wait (and no grace holds
 * it back). */
void ccl__mp_form_first(ccl__mpol *mp, uint64_t now);
/* Ends the reform if every member reported or the deadline passed. */
void ccl__mp_finish_reform(ccl__mpol *mp, uint64_t now);

#endif
