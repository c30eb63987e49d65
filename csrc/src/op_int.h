/*
 * op_int.h - what the op layer's files share and nothing else sees:
 * op_input.c (memory, saved input) < op_confirm.c (the confirmation
 * stage's records) < op_state.c (completion, failure) < op_send.c (what
 * algorithms queue) < op_tick.c (deadlines, probes) < op_confirm_rx.c
 * (QUERY and CONFIRM in, lost links) < op_rx.c (frames from the
 * transport, activation).
 */
#ifndef CCL_OP_INT_H
#define CCL_OP_INT_H

#include "engine.h"

/* A frame that arrived before its op was posted here. */
struct ccl__early {
    struct ccl__early *next;
    int peer;
    ccl__hdr h;
    uint8_t *data;
};

/* A DONE that arrived before its op was posted here (p2p: of a recv). */
struct ccl__early_done {
    struct ccl__early_done *next;
    uint64_t tag;
    int peer;
    int p2p; /* the kind of op it is for (CCL__P2P_*), 0: a collective */
};

/* A tag aborted by a peer before it was posted here. */
struct ccl__aborted {
    struct ccl__aborted *next;
    uint64_t tag;
    int peer; /* p2p: the sender; -1 for collectives */
    int p2p;  /* the kind of op it is for (CCL__P2P_*), 0: a collective */
    int code;
    char msg[CCL_MAX_ERRMSG + 32];
};

/* Messages counted per (peer, user tag) in each direction: the k-th send
 * to a peer with a tag meets the k-th recv from us with that tag. */
struct ccl__p2p_seq {
    struct ccl__p2p_seq *next;
    int peer;
    uint32_t utag;
    uint32_t tx, rx;
};

/* op_p2p.c */
enum {
    CCL__P2P_FOR_OP = 1, /* a frame of op's message */
    CCL__P2P_MATCHED,    /* ... which it has just been matched with */
    CCL__P2P_EARLY,      /* of a message no recv has taken yet: keep it */
    CCL__P2P_STALE       /* of a message whose recv ended: drop it */
};
/* Numbers an activated send or recv (a recv from any source only if a
 * kept message is next in line).  CCL_OK or CCL_ERR_NOMEM. */
int ccl__p2p_number(ccl__engine *e, ccl_op *op);
/* Finds the op a p2p DATA frame from peer belongs to (*out), matching an
 * unmatched recv from any source if it is next in line; one of the codes
 * above, or -CCL_ERR_NOMEM. */
int ccl__p2p_route(ccl__engine *e, int peer, const ccl__hdr *h, ccl_op **out);

/* op_confirm.c (the third stage of agreement; see there) */
enum {
    CCL__OUTCOME_NOT_POSTED,
    CCL__OUTCOME_RUNNING,
    CCL__OUTCOME_SUCCEEDED,
    CCL__OUTCOME_FAILED,
    CCL__OUTCOME_UNKNOWN /* a failure could not be recorded (memory) */
};
/* The number of ranks lost in this epoch: names the set, which only grows. */
uint32_t ccl__confirm_round_of(const ccl__engine *e);
/* Remembers that collective tag failed here (CCL_ERR_NOMEM: unrecorded). */
int ccl__confirm_note_failed(ccl__engine *e, uint64_t tag);
/* How collective tag of this epoch stands here. */
int ccl__confirm_outcome(const ccl__engine *e, uint64_t tag);
/* Queues CONFIRM of (tag, round) to peer. */
int ccl__confirm_send(ccl__engine *e, int peer, uint64_t tag, uint32_t round);
/* Starts round `round` of an uncertain op: QUERY to every peer still in. */
int ccl__confirm_query(ccl_op *op, uint32_t round);
/* A QUERY for an op not posted here yet, and taking those into the op
 * when it is; the op owes peer the answer to round. */
int ccl__confirm_keep_early(ccl__engine *e, int peer, uint64_t tag, uint32_t round);
int ccl__confirm_take_early(ccl__engine *e, ccl_op *op);
int ccl__confirm_owe(ccl_op *op, int peer, uint32_t round);
/* Frees what the epoch kept. */
void ccl__confirm_forget(ccl__engine *e);

/* op_confirm_rx.c */
/* A link to peer failed, or we take the peer for lost on another's word. */
void ccl__engine_link_lost(ccl__engine *e, int peer, int code, const char *why);
void ccl__rx_query(ccl__engine *e, int peer, const ccl__hdr *h, const uint8_t *map);
void ccl__rx_confirm(ccl__engine *e, int peer, const ccl__hdr *h);

/* op_input.c */
void *ccl__buf_get(ccl__engine *e, size_t len, size_t *got);
void ccl__op_buffers_put(ccl_op *op);
void ccl__op_restore_input(ccl_op *op);

/* op_state.c */
void ccl__op_check_done(ccl_op *op);
void ccl__op_fail_quiet(ccl_op *op, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
ccl_op *ccl__engine_find(ccl__engine *e, uint64_t tag);
/* The send or recv (kind) of the message tag exchanged with peer: a
 * rank's send to a peer and its recv from it may share a tag. */
ccl_op *ccl__engine_find_p2p(ccl__engine *e, int kind, int peer, uint64_t tag);
/* The counters of (peer, utag), created at 0; NULL without memory. */
ccl__p2p_seq *ccl__p2p_seq_of(ccl__engine *e, int peer, uint32_t utag);
void ccl__op_probe(ccl_op *op);
void ccl__engine_peer_lost(ccl__engine *e, int peer, int code, const char *msg,
                           uint64_t from_tag, int notify);
int ccl__abort_code(int theirs);
void ccl__engine_forget_epoch(ccl__engine *e);

#endif
