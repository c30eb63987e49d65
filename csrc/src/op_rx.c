/*
 * op_rx.c - the engine's side of the transport (ccl__engine_xport_ops):
 * frames are matched to ops by (epoch, tag), the op's algorithm says
 * where a DATA payload goes, DONE and ABORT act on the op; frames for
 * tags not posted here yet are kept (up to EARLY_CAP_BYTES, then the
 * transport parks the connection) and handed over when the op is
 * activated; frames of ops that already ended are dropped.  Also the
 * activation of posted ops (the timers are in op_tick.c).
 */
#include "op_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce.h"
#include "sock.h"

/* The size a frame from peer must carry as `total`. */
static uint64_t total_from(const ccl_op *op, int peer)
{
    return op->algo->block_total ? op->algo->block_total(op, peer, 0) : op->nbytes;
}

/* Checks that a DATA frame from peer describes the same op as ours. */
static int frame_matches(const ccl_op *op, int peer, const ccl__hdr *h)
{
    return h->coll == op->algo->coll && h->dtype == op->dtype &&
           h->redop == op->redop && h->total == total_from(op, peer) &&
           h->root == op->root;
}

/* Ranks that issued different ops under one tag made a usage error: the
 * op fails on every rank with MISMATCH naming what differs (this rank's
 * value first), and the communicator stays usable. */
static void mismatch(ccl_op *op, int peer, const ccl__hdr *h)
{
    char d[300];
    size_t n = 0;
    d[0] = 0;
#define DIFF(...) n += (size_t)snprintf(d + n, n < sizeof d ? sizeof d - n : 0, __VA_ARGS__)
    if (h->coll != op->algo->coll)
        DIFF("%s vs %s; ", ccl__coll_name(op->algo->coll), ccl__coll_name(h->coll));
    if (h->dtype != op->dtype)
        DIFF("dtype %s vs %s; ", ccl__dtype_name(op->dtype), ccl__dtype_name(h->dtype));
    if (h->redop != op->redop)
        DIFF("op %s vs %s; ", ccl__redop_name(op->redop), ccl__redop_name(h->redop));
    if (h->total != total_from(op, peer))
        DIFF("%llu vs %llu bytes; ", (unsigned long long)total_from(op, peer),
             (unsigned long long)h->total);
    if (h->root != op->root && (op->algo->coll == CCL_COLL_ALLREDUCE_STAR_Q ||
                                 op->algo->coll == CCL_COLL_ALLREDUCE_RING_Q))
        DIFF("quantization %d/%d vs %u/%u (format/log2 block); ", op->root & 7,
             op->root >> 3, h->root & 7u, (unsigned)h->root >> 3);
    else if (h->root != op->root)
        DIFF("%s root %d vs %u; ", ccl__coll_name(op->algo->coll), op->root, h->root);
#undef DIFF
    n = strlen(d);
    if (n >= 2)
        d[n - 2] = 0; /* the last "; " */
    ccl__op_fail(op, CCL_ERR_MISMATCH,
                 "op %llu differs between this rank (%d) and rank %d: %s "
                 "(every rank must issue the same collectives in the same order)",
                 (unsigned long long)op->tag, op->rank, peer, d);
}

/* Runs the algorithm's on_data.  The op cannot complete while the
 * callback is still queueing frames (a first frame written at once must
 * not end the op before the rest are queued), so completion is checked
 * afterwards. */
static void call_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    /* Saturating: algorithms whose payload is not the op's bytes
     * (quantized) count their progress themselves and keep this at 0. */
    op->recv_left -= h->length < op->recv_left ? h->length : op->recv_left;
    op->st_rx += h->length;
    op->last_progress_ms = ccl__now_ms();
    op->hold++;
    int rc = op->algo->on_data(op, peer, h);
    op->hold--;
    if (rc == 0)
        ccl__op_check_done(op);
}

/* Asks the op's algorithm for the sink of a DATA frame and saves the
 * input under it.  Nonzero: the op failed (and the frame is dropped);
 * *violation says whether the peer broke the protocol. */
