/*
 * mac.c - Poly1305, NHPoly1305 and the frame MAC, as declared in mac.h.
 * over 600 lines: one MAC construction, its portable, SSE2 and AVX2 NH
 * kernels side by side so they can be checked against each other.
 *
 * Poly1305 follows RFC 8439 section 2.5: the accumulator h is kept
 * partly reduced modulo p = 2^130 - 5 between blocks and fully reduced
 * only at the end.  A product term that lands at 2^130 or above is folded
 * back multiplied by 5, since 2^130 = 5 (mod p); with r clamped as the RFC
 * requires, the folded terms fit in the limb arithmetic without overflow.
 *
 * NH follows Linux crypto/nhpoly1305.c (nh_generic) and the Adiantum
 * paper: for each 16-byte unit with little-endian words m0..m3 and each
 * pass j, the sum of pass j grows by (m0 + k0) * (m2 + k2) + (m1 + k1) *
 * (m3 + k3), the additions taken mod 2^32 and the products and sums mod
 * 2^64, where k0..k3 are the key words of group (unit index + j).  The
 * passes share one key shifted by a group each (Toeplitz), so the key is
 * 1024 bytes plus 3 groups.  Because the digest of a chunk is a plain sum
 * over its units, a chunk that arrives in pieces is hashed piece by piece
 * into the same sums.
 *
 * Words are assembled from bytes with shifts, never read through a cast
 * pointer, so the code is free of alignment and aliasing trouble and gives
 * the same answer on hosts of either byte order; compilers turn the shifts
 * into single loads.  The vector NH kernels load 16 or 32 bytes at once,
 * which is the same thing on x86, the only place they are compiled.
 */
#include "mac.h"

#include <string.h>

#include "wire.h"

#if !defined(CCL_MAC_NO_SIMD) && defined(__SSE2__)
#include <emmintrin.h>
#define MAC_HAVE_SSE2 1
#endif

/* AVX2 is compiled for one function only (a target attribute) and used
 * only when the CPU reports it at run time, so the library still runs on
 * any x86-64 and needs no special compiler flags.  Its odd last unit goes
 * through the SSE2 kernel, hence the dependency. */
