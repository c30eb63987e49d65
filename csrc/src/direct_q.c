/*
 * direct_q.c - quantized direct all-reduce of f32 data: direct_ar.c's
 * reduce-scatter and all-gather straight between every pair of ranks,
 * every unit encoded on the wire (quant.h, quant_op.c).
 *
 * The buffer is cut into N segments as the ring cuts it; rank r owns
 * segment r, cut into units from the segment's start.  The unit size
 * comes from the op's count and the group's size alone (unit_elems), so
 * every rank cuts alike whatever its chunk_bytes.
 *
 *   Step 0: rank r encodes segment p of its input for every rank p != r
 *   and sends it unit by unit.  Each arriving unit of its own segment is
 *   decoded and added to its own input there, in f32, in a fixed order:
 *   its own input first, then the others in rank order.  A unit that
 *   arrives before its turn is kept, encoded, until the ones before it
 *   are in (a reorder buffer: no float scratch).
 *   When a unit is in from every other rank, rank r finishes it (AVG),
 *   encodes it once, replaces its own copy with the decoded bytes, and
 *   sends those bytes to every other rank: step 1, which they decode into
 *   place.
 *
 * So the all-gather of the first units overlaps the reduce-scatter of the
 * later ones, every rank decodes the owner's bytes (bit-identical
 * results), and a retry gives the same bits whatever the arrival order.
 * Against the quantized ring: two hops where it takes 2(N-1), the same
 * bytes per rank, and each input is encoded once (the ring encodes a
 * growing partial sum at each of N-1 hops), so the error is one encoding
 * of each input plus one of the result, as in the star.  The price: N-1
 * streams out of every rank at once.
 *
 * Stochastic rounding (a nonzero seed): the owner's encoding of the
 * result draws from (seed, element), like the other algorithms; a rank's
 * encoding of its own input draws from a seed mixed with its rank, so
 * that the rounding errors of different inputs are independent and
 * cancel in the sum instead of adding up.
 *
 * Every (peer, step) carries at least one frame, an empty one for an
 * empty segment (count below N).
 */
#include "algos.h"
#include "quant.h"
#include "reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* op->peer_rx: elements received from each peer at step 0 and step 1,
 * whether that peer's step is complete, the peers whose step 0 is, and
 * per unit of this rank's segment how many senders were added to it
 * (FINISHED once it was reduced and sent on). */
#define RX(op, step, p) ((op)->peer_rx[(size_t)(step) * (op)->size + (p)])
#define DONE(op, step, p) ((op)->peer_rx[(2 + (size_t)(step)) * (op)->size + (p)])
#define STEP0_DONE(op) ((op)->peer_rx[4 * (size_t)(op)->size])
#define ADDED(op, k) ((op)->peer_rx[4 * (size_t)(op)->size + 1 + (k)])
#define FINISHED UINT64_MAX

/* Elements per unit: an eighth of a segment, between 16 Ki and 256 Ki
 * elements, a multiple of 256 (so of every block size up to 256) - the
 * same on every rank. */
static uint64_t unit_elems(const ccl_op *op)
{
    uint64_t u = op->count / (8 * (uint64_t)op->size);
    u = u < 16384 ? 16384 : u > 262144 ? 262144 : u;
    return (u + 255) / 256 * 256;
}

/* Segment k in elements. */
static void seg(const ccl_op *op, int k, uint64_t *first, uint64_t *n)
{
    uint64_t off, len;
    ccl__ring_segment(op, op->size, k, &off, &len);
    *first = off / 4;
    *n = len / 4;
}

/* Unit k of a segment [sf, sf + sn): first element and count. */
static void unit_of(const ccl_op *op, uint64_t sf, uint64_t sn, uint64_t k, uint64_t *e,
                    uint64_t *m)
{
    uint64_t u = unit_elems(op);
    *e = sf + k * u;
    *m = sf + sn - *e < u ? sf + sn - *e : u;
}

/* The peer whose contribution is added i-th (the ranks but this one, in
 * order), and a peer's place in that order. */
static int nth_peer(const ccl_op *op, uint64_t i)
{
    return (int)i < op->rank ? (int)i : (int)i + 1;
}

static size_t place(const ccl_op *op, int p)
{
    return (size_t)(p < op->rank ? p : p - 1);
}

/* The seed of this rank's encodings of its own input (see above). */
static uint64_t input_seed(const ccl_op *op)
{
    if (!op->qseed)
        return 0;
    uint64_t s = op->qseed ^ ((uint64_t)(op->rank + 1) * UINT64_C(0xd1b54a32d192ed03));
    return s ? s : 1;
}

