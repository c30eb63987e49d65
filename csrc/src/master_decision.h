/*
 * master_decision.h - what the master's membership policy decides (see
 * master_policy.h), as the event loop receives it: one decision at a
 * time, about one connection.  A header of its own so that the policy's
 * files and its callers share these types without using each other.
 */
#ifndef CCL_MASTER_DECISION_H
#define CCL_MASTER_DECISION_H

#include <stdint.h>

/* How long an accused member that has not reported yet is waited for. */
#define CCL_MPOL_ACCUSED_GRACE_MS 1000
/* The most of a reporter's wait kept back for building the next mesh. */
#define CCL_MPOL_RESERVE_MAX_MS 2000

enum ccl__mpol_kind {
    CCL_MPOL_NONE = 0,  /* (a decision that no longer applies) */
    CCL_MPOL_GROUP,     /* send GROUP of `epoch` to conn, as rank `rank` */
    CCL_MPOL_NOCHANGE,  /* send NOCHANGE to conn */
    CCL_MPOL_PENDING,   /* send PENDING: `count` joiners wait */
    CCL_MPOL_REJECT,    /* send REJECT (`code`, `text`), then close conn */
    CCL_MPOL_CLOSE,     /* close conn without a word */
    CCL_MPOL_LOG        /* log `text` at level `code` (a ccl_log_level) */
};

#define CCL_MPOL_TEXT 400

typedef struct ccl__mpol_action {
    int kind;         /* enum ccl__mpol_kind */
    void *conn;       /* the connection it concerns (not LOG) */
    uint32_t epoch;   /* the epoch for the frame header */
    uint32_t rank;    /* GROUP: the receiver's rank */
    uint64_t count;   /* PENDING */
    int code;         /* REJECT: a ccl_result; LOG: a ccl_log_level */
    char text[CCL_MPOL_TEXT];
} ccl__mpol_action;

/* The policy itself; see master_policy.h. */
typedef struct ccl__mpol ccl__mpol;

/* The optional policies on slow links (off by default; master_policy.h,
 * "Ring order"). */
typedef struct ccl__mpol_options {
    /* 1: a reform re-plans the ring order when a link of the current ring
     * is flagged slow, as if a member had asked (optimize_topology). */
    int reorder_slow_links;
    /* > 0: a member whose sending link was flagged slow in this many
     * consecutive reports of its receivers is dropped at the next reform. */
    uint32_t expel_slow_after;
} ccl__mpol_options;

#endif
