/* result.c - names of result codes, dtype sizes, the version string, and
 * the public face of the hash. */
#include "ccl.h"
#include "result.h"
#include "reduce.h"

const char *ccl_strerror(int rc)
{
    switch (rc) {
    case CCL_OK: return "ok";
    case CCL_ERR_INVALID_ARG: return "invalid argument";
    case CCL_ERR_NOMEM: return "out of memory";
    case CCL_ERR_IO: return "i/o error";
    case CCL_ERR_TIMEOUT: return "timed out";
    case CCL_ERR_PEER_LOST: return "peer lost";
    case CCL_ERR_PROTOCOL: return "protocol error";
    case CCL_ERR_VERSION: return "protocol version mismatch";
    case CCL_ERR_MISMATCH: return "ranks disagree about the op";
    case CCL_ERR_ABORTED: return "aborted";
    case CCL_ERR_MASTER_UNREACHABLE: return "master unreachable";
    case CCL_ERR_TOO_FEW_PEERS: return "too few peers";
    case CCL_ERR_CLOSED: return "communicator closed";
    case CCL_ERR_INVALID_USAGE: return "invalid usage";
    case CCL_ERR_AUTH: return "authentication failed";
    case CCL_ERR_REJECTED: return "rejected by the master";
    case CCL_ERR_INTERNAL: return "internal error";
    case CCL_ERR_PENDING: return "still running";
    case CCL_ERR_INTERRUPTED: return "interrupted";
    default: return "unknown error";
    }
}

const char *ccl_version(void)
{
    /* Built from the header's numbers so the two cannot drift. */
#define CCL_STR_(x) #x
#define CCL_STR(x) CCL_STR_(x)
    return CCL_STR(CCL_VERSION_MAJOR) "." CCL_STR(CCL_VERSION_MINOR) "." CCL_STR(
        CCL_VERSION_PATCH);
}

size_t ccl_dtype_size(int dtype)
{
    switch (dtype) {
    case CCL_F32: case CCL_I32: case CCL_U32: return 4;
    case CCL_F64: case CCL_I64: case CCL_U64: return 8;
    case CCL_F16: case CCL_BF16: case CCL_I16: case CCL_U16: return 2;
    case CCL_I8: case CCL_U8: return 1;
    default: return 0;
    }
}

uint64_t ccl_hash64(const void *data, size_t len, uint64_t seed)
{
    return ccl__hash64(data, len, seed);
}

char *ccl__err_out(char *err, size_t *errlen, char scratch[2])
{
    if (!err || !*errlen) {
        err = scratch;
        *errlen = 2;
    }
    err[0] = 0;
    return err;
}
