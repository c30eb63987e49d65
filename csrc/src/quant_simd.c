/*
 * quant_simd.c - AVX2 inner loops of the quantized encodings (quant.h),
 * where the CPU has AVX2 (checked once, at run time).  quant.c's portable
 * lanes run at 1 to 5 GB/s of f32 at -O2 (bench/bench_quant.c), well
 * below memory speed: the compiler keeps them in SSE2, goes through
 * arrays in memory between steps, and packs codes one byte at a time.
 * On loopback that made a quantized all-reduce 2 to 5 times slower than
 * the f32 one it was meant to speed up.
 *
 * Bit for bit the portable results (csrc/tests/test_quant_simd.c compares
 * the two over random, adversarial and arbitrary data):
 *  - every float operation is the one quant.c does, in the same order,
 *    one IEEE single operation each (no fused multiply-add is used:
 *    intrinsics are never contracted);
 *  - rounding to nearest is the same "add and subtract 1.5 * 2^23";
 *  - min and max keep quant.c's lanes (element i in lane i mod 16);
 *  - the stochastic draws are the same splitmix64 in 64-bit lanes.
 */
#include "quant_simd.h"
#include "cpu_x86.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

static int simd_avail = -1; /* -1 until checked */
static int simd_off;        /* tests turn the path off */

static int simd_available(void)
{
    int s = __atomic_load_n(&simd_avail, __ATOMIC_RELAXED);
    if (s < 0) {
        s = ccl__cpu_has_avx2();
        __atomic_store_n(&simd_avail, s, __ATOMIC_RELAXED);
    }
    return s;
}

int ccl__quant_simd_on(void)
{
    return simd_available() && !__atomic_load_n(&simd_off, __ATOMIC_RELAXED);
}

int ccl__quant_simd_force(int on)
{
    __atomic_store_n(&simd_off, !on, __ATOMIC_RELAXED);
    return simd_available();
}

#ifdef HAVE_AVX2_PATH
#define AVX2 __attribute__((target("avx2")))

/* ---- extremes ---- */

AVX2 static size_t range_avx2(const float *x, size_t m, float lo[16], float hi[16],
                              float z[16])
{
    __m256 lo0 = _mm256_loadu_ps(lo), lo1 = _mm256_loadu_ps(lo + 8);
    __m256 hi0 = _mm256_loadu_ps(hi), hi1 = _mm256_loadu_ps(hi + 8);
    __m256 z0 = _mm256_loadu_ps(z), z1 = _mm256_loadu_ps(z + 8);
    size_t i = 0;
    for (; m - i >= 16; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        z0 = _mm256_add_ps(z0, _mm256_sub_ps(v0, v0));
        z1 = _mm256_add_ps(z1, _mm256_sub_ps(v1, v1));
        /* min_ps(a, b) is a < b ? a : b: quant.c's v < lo ? v : lo. */
        lo0 = _mm256_min_ps(v0, lo0);
        lo1 = _mm256_min_ps(v1, lo1);
        hi0 = _mm256_max_ps(v0, hi0);
        hi1 = _mm256_max_ps(v1, hi1);
    }
    _mm256_storeu_ps(lo, lo0);
    _mm256_storeu_ps(lo + 8, lo1);
    _mm256_storeu_ps(hi, hi0);
    _mm256_storeu_ps(hi + 8, hi1);
    _mm256_storeu_ps(z, z0);
    _mm256_storeu_ps(z + 8, z1);
    return i;
}

/* ---- stochastic draws: splitmix64 in four 64-bit lanes ---- */

/* a * c mod 2^64 from 32x32-bit products (AVX2 has no 64-bit multiply). */
AVX2 static inline __m256i mul64(__m256i a, uint64_t c)
{
    __m256i clo = _mm256_set1_epi64x((long long)(c & 0xffffffffu));
    __m256i chi = _mm256_set1_epi64x((long long)(c >> 32));
    __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), clo),
                                     _mm256_mul_epu32(a, chi));
    return _mm256_add_epi64(_mm256_mul_epu32(a, clo), _mm256_slli_epi64(cross, 32));
}

/* z >> 40 of the finished mix, per 64-bit lane. */
AVX2 static inline __m256i mix(__m256i z)
{
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), UINT64_C(0xbf58476d1ce4e5b9));
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), UINT64_C(0x94d049bb133111eb));
    z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
    return _mm256_srli_epi64(z, 40);
}

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

struct draws {
    __m256i za, zb; /* seed + index * GOLDEN of the next 8 elements */
};