#if defined(MAC_HAVE_SSE2) && defined(__x86_64__) && \
    (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MAC_HAVE_AVX2 1
#endif

/* ------------------------------------------------------------------ */
/* Helpers */

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* ------------------------------------------------------------------ */
/* Poly1305 core: blocks and the final reduction, in two radixes */

#ifdef CCL_POLY1305_LIMBS64

__extension__ typedef unsigned __int128 u128; /* quiet under -pedantic */

#define M44 ((uint64_t)0xfffffffffff)
#define M42 ((uint64_t)0x3ffffffffff)

static inline uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

static void poly_setkey(ccl__poly1305_ctx *p, const uint8_t r[16])
{
    uint64_t t0 = le64(r), t1 = le64(r + 8);
    /* The masks cut r into 44/44/42-bit limbs and clamp it in the same
     * step: they clear the bits RFC 8439 requires clear (the top four of
     * bytes 3, 7, 11, 15 and the bottom two of bytes 4, 8, 12). */
    p->r[0] = t0 & 0xffc0fffffffull;
    p->r[1] = ((t0 >> 44) | (t1 << 20)) & 0xfffffc0ffffull;
    p->r[2] = (t1 >> 24) & 0x00ffffffc0full;
    p->h[0] = p->h[1] = p->h[2] = 0;
}

/* Absorbs nblocks 16-byte blocks.  full is 1 for whole message blocks,
 * which get the 2^128 bit RFC 8439 appends, and 0 for the final partial
 * block, which the caller has already padded with its 0x01 byte. */
static void poly_blocks(ccl__poly1305_ctx *p, const uint8_t *m,
                        size_t nblocks, int full)
{
    const uint64_t hibit = full ? ((uint64_t)1 << 40) : 0; /* 2^128 in limb 2 */
    const uint64_t r0 = p->r[0], r1 = p->r[1], r2 = p->r[2];
    /* Limb 1 and 2 products that reach 2^132 and up: 2^132 = 4 * 2^130,
     * which is 4 * 5 = 20 (mod p), shifted back into the low limbs. */
    const uint64_t s1 = r1 * 20, s2 = r2 * 20;
    uint64_t h0 = p->h[0], h1 = p->h[1], h2 = p->h[2];

    while (nblocks--) {
        uint64_t t0 = le64(m), t1 = le64(m + 8), c;
        u128 d0, d1, d2;

        h0 += t0 & M44;
        h1 += ((t0 >> 44) | (t1 << 20)) & M44;
        h2 += ((t1 >> 24) & M42) | hibit;

        /* h * r mod p, schoolbook: h0..h2 < 2^45 and r0, r1 < 2^44,
         * r2 < 2^40, s1, s2 < 2^49, so each sum of three products stays
         * below 2^96. */
        d0 = (u128)h0 * r0 + (u128)h1 * s2 + (u128)h2 * s1;
        d1 = (u128)h0 * r1 + (u128)h1 * r0 + (u128)h2 * s2;
        d2 = (u128)h0 * r2 + (u128)h1 * r1 + (u128)h2 * r0;

        /* Carry back into 44/44/42 bits; what leaves limb 2 is a multiple
         * of 2^130 and re-enters limb 0 times 5. */
        c = (uint64_t)(d0 >> 44);
        h0 = (uint64_t)d0 & M44;
        d1 += c;
        c = (uint64_t)(d1 >> 44);
        h1 = (uint64_t)d1 & M44;
        d2 += c;
        c = (uint64_t)(d2 >> 42);
        h2 = (uint64_t)d2 & M42;
        h0 += c * 5;
        c = h0 >> 44;
        h0 &= M44;
        h1 += c;
        m += 16;
    }
    p->h[0] = h0;
    p->h[1] = h1;
    p->h[2] = h2;
}

/* tag = (h mod p + s) mod 2^128. */
static void poly_emit(const ccl__poly1305_ctx *p, uint8_t tag[16])
{
    uint64_t h0 = p->h[0], h1 = p->h[1], h2 = p->h[2];
    uint64_t g0, g1, g2, c, mask, t0, t1;

    /* Two carry passes leave every limb within its width and h < 2p. */
    c = h1 >> 44; h1 &= M44;
    h2 += c;      c = h2 >> 42; h2 &= M42;
    h0 += c * 5;  c = h0 >> 44; h0 &= M44;
    h1 += c;      c = h1 >> 44; h1 &= M44;
    h2 += c;      c = h2 >> 42; h2 &= M42;
    h0 += c * 5;  c = h0 >> 44; h0 &= M44;
    h1 += c;

    /* g = h - p = h + 5 - 2^130.  If that does not borrow, h >= p and g
     * is the reduced value.  The choice is made with a mask, not a branch,
     * so the time does not depend on the secret accumulator. */
    g0 = h0 + 5;  c = g0 >> 44; g0 &= M44;
    g1 = h1 + c;  c = g1 >> 44; g1 &= M44;
    g2 = h2 + c - ((uint64_t)1 << 42);
    mask = (g2 >> 63) - 1; /* all ones if no borrow (take g), else 0 */
    h0 = (h0 & ~mask) | (g0 & mask);
    h1 = (h1 & ~mask) | (g1 & mask);
    h2 = (h2 & ~mask) | (g2 & mask);

    /* + s, keeping the carries; anything past 2^128 is dropped. */
    t0 = le64(p->s);
    t1 = le64(p->s + 8);
    h0 += t0 & M44;                              c = h0 >> 44; h0 &= M44;
    h1 += (((t0 >> 44) | (t1 << 20)) & M44) + c; c = h1 >> 44; h1 &= M44;
    h2 += (t1 >> 24) + c;
    ccl__put_u64(tag, h0 | (h1 << 44));
    ccl__put_u64(tag + 8, (h1 >> 20) | (h2 << 24));
}

#else /* 26-bit limbs for compilers without a 128-bit integer */

#define M26 ((uint32_t)0x3ffffff)

static void poly_setkey(ccl__poly1305_ctx *p, const uint8_t r[16])
{
    /* Each limb starts 26 bits after the previous one: bit 26 is bit 2 of
     * byte 3, bit 52 is bit 4 of byte 6, and so on.  As in the 64-bit
     * code, the masks also clamp. */
    p->r[0] = le32(r) & 0x3ffffff;
    p->r[1] = (le32(r + 3) >> 2) & 0x3ffff03;
    p->r[2] = (le32(r + 6) >> 4) & 0x3ffc0ff;
    p->r[3] = (le32(r + 9) >> 6) & 0x3f03fff;
    p->r[4] = (le32(r + 12) >> 8) & 0x00fffff;
    p->h[0] = p->h[1] = p->h[2] = p->h[3] = p->h[4] = 0;
}

static void poly_blocks(ccl__poly1305_ctx *p, const uint8_t *m,
                        size_t nblocks, int full)
{
    const uint32_t hibit = full ? ((uint32_t)1 << 24) : 0; /* 2^128 in limb 4 */
    const uint32_t r0 = p->r[0], r1 = p->r[1], r2 = p->r[2], r3 = p->r[3],
                   r4 = p->r[4];
    /* Products reaching 2^130 fold back times 5. */
    const uint32_t s1 = r1 * 5, s2 = r2 * 5, s3 = r3 * 5, s4 = r4 * 5;
    uint32_t h0 = p->h[0], h1 = p->h[1], h2 = p->h[2], h3 = p->h[3],
             h4 = p->h[4];

    while (nblocks--) {
        uint64_t d0, d1, d2, d3, d4;
        uint32_t c;

        h0 += le32(m) & M26;
        h1 += (le32(m + 3) >> 2) & M26;
        h2 += (le32(m + 6) >> 4) & M26;
        h3 += (le32(m + 9) >> 6) & M26;
        h4 += (le32(m + 12) >> 8) | hibit;

        d0 = (uint64_t)h0 * r0 + (uint64_t)h1 * s4 + (uint64_t)h2 * s3 +
             (uint64_t)h3 * s2 + (uint64_t)h4 * s1;
        d1 = (uint64_t)h0 * r1 + (uint64_t)h1 * r0 + (uint64_t)h2 * s4 +
             (uint64_t)h3 * s3 + (uint64_t)h4 * s2;
        d2 = (uint64_t)h0 * r2 + (uint64_t)h1 * r1 + (uint64_t)h2 * r0 +
             (uint64_t)h3 * s4 + (uint64_t)h4 * s3;
        d3 = (uint64_t)h0 * r3 + (uint64_t)h1 * r2 + (uint64_t)h2 * r1 +
             (uint64_t)h3 * r0 + (uint64_t)h4 * s4;
        d4 = (uint64_t)h0 * r4 + (uint64_t)h1 * r3 + (uint64_t)h2 * r2 +
             (uint64_t)h3 * r1 + (uint64_t)h4 * r0;

        c = (uint32_t)(d0 >> 26); h0 = (uint32_t)d0 & M26;
        d1 += c; c = (uint32_t)(d1 >> 26); h1 = (uint32_t)d1 & M26;
        d2 += c; c = (uint32_t)(d2 >> 26); h2 = (uint32_t)d2 & M26;
        d3 += c; c = (uint32_t)(d3 >> 26); h3 = (uint32_t)d3 & M26;
        d4 += c; c = (uint32_t)(d4 >> 26); h4 = (uint32_t)d4 & M26;
        h0 += c * 5; c = h0 >> 26; h0 &= M26;
        h1 += c;
        m += 16;
    }
    p->h[0] = h0;
    p->h[1] = h1;
    p->h[2] = h2;
    p->h[3] = h3;
    p->h[4] = h4;
}

static void poly_emit(const ccl__poly1305_ctx *p, uint8_t tag[16])
{
    uint32_t h0 = p->h[0], h1 = p->h[1], h2 = p->h[2], h3 = p->h[3],
             h4 = p->h[4];
    uint32_t g0, g1, g2, g3, g4, c, mask, w[4];
    uint64_t f = 0;
    int i;

    c = h1 >> 26; h1 &= M26;
    h2 += c; c = h2 >> 26; h2 &= M26;
    h3 += c; c = h3 >> 26; h3 &= M26;
    h4 += c; c = h4 >> 26; h4 &= M26;
    h0 += c * 5; c = h0 >> 26; h0 &= M26;
    h1 += c;

    /* g = h - p; keep it when that does not borrow (see the 64-bit code). */
    g0 = h0 + 5; c = g0 >> 26; g0 &= M26;
    g1 = h1 + c; c = g1 >> 26; g1 &= M26;
    g2 = h2 + c; c = g2 >> 26; g2 &= M26;
    g3 = h3 + c; c = g3 >> 26; g3 &= M26;
    g4 = h4 + c - ((uint32_t)1 << 26);
    mask = (g4 >> 31) - 1;
    h0 = (h0 & ~mask) | (g0 & mask);
    h1 = (h1 & ~mask) | (g1 & mask);
    h2 = (h2 & ~mask) | (g2 & mask);
    h3 = (h3 & ~mask) | (g3 & mask);
    h4 = (h4 & ~mask) | (g4 & mask);

    /* Repack the 130 bits into four 32-bit words (the top two bits are
     * dropped: the tag is mod 2^128), then add s with carries. */
    h0 = h0 | (h1 << 26);
    h1 = (h1 >> 6) | (h2 << 20);
    h2 = (h2 >> 12) | (h3 << 14);
    h3 = (h3 >> 18) | (h4 << 8);
    w[0] = h0;
    w[1] = h1;
    w[2] = h2;
    w[3] = h3;
    for (i = 0; i < 4; i++) {
        f += (uint64_t)w[i] + le32(p->s + 4 * i);
        ccl__put_u32(tag + 4 * i, (uint32_t)f);
        f >>= 32;
    }
}

#endif /* CCL_POLY1305_LIMBS64 */

/* ------------------------------------------------------------------ */
/* Poly1305, public */

void ccl__poly1305_init(ccl__poly1305_ctx *p, const uint8_t key[32])
{
    poly_setkey(p, key);
    memcpy(p->s, key + 16, 16);
    p->buflen = 0;
}

void ccl__poly1305_update(ccl__poly1305_ctx *p, const void *m, size_t n)
{
    const uint8_t *in = (const uint8_t *)m;
    /* memcpy from NULL is undefined even for zero bytes. */
    if (n == 0)
        return;
    if (p->buflen > 0) {
        size_t take = 16 - p->buflen;
        if (take > n)
            take = n;
        memcpy(p->buf + p->buflen, in, take);
        p->buflen += take;
        in += take;
        n -= take;
        if (p->buflen < 16)
            return;
        poly_blocks(p, p->buf, 1, 1);
        p->buflen = 0;
    }
    /* Whole blocks go straight from the caller's memory, with no copy. */
    if (n >= 16) {
        size_t nblocks = n / 16;
        poly_blocks(p, in, nblocks, 1);
        in += nblocks * 16;
        n -= nblocks * 16;
    }
    if (n > 0) {
        memcpy(p->buf, in, n);
        p->buflen = n;
    }
}

void ccl__poly1305_final(ccl__poly1305_ctx *p, uint8_t tag[16])
{
    /* A last partial block gets its 0x01 byte right after the message
     * bytes and zeros above, which is the number plus 2^(8 * length). */
    if (p->buflen > 0) {
        p->buf[p->buflen] = 1;
        memset(p->buf + p->buflen + 1, 0, 16 - p->buflen - 1);
        poly_blocks(p, p->buf, 1, 0);
    }
    poly_emit(p, tag);
    ccl__wipe(p, sizeof *p);
}

void ccl__poly1305(const uint8_t key[32], const void *m, size_t n,
                   uint8_t tag[16])
{
    ccl__poly1305_ctx p;
    ccl__poly1305_init(&p, key);
    ccl__poly1305_update(&p, m, n);
    ccl__poly1305_final(&p, tag);
}

/* ------------------------------------------------------------------ */
/* NH kernels.  Each adds the NH digest of `units` 16-byte units to sums;
 * key points at the key group of the first unit.  Key groups are stored
 * as (k0, k2, k1, k3), see mac.h. */

static void nh_portable(const uint32_t *key, const uint8_t *m, size_t units,
                        uint64_t sums[4])
{
    uint64_t s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];

    while (units--) {
        uint32_t m0 = le32(m), m1 = le32(m + 4), m2 = le32(m + 8),
                 m3 = le32(m + 12);
        /* The casts keep each sum of a message word and a key word at 32
         * bits before the 32x32->64-bit multiply, as NH defines it. */
#define NH_PASS(s, k)                                                     \
    s += (uint64_t)(uint32_t)(m0 + (k)[0]) * (uint32_t)(m2 + (k)[1]) +    \
         (uint64_t)(uint32_t)(m1 + (k)[2]) * (uint32_t)(m3 + (k)[3])
        NH_PASS(s0, key);
        NH_PASS(s1, key + 4);
        NH_PASS(s2, key + 8);
        NH_PASS(s3, key + 12);
#undef NH_PASS
        key += 4;
        m += 16;
    }
    sums[0] = s0;
    sums[1] = s1;
    sums[2] = s2;
    sums[3] = s3;
}