/* Bytes one full unit's frame payload takes. */
static size_t unit_wire(const ccl_op *op)
{
    return 4 + ccl__quant_size(op->qfmt, unit_elems(op), op->qblock);
}

/* A unit that arrived before its turn waits in op->qunits (freed with
 * the op if it fails) under this tag, encoded, as received. */
static int held_tag(int peer)
{
    return -2 - peer;
}

static int dq_start(ccl_op *op)
{
    int n = op->size, me = op->rank, rc = ccl__quant_begin(op, 0);
    if (rc)
        return rc < 0 ? -1 : 0;
    uint64_t mf, mn, u = unit_elems(op);
    seg(op, me, &mf, &mn);
    uint64_t units = (mn + u - 1) / u;
    op->peer_rx = calloc(4 * (size_t)n + 1 + units, sizeof *op->peer_rx);
    if (!op->peer_rx) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return -1;
    }
    /* The encoded result of this rank's segment, unit k at k times a
     * full unit's bytes (scratch is recycled between ops): sent from
     * there to every peer. */
    if (mn && !ccl__op_scratch(op, units * unit_wire(op)))
        return -1;
    op->frames_left = (uint32_t)(2 * (n - 1));
    /* Step 0, starting with the next rank so that the ranks do not all
     * send to rank 0 first. */
    uint64_t seed = input_seed(op);
    for (int j = 1; j < n; j++) {
        int p = (me + j) % n;
        uint64_t pf, pn, e, m;
        seg(op, p, &pf, &pn);
        if (pn == 0 && ccl__op_send(op, p, 0, 0, NULL, 0))
            return -1;
        for (uint64_t k = 0; k * u < pn; k++) {
            unit_of(op, pf, pn, k, &e, &m);
            uint32_t len;
            uint8_t *b = ccl__quant_unit(op, e, m, seed, &len);
            if (!b || ccl__op_send_owned(op, p, 0, e * 4, b, len))
                return -1;
        }
    }
    return 0;
}

/* Adds the contributions to unit k that are next in order and here. */
static void add_in_order(ccl_op *op, uint64_t k)
{
    uint64_t sf, sn, e, m;
    struct ccl__qunit q;
    seg(op, op->rank, &sf, &sn);
    unit_of(op, sf, sn, k, &e, &m);
    while (ADDED(op, k) < (uint64_t)(op->size - 1) &&
           ccl__qunit_take(op, held_tag(nth_peer(op, ADDED(op, k))), e, &q) == 0) {
        ccl__quant_decode_add(op->qfmt, q.bytes + 4, m, op->qblock, (float *)op->buf + e);
        free(q.bytes);
        ADDED(op, k)++;
    }
}

static void dq_consume(const ccl__sink *s, const uint8_t *src, size_t off, size_t len)
{
    ccl_op *op = s->arg;
    if (op->qbad)
        return; /* the op fails at this frame's end */
    int peer = s->from / 2, step = s->from % 2;
    uint64_t n = len >= 4 ? ccl__get_u32(src) : 0, first = s->where, sf, sn, e, m;
    seg(op, step == 0 ? op->rank : peer, &sf, &sn);
    /* Every unit is on the grid (on_header checked that it starts in
     * the segment). */
    uint64_t k = (first - sf) / unit_elems(op);
    unit_of(op, sf, sn, k, &e, &m);
    if (len < 4 || n != m || first != e ||
        4 + ccl__quant_size(op->qfmt, n, op->qblock) != len) {
        op->qbad = 1;
        return;
    }
    if (!ccl__qunit_add(op, s->from, first, n))
        return;
    if (step == 1) {
        /* The owner's result, on this rank's copy of its segment, whose
         * input was encoded at the start and is no longer read (but is
         * saved first, as every unit is before its first write). */
        if (ccl__op_save_region(op, first * 4, n * 4)) {
            op->qbad = 2;
            return;
        }
        ccl__quant_decode(op->qfmt, src + 4, n, op->qblock, (float *)op->buf + first);
        return;
    }
    size_t i = place(op, peer);
    struct ccl__qunit dup;
    if (i < ADDED(op, k) || ccl__qunit_take(op, held_tag(peer), first, &dup) == 0) {
        if (i >= ADDED(op, k))
            free(dup.bytes);
        op->qbad = 1; /* this unit twice */
        return;
    }
    if (i == ADDED(op, k)) {
        /* The first addition to a unit is always this one (the first in
         * order is never held): save the unit's input before it. */
        if (i == 0 && ccl__op_save_region(op, first * 4, n * 4)) {
            op->qbad = 2;
            return;
        }
        ccl__quant_decode_add(op->qfmt, src + 4, n, op->qblock, (float *)op->buf + first);
        ADDED(op, k)++;
    } else {
        uint8_t *b = malloc(len);
        struct ccl__qunit *q = b ? ccl__qunit_add(op, held_tag(peer), first, n) : NULL;
        if (!q) {
            free(b);
            op->qbad = 2;
            return;
        }
        memcpy(b, src, len);
        q->bytes = b;
    }
    add_in_order(op, k);
}

