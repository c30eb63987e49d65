/*
 * op_send.c - what the op layer offers the algorithms besides completion:
 * queueing an op's DATA frames, working memory, saving the input an op
 * is about to overwrite, and the probe an idle op sends.
 */
#include "op_int.h"

#include <stdlib.h>
#include <string.h>

/* A DATA header naming the op (the receiver checks every field of it). */
static void data_header(const ccl_op *op, ccl__hdr *h, int peer, uint16_t step,
                        uint64_t offset)
{
    memset(h, 0, sizeof *h);
    h->type = CCL_FT_DATA;
    h->coll = op->algo->coll;
    h->dtype = (uint8_t)op->dtype;
    h->redop = (uint8_t)op->redop;
    h->tag = op->tag;
    h->offset = offset;
    h->total = op->algo->block_total ? op->algo->block_total(op, peer, 1) : op->nbytes;
    h->step = step;
    h->root = (uint16_t)op->root;
}

int ccl__op_send(ccl_op *op, int peer, uint16_t step, uint64_t offset,
                 const uint8_t *data, uint32_t len)
{
    if (!op->active)
        return CCL_ERR_ABORTED; /* failed inside the caller's callback */
    if (op->eng->lost[peer])
        return CCL_OK; /* it left having completed this op: nothing to give it */
    ccl__hdr h;
    data_header(op, &h, peer, step, offset);
    op->send_left++;
    op->st_tx += len;
    if (ccl__xport_send(op->eng->xp, peer, &h, data, len, op) != CCL_OK) {
        op->send_left--;
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory queueing a frame");
        return CCL_ERR_NOMEM;
    }
    return op->active ? CCL_OK : CCL_ERR_ABORTED;
}

int ccl__op_send_owned(ccl_op *op, int peer, uint16_t step, uint64_t offset,
                       uint8_t *owned, uint32_t len)
{
    if (!op->active || op->eng->lost[peer]) {
        free(owned);
        return op->active ? CCL_OK : CCL_ERR_ABORTED;
    }
    ccl__hdr h;
    data_header(op, &h, peer, step, offset);
    op->send_left++;
    op->st_tx += len;
    if (ccl__xport_send_owned(op->eng->xp, peer, &h, owned, len, op) != CCL_OK) {
        op->send_left--;
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory queueing a frame");
        return CCL_ERR_NOMEM;
    }
    return op->active ? CCL_OK : CCL_ERR_ABORTED;
}

int ccl__op_peer_shares_memory(const ccl_op *op, int peer)
{
    return ccl__xport_shm_conns(op->eng->xp, peer) > 0;
}

int ccl__op_send_range(ccl_op *op, int peer, uint16_t step, const uint8_t *base,
                       uint64_t off, uint64_t len)
{
    while (len > 0) {
        uint32_t l = len < op->unit ? (uint32_t)len : op->unit;
        if (ccl__op_send(op, peer, step, off, base + off, l))
            return -1;
        off += l;
        len -= l;
    }
    return 0;
}

uint8_t *ccl__op_scratch(ccl_op *op, size_t len)
{
    op->scratch = ccl__buf_get(op->eng, len, &op->scratch_len);
    if (!op->scratch)
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory for working space");
    return op->scratch;
}

int ccl__op_keep_input(ccl_op *op)
{
    if (!op->eng->restore_input || op->send != op->out || op->nbytes == 0)
        return 0;
    op->backup = ccl__buf_get(op->eng, op->nbytes, &op->backup_len);
    if (!op->backup) {
        ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory for the input backup");
        return -1;
    }
    return 0;
}

int ccl__op_save(ccl_op *op, uint64_t off, uint64_t len)
{
    if (ccl__op_save_region(op, off, len) == 0)
        return 0;
    ccl__op_fail(op, CCL_ERR_NOMEM, "out of memory saving the input");
    return -1;
}

/* An op that made no progress for a while describes itself to every
 * peer (a DATA probe: no payload), once: a peer running a different op
 * under this tag then fails both with MISMATCH at once, where otherwise
 * each would wait for the other until op_timeout. */
void ccl__op_probe(ccl_op *op)
{
    op->probed = 1;
    if (op->p2p || op->algo->block_total)
        return; /* a mismatch shows in the frames every rank sends */
    ccl__hdr h;
    data_header(op, &h, 0, CCL_STEP_PROBE, 0);
    for (int p = 0; p < op->size && op->active; p++)
        if (p != op->rank && !op->eng->lost[p])
            ccl__xport_send(op->eng->xp, p, &h, NULL, 0, NULL);
}
