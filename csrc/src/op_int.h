/*
 * op_int.h - what the op layer's files share and nothing else sees:
 * op_input.c (memory, saved input) < op_state.c (completion, failure)
 * < op_rx.c (frames from the transport, activation, deadlines).
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

/* A DONE that arrived before its op was posted here. */
struct ccl__early_done {
    struct ccl__early_done *next;
    uint64_t tag;
    int peer;
};

/* A tag aborted by a peer before it was posted here. */
struct ccl__aborted {
    struct ccl__aborted *next;
    uint64_t tag;
    int code;
    char msg[CCL_MAX_ERRMSG + 32];
};

/* op_input.c */
void *ccl__buf_get(ccl__engine *e, size_t len, size_t *got);
void ccl__op_buffers_put(ccl_op *op);
int ccl__op_save_region(ccl_op *op, uint64_t off, uint64_t len);
void ccl__op_restore_input(ccl_op *op);

/* op_state.c */
void ccl__op_check_done(ccl_op *op);
void ccl__op_fail_quiet(ccl_op *op, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
ccl_op *ccl__engine_find(ccl__engine *e, uint64_t tag);
void ccl__op_probe(ccl_op *op);
void ccl__engine_peer_lost(ccl__engine *e, int peer, int code, const char *msg,
                           uint64_t from_tag, int notify);
int ccl__abort_code(int theirs);
void ccl__engine_forget_epoch(ccl__engine *e);

#endif