static int dq_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    int step = h->step;
    uint64_t sf, sn;
    if (step != 0 && step != 1)
        goto bad;
    seg(op, step == 0 ? op->rank : peer, &sf, &sn);
    if (DONE(op, step, peer))
        goto bad;
    if (sn == 0) {
        if (h->length != 0)
            goto bad;
        ccl__sink_land(sink, op, NULL); /* an empty segment's one frame */
        return 0;
    }
    if (h->length < 4 || h->offset % 4 || h->offset / 4 < sf || h->offset / 4 >= sf + sn)
        goto bad;
    memset(sink, 0, sizeof *sink);
    sink->kind = CCL_SINK_STAGE;
    sink->unit = h->length; /* the whole unit at once */
    sink->consume = dq_consume;
    sink->owner = op;
    sink->arg = op;
    sink->from = 2 * peer + step;
    sink->where = h->offset / 4;
    return 0;
bad:
    snprintf(op->err, sizeof op->err, "quantized direct all-reduce frame (step %u, byte "
             "%llu, %u bytes) from rank %d not valid at rank %d", h->step,
             (unsigned long long)h->offset, h->length, peer, op->rank);
    return -1;
}

/* Unit k of this rank's segment is summed: finish, encode once, keep the
 * decoded result, send the bytes to every peer. */
static int finish_unit(ccl_op *op, uint64_t k)
{
    int n = op->size, me = op->rank;
    uint64_t sf, sn, e, m;
    seg(op, me, &sf, &sn);
    unit_of(op, sf, sn, k, &e, &m);
    uint8_t *w = op->scratch + k * unit_wire(op);
    if (ccl__quant_finish_keep(op, e, m, w))
        return -1;
    ADDED(op, k) = FINISHED;
    uint32_t len = (uint32_t)(4 + ccl__quant_size(op->qfmt, m, op->qblock));
    for (int j = 1; j < n; j++)
        if (ccl__op_send(op, (me + j) % n, 1, e * 4, w, len))
            return -1;
    return 0;
}

static int dq_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    int n = op->size, me = op->rank, step = h->step;
    uint64_t sf, sn;
    seg(op, step == 0 ? me : peer, &sf, &sn);
    if (sn) {
        struct ccl__qunit q;
        if (op->qbad || ccl__qunit_take(op, 2 * peer + step, h->offset / 4, &q)) {
            ccl__op_fail(op, op->qbad == 2 ? CCL_ERR_NOMEM : CCL_ERR_PROTOCOL,
                         op->qbad == 2 ? "out of memory for a quantized unit"
                                       : "a quantized unit from rank %d does not decode "
                                         "(its count, place or length is wrong, or it "
                                         "came twice)", peer);
            return -1;
        }
        RX(op, step, peer) += q.n; /* units on the grid, each once: never past sn */
        uint64_t k = (q.first - sf) / unit_elems(op);
        if (step == 0 && ADDED(op, k) == (uint64_t)(n - 1) && finish_unit(op, k))
            return -1;
        if (RX(op, step, peer) < sn)
            return 0;
    }
    DONE(op, step, peer) = 1;
    op->frames_left--;
    if (step == 1 || ++STEP0_DONE(op) < (uint64_t)(n - 1) || sn)
        return 0;
    /* This rank's segment is empty: its one frame to every peer. */
    for (int j = 1; j < n; j++)
        if (ccl__op_send(op, (me + j) % n, 1, 0, NULL, 0))
            return -1;
    return 0;
}

const ccl__algo ccl__direct_q_algo = {
    .coll = CCL_COLL_ALLREDUCE_DIRECT_Q, .start = dq_start, .on_header = dq_on_header,
    .on_data = dq_on_data, .block_total = ccl__quant_total};
