/*
 * sha256.c - SHA-256, HMAC-SHA256 and a constant-time comparison, as
 * declared in sha256.h.
 *
 * The compression function follows FIPS 180-4 section 6.2.2.  Words are
 * assembled from bytes with shifts rather than read through a cast
 * pointer, which keeps the code free of alignment and aliasing trouble and
 * correct on hosts of either byte order; compilers turn the shifts into a
 * single load and byte swap.  The eight rounds of each pass are written
 * out with the working variables rotated by name instead of by assignment,
 * so no round spends time shuffling registers.
 */
#include "sha256.h"

#include <string.h>

/* FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of
 * the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu,
    0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u,
    0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u,
    0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu,
    0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u,
    0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u,
    0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u, 0x1e376c08u,
    0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu,
    0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u};

/* FIPS 180-4 section 5.3.3: the first 32 bits of the fractional parts of
 * the square roots of the first 8 primes. */
static const uint32_t H0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u,
                               0xa54ff53au, 0x510e527fu, 0x9b05688cu,
                               0x1f83d9abu, 0x5be0cd19u};

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    store_be32(p, (uint32_t)(v >> 32));
    store_be32(p + 4, (uint32_t)v);
}

void ccl__wipe(void *p, size_t n)
{
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--)
        *v++ = 0;
}

/* The rotation count is always 1..31 here, so neither shift is by 32. */
#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* FIPS 180-4 section 4.1.2. */
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

/* One round.  Instead of moving every working variable down one place,
 * the caller renames them: the new a lands in h and the new e in d. */
#define ROUND(a, b, c, d, e, f, g, h, i)                                  \
    do {                                                                  \
        uint32_t t1_ = (h) + BSIG1(e) + CH(e, f, g) + K[i] + W[i];        \
        uint32_t t2_ = BSIG0(a) + MAJ(a, b, c);                           \
        (d) += t1_;                                                       \
        (h) = t1_ + t2_;                                                  \
    } while (0)

/* Runs the compression function over nblocks consecutive 64-byte blocks. */
static void compress(uint32_t state[8], const uint8_t *p, size_t nblocks)
{
    uint32_t W[64];
    while (nblocks--) {
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        int i;
        for (i = 0; i < 16; i++)
            W[i] = load_be32(p + 4 * i);
        for (i = 16; i < 64; i++)
            W[i] = SSIG1(W[i - 2]) + W[i - 7] + SSIG0(W[i - 15]) + W[i - 16];
        for (i = 0; i < 64; i += 8) {
            ROUND(a, b, c, d, e, f, g, h, i + 0);
            ROUND(h, a, b, c, d, e, f, g, i + 1);
            ROUND(g, h, a, b, c, d, e, f, i + 2);
            ROUND(f, g, h, a, b, c, d, e, i + 3);
            ROUND(e, f, g, h, a, b, c, d, i + 4);
            ROUND(d, e, f, g, h, a, b, c, i + 5);
            ROUND(c, d, e, f, g, h, a, b, i + 6);
            ROUND(b, c, d, e, f, g, h, a, i + 7);
        }
        state[0] += a;
        state[1] += b;
        state[2] += c;
        state[3] += d;
        state[4] += e;
        state[5] += f;
        state[6] += g;
        state[7] += h;
        p += 64;
    }
    /* The schedule is derived from the message, which may be secret (an
     * HMAC key block passes through here). */
    ccl__wipe(W, sizeof W);
}

/* ------------------------------------------------------------------ */
/* SHA-256 */

void ccl__sha256_init(ccl__sha256_ctx *s)
{
    memcpy(s->h, H0, sizeof s->h);
    s->nbytes = 0;
    s->buflen = 0;
}

void ccl__sha256_update(ccl__sha256_ctx *s, const void *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    /* memcpy from NULL is undefined even for zero bytes, and an empty
     * update is legal, so it returns before touching the pointer. */
    if (len == 0)
        return;
    /* The count is kept in bytes and wraps modulo 2^64; FIPS 180-4 only
     * defines messages shorter than 2^64 bits, well past any real input. */
    s->nbytes += (uint64_t)len;

    if (s->buflen > 0) {
        size_t take = 64 - s->buflen;
        if (take > len)
            take = len;
        memcpy(s->buf + s->buflen, p, take);
        s->buflen += take;
        p += take;
        len -= take;
        if (s->buflen < 64)
            return;
        compress(s->h, s->buf, 1);
        s->buflen = 0;
    }
    /* Whole blocks go straight from the caller's memory, with no copy. */
    if (len >= 64) {
        size_t nblocks = len / 64;
        compress(s->h, p, nblocks);
        p += nblocks * 64;
        len -= nblocks * 64;
    }
    if (len > 0) {
        memcpy(s->buf, p, len);
        s->buflen = len;
    }
}

