/* test_quant_ref.c - the codec of quant.c, which runs its lanes as SIMD,
 * against the plain one-element-at-a-time codec it replaced (kept below
 * as the reference): the same encoded bytes for the same input, seed and
 * index, and the same decoded floats, bit for bit, on random and
 * adversarial data (ties between two levels, level boundaries, all equal,
 * outliers, denormals, signed zeros, ranges too wide for f32) and on
 * arbitrary bytes.  Every rank runs one of the two on whatever CPU it
 * has, so they must never differ. */
#include "ccl.h"
#include "harness.h"
#include "quant.h"
#include "reduce.h"

#include <math.h>

#define MAXN 1100

/* ---- the reference: quant.c before the SIMD lanes ---- */
#define MM_HDR 8
#define E3_HDR 4

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
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(u >> (8 * k));
}

static float get_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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

static int ref_quant_encode(int fmt, const float *x, size_t n, uint32_t block,
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

static void ref_decode(int fmt, const uint8_t *in, size_t n, uint32_t block, float *out,
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

/* ---- the comparison ---- */

static const char *NAME[] = {"-", "u8", "u4", "e3m0", "f16", "bf16"};

static int same(int fmt, const float *x, size_t n, uint32_t block, uint64_t seed)
{
    static uint8_t a[16 * MAXN], b[16 * MAXN];
    static float da[MAXN], db[MAXN];
    size_t sz = ccl__quant_size(fmt, n, block);
    memset(a, 0xa5, sz + 1);
    memset(b, 0xa5, sz + 1);
    int ra = ccl__quant_encode(fmt, x, n, block, seed, 1234567, a);
    int rb = ref_quant_encode(fmt, x, n, block, seed, 1234567, b);
    if (ra != rb)
        return 1;
    if (ra)
        return 0;
    if (memcmp(a, b, sz + 1) != 0) {
        for (size_t i = 0; i < sz; i++)
            if (a[i] != b[i]) {
                fprintf(stderr, "  %s block %u seed %llu: byte %zu: %02x, reference %02x\n",
                        NAME[fmt], block, (unsigned long long)seed, i, a[i], b[i]);
                break;
            }
        return 1;
    }
    ccl__quant_decode(fmt, a, n, block, da);
    ref_decode(fmt, a, n, block, db, 0);
    int bad = memcmp(da, db, n * sizeof *da) != 0;
    for (size_t i = 0; i < n; i++)
        da[i] = db[i] = x[i];
    ccl__quant_decode_add(fmt, a, n, block, da);
    ref_decode(fmt, a, n, block, db, 1);
    return bad + (memcmp(da, db, n * sizeof *da) != 0);
}

static float uni(uint64_t *rng)
{
    return (float)(harness_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

int main(void)
{
    uint64_t rng = 7;
    static float x[MAXN];
    static uint8_t raw[16 * MAXN];
    static float da[MAXN], db[MAXN];
    uint32_t blocks[] = {1, 2, 16, 32, 64, 256, 1024};
    size_t lens[] = {0, 1, 3, 15, 16, 17, 31, 33, 255, 256, 257, 1000, MAXN};
    for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_BF16; fmt++) {
        int bad = 0, runs = 0;
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                size_t n = lens[li];
                for (int kind = 0; kind < 11; kind++) {
                    float sc = ldexpf(1.0f, (int)(harness_rng_next(&rng) % 40) - 20);
                    for (size_t i = 0; i < n; i++) {
                        float u = uni(&rng);
                        int k = (int)(harness_rng_next(&rng) % 256);
                        switch (kind) {
                        case 0: x[i] = (u * 2 - 1) * sc; break;
                        case 1: x[i] = -3.25f; break;
                        case 2: x[i] = i % 97 == 5 ? 3e37f : u; break;
                        case 3: x[i] = (u - 0.5f) * 1e-40f; break;  /* denormals */
                        case 4: x[i] = i % 2 ? 0.0f : -0.0f; break; /* signed zeros */
                        /* u8/u4 ties: min 0, max 255 or 15, halves between. */
                        case 5: x[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 255 : (float)k + 0.5f; break;
                        case 6: x[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 15 : (float)(k % 15) + 0.5f; break;
                        /* E3M0 levels and their midpoints, with s = 1. */
                        case 7: x[i] = i == 0 ? 1.0f : ldexpf(k % 2 ? 1.5f : 1.0f, -(k % 9)) * (u < 0.5f ? -1 : 1); break;
                        case 8: x[i] = i % 2 ? 3e38f : -3e38f; break; /* range overflows f32 */
                        case 9: x[i] = (float)(k % 4) * 1e-45f; break;  /* smallest denormals */
                        default: x[i] = i % 7 == 0 ? 1.0f : ldexpf(u, -(k % 30)); break;
                        }
                    }
                    bad += same(fmt, x, n, blocks[bi], 0);
                    bad += same(fmt, x, n, blocks[bi], 0x5eedull + (uint64_t)kind);
                    runs += 2;
                }
            }
        /* Decoding arbitrary bytes (any header, any code). */
        for (int r = 0; r < 200; r++) {
            size_t n = (size_t)(harness_rng_next(&rng) % MAXN);
            uint32_t block = blocks[r % 7];
            size_t sz = ccl__quant_size(fmt, n, block);
            for (size_t i = 0; i < sz; i++)
                raw[i] = (uint8_t)harness_rng_next(&rng);
            ccl__quant_decode(fmt, raw, n, block, da);
            ref_decode(fmt, raw, n, block, db, 0);
            bad += memcmp(da, db, n * sizeof *da) != 0;
            runs++;
        }
        fprintf(stderr, "  %s: %d of %d runs differ from the reference\n", NAME[fmt], bad, runs);
        PASS(bad == 0);
    }
    return HARNESS_DONE("test_quant_ref");
}
