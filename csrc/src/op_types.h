/*
 * op_types.h - an op (one collective request) as the op layer and the
 * algorithms see it, and what the op layer offers the algorithms.
 *
 * An algorithm is a table (ccl__algo) the op layer drives: start queues
 * the first frames; on_header validates an arriving DATA header and says,
 * through a sink (xport.h), where its payload goes (landed in place,
 * reduced into place as it arrives, ...); on_data runs when a payload is
 * whole and queues what follows from it.  Algorithms call only the
 * functions below, never the transport or the communicator.
 */
#ifndef CCL_OP_TYPES_H
#define CCL_OP_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "ccl.h"
#include "wire.h"
#include "xport.h"

typedef struct ccl__engine ccl__engine;

typedef struct ccl__algo {
    uint8_t coll; /* enum ccl__coll, travels in every frame */
    int (*start)(ccl_op *op);
    /* Nonzero: protocol violation, with op->err filled. */
    int (*on_header)(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink);
    int (*on_data)(ccl_op *op, int peer, const ccl__hdr *h);
    /* Whether landing (not only reducing) overwrites input that
     * restore_input must save first. */
    int save_on_land;
    /* NULL: every frame's `total` is the op's nbytes.  Else what frames
     * exchanged with peer carry as `total` (sending: ours; else theirs):
     * the size of the block (direct.c), or a bound on encoded units
     * (quantized).  Such ops send no probes. */
    uint64_t (*block_total)(const ccl_op *op, int peer, int sending);
} ccl__algo;

struct ccl_op {
    ccl__engine *eng;
    int refs; /* atomic: the caller's and the engine's */
    ccl_op *next;
    const ccl__algo *algo;
    int dtype, redop, root;
    /* Point-to-point (send/recv): the other rank (-1: a recv from any
     * source not matched yet) and the caller's tag; the wire tag is
     * utag << 32 | the message's sequence number on that (pair, utag). */
    int p2p;    /* CCL__P2P_SEND, CCL__P2P_RECV, or 0 for a collective */
    int peer;
    uint32_t utag;
    size_t esize;
    uint64_t tag;
    uint32_t epoch;
    int rank, size;          /* of the epoch the op runs in */
    /* The epoch's ring (the engine's, valid while the op runs): ring[p]
     * is the rank at position p, NULL for the rank order; ring_pos is
     * this rank's position.  Only the ring algorithms use them. */
    const uint32_t *ring;
    int ring_pos;
    uint32_t unit;           /* pipelining unit in bytes (whole elements) */
    uint64_t star_max_bytes; /* broadcast: direct sends up to this size */
    uint64_t direct_max;     /* all-reduce: the direct algorithm up to this
                                size (0: never), set at activation */
    /* CCL__TUNED_*: star_max_bytes (and, for an all-reduce, the
     * algorithm) come from the epoch's tuning at activation (tune.h). */
    uint8_t tuned;
    const uint8_t *send;     /* the caller's input */
    uint8_t *buf;            /* the buffer the algorithm works in */
    uint8_t *out;            /* the caller's output */
    uint64_t count;          /* elements in the op's full buffer */
    uint64_t nbytes;         /* bytes of the full buffer: checked in every frame */
    uint8_t *scratch;        /* owned working memory (ccl__op_scratch) */
    size_t scratch_len;
    /* In-place ops keep the caller's input bytes of every region they
     * overwrite, to put them back if the op fails (restore_input). */
    uint8_t *backup;
    size_t backup_len;
    uint64_t (*saved)[2]; /* (offset, length) of each saved region */
    size_t nsaved, capsaved;
    uint64_t recv_left;   /* payload bytes still to receive */
    uint64_t send_left;   /* frames still to write to sockets */
    uint32_t frames_left; /* star/broadcast: frames still expected */
    uint64_t *peer_rx;    /* star hub: bytes and frames received per peer */
    /* direct.c: per rank, bytes at [0..n) the offset and [n..2n) the size
     * of the block sent to it, [2n..3n) and [3n..4n) of the block received
     * from it (CCL__NO_BLOCK: no message that way). */
    uint64_t *blocks;
    /* star_q.c: the wire format (ccl_quant), its block and seed, the
     * encoded units (each a u32 element count, then the encoding), and a
     * frame that did not decode. */
    int qfmt, qbad;
    uint32_t qblock;
    uint64_t qseed;
    uint8_t *wire;
    size_t wire_len;
    /* ring_q.c: units decoded but not yet acted on (their element count,
     * and the bytes to forward), and elements still to receive. */
    struct ccl__qunit *qunits;
    size_t nqunits, capqunits;
    uint64_t qleft;
    /* ring_q.c: partial sums go raw (f32) to the next rank, which shares
     * memory with this one (decided once, at the start); with qbad 3, the
     * element of this rank's input that is NaN or infinite. */
    int qraw;
    uint64_t qbad_at;
    /* ring_q.c: bytes of op->scratch handed out to encoded units so far,
     * of the room planned for them (the units this rank encodes or keeps
     * to forward are written there, not malloc'd). */
    size_t qarena_used, qarena_cap;
    uint64_t last_progress_ms;
    int committing; /* complete here; waiting for DONE from the others */
    int probed;     /* described itself to the peers (op_rx.c) */
    uint8_t *done_seen; /* per rank: CCL__SEEN_* bits */
    /* op_confirm.c: the round this op asked its peers to confirm (0: it
     * did not), and per rank the latest round asked of us while not
     * complete here (answered once it is; NULL until one is). */
    uint32_t confirm_round;
    uint32_t *qowed;
    int active; /* in the engine's active list */
    int hold;   /* >0 while an algorithm callback runs: no completion */
    int done;   /* atomic */
    int result;
    char err[256];
    /* stats.h: when it was posted, DATA payload bytes sent and received */
    uint64_t t_post_ns, st_tx, st_rx;
};

