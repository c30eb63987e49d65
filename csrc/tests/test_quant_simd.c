/* test_quant_simd.c - the AVX2 kernels (quant_simd.c) give the portable
 * bits: every format encoded and decoded (plain and added) with the
 * kernels on and off, round to nearest and stochastic, over random and
 * adversarial data (ties between levels, E3M0 level boundaries, equal
 * levels of a denormal scale, outliers, signed zeros, NaN and infinity),
 * block sizes from 32 to 65536 with ragged tails, unaligned buffers; and
 * arbitrary bytes decoded both ways (any header, any code).  Where the
 * CPU lacks AVX2 the kernels are off and there is nothing to compare
 * (said so on stdout).  test_quant_ref.c checks the whole codec against
 * the plain one-element-at-a-time reference as well. */
#include "ccl.h"
#include "harness.h"
#include "quant.h"
#include "quant_simd.h"

#include <math.h>

#define MAXN 70000

static const char *NAME[] = {"-", "u8", "u4", "e3m0", "f16", "bf16"};

static float uni(uint64_t *rng)
{
    return (float)(harness_rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

static void fill(int kind, float *x, size_t n, uint64_t *rng)
{
    float sc = ldexpf(1.0f, (int)(harness_rng_next(rng) % 40) - 20);
    for (size_t i = 0; i < n; i++) {
        float u = uni(rng);
        int k = (int)(harness_rng_next(rng) % 256);
        switch (kind) {
        case 0: x[i] = (u * 2 - 1) * sc; break;
        case 1: x[i] = -3.25f; break;
        case 2: x[i] = i % 97 == 5 ? 3e37f : u; break;
        case 3: x[i] = (u - 0.5f) * 1e-40f; break;
        case 4: x[i] = i % 2 ? 0.0f : -0.0f; break;
        case 5: x[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 255 : (float)k + 0.5f; break;
        case 6: x[i] = i % 3 == 0 ? 0 : i % 3 == 1 ? 15 : (float)(k % 15) + 0.5f; break;
        case 7: /* E3M0 levels (scale 1) and their midpoints */
            x[i] = i == 0 ? 1.0f : ldexpf(k % 2 ? 1.5f : 1.0f, -(k % 9)) * (u < 0.5f ? -1 : 1);
            break;
        case 8: x[i] = (float)(k % 4) * 1e-45f; break; /* levels that round to equal */
        case 9: x[i] = i % 2 ? 3e38f : -3e38f; break; /* range overflows f32 */
        default: /* one NaN or infinity somewhere: the encoders refuse */
            x[i] = u;
            if (i == n / 2)
                x[i] = k % 2 ? NAN : -INFINITY;
            break;
        }
    }
}

/* Decodes `bytes` both ways, plain and added onto acc0: how many of the
 * two differ. */
static int decodes_differ(int fmt, const uint8_t *bytes, size_t n, uint32_t block,
                          const float *acc0)
{
    static float da[MAXN], db[MAXN];
    int bad = 0;
    for (int add = 0; add < 2; add++) {
        memcpy(da, acc0, n * sizeof *da);
        memcpy(db, acc0, n * sizeof *db);
        ccl__quant_simd_force(1);
        (add ? ccl__quant_decode_add : ccl__quant_decode)(fmt, bytes, n, block, da);
        ccl__quant_simd_force(0);
        (add ? ccl__quant_decode_add : ccl__quant_decode)(fmt, bytes, n, block, db);
        bad += memcmp(da, db, n * sizeof *da) != 0;
    }
    return bad;
}

/* Encodes x both ways and decodes the bytes both ways: 0 if all agree. */
static int same(int fmt, const float *x, size_t n, uint32_t block, uint64_t seed,
                const float *acc0)
{
    static uint8_t a[5 * MAXN + 64], b[5 * MAXN + 64];
    size_t sz = ccl__quant_size(fmt, n, block);
    memset(a, 0xa5, sz + 1);
    memset(b, 0xa5, sz + 1);
    ccl__quant_simd_force(1);
    int ra = ccl__quant_encode(fmt, x, n, block, seed, 987654321, a);
    ccl__quant_simd_force(0);
    int rb = ccl__quant_encode(fmt, x, n, block, seed, 987654321, b);
    if (ra != rb)
        return 1;
    if (ra)
        return 0;
    if (memcmp(a, b, sz + 1) != 0) {
        for (size_t i = 0; i < sz; i++)
            if (a[i] != b[i]) {
                fprintf(stderr, "  %s block %u seed %llu n %zu: byte %zu: %02x, portable %02x\n",
                        NAME[fmt], block, (unsigned long long)seed, n, i, a[i], b[i]);
                break;
            }
        return 1;
    }
    return decodes_differ(fmt, a, n, block, acc0);
}

int main(void)
{
    if (!ccl__quant_simd_force(1)) {
        printf("test_quant_simd: this CPU has no AVX2: only the portable path runs\n");
        PASS(!ccl__quant_simd_on());
        return HARNESS_DONE("test_quant_simd");
    }
    PASS(ccl__quant_simd_on());
    ccl__quant_simd_force(0);
    PASS(!ccl__quant_simd_on());

    uint64_t rng = 11;
    static float xs[MAXN + 8], acc[MAXN];
    static uint8_t raw[5 * MAXN + 64];
    uint32_t blocks[] = {32, 64, 96 /* not a power of two: the codec allows it */, 256,
                         1024, 65536};
    for (size_t i = 0; i < MAXN; i++)
        acc[i] = (uni(&rng) - 0.5f) * 100.0f;
    for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_BF16; fmt++) {
        int bad = 0, runs = 0;
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++)
            for (int kind = 0; kind < 11; kind++) {
                size_t n = 1 + harness_rng_below(&rng, kind % 3 ? 5000 : MAXN);
                float *x = xs + harness_rng_below(&rng, 8); /* any alignment */
                fill(kind, x, n, &rng);
                bad += same(fmt, x, n, blocks[bi], 0, acc);
                bad += same(fmt, x, n, blocks[bi], 0x5eedull + (uint64_t)kind, acc);
                runs += 2;
            }
        /* Arbitrary bytes: any header (NaN, infinity, denormal scales)
         * and any code. */
        for (int r = 0; r < 60; r++) {
            size_t n = 1 + harness_rng_below(&rng, 20000);
            uint32_t block = blocks[r % 6];
            size_t sz = ccl__quant_size(fmt, n, block);
            harness_rng_fill(&rng, raw, sz);
            bad += decodes_differ(fmt, raw, n, block, acc);
            runs += 2;
        }
        fprintf(stderr, "  %s: %d of %d runs differ between AVX2 and portable\n", NAME[fmt],
                bad, runs);
        PASS(bad == 0);
    }
    ccl__quant_simd_force(1);
    return HARNESS_DONE("test_quant_simd");
}
