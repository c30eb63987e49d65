/*
 * p2p.c - send and recv: one message from one rank to another, sent as
 * frames of at most one unit (at least one frame, an empty one for an
 * empty message, so the receiver knows it arrived).  Which recv a message
 * meets is the op layer's business (op_p2p.c); here the receiver only
 * checks that the frames come from the rank it matched and fit the
 * buffer.  Both sides end with the DONE of two-stage completion, between
 * the two of them only.
 */
#include "algos.h"

#include <stdio.h>

static int send_start(ccl_op *op)
{
    op->buf = (uint8_t *)op->send;
    if (op->nbytes == 0)
        return ccl__op_send(op, op->peer, 0, 0, NULL, 0) ? -1 : 0;
    return ccl__op_send_range(op, op->peer, 0, op->buf, 0, op->nbytes);
}

static int send_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    snprintf(op->err, sizeof op->err, "rank %d sent data for our own send", peer);
    return -1;
}

static int recv_start(ccl_op *op)
{
    op->buf = op->out;
    op->frames_left = 1;
    op->recv_left = op->nbytes;
    return 0;
}

static int recv_on_header(ccl_op *op, int peer, const ccl__hdr *h, ccl__sink *sink)
{
    if (peer != op->peer || h->step != 0 || h->length % op->esize ||
        (h->length == 0 && op->nbytes != 0)) {
        snprintf(op->err, sizeof op->err, "message frame (step %u, %u bytes) from "
                 "rank %d not valid for a recv from rank %d", h->step, h->length,
                 peer, op->peer);
        return -1;
    }
    ccl__sink_land(sink, op, op->buf ? op->buf + h->offset : NULL);
    return 0;
}

static int recv_on_data(ccl_op *op, int peer, const ccl__hdr *h)
{
    if (op->recv_left == 0)
        op->frames_left = 0;
    return 0;
}

const ccl__algo ccl__send_algo = {
    .coll = CCL_COLL_P2P, .start = send_start,
    .on_header = send_on_header};
const ccl__algo ccl__recv_algo = {
    .coll = CCL_COLL_P2P, .start = recv_start,
    .on_header = recv_on_header, .on_data = recv_on_data};