enum { CCL__P2P_SEND = 1, CCL__P2P_RECV = 2 };
/* op->tuned */
enum { CCL__TUNED_ALLREDUCE = 1, CCL__TUNED_BCAST = 2 };
enum { CCL__SEEN_DONE = 1, CCL__SEEN_CONFIRM = 2 };

struct ccl__qunit {
    int from;          /* the algorithm's tag of its sender (quant_op.c) */
    uint64_t first, n; /* elements */
    uint8_t *bytes;    /* the unit as received, to forward: owned, or */
    int in_arena;      /* in op->scratch (ring_q.c's arena): not freed */
};
#define CCL__NO_BLOCK UINT64_MAX

static inline int ccl__mod(int a, int n)
{
    a %= n;
    return a < 0 ? a + n : a;
}

/* The rank at ring position p (taken mod the op's size). */
static inline int ccl__ring_rank(const struct ccl_op *op, int p)
{
    p = ccl__mod(p, op->size);
    return op->ring ? (int)op->ring[p] : p;
}

/* Queues one DATA frame of the op to peer (data borrowed until written). */
int ccl__op_send(ccl_op *op, int peer, uint16_t step, uint64_t offset,
                 const uint8_t *data, uint32_t len);
/* The same with a payload that becomes the transport's (freed once
 * written, or when the op fails; also when this fails). */
int ccl__op_send_owned(ccl_op *op, int peer, uint16_t step, uint64_t offset,
                       uint8_t *owned, uint32_t len);
/* 1 when peer runs on this host and frames to it go through shared
 * memory (sock_shm.h): the link is as fast as a memory copy. */
int ccl__op_peer_shares_memory(const ccl_op *op, int peer);
/* Queues bytes [off, off + len) of base to peer in units (nothing if len
 * is 0). */
int ccl__op_send_range(ccl_op *op, int peer, uint16_t step, const uint8_t *base,
                       uint64_t off, uint64_t len);
/* Fails the op (every peer is told), gives the input back. */
void ccl__op_fail(ccl_op *op, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Starts keeping the input of an in-place op (if configured).  Nonzero
 * when memory for it is missing: the op has failed then. */
int ccl__op_keep_input(ccl_op *op);
/* Saves the caller's bytes of a region the op is about to overwrite.
 * Each region once: a second save would keep bytes already changed. */
int ccl__op_save(ccl_op *op, uint64_t off, uint64_t len);
/* The same without failing the op (-1: no memory for the record), for a
 * sink's consume, which must not fail it. */
int ccl__op_save_region(ccl_op *op, uint64_t off, uint64_t len);
/* The same for n floats from element first, checked on the way: *bad is
 * the index (from first) of the first NaN or infinity, n if none (and
 * when there is nothing to save: restore_input off). */
int ccl__op_save_f32_checked(ccl_op *op, uint64_t first, uint64_t n, uint64_t *bad);
/* Working memory of len bytes in op->scratch (failed op on NULL). */
uint8_t *ccl__op_scratch(ccl_op *op, size_t len);

#endif