void ccl__sha256_final(ccl__sha256_ctx *s, uint8_t out[32])
{
    /* The length counts message bits only; the padding below is written
     * straight into buf and never passes through update. */
    uint64_t nbits = s->nbytes << 3;
    size_t n = s->buflen;
    int i;

    /* Padding (FIPS 180-4 section 5.1.1): a 1 bit, zeros up to 56 mod 64,
     * then the bit length as a big-endian 64-bit number.  When the partial
     * block has no room left for the length (56..63 bytes used), the zeros
     * run to the end of it and the length goes in one more block. */
    s->buf[n++] = 0x80;
    if (n > 56) {
        memset(s->buf + n, 0, 64 - n);
        compress(s->h, s->buf, 1);
        n = 0;
    }
    memset(s->buf + n, 0, 56 - n);
    store_be64(s->buf + 56, nbits);
    compress(s->h, s->buf, 1);

    for (i = 0; i < 8; i++)
        store_be32(out + 4 * i, s->h[i]);
    ccl__wipe(s, sizeof *s);
}

void ccl__sha256(const void *data, size_t len, uint8_t out[32])
{
    ccl__sha256_ctx s;
    ccl__sha256_init(&s);
    ccl__sha256_update(&s, data, len);
    ccl__sha256_final(&s, out);
}

/* ------------------------------------------------------------------ */
/* HMAC-SHA256 (RFC 2104): H((K ^ opad) || H((K ^ ipad) || msg)), with K
 * the key zero-padded to one block. */

void ccl__hmac_init(ccl__hmac_ctx *h, const uint8_t *key, size_t keylen)
{
    uint8_t block[64];
    int i;

    memset(block, 0, sizeof block);
    if (keylen > 64)
        ccl__sha256(key, keylen, block);
    else if (keylen > 0)
        memcpy(block, key, keylen);

    for (i = 0; i < 64; i++)
        block[i] ^= 0x36;
    ccl__sha256_init(&h->inner);
    ccl__sha256_update(&h->inner, block, 64);

    /* 0x36 ^ 0x5c turns key ^ ipad into key ^ opad in place. */
    for (i = 0; i < 64; i++)
        block[i] ^= 0x36 ^ 0x5c;
    ccl__sha256_init(&h->outer);
    ccl__sha256_update(&h->outer, block, 64);

    ccl__wipe(block, sizeof block);
}

void ccl__hmac_update(ccl__hmac_ctx *h, const void *msg, size_t msglen)
{
    ccl__sha256_update(&h->inner, msg, msglen);
}

void ccl__hmac_final(ccl__hmac_ctx *h, uint8_t out[32])
{
    uint8_t ihash[32];
    ccl__sha256_final(&h->inner, ihash);
    ccl__sha256_update(&h->outer, ihash, sizeof ihash);
    ccl__sha256_final(&h->outer, out);
    ccl__wipe(ihash, sizeof ihash);
}

void ccl__hmac_sha256(const uint8_t *key, size_t keylen, const void *msg,
                      size_t msglen, uint8_t out[32])
{
    ccl__hmac_ctx h;
    ccl__hmac_init(&h, key, keylen);
    ccl__hmac_update(&h, msg, msglen);
    ccl__hmac_final(&h, out);
}

/* ------------------------------------------------------------------ */

int ccl__ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    /* Every byte pair is visited whatever the data; differences are OR-ed
     * together rather than tested as they appear.  The accumulator is
     * volatile so the compiler cannot prove that once it is nonzero the
     * rest of the loop is pointless and turn it into an early exit. */
    volatile uint8_t diff = 0;
    size_t i;
    for (i = 0; i < n; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    /* diff - 1 underflows to all ones exactly when diff is 0, so bit 8 of
     * it is the answer, found without a data-dependent branch. */
    return (int)(((((unsigned)diff) - 1u) >> 8) & 1u);
}