AVX2 static inline void draws_init(struct draws *d, uint64_t seed, uint64_t index)
{
    uint64_t z[8];
    for (int j = 0; j < 8; j++)
        z[j] = seed + (index + (uint64_t)j) * GOLDEN;
    d->za = _mm256_loadu_si256((const __m256i *)z);
    d->zb = _mm256_loadu_si256((const __m256i *)(z + 4));
}

/* The next 8 draws in [0, 1), as quant.c's uniform(). */
AVX2 static inline __m256 draws_next(struct draws *d)
{
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    __m256i a = _mm256_permutevar8x32_epi32(mix(d->za), pick);
    __m256i b = _mm256_permutevar8x32_epi32(mix(d->zb), pick);
    __m256i ab = _mm256_blend_epi32(a, b, 0xf0); /* values below 2^24: exact */
    __m256i step = _mm256_set1_epi64x((long long)(8 * GOLDEN));
    d->za = _mm256_add_epi64(d->za, step);
    d->zb = _mm256_add_epi64(d->zb, step);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(ab), _mm256_set1_ps(1.0f / 16777216.0f));
}

/* ---- packing 32 codes (int32 lanes, 0..255) ---- */

/* The 32 codes of c[0..4) as bytes in element order. */
AVX2 static inline __m256i pack_bytes(const __m256i c[4])
{
    __m256i w01 = _mm256_packus_epi32(c[0], c[1]);
    __m256i w23 = _mm256_packus_epi32(c[2], c[3]);
    __m256i b = _mm256_packus_epi16(w01, w23);
    /* The packs work within 128-bit halves: put the dwords back in
     * order. */
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 codes (0..15) into 16 bytes, the first of each pair in the low
 * nibble. */
AVX2 static inline void store_nibbles(uint8_t *out, const __m256i c[4])
{
    __m256i b = pack_bytes(c);
    __m256i w = _mm256_maddubs_epi16(b, _mm256_set1_epi16(0x1001)); /* lo + 16 * hi */
    __m256i p = _mm256_packus_epi16(w, w);
    p = _mm256_permute4x64_epi64(p, _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(p));
}

/* ---- min-max codes ---- */

AVX2 static size_t mm_codes_avx2(const float *x, size_t m, float lo, float step, int top,
                                 uint64_t seed, uint64_t index0, uint8_t *codes,
                                 int nibbles)
{
    const __m256 vlo = _mm256_set1_ps(lo), vstep = _mm256_set1_ps(step);
    const __m256 vtop = _mm256_set1_ps((float)top), big = _mm256_set1_ps(12582912.0f);
    struct draws d = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (seed)
        draws_init(&d, seed, index0);
    size_t i = 0;
    for (; m - i >= 32; i += 32) {
        __m256i c[4];
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * k), vlo),
                                     vstep);
            if (seed)
                t = _mm256_add_ps(t, draws_next(&d)); /* floor: truncation below */
            else
                t = _mm256_sub_ps(_mm256_add_ps(t, big), big);
            /* min_ps(top, t): t > top ? top : t. */
            c[k] = _mm256_cvttps_epi32(_mm256_min_ps(vtop, t));
        }
        if (nibbles)
            store_nibbles(codes + i / 2, c);
        else
            _mm256_storeu_si256((__m256i *)(codes + i), pack_bytes(c));
    }
    return i;
}

/* ---- E3M0 codes ---- */

