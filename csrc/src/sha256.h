/*
 * sha256.h - SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104): pure
 * functions over memory, no I/O.
 *
 * Both come in an incremental form (init, any number of updates, final)
 * and a one-shot form; feeding the same bytes in any split gives the same
 * digest.  The code reads the message byte by byte through shifts, so the
 * result never depends on the host's byte order or on alignment.
 *
 * After final the context holds no key or message material; it must be
 * initialised again before reuse.
 *
 * The context types are named *_ctx because C gives typedef names and
 * function names one namespace: a type called ccl__sha256 could not sit
 * beside the one-shot function ccl__sha256().
 */
#ifndef CCL_SHA256_H
#define CCL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define CCL_SHA256_LEN 32       /* digest bytes */
#define CCL_SHA256_BLOCK_LEN 64 /* block bytes, also HMAC's key block */

typedef struct ccl__sha256_ctx {
    uint32_t h[8];       /* chaining value */
    uint64_t nbytes;     /* message bytes absorbed so far */
    uint8_t buf[64];     /* a partial block waiting for more input */
    size_t buflen;       /* bytes used in buf, always < 64 between calls */
} ccl__sha256_ctx;

void ccl__sha256_init(ccl__sha256_ctx *s);
/* data may be NULL when len is 0. */
void ccl__sha256_update(ccl__sha256_ctx *s, const void *data, size_t len);
void ccl__sha256_final(ccl__sha256_ctx *s, uint8_t out[32]);
void ccl__sha256(const void *data, size_t len, uint8_t out[32]);

/* HMAC-SHA256.  The outer hash is primed with key ^ opad at init, so the
 * key itself is not kept in the context. */
typedef struct ccl__hmac_ctx {
    ccl__sha256_ctx inner; /* has absorbed key ^ ipad, then the message */
    ccl__sha256_ctx outer; /* has absorbed key ^ opad */
} ccl__hmac_ctx;

/* A key longer than 64 bytes is replaced by its SHA-256, as RFC 2104 says.
 * key may be NULL when keylen is 0. */
void ccl__hmac_init(ccl__hmac_ctx *h, const uint8_t *key, size_t keylen);
void ccl__hmac_update(ccl__hmac_ctx *h, const void *msg, size_t msglen);
void ccl__hmac_final(ccl__hmac_ctx *h, uint8_t out[32]);
void ccl__hmac_sha256(const uint8_t *key, size_t keylen, const void *msg,
                      size_t msglen, uint8_t out[32]);

/* Returns 1 if the n bytes at a and b are equal, else 0, in a time that
 * depends only on n.  Use it to check a MAC: memcmp stops at the first
 * difference, so its timing tells an attacker how many leading bytes of a
 * forged tag were right. */
int ccl__ct_equal(const uint8_t *a, const uint8_t *b, size_t n);

/* Overwrites n bytes in a way the compiler may not drop.  A plain memset
 * of a buffer that is never read again is a dead store the optimizer is
 * entitled to remove, which would leave key material behind. */
void ccl__wipe(void *p, size_t n);

#endif
