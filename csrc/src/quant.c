/*
 * quant.c - the quantized encodings declared in quant.h.
 *
 * Every decode is a fixed sequence of f32 operations, and this file is
 * compiled with -ffp-contract=off (Makefile, bindings/build_ccl.py) so no
 * compiler fuses a multiply and an add: the same bytes decode to the same
 * floats on every rank, which is what lets the owner of a reduced chunk
 * quantize it once and every rank end bit-identical.
 */
#include "quant.h"
#include "quant_simd.h"
#include "reduce.h"
#include "wire.h"

#include <math.h>
#include <string.h>

#define MM_HDR 8 /* U8, U4: f32 min, f32 step */
#define E3_HDR 4 /* E3M0: f32 scale */

static size_t codes_bytes(int fmt, size_t m)
{
    return fmt == CCL_QUANT_U8 ? m : (m + 1) / 2;
}

size_t ccl__quant_size(int fmt, size_t n, uint32_t block)
{
    switch (fmt) {
    case CCL_QUANT_F16:
    case CCL_QUANT_BF16:
        return 2 * n;
    case CCL_QUANT_U8:
    case CCL_QUANT_U4:
    case CCL_QUANT_E3M0:
        break;
    default:
        return 0;
    }
    if (block == 0)
        return 0;
    size_t hdr = fmt == CCL_QUANT_E3M0 ? E3_HDR : MM_HDR;
    size_t full = n / block, rest = n % block;
    return full * (hdr + codes_bytes(fmt, block)) + (rest ? hdr + codes_bytes(fmt, rest) : 0);
}