static int place(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink,
                 int *violation)
{
    *violation = 0;
    if (!frame_matches(op, peer, h)) {
        mismatch(op, peer, h);
        return -1;
    }
    if (op->algo->on_header(op, peer, h, sink)) {
        char why[sizeof op->err]; /* vsnprintf's source must not be its target */
        memcpy(why, op->err, sizeof why);
        ccl__op_fail(op, CCL_ERR_PROTOCOL, "%s", why);
        *violation = 1;
        return -1;
    }
    /* Save the input under the bytes about to be written: reduced into,
     * or landed on where the algorithm asks (a ring lands only in regions
     * it already saved while reducing). */
    if (!op->backup || (sink->kind == CCL_SINK_LAND && !op->algo->save_on_land))
        return 0;
    if (sink->dst < op->buf || sink->dst >= op->buf + op->nbytes)
        return 0; /* not the caller's buffer (a hub's staging slot) */
    return ccl__op_save(op, (uint64_t)(sink->dst - op->buf), h->length);
}

/* Delivers a complete DATA payload that was kept before its op existed. */
static void deliver_early(ccl_op *op, ccl__early *x)
{
    ccl__sink sink;
    memset(&sink, 0, sizeof sink);
    int violation;
    if (place(op, x->peer, &x->h, &sink, &violation))
        return;
    if (x->h.length && sink.kind == CCL_SINK_LAND)
        memcpy(sink.dst, x->data, x->h.length);
    else if (x->h.length && sink.kind == CCL_SINK_STAGE)
        sink.consume(&sink, x->data, 0, x->h.length);
    call_on_data(op, x->peer, &x->h);
}

static void early_push(ccl__engine *e, ccl__early *x)
{
    x->next = NULL;
    if (e->early_tail)
        e->early_tail->next = x;
    else
        e->early_head = x;
    e->early_tail = x;
}

/* Whether a kept frame is for this tag: a collective's (src -1), or a
 * message from src (point-to-point tags are a space of their own). */
static int early_for(const ccl__early *x, int src, uint64_t tag)
{
    if (x->h.tag != tag)
        return 0;
    return src < 0 ? x->h.coll != CCL_COLL_P2P
                   : x->h.coll == CCL_COLL_P2P && x->peer == src;
}

/* Takes the early frames of (src, tag) out of the list, delivering them
 * to op when it is given and still running. */
static void take_early(ccl__engine *e, int src, uint64_t tag, ccl_op *op)
{
    ccl__early **xp = &e->early_head, *prev = NULL;
    while (*xp) {
        ccl__early *x = *xp;
        if (!early_for(x, src, tag)) {
            prev = x;
            xp = &x->next;
            continue;
        }
        *xp = x->next;
        if (e->early_tail == x)
            e->early_tail = prev;
        e->early_bytes -= x->h.length;
        if (op && op->active)
            deliver_early(op, x);
        free(x->data);
        free(x);
    }
}

/* An early frame: the peer is ahead of us.  Keep the payload, or stop
 * reading this connection if too much is kept already. */
static void keep_early(ccl__engine *e, const ccl__hdr *h, ccl__sink *sink)
{
    if (e->early_bytes + h->length > EARLY_CAP_BYTES && !e->force_early) {
        sink->kind = CCL_SINK_PARK;
        return;
    }
    e->early_bytes += h->length;
    sink->kind = CCL_SINK_KEEP;
}

static void take_early_dones(ccl__engine *e, ccl_op *op);
static int refuse_start(ccl__engine *e, ccl_op *op);

/* A recv from any source was just matched with a message from op->peer:
 * what came for that message before now belongs to it. */
static void matched(ccl__engine *e, ccl_op *op)
{
    take_early_dones(e, op);
    if (refuse_start(e, op))
        return;
    take_early(e, op->peer, op->tag, op);
}

/* The op a frame acts on: a collective by its tag; a point-to-point
 * message through op_p2p.c.  NULL: keep it (sink set), or drop it. */
static ccl_op *frame_op(ccl__engine *e, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    if (h->coll != CCL_COLL_P2P) {
        if (h->tag >= e->activated_upto) {
            if (h->step != CCL_STEP_PROBE) /* a probe from ahead: ignore */
                keep_early(e, h, sink);
            return NULL;
        }
        return ccl__engine_find(e, h->tag); /* NULL: it ended here already */
    }
    ccl_op *op = NULL;
    switch (ccl__p2p_route(e, peer, h, &op)) {
    case CCL__P2P_FOR_OP:
        return op;
    case CCL__P2P_MATCHED:
        matched(e, op);
        return op->active ? op : NULL;
    case CCL__P2P_EARLY:
        keep_early(e, h, sink);
        return NULL;
    case CCL__P2P_STALE:
        return NULL;
    default:
        ccl__xport_break(e->xp, peer, CCL_ERR_NOMEM, "out of memory matching a message");
        return NULL;
    }
}