#ifdef MAC_HAVE_SSE2
/* One 128-bit register holds a unit's four words, shuffled to (m0, m2, m1,
 * m3) to match the key's pair order.  After adding a key group, pmuludq of
 * the register with itself shifted right by 32 bits multiplies words 0*1
 * and 2*3 of it, that is (m0+k0)(m2+k2) and (m1+k1)(m3+k3), as two 64-bit
 * lanes; each pass keeps its own two-lane accumulator, folded at the end.
 * x86 is little-endian, so the unaligned 16-byte load reads the same words
 * as le32 would. */
static void nh_sse2(const uint32_t *key, const uint8_t *m, size_t units,
                    uint64_t sums[4])
{
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0, t;
    uint64_t lane[2];

    while (units--) {
        __m128i x = _mm_shuffle_epi32(
            _mm_loadu_si128((const __m128i *)(const void *)m),
            _MM_SHUFFLE(3, 1, 2, 0));
#define NH_PASS(a, k)                                                     \
    t = _mm_loadu_si128((const __m128i *)(const void *)(k));              \
    t = _mm_add_epi32(x, t);                                              \
    a = _mm_add_epi64(a, _mm_mul_epu32(t, _mm_srli_epi64(t, 32)))
        NH_PASS(a0, key);
        NH_PASS(a1, key + 4);
        NH_PASS(a2, key + 8);
        NH_PASS(a3, key + 12);
#undef NH_PASS
        key += 4;
        m += 16;
    }
#define NH_FOLD(i, a)                                                     \
    _mm_storeu_si128((__m128i *)(void *)lane, a);                         \
    sums[i] += lane[0] + lane[1]
    NH_FOLD(0, a0);
    NH_FOLD(1, a1);
    NH_FOLD(2, a2);
    NH_FOLD(3, a3);
#undef NH_FOLD
}
#endif

