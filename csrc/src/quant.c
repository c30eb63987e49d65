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

static int finite_block(const float *x, size_t m)
{
    for (size_t i = 0; i < m; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* Min-max codes of one block: levels 0..top (255 or 15). */
static void mm_encode(const float *x, size_t m, int top, uint64_t seed, uint64_t index0,
                      uint8_t *out, int nibbles)
{
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < m; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    float step = (hi - lo) / (float)top;
    if (!(step > 0) || !isfinite(step))
        step = 0; /* all equal (or a range too wide for f32: codes 0) */
    put_f32(out, lo);
    put_f32(out + 4, step);
    uint8_t *codes = out + MM_HDR;
    if (nibbles)
        memset(codes, 0, (m + 1) / 2);
    for (size_t i = 0; i < m; i++) {
        int q = 0;
        if (step > 0) {
            float t = (x[i] - lo) / step;
            float r = seed ? floorf(t + uniform(seed, index0 + i)) : nearbyintf(t);
            q = r < 0 ? 0 : r > (float)top ? top : (int)r;
        }
        if (nibbles)
            codes[i / 2] |= (uint8_t)(q << (4 * (i % 2)));
        else
            codes[i] = (uint8_t)q;
    }
}

/* The E3M0 magnitudes of a block with scale s: index e is s * 2^(e-7),
 * e = 0 is zero. */
static float e3_level(float s, int e)
{
    return e == 0 ? 0.0f : ldexpf(s, e - 7);
}

static void e3_encode(const float *x, size_t m, uint64_t seed, uint64_t index0,
                      uint8_t *out)
{
    float s = 0;
    for (size_t i = 0; i < m; i++)
        s = fabsf(x[i]) > s ? fabsf(x[i]) : s;
    put_f32(out, s);
    uint8_t *codes = out + E3_HDR;
    memset(codes, 0, (m + 1) / 2);
    for (size_t i = 0; i < m; i++) {
        float a = fabsf(x[i]);
        int e = 0;
        if (s > 0) {
            /* The two levels around a, then nearest (or a draw between
             * them in proportion to the distance). */
            int hi = 1;
            while (hi < 7 && e3_level(s, hi) < a)
                hi++;
            int lo = hi - 1;
            float l = e3_level(s, lo), h = e3_level(s, hi);
            if (a >= h)
                e = hi;
            else if (seed)
                e = (a - l) > uniform(seed, index0 + i) * (h - l) ? hi : lo;
            else
                e = (a - l) >= (h - a) ? hi : lo;
        }
        int code = e | (x[i] < 0 && e ? 8 : 0);
        codes[i / 2] |= (uint8_t)(code << (4 * (i % 2)));
    }
}

int ccl__quant_encode(int fmt, const float *x, size_t n, uint32_t block,
                      uint64_t seed, uint64_t index0, uint8_t *out)
{
    if (fmt == CCL_QUANT_F16 || fmt == CCL_QUANT_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = fmt == CCL_QUANT_F16 ? ccl__f32_to_f16(x[i])
                                               : ccl__f32_to_bf16(x[i]);
            out[2 * i] = (uint8_t)h;
            out[2 * i + 1] = (uint8_t)(h >> 8);
        }
        return 0;
    }
    if (ccl__quant_size(fmt, n, block) == 0 && n)
        return -1;
    for (size_t b = 0; b < n; b += block) {
        size_t m = n - b < block ? n - b : block;
        if (!finite_block(x + b, m))
            return -1;
        if (fmt == CCL_QUANT_E3M0)
            e3_encode(x + b, m, seed, index0 + b, out);
        else
            mm_encode(x + b, m, fmt == CCL_QUANT_U8 ? 255 : 15, seed, index0 + b, out,
                      fmt == CCL_QUANT_U4);
        out += ccl__quant_size(fmt, m, block);
    }
    return 0;
}

static float decode_one(int fmt, const uint8_t *blk, size_t i)
{
    if (fmt == CCL_QUANT_E3M0) {
        int code = (blk[E3_HDR + i / 2] >> (4 * (i % 2))) & 15;
        float v = e3_level(get_f32(blk), code & 7);
        return code & 8 ? -v : v;
    }
    int q = fmt == CCL_QUANT_U8 ? blk[MM_HDR + i]
                                 : (blk[MM_HDR + i / 2] >> (4 * (i % 2))) & 15;
    float t = (float)q * get_f32(blk + 4); /* two steps: never fused */
    return get_f32(blk) + t;
}

static void decode(int fmt, const uint8_t *in, size_t n, uint32_t block, float *out,
                   int add)
{
    if (fmt == CCL_QUANT_F16 || fmt == CCL_QUANT_BF16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(in[2 * i] | in[2 * i + 1] << 8);
            float v = fmt == CCL_QUANT_F16 ? ccl__f16_to_f32(h) : ccl__bf16_to_f32(h);
            out[i] = add ? out[i] + v : v;
        }
        return;
    }
    for (size_t b = 0; b < n; b += block) {
        size_t m = n - b < block ? n - b : block;
        for (size_t i = 0; i < m; i++) {
            float v = decode_one(fmt, in, i);
            out[b + i] = add ? out[b + i] + v : v;
        }
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