AVX2 static inline __m256i e3_code8(__m256 x, __m256 Lv, const __m256 L[8], __m256 u,
                                    int stoch, int exact)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x);
    /* quant.c's e3_code counts the levels 1..6 below a, and selects the
     * last level below a (or 0) and the first not below (or the scale).
     * The levels never decrease (ldexpf is monotonic), so those below a
     * are 1..cnt: the two selected are L[cnt] and L[cnt + 1], with L[0]
     * = 0 and L[7] = the scale, which is what the selects give. */
    __m256i cnt;
    if (exact) {
        /* Every level is the scale times an exact power of two (the
         * caller checked that none is below the normal range): level k's
         * bits are the scale's minus (7 - k) << 23, and non-negative
         * floats order as their bits do, so "level k below a" is
         * "(7 - k) << 23 > bits(s) - bits(a)", and the count of such k
         * in 1..6 is 6 - ((bits(s) - bits(a)) >> 23), at least 0
         * (a <= s: the difference is never negative). */
        __m256i d = _mm256_sub_epi32(_mm256_castps_si256(L[7]), _mm256_castps_si256(a));
        cnt = _mm256_max_epi32(_mm256_setzero_si256(),
                               _mm256_sub_epi32(_mm256_set1_epi32(6),
                                                _mm256_srli_epi32(d, 23)));
    } else {
        __m256i acc = _mm256_setzero_si256(); /* minus the count */
        for (int k = 1; k <= 6; k++)
            acc = _mm256_add_epi32(acc,
                                   _mm256_castps_si256(_mm256_cmp_ps(L[k], a, _CMP_LT_OQ)));
        cnt = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
    }
    __m256 l = _mm256_permutevar8x32_ps(Lv, cnt);
    __m256 h = _mm256_permutevar8x32_ps(Lv, _mm256_add_epi32(cnt, _mm256_set1_epi32(1)));
    __m256 up = _mm256_cmp_ps(a, h, _CMP_GE_OQ);
    __m256 al = _mm256_sub_ps(a, l);
    if (stoch)
        up = _mm256_or_ps(up, _mm256_cmp_ps(al, _mm256_mul_ps(u, _mm256_sub_ps(h, l)),
                                            _CMP_GT_OQ));
    else
        up = _mm256_or_ps(up, _mm256_cmp_ps(al, _mm256_sub_ps(h, a), _CMP_GE_OQ));
    __m256i e = _mm256_sub_epi32(cnt, _mm256_castps_si256(up)); /* up: -1 or 0 */
    __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    __m256i nz = _mm256_cmpgt_epi32(e, _mm256_setzero_si256());
    return _mm256_or_si256(e, _mm256_and_si256(_mm256_and_si256(neg, nz),
                                               _mm256_set1_epi32(8)));
}

AVX2 static size_t e3_codes_avx2(const float *x, size_t m, const float Ls[8], uint64_t seed,
                                 uint64_t index0, uint8_t *codes)
{
    __m256 L[8];
    for (int k = 0; k < 8; k++)
        L[k] = _mm256_set1_ps(Ls[k]);
    const __m256 Lv = _mm256_loadu_ps(Ls);
    /* The levels are exact powers of two times the scale when the
     * smallest, scale / 64, is a normal float: biased exponent >= 7. */
    uint32_t sbits;
    memcpy(&sbits, &Ls[7], 4);
    int exact = (sbits >> 23) >= 7;
    struct draws d = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (seed)
        draws_init(&d, seed, index0);
    size_t i = 0;
    for (; m - i >= 32; i += 32) {
        __m256i c[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * k);
            if (seed)
                c[k] = e3_code8(v, Lv, L, draws_next(&d), 1, exact);
            else if (exact)
                c[k] = e3_code8(v, Lv, L, _mm256_setzero_ps(), 0, 1);
            else
                c[k] = e3_code8(v, Lv, L, _mm256_setzero_ps(), 0, 0);
        }
        store_nibbles(codes + i / 2, c);
    }
    return i;
}

/* ---- decoding ---- */

/* out[0..8) = v, or out + v. */
AVX2 static inline void put8(float *out, __m256 v, int add)
{
    if (add)
        v = _mm256_add_ps(_mm256_loadu_ps(out), v);
    _mm256_storeu_ps(out, v);
}

/* The 32 nibbles of 16 bytes as 32 bytes, in element order. */
AVX2 static inline void unpack_nibbles(const uint8_t *in, __m128i *b0, __m128i *b1)
{
    __m128i b = _mm_loadu_si128((const __m128i *)in);
    __m128i mask = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
    *b0 = _mm_unpacklo_epi8(lo, hi);
    *b1 = _mm_unpackhi_epi8(lo, hi);
}

AVX2 static size_t mm_decode_avx2(const uint8_t *codes, size_t m, float base, float step,
                                  float *out, int add, int nibbles)
{
    const __m256 vbase = _mm256_set1_ps(base), vstep = _mm256_set1_ps(step);
    size_t i = 0;
    for (; m - i >= 32; i += 32) {
        __m128i b[2];
        if (nibbles) {
            unpack_nibbles(codes + i / 2, &b[0], &b[1]);
        } else {
            b[0] = _mm_loadu_si128((const __m128i *)(codes + i));
            b[1] = _mm_loadu_si128((const __m128i *)(codes + i + 16));
        }
        for (int k = 0; k < 4; k++) {
            __m128i q8 = k % 2 ? _mm_srli_si128(b[k / 2], 8) : b[k / 2];
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8));
            /* quant.c: t = code * step, then base + t (two roundings). */
            __m256 v = _mm256_add_ps(vbase, _mm256_mul_ps(q, vstep));
            put8(out + i + 8 * k, v, add);
        }
    }
    return i;
}