#ifdef MAC_HAVE_AVX2
/* The SSE2 scheme on two units at once: the low 128-bit half works on
 * unit i and the high half on unit i+1.  Pass j needs key groups i+j and
 * i+1+j, which are adjacent in memory, so one unaligned 32-byte load
 * fetches both.  An odd last unit goes through the SSE2 kernel. */
__attribute__((target("avx2"))) static void
nh_avx2(const uint32_t *key, const uint8_t *m, size_t units, uint64_t sums[4])
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, t;
    uint64_t lane[4];

    while (units >= 2) {
        __m256i x = _mm256_shuffle_epi32(
            _mm256_loadu_si256((const __m256i *)(const void *)m),
            _MM_SHUFFLE(3, 1, 2, 0));
#define NH_PASS(a, k)                                                     \
    t = _mm256_loadu_si256((const __m256i *)(const void *)(k));           \
    t = _mm256_add_epi32(x, t);                                           \
    a = _mm256_add_epi64(a, _mm256_mul_epu32(t, _mm256_srli_epi64(t, 32)))
        NH_PASS(a0, key);
        NH_PASS(a1, key + 4);
        NH_PASS(a2, key + 8);
        NH_PASS(a3, key + 12);
#undef NH_PASS
        key += 8;
        m += 32;
        units -= 2;
    }