static void on_data_header(ccl__engine *e, int peer, const ccl__hdr *h,
                           ccl__sink *sink)
{
    if (h->epoch != e->epoch)
        return; /* an old epoch's frame: drop it */
    ccl_op *op = frame_op(e, peer, h, sink);
    if (!op)
        return;
    if (h->step == CCL_STEP_PROBE) {
        if (!frame_matches(op, peer, h))
            mismatch(op, peer, h);
        return;
    }
    int violation;
    if (place(op, peer, h, sink, &violation)) {
        memset(sink, 0, sizeof *sink);
        if (violation)
            ccl__xport_break(e->xp, peer, CCL_ERR_PROTOCOL, op->err);
    }
}

static void on_header(void *ctx, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    ccl__engine *e = ctx;
    switch (h->type) {
    case CCL_FT_DATA:
        on_data_header(e, peer, h, sink);
        return;
    case CCL_FT_ABORT:
    case CCL_FT_QUERY:
        sink->kind = CCL_SINK_KEEP; /* small: read whole, acted on at the end */
        return;
    case CCL_FT_DONE:
    case CCL_FT_CONFIRM:
        return;
    default:
        ccl__xport_break(e->xp, peer, CCL_ERR_PROTOCOL,
                         "unexpected frame type on a peer connection");
        return;
    }
}

/* Which of our ops a DONE or ABORT is for: 0 a collective; for a message,
 * the other side's op (the frame's step says which side sent it: a send's
 * DONE is for our recv, a recv's for our send).  -1: malformed (the link
 * ends). */
static int p2p_target(ccl__engine *e, int peer, const ccl__hdr *h)
{
    if (h->coll != CCL_COLL_P2P)
        return 0;
    if (h->step == CCL__P2P_SEND)
        return CCL__P2P_RECV;
    if (h->step == CCL__P2P_RECV)
        return CCL__P2P_SEND;
    ccl__xport_break(e->xp, peer, CCL_ERR_PROTOCOL,
                     "a message's DONE or ABORT names no side of it");
    return -1;
}

/* A DONE: the peer completed op tag.  It is never dropped: an op waits
 * for every live peer's DONE, so a lost one would leave this rank to fail
 * an op that succeeded elsewhere.  Without memory to remember it the link
 * to the peer ends instead, a failure the agreement already handles. */
static void rx_done(ccl__engine *e, int peer, const ccl__hdr *h)
{
    if (h->epoch != e->epoch)
        return;
    int p2p = p2p_target(e, peer, h);
    if (p2p < 0)
        return;
    ccl_op *op = p2p ? ccl__engine_find_p2p(e, p2p, peer, h->tag)
                     : ccl__engine_find(e, h->tag);
    if (op) {
        op->done_seen[peer] |= CCL__SEEN_DONE;
        op->last_progress_ms = ccl__now_ms();
        ccl__op_check_done(op);
        return;
    }
    if (!p2p && h->tag < e->activated_upto)
        return; /* the op ended here already */
    ccl__early_done *d = malloc(sizeof *d);
    if (!d) {
        ccl__xport_break(e->xp, peer, CCL_ERR_NOMEM, "out of memory keeping a DONE");
        return;
    }
    d->tag = h->tag;
    d->peer = peer;
    d->p2p = p2p;
    d->next = e->early_done;
    e->early_done = d;
}

static void rx_abort(ccl__engine *e, int peer, const ccl__hdr *h, const uint8_t *msgb)
{
    int code = 0;
    char msg[CCL_MAX_ERRMSG + 1];
    if (ccl__errmsg_decode(msgb, h->length, &code, msg) != 0) {
        ccl__xport_break(e->xp, peer, CCL_ERR_PROTOCOL, "malformed ABORT frame");
        return;
    }
    if (h->epoch != e->epoch)
        return;
    int p2p = p2p_target(e, peer, h);
    if (p2p < 0)
        return;
    ccl_op *op = p2p ? ccl__engine_find_p2p(e, p2p, peer, h->tag)
                     : ccl__engine_find(e, h->tag);
    if (op) {
        ccl__op_fail_quiet(op, ccl__abort_code(code), "aborted by peer %d: %s", peer,
                           msg);
        return;
    }
    if (!p2p && h->tag < e->activated_upto)
        return;
    ccl__aborted *a = calloc(1, sizeof *a);
    if (!a) {
        ccl__xport_break(e->xp, peer, CCL_ERR_NOMEM, "out of memory keeping an ABORT");
        return;
    }
    a->tag = h->tag;
    a->peer = p2p ? peer : -1;
    a->p2p = p2p;
    a->code = code;
    snprintf(a->msg, sizeof a->msg, "peer %d: %s", peer, msg);
    a->next = e->aborted;
    e->aborted = a;
}