AVX2 static size_t e3_decode_avx2(const uint8_t *codes, size_t m, const float tab[16],
                                  float *out, int add)
{
    const __m256 t0 = _mm256_loadu_ps(tab), t1 = _mm256_loadu_ps(tab + 8);
    size_t i = 0;
    for (; m - i >= 32; i += 32) {
        __m128i b[2];
        unpack_nibbles(codes + i / 2, &b[0], &b[1]);
        for (int k = 0; k < 4; k++) {
            __m128i q8 = k % 2 ? _mm_srli_si128(b[k / 2], 8) : b[k / 2];
            __m256i c = _mm256_cvtepu8_epi32(q8);
            /* tab[c]: entries 0..7 or 8..15 by bit 3 of c, moved to the
             * sign bit that blendv reads. */
            __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t0, c),
                                        _mm256_permutevar8x32_ps(t1, c),
                                        _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
            put8(out + i + 8 * k, v, add);
        }
    }
    return i;
}

/* ---- bfloat16 ---- */

/* half.h's f32_to_bf16_inline on 8 lanes. */
AVX2 static inline __m256i bf16_8(__m256i x)
{
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), odd), 16);
    __m256i nan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
    __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)),
                                       _mm256_set1_epi32(0x7f800000));
    return _mm256_blendv_epi8(r, nan, isnan);
}

AVX2 static size_t to_bf16_avx2(const float *x, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16) {
        __m256i a = bf16_8(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m256i b = bf16_8(_mm256_loadu_si256((const __m256i *)(x + i + 8)));
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b),
                                             _MM_SHUFFLE(3, 1, 2, 0));
        _mm256_storeu_si256((__m256i *)(out + 2 * i), p);
    }
    return i;
}

AVX2 static size_t from_bf16_avx2(const uint8_t *in, size_t n, float *out, int add)
{
    size_t i = 0;
    for (; n - i >= 16; i += 16)
        for (int k = 0; k < 2; k++) {
            __m128i h = _mm_loadu_si128((const __m128i *)(in + 2 * i + 16 * k));
            __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            put8(out + i + 8 * k, _mm256_castsi256_ps(w), add);
        }
    return i;
}

#define DISPATCH(call) \
    do { \
        if (ccl__quant_simd_on()) \
            return call; \
    } while (0)
#else
#define DISPATCH(call) do { } while (0)
#endif

/* The wire is little-endian, as x86 memory is: the AVX2 path exists only
 * there, so no byte swapping is needed. */

size_t ccl__qsimd_range(const float *x, size_t m, float lo[16], float hi[16], float z[16])
{
    DISPATCH(range_avx2(x, m, lo, hi, z));
    (void)x, (void)m, (void)lo, (void)hi, (void)z;
    return 0;
}

size_t ccl__qsimd_mm_codes(const float *x, size_t m, float lo, float step, int top,
                           uint64_t seed, uint64_t index0, uint8_t *codes, int nibbles)
{
    DISPATCH(mm_codes_avx2(x, m, lo, step, top, seed, index0, codes, nibbles));
    (void)x, (void)m, (void)lo, (void)step, (void)top, (void)seed, (void)index0;
    (void)codes, (void)nibbles;
    return 0;
}

size_t ccl__qsimd_e3_codes(const float *x, size_t m, const float L[8], uint64_t seed,
                           uint64_t index0, uint8_t *codes)
{
    DISPATCH(e3_codes_avx2(x, m, L, seed, index0, codes));
    (void)x, (void)m, (void)L, (void)seed, (void)index0, (void)codes;
    return 0;
}

size_t ccl__qsimd_mm_decode(const uint8_t *codes, size_t m, float base, float step,
                            float *out, int add, int nibbles)
{
    DISPATCH(mm_decode_avx2(codes, m, base, step, out, add, nibbles));
    (void)codes, (void)m, (void)base, (void)step, (void)out, (void)add, (void)nibbles;
    return 0;
}

size_t ccl__qsimd_e3_decode(const uint8_t *codes, size_t m, const float tab[16], float *out,
                            int add)
{
    DISPATCH(e3_decode_avx2(codes, m, tab, out, add));
    (void)codes, (void)m, (void)tab, (void)out, (void)add;
    return 0;
}

size_t ccl__qsimd_to_bf16(const float *x, size_t n, uint8_t *out)
{
    DISPATCH(to_bf16_avx2(x, n, out));
    (void)x, (void)n, (void)out;
    return 0;
}

size_t ccl__qsimd_from_bf16(const uint8_t *in, size_t n, float *out, int add)
{
    DISPATCH(from_bf16_avx2(in, n, out, add));
    (void)in, (void)n, (void)out, (void)add;
    return 0;
}