#define NH_FOLD(i, a)                                                     \
    _mm256_storeu_si256((__m256i *)(void *)lane, a);                      \
    sums[i] += lane[0] + lane[1] + lane[2] + lane[3]
    NH_FOLD(0, a0);
    NH_FOLD(1, a1);
    NH_FOLD(2, a2);
    NH_FOLD(3, a3);
#undef NH_FOLD
    /* Leaving 256-bit code before running 128-bit code avoids the
     * penalty some CPUs charge for mixing the two. */
    _mm256_zeroupper();
    if (units)
        nh_sse2(key, m, units, sums);
}
#endif

int ccl__nh_impl_available(int impl)
{
    switch (impl) {
    case CCL_NH_AUTO:
    case CCL_NH_PORTABLE:
        return 1;
#ifdef MAC_HAVE_SSE2
    case CCL_NH_SSE2:
        return 1;
#endif
#ifdef MAC_HAVE_AVX2
    case CCL_NH_AVX2:
        /* libgcc's answer also requires the OS to save the 256-bit
         * registers (XGETBV), not just the CPU to have AVX2. */
        return __builtin_cpu_supports("avx2") ? 1 : 0;
#endif
    default:
        return 0;
    }
}

static ccl__nh_fn nh_kernel(int impl)
{
    if (impl == CCL_NH_AUTO) {
        if (ccl__nh_impl_available(CCL_NH_AVX2))
            impl = CCL_NH_AVX2;
        else if (ccl__nh_impl_available(CCL_NH_SSE2))
            impl = CCL_NH_SSE2;
        else
            impl = CCL_NH_PORTABLE;
    }
    switch (impl) {
#ifdef MAC_HAVE_AVX2
    case CCL_NH_AVX2:
        return nh_avx2;
#endif
#ifdef MAC_HAVE_SSE2
    case CCL_NH_SSE2:
        return nh_sse2;
#endif
    default:
        return nh_portable;
    }
}