/* A kept (early) DATA frame is whole. */
static void rx_kept(ccl__engine *e, int peer, const ccl__hdr *h, uint8_t *data)
{
    ccl__early *x = calloc(1, sizeof *x);
    if (!x) {
        free(data);
        e->early_bytes -= h->length;
        ccl__xport_break(e->xp, peer, CCL_ERR_NOMEM, "out of memory keeping a frame");
        return;
    }
    x->peer = peer;
    x->h = *h;
    x->data = data;
    early_push(e, x);
    if (h->coll == CCL_COLL_P2P) {
        /* A recv may have taken this message while its payload arrived. */
        ccl_op *op = NULL;
        int r = ccl__p2p_route(e, peer, h, &op);
        if (r == CCL__P2P_MATCHED)
            matched(e, op);
        else if (r == CCL__P2P_FOR_OP || r == CCL__P2P_STALE)
            take_early(e, peer, h->tag, r == CCL__P2P_FOR_OP ? op : NULL);
    } else if (h->tag < e->activated_upto) {
        /* Its op was posted while the payload was still arriving. */
        take_early(e, -1, h->tag, ccl__engine_find(e, h->tag));
    }
}

static void on_frame(void *ctx, int peer, const ccl__hdr *h, const ccl__sink *sink,
                     uint8_t *kept)
{
    ccl__engine *e = ctx;
    if (h->type == CCL_FT_ABORT) {
        rx_abort(e, peer, h, kept);
        free(kept);
    } else if (h->type == CCL_FT_QUERY) {
        ccl__rx_query(e, peer, h, kept);
        free(kept);
    } else if (h->type == CCL_FT_CONFIRM) {
        ccl__rx_confirm(e, peer, h);
    } else if (h->type == CCL_FT_DONE) {
        rx_done(e, peer, h);
    } else if (sink->kind == CCL_SINK_KEEP) {
        rx_kept(e, peer, h, kept);
    } else if (sink->kind != CCL_SINK_DISCARD && sink->owner) {
        ccl_op *op = sink->owner;
        if (op->active)
            call_on_data(op, peer, h);
    }
}

static void on_sent(void *ctx, void *cookie)
{
    ccl_op *op = cookie;
    op->send_left--;
    op->last_progress_ms = ccl__now_ms();
    ccl__op_check_done(op);
}

/* A connection failed (op_confirm_rx.c). */
static void on_broken(void *ctx, int peer, int code, const char *why)
{
    ccl__engine_link_lost(ctx, peer, code, why);
}

/* A peer closed its communicator.  Ops it took part in already have all
 * its bytes (they were ahead of the BYE in every stream), so only ops it
 * never reached (tag >= the BYE's tag) fail, and so does every later op:
 * the group is smaller now.  The others are told (ABORT): survivors may
 * differ about such an op, some complete here and waiting for our DONE,
 * others failing it like us, and they must end it alike without waiting
 * for their deadline. */
static void on_bye(void *ctx, int peer, uint64_t tag)
{
    ccl__engine *e = ctx;
    char msg[80];
    snprintf(msg, sizeof msg, "peer %d left the group", peer);
    ccl__engine_mark_left(e, tag, msg);
    ccl__engine_peer_lost(e, peer, CCL_ERR_PEER_LOST, msg, tag, 1);
}

const ccl__xport_ops ccl__engine_xport_ops = {on_header, on_frame, on_sent,
                                              on_broken, on_bye};

/* Whether an op must not start: the epoch is broken or a peer aborted it
 * before it was posted here. */