/* A uniform draw in [0, 1) from (seed, index): splitmix64, 24 bits. */
static float uniform(uint64_t seed, uint64_t index)
{
    uint64_t z = seed + index * UINT64_C(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    ccl__put_u32(p, u);
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = ccl__get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/*
 * Speed.  The loops below go LANES elements at a time through inner loops
 * of a fixed count over local arrays, which the compiler turns into SIMD
 * code at -O2 with no flags and no intrinsics (a loop of unknown count, or
 * one whose pointers might overlap, it would leave scalar).  Every lane
 * computes exactly what the scalar expression says, in the same order, so
 * the bytes and floats are those of a one-element-at-a-time loop on any
 * CPU; the tail of a block runs the same inner loop on a padded copy.
 * Per block, what does not depend on the element (E3M0's levels, the
 * decoders' min and step) is computed once.
 */
#define LANES 16

/* Rounds 0 <= t < 2^22 to the nearest integer, ties to even, as
 * nearbyintf does in the default rounding mode: adding 1.5 * 2^23 leaves
 * no fraction bits, so the addition itself rounds.  (C99's excess
 * precision rules round the sum to float at the assignment.) */
static float round_near(float t)
{
    float big = t + 12582912.0f;
    return big - 12582912.0f;
}

/* Min and max of a block, and whether it is all finite, in one pass.
 * Lanes keep their own extremes and are then combined: the same min and
 * max values as a sequential scan (a tie between 0 and -0 may pick the
 * other zero, which decodes the same). */
static int block_range(const float *x, size_t m, float *lo_out, float *hi_out)
{
    float lo[LANES], hi[LANES], z[LANES];
    for (int j = 0; j < LANES; j++) {
        lo[j] = hi[j] = x[0];
        z[j] = 0.0f;
    }
    size_t i = ccl__qsimd_range(x, m, lo, hi, z); /* AVX2: the same lanes */
    for (; i + LANES <= m; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float v = x[i + j];
            z[j] += v - v; /* stays 0 unless v is NaN or infinite */
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    for (; i < m; i++) {
        float v = x[i];
        z[0] += v - v;
        lo[0] = v < lo[0] ? v : lo[0];
        hi[0] = v > hi[0] ? v : hi[0];
    }
    int bad = 0;
    for (int j = 0; j < LANES; j++) {
        bad |= z[j] != 0.0f;
        lo[0] = lo[j] < lo[0] ? lo[j] : lo[0];
        hi[0] = hi[j] > hi[0] ? hi[j] : hi[0];
    }
    *lo_out = lo[0];
    *hi_out = hi[0];
    return !bad;
}

/* x[i..i+k) into v[0..LANES), the rest filled with pad. */
static void load_lanes(float *v, const float *x, size_t k, float pad)
{
    memcpy(v, x, k * sizeof *v);
    for (size_t j = k; j < LANES; j++)
        v[j] = pad;
}

static void put_codes(uint8_t *codes, size_t i, const uint8_t *q, size_t k, int nibbles)
{
    if (!nibbles) {
        memcpy(codes + i, q, k);
        return;
    }
    /* i is even here (a multiple of LANES); an odd k leaves the last
     * high nibble 0. */
    if (k == LANES) {
        for (int j = 0; j < LANES / 2; j++)
            codes[i / 2 + j] = (uint8_t)(q[2 * j] | q[2 * j + 1] << 4);
        return;
    }
    for (size_t j = 0; j < k; j += 2)
        codes[(i + j) / 2] = (uint8_t)(q[j] | (j + 1 < k ? q[j + 1] << 4 : 0));
}

/* Min-max codes of one block: levels 0..top (255 or 15).  Returns -1 if
 * the block holds NaN or infinity. */
static int mm_encode(const float *x, size_t m, int top, uint64_t seed, uint64_t index0,
                     uint8_t *out, int nibbles)
{
    float lo, hi;
    if (!block_range(x, m, &lo, &hi))
        return -1;
    float step = (hi - lo) / (float)top;
    if (!(step > 0) || !isfinite(step))
        step = 0; /* all equal (or a range too wide for f32: codes 0) */
    put_f32(out, lo);
    put_f32(out + 4, step);
    uint8_t *codes = out + MM_HDR;
    if (step == 0) {
        memset(codes, 0, codes_bytes(nibbles ? CCL_QUANT_U4 : CCL_QUANT_U8, m));
        return 0;
    }
    float ftop = (float)top;
    size_t done = ccl__qsimd_mm_codes(x, m, lo, step, top, seed, index0, codes, nibbles);
    for (size_t i = done; i < m; i += LANES) {
        size_t k = m - i < LANES ? m - i : LANES;
        float v[LANES], r[LANES];
        uint8_t q[LANES];
        load_lanes(v, x + i, k, lo);
        /* The division, not a multiply by 1/step: the codes are those
         * of the correctly rounded (x - lo) / step. */
        if (seed) {
            for (size_t j = 0; j < LANES; j++)
                r[j] = uniform(seed, index0 + i + j);
            for (int j = 0; j < LANES; j++)
                r[j] = (v[j] - lo) / step + r[j]; /* floor: truncation below */
        } else {
            for (int j = 0; j < LANES; j++)
                r[j] = round_near((v[j] - lo) / step);
        }
        for (int j = 0; j < LANES; j++) {
            float c = r[j] > ftop ? ftop : r[j]; /* r >= 0 */
            q[j] = (uint8_t)(int32_t)c;
        }
        put_codes(codes, i, q, k, nibbles);
    }
    return 0;
}

/* The E3M0 magnitudes of a block with scale s: index e is s * 2^(e-7),
 * e = 0 is zero.  A product with a power of two is correctly rounded, as
 * ldexpf is (also where it lands below the normal range), so this is
 * ldexpf(s, e - 7) without a library call per level and block. */
static void e3_levels(float s, float lvl[8])
{
    static const float pow2[8] = {0.0f,        1.0f / 64.0f, 1.0f / 32.0f, 1.0f / 16.0f,
                                  1.0f / 8.0f, 1.0f / 4.0f,  1.0f / 2.0f,  1.0f};
    lvl[0] = 0.0f; /* whatever s holds (decoding arbitrary bytes) */
    for (int e = 1; e < 8; e++)
        lvl[e] = s * pow2[e];
}

/* The E3M0 code of x in a block whose levels are L (L[7] = s, the
 * scale); stoch: a draw u in [0, 1) decides between the two levels. */
static inline uint8_t e3_code(float x, const float *L, float u, int stoch)
{
    float a = fabsf(x), s = L[7];
    /* The two levels around a: hi is the first of 1..7 not below a (7 at
     * most), lo the one before.  The levels never decrease, so counting
     * those below a finds hi, and the last level below a (or 0) and the
     * first not below (or s) are L[lo] and L[hi]: selects, no table
     * lookup, so that the lanes run as SIMD. */
    int32_t cnt = (L[1] < a) + (L[2] < a) + (L[3] < a) + (L[4] < a) + (L[5] < a) +
                  (L[6] < a);
    float l = L[1] < a ? L[1] : 0.0f;
    l = L[2] < a ? L[2] : l;
    l = L[3] < a ? L[3] : l;
    l = L[4] < a ? L[4] : l;
    l = L[5] < a ? L[5] : l;
    l = L[6] < a ? L[6] : l;
    float h = L[6] >= a ? L[6] : s;
    h = L[5] >= a ? L[5] : h;
    h = L[4] >= a ? L[4] : h;
    h = L[3] >= a ? L[3] : h;
    h = L[2] >= a ? L[2] : h;
    h = L[1] >= a ? L[1] : h;
    /* Then nearest (or a draw between them in proportion to the
     * distance). */
    int32_t up = stoch ? (a >= h) | ((a - l) > u * (h - l))
                       : (a >= h) | ((a - l) >= (h - a));
    int32_t e = cnt + up; /* (the caller handles s = 0) */
    return (uint8_t)(e | (((int32_t)(x < 0) & (int32_t)(e != 0)) << 3)); /* no -0 code */
}

static int e3_encode(const float *x, size_t m, uint64_t seed, uint64_t index0,
                     uint8_t *out)
{
    float lo, hi;
    if (!block_range(x, m, &lo, &hi))
        return -1;
    float s = fabsf(lo) > fabsf(hi) ? fabsf(lo) : fabsf(hi);
    float L[8];
    e3_levels(s, L);
    put_f32(out, s);
    uint8_t *codes = out + E3_HDR;
    if (!(s > 0)) {
        memset(codes, 0, (m + 1) / 2); /* all zero: code 0 */
        return 0;
    }
    size_t done = ccl__qsimd_e3_codes(x, m, L, seed, index0, codes);
    for (size_t i = done; i < m; i += LANES) {
        size_t k = m - i < LANES ? m - i : LANES;
        float v[LANES], u[LANES];
        uint8_t q[LANES];
        load_lanes(v, x + i, k, 0.0f);
        if (seed)
            for (size_t j = 0; j < LANES; j++)
                u[j] = uniform(seed, index0 + i + j);
        if (seed)
            for (int j = 0; j < LANES; j++)
                q[j] = e3_code(v[j], L, u[j], 1);
        else
            for (int j = 0; j < LANES; j++)
                q[j] = e3_code(v[j], L, 0.0f, 0);
        put_codes(codes, i, q, k, 1);
    }
    return 0;
}

int ccl__quant_encode(int fmt, const float *x, size_t n, uint32_t block,
                      uint64_t seed, uint64_t index0, uint8_t *out)
{
    if (fmt == CCL_QUANT_F16 || fmt == CCL_QUANT_BF16) {
        size_t done = fmt == CCL_QUANT_BF16 ? ccl__qsimd_to_bf16(x, n, out) : 0;
        ccl__f32_to_half_le(fmt == CCL_QUANT_BF16, x + done, n - done, out + 2 * done);
        return 0;
    }
    if (ccl__quant_size(fmt, n, block) == 0 && n)
        return -1;
    for (size_t b = 0; b < n; b += block) {
        size_t m = n - b < block ? n - b : block;
        int rc = fmt == CCL_QUANT_E3M0
                     ? e3_encode(x + b, m, seed, index0 + b, out)
                     : mm_encode(x + b, m, fmt == CCL_QUANT_U8 ? 255 : 15, seed,
                                 index0 + b, out, fmt == CCL_QUANT_U4);
        if (rc)
            return -1;
        out += ccl__quant_size(fmt, m, block);
    }
    return 0;
}

/* One block's codes (k <= LANES of them from element i) as bytes 0..15
 * or 0..255. */
static void get_codes(int fmt, const uint8_t *codes, size_t i, size_t k, uint8_t *q)
{
    if (fmt == CCL_QUANT_U8) {
        memcpy(q, codes + i, k);
        return;
    }
    /* i is even (a multiple of LANES). */
    const uint8_t *c = codes + i / 2;
    if (k == LANES) {
        for (int j = 0; j < LANES / 2; j++) {
            q[2 * j] = c[j] & 15;
            q[2 * j + 1] = c[j] >> 4;
        }
        return;
    }
    for (size_t j = 0; j < k; j++)
        q[j] = (c[j / 2] >> (4 * (j % 2))) & 15;
}

/* Decodes (or adds) one block of m elements. */
static void decode_block(int fmt, const uint8_t *blk, size_t m, float *out, int add)
{
    int e3 = fmt == CCL_QUANT_E3M0;
    const uint8_t *codes = blk + (e3 ? E3_HDR : MM_HDR);
    float base = get_f32(blk), step = e3 ? 0.0f : get_f32(blk + 4);
    float tab[16];
    if (e3) {
        float L[8];
        e3_levels(base, L);
        for (int c = 0; c < 16; c++)
            tab[c] = c & 8 ? -L[c & 7] : L[c & 7];
    }
    size_t done = e3 ? ccl__qsimd_e3_decode(codes, m, tab, out, add)
                     : ccl__qsimd_mm_decode(codes, m, base, step, out, add,
                                            fmt == CCL_QUANT_U4);
    for (size_t i = done; i < m; i += LANES) {
        size_t k = m - i < LANES ? m - i : LANES;
        uint8_t q[LANES] = {0};
        float v[LANES];
        get_codes(fmt, codes, i, k, q);
        if (e3)
            for (int j = 0; j < LANES; j++)
                v[j] = tab[q[j]];
        else
            for (int j = 0; j < LANES; j++) {
                float t = (float)q[j] * step; /* two steps: never fused */
                v[j] = base + t;
            }
        if (k < LANES) {
            for (size_t j = 0; j < k; j++)
                out[i + j] = add ? out[i + j] + v[j] : v[j];
        } else if (add) {
            for (int j = 0; j < LANES; j++)
                out[i + j] += v[j];
        } else {
            memcpy(out + i, v, sizeof v);
        }
    }
}

static void decode(int fmt, const uint8_t *in, size_t n, uint32_t block, float *out,
                   int add)
{
    if (fmt == CCL_QUANT_F16 || fmt == CCL_QUANT_BF16) {
        size_t done = fmt == CCL_QUANT_BF16 ? ccl__qsimd_from_bf16(in, n, out, add) : 0;
        ccl__half_le_to_f32(fmt == CCL_QUANT_BF16, in + 2 * done, n - done, out + done, add);
        return;
    }
    for (size_t b = 0; b < n; b += block) {
        size_t m = n - b < block ? n - b : block;
        decode_block(fmt, in, m, out + b, add);
        in += ccl__quant_size(fmt, m, block);
    }
}

void ccl__quant_decode(int fmt, const uint8_t *in, size_t n, uint32_t block, float *out)
{
    decode(fmt, in, n, block, out, 0);
}

void ccl__quant_decode_add(int fmt, const uint8_t *in, size_t n, uint32_t block,
                           float *acc)
{
    decode(fmt, in, n, block, acc, 1);
}