/* ------------------------------------------------------------------ */
/* NHPoly1305 */

void ccl__nhpoly1305_setkey(ccl__nhpoly1305_key *k,
                            const uint8_t raw[CCL_NHPOLY1305_KEY_LEN])
{
    const uint8_t *nk = raw + 16;
    int g;

    memcpy(k->poly_r, raw, 16);
    for (g = 0; g < CCL_NH_KEY_WORDS / 4; g++) {
        const uint8_t *p = nk + 16 * g;
        k->nh[4 * g + 0] = le32(p);
        k->nh[4 * g + 1] = le32(p + 8);
        k->nh[4 * g + 2] = le32(p + 4);
        k->nh[4 * g + 3] = le32(p + 12);
    }
}

void ccl__nhpoly1305_init(ccl__nhpoly1305_ctx *c, const ccl__nhpoly1305_key *k)
{
    /* The polynomial part is Poly1305 with s = 0: the Linux digest is the
     * fully reduced accumulator, which is what Poly1305 emits when s is 0.
     * The frame MAC puts its pad into s afterwards. */
    poly_setkey(&c->poly, k->poly_r);
    memset(c->poly.s, 0, sizeof c->poly.s);
    c->poly.buflen = 0;
    c->key = k;
    c->nh = nh_kernel(CCL_NH_AUTO);
    memset(c->sums, 0, sizeof c->sums);
    c->chunk_done = 0;
    c->buflen = 0;
    c->nbytes = 0;
}

void ccl__nhpoly1305_set_impl(ccl__nhpoly1305_ctx *c, int impl)
{
    if (ccl__nh_impl_available(impl))
        c->nh = nh_kernel(impl);
}

/* Feeds the digest of the finished (or, at the end, partial) chunk to the
 * polynomial as two 16-byte blocks and starts a new chunk. */