static int refuse_start(ccl__engine *e, ccl_op *op)
{
    /* After a BYE, collectives the leaver completed still run (a peer
     * ahead of us may have completed them too, and waits for our DONE).
     * A refused op tells the others, whose copy may wait for our DONE:
     * nobody can have succeeded without it. */
    if (e->broken && (e->broken_hard || op->p2p || op->tag >= e->bye_from)) {
        /* Collectives are activated in tag order and the epoch stays
         * broken: this one and every later one fail, which op_confirm.c
         * remembers as one number instead of a tag each. */
        if (!op->p2p && e->broken_hard && op->tag < e->refuse_from)
            e->refuse_from = op->tag;
        ccl__op_fail(op, e->broken, "%s", e->broken_msg);
        return 1;
    }
    int src = op->p2p ? op->peer : -1;
    ccl__aborted **ap = &e->aborted;
    while (*ap && ((*ap)->tag != op->tag || (*ap)->peer != src || (*ap)->p2p != op->p2p))
        ap = &(*ap)->next;
    if (!*ap)
        return 0;
    ccl__aborted *a = *ap;
    *ap = a->next;
    ccl__op_fail_quiet(op, ccl__abort_code(a->code), "aborted by a peer: %s", a->msg);
    free(a);
    return 1;
}

static void take_early_dones(ccl__engine *e, ccl_op *op)
{
    for (ccl__early_done **dp = &e->early_done; *dp;) {
        ccl__early_done *d = *dp;
        if (d->tag == op->tag && d->p2p == op->p2p && (!op->p2p || d->peer == op->peer)) {
            op->done_seen[d->peer] |= CCL__SEEN_DONE;
            *dp = d->next;
            free(d);
        } else {
            dp = &d->next;
        }
    }
}

static void activate(ccl__engine *e, ccl_op *op)
{
    op->next = e->active;
    e->active = op;
    op->active = 1;
    op->rank = e->rank;
    op->size = e->size;
    op->ring = e->ring;
    op->ring_pos = e->ring_pos;
    op->epoch = e->epoch;
    op->last_progress_ms = ccl__now_ms();
    /* Before anything else reads op->algo: an automatic choice takes the
     * thresholds of the epoch the op runs in, which every member of it
     * shares (the GROUP's tuning), so every rank picks the same. */
    if (op->tuned == CCL__TUNED_BCAST)
        op->star_max_bytes = e->tune.bcast_direct_max;
    if (op->tuned == CCL__TUNED_ALLREDUCE) {
        op->star_max_bytes = e->tune.allreduce_star_max;
        op->direct_max = e->tune.allreduce_direct_max;
        if (e->pick)
            op->algo = e->pick(op);
    }
    if (op->p2p) {
        if (op->peer >= e->size) {
            ccl__op_fail_quiet(op, CCL_ERR_INVALID_ARG, "peer %d is not in the group "
                               "of %d", op->peer, e->size);
            return;
        }
        if (ccl__p2p_number(e, op) != CCL_OK) {
            ccl__op_fail_quiet(op, CCL_ERR_NOMEM, "out of memory");
            return;
        }
    } else {
        e->activated_upto = op->tag + 1;
    }
    int src = op->p2p ? op->peer : -1; /* an unmatched recv has no frames yet */
    /* Frames kept under a send's wire tag are the peer's message with the
     * same tag and number: they are for our recv, never this send. */
    int takes_frames = !op->p2p || (op->p2p == CCL__P2P_RECV && src >= 0);
    /* QUERYs that came first: a refused op answers them with its ABORT. */
    if (!op->p2p && ccl__confirm_take_early(e, op) != CCL_OK) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return;
    }
    if (refuse_start(e, op)) {
        if (takes_frames)
            take_early(e, src, op->tag, NULL);
        return;
    }
    op->done_seen = calloc((size_t)e->size, 1);
    if (!op->done_seen) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory");
        return;
    }
    take_early_dones(e, op);
    op->hold++;
    int rc = op->algo->start(op);
    op->hold--;
    if (rc != 0)
        return; /* start failed the op itself */
    if (takes_frames)
        take_early(e, src, op->tag, op);
    ccl__op_check_done(op);
}

void ccl__engine_drain_posts(ccl__engine *e)
{
    pthread_mutex_lock(&e->post_mu);
    ccl_op *list = e->post_head;
    e->post_head = e->post_tail = NULL;
    pthread_mutex_unlock(&e->post_mu);
    if (!list)
        return;
    while (list) {
        ccl_op *op = list;
        list = op->next;
        activate(e, op);
    }
    ccl__xport_unpark_all(e->xp);
}

int ccl__engine_busy(const ccl__engine *e)
{
    return e->active != NULL;
}
