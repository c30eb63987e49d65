/*
 * api.h - what the public API's files share (op.c, coll_api.c).
 */
#ifndef CCL_API_H
#define CCL_API_H

#include "communicator.h"

/* Sets the communicator's error detail and returns rc. */
int ccl__api_err(ccl_comm *c, int rc, const char *msg);
/* Checks the arguments and makes an op over `blocks` blocks of count
 * elements (the full buffer every frame describes), not posted yet. */
int ccl__op_build(ccl_comm *c, const ccl__algo *algo, const void *send, void *recv,
                  uint64_t count, uint64_t blocks, int dtype, int redop, int root,
                  ccl_op **out);
/* Posts a built op: it is the caller's from here on. */
int ccl__op_submit(ccl_comm *c, ccl_op **out);
/* The blocking forms: wait for the op, keep its detail, free it. */
int ccl__wait_free(int rc, ccl_op *op);

#endif