static void nh_flush(ccl__nhpoly1305_ctx *c)
{
    uint8_t d[32];
    int i;
    for (i = 0; i < CCL_NH_PASSES; i++)
        ccl__put_u64(d + 8 * i, c->sums[i]);
    poly_blocks(&c->poly, d, 2, 1);
    memset(c->sums, 0, sizeof c->sums);
    c->chunk_done = 0;
}

/* Hashes len bytes (a multiple of 16) into the current chunk, finishing
 * chunks at every 1024-byte boundary. */
static void nh_units(ccl__nhpoly1305_ctx *c, const uint8_t *m, size_t len)
{
    while (len > 0) {
        size_t take = CCL_NH_CHUNK_LEN - c->chunk_done;
        if (take > len)
            take = len;
        /* A chunk that continues where the last call stopped uses the key
         * from the group of its next unit on: chunk_done / 16 groups of 4
         * words. */
        c->nh(c->key->nh + c->chunk_done / 4, m, take / CCL_NH_UNIT_LEN,
              c->sums);
        c->chunk_done += take;
        m += take;
        len -= take;
        if (c->chunk_done == CCL_NH_CHUNK_LEN)
            nh_flush(c);
    }
}

void ccl__nhpoly1305_update(ccl__nhpoly1305_ctx *c, const void *m, size_t n)
{
    const uint8_t *in = (const uint8_t *)m;
    if (n == 0)
        return;
    c->nbytes += (uint64_t)n;
    if (c->buflen > 0) {
        size_t take = CCL_NH_UNIT_LEN - c->buflen;
        if (take > n)
            take = n;
        memcpy(c->buf + c->buflen, in, take);
        c->buflen += take;
        in += take;
        n -= take;
        if (c->buflen < CCL_NH_UNIT_LEN)
            return;
        nh_units(c, c->buf, CCL_NH_UNIT_LEN);
        c->buflen = 0;
    }
    if (n >= CCL_NH_UNIT_LEN) {
        size_t whole = n - n % CCL_NH_UNIT_LEN;
        nh_units(c, in, whole);
        in += whole;
        n -= whole;
    }
    if (n > 0) {
        memcpy(c->buf, in, n);
        c->buflen = n;
    }
}

/* The end of the message, as Linux does it: a partial unit is padded with
 * zeros to 16 bytes, and a partial chunk's digest still goes through the
 * polynomial.  An empty message feeds nothing at all. */
static void nh_finish(ccl__nhpoly1305_ctx *c)
{
    if (c->buflen > 0) {
        memset(c->buf + c->buflen, 0, CCL_NH_UNIT_LEN - c->buflen);
        nh_units(c, c->buf, CCL_NH_UNIT_LEN);
        c->buflen = 0;
    }
    if (c->chunk_done > 0)
        nh_flush(c);
}

void ccl__nhpoly1305_final(ccl__nhpoly1305_ctx *c, uint8_t out[16])
{
    nh_finish(c);
    poly_emit(&c->poly, out);
    ccl__wipe(c, sizeof *c);
}

void ccl__nhpoly1305(const ccl__nhpoly1305_key *k, const void *m, size_t n,
                     uint8_t out[16])
{
    ccl__nhpoly1305_ctx c;
    ccl__nhpoly1305_init(&c, k);
    ccl__nhpoly1305_update(&c, m, n);
    ccl__nhpoly1305_final(&c, out);
}

/* ------------------------------------------------------------------ */
/* Frame MAC */

/* Key derivation: block i (i = 0, 1, ...) of output is
 * HMAC-SHA256(seed, KDF_LABEL || le32(i)), the counter-mode KDF of NIST
 * SP 800-108 with HMAC as the PRF.  The first 1088 bytes are the
 * NHPoly1305 key in Linux's layout (16 bytes of r, then the NH key) and
 * the next 32 bytes are the pad key.  Every output byte is an independent
 * PRF output, so the hash key and the pad key are independent of each
 * other, which the Wegman-Carter argument needs. */
#define KDF_LABEL "pyccl frame mac v1"
#define KDF_BYTES (CCL_NHPOLY1305_KEY_LEN + 32) /* 1120 = 35 blocks */

