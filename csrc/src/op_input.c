/*
 * op_input.c - an op's memory: working buffers recycled between ops, and
 * the intact-input guarantee.  An in-place op that fails must give the
 * caller's input back, so before any region of the caller's buffer is
 * overwritten (reduced into, or landed on where the algorithm says so)
 * its bytes are saved; a failure copies the saved regions back.
 *
 * An op holds two references: the caller's (dropped by ccl_op_free) and
 * the engine's (dropped after completion, in ccl__engine_reap).  The last
 * one frees it.
 */
#include "copy_nt.h"
#include "engine.h"
#include "op_int.h"

#include <stdlib.h>
#include <string.h>

void ccl__op_release(ccl_op *op)
{
    if (__atomic_sub_fetch(&op->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(op->scratch);
        free(op->peer_rx);
        free(op->blocks);
        free(op->wire);
        for (size_t i = 0; i < op->nqunits; i++)
            if (!op->qunits[i].in_arena)
                free(op->qunits[i].bytes);
        free(op->qunits);
        free(op->done_seen);
        free(op->qowed);
        free(op->backup);
        free(op->saved);
        free(op);
    }
}

/* A buffer of at least len bytes, from the spares when one fits. */
void *ccl__buf_get(ccl__engine *e, size_t len, size_t *got)
{
    for (int i = 0; i < 2; i++)
        if (e->spare[i] && e->spare_len[i] >= len) {
            void *p = e->spare[i];
            e->spare[i] = NULL;
            *got = e->spare_len[i];
            return p;
        }
    *got = len;
    return malloc(len ? len : 1);
}

/* Keeps a finished op's buffer as a spare (the larger ones win). */
static void buf_put(ccl__engine *e, void *p, size_t len)
{
    if (!p)
        return;
    int slot = e->spare_len[0] <= e->spare_len[1] ? 0 : 1;
    if (!e->spare[slot] || e->spare_len[slot] < len) {
        free(e->spare[slot]);
        e->spare[slot] = p;
        e->spare_len[slot] = len;
    } else {
        free(p);
    }
}

void ccl__op_buffers_put(ccl_op *op)
{
    buf_put(op->eng, op->backup, op->backup_len);
    op->backup = NULL;
    buf_put(op->eng, op->scratch, op->scratch_len);
    op->scratch = NULL;
}

void ccl__engine_buffers_free(ccl__engine *e)
{
    for (int i = 0; i < 2; i++) {
        free(e->spare[i]);
        e->spare[i] = NULL;
        e->spare_len[i] = 0;
    }
}

/* Records a region as saved.  -1 without memory for the record. */
static int save_record(ccl_op *op, uint64_t off, uint64_t len)
{
    if (op->nsaved == op->capsaved) {
        size_t cap = op->capsaved ? op->capsaved * 2 : 16;
        void *n = realloc(op->saved, cap * sizeof *op->saved);
        if (!n)
            return -1;
        op->saved = n;
        op->capsaved = cap;
    }
    op->saved[op->nsaved][0] = off;
    op->saved[op->nsaved][1] = len;
    op->nsaved++;
    return 0;
}

/* Records a region and copies the caller's bytes of it.  -1 without
 * memory for the record. */
int ccl__op_save_region(ccl_op *op, uint64_t off, uint64_t len)
{
    if (!op->backup || len == 0)
        return 0;
    if (save_record(op, off, len))
        return -1;
    /* Read back only if the op fails: past the cache, which keeps the
     * caller's bytes for the reduction that comes next. */
    ccl__copy_nt(op->backup + off, op->buf + off, len);
    return 0;
}

int ccl__op_save_f32_checked(ccl_op *op, uint64_t first, uint64_t n, uint64_t *bad)
{
    *bad = n;
    if (!op->backup || n == 0)
        return 0;
    if (save_record(op, first * 4, n * 4))
        return -1;
    *bad = ccl__copy_nt_f32_check((float *)(op->backup + first * 4),
                                  (const float *)(op->buf + first * 4), n);
    return 0;
}

void ccl__op_restore_input(ccl_op *op)
{
    for (size_t i = 0; i < op->nsaved; i++)
        memcpy(op->buf + op->saved[i][0], op->backup + op->saved[i][0],
               op->saved[i][1]);
}