void ccl__frame_mac_key_init(ccl__frame_mac_key *k,
                             const uint8_t seed[CCL_FRAME_MAC_SEED_LEN])
{
    uint8_t okm[KDF_BYTES];
    ccl__hmac_ctx base, h;
    uint32_t i;

    /* Keying HMAC costs two compressions; doing it once and copying the
     * keyed state for each block halves the work. */
    ccl__hmac_init(&base, seed, CCL_FRAME_MAC_SEED_LEN);
    for (i = 0; i < KDF_BYTES / CCL_SHA256_LEN; i++) {
        uint8_t ctr[4];
        ccl__put_u32(ctr, i);
        h = base;
        ccl__hmac_update(&h, KDF_LABEL, sizeof KDF_LABEL - 1);
        ccl__hmac_update(&h, ctr, sizeof ctr);
        ccl__hmac_final(&h, okm + CCL_SHA256_LEN * i);
    }
    ccl__nhpoly1305_setkey(&k->hash, okm);
    ccl__hmac_init(&k->pad, okm + CCL_NHPOLY1305_KEY_LEN, 32);
    ccl__wipe(okm, sizeof okm);
    ccl__wipe(&base, sizeof base);
}

void ccl__frame_mac_key_wipe(ccl__frame_mac_key *k)
{
    ccl__wipe(k, sizeof *k);
}

void ccl__frame_mac_init(ccl__frame_mac_ctx *c, const ccl__frame_mac_key *k,
                         uint64_t seq)
{
    /* pad(seq) = the first 16 bytes of HMAC-SHA256(pad key, le64(seq)).
     * HMAC-SHA256 is a PRF, so pads for distinct seq look independent and
     * uniform to anyone without the pad key. */
    ccl__hmac_ctx h = k->pad;
    uint8_t seqb[8], d[CCL_SHA256_LEN];

    ccl__put_u64(seqb, seq);
    ccl__hmac_update(&h, seqb, sizeof seqb);
    ccl__hmac_final(&h, d);
    ccl__nhpoly1305_init(&c->h, &k->hash);
    memcpy(c->h.poly.s, d, 16);
    ccl__wipe(d, sizeof d);
}

void ccl__frame_mac_update(ccl__frame_mac_ctx *c, const void *m, size_t n)
{
    ccl__nhpoly1305_update(&c->h, m, n);
}

void ccl__frame_mac_final(ccl__frame_mac_ctx *c,
                          uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    /* The length block: le64(message bytes) then 8 zero bytes, as one full
     * Poly1305 block after the NH digests.  Two messages of different
     * lengths then differ in the last coefficient of the polynomial, so
     * their hash difference is a nonzero polynomial in r. */
    uint8_t lb[16];

    nh_finish(&c->h);
    ccl__put_u64(lb, c->h.nbytes);
    ccl__put_u64(lb + 8, 0);
    poly_blocks(&c->h.poly, lb, 1, 1);
    poly_emit(&c->h.poly, tag); /* + s, which holds pad(seq) */
    ccl__wipe(c, sizeof *c);
}

int ccl__frame_mac_final_verify(ccl__frame_mac_ctx *c,
                                const uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    uint8_t want[CCL_FRAME_MAC_TAG_LEN];
    int ok;
    ccl__frame_mac_final(c, want);
    ok = ccl__ct_equal(want, tag, sizeof want);
    ccl__wipe(want, sizeof want);
    return ok;
}

void ccl__frame_mac(const ccl__frame_mac_key *k, uint64_t seq, const void *m,
                    size_t n, uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    ccl__frame_mac_ctx c;
    ccl__frame_mac_init(&c, k, seq);
    ccl__frame_mac_update(&c, m, n);
    ccl__frame_mac_final(&c, tag);
}

int ccl__frame_mac_verify(const ccl__frame_mac_key *k, uint64_t seq,
                          const void *m, size_t n,
                          const uint8_t tag[CCL_FRAME_MAC_TAG_LEN])
{
    ccl__frame_mac_ctx c;
    ccl__frame_mac_init(&c, k, seq);
    ccl__frame_mac_update(&c, m, n);
    return ccl__frame_mac_final_verify(&c, tag);
}
