/* test_half_simd.c - the F16C path (half_simd.c) gives the portable bits:
 * the f16 sum over every half value against 257 others (specials, NaNs
 * with payloads, subnormals included), the f32 -> f16 conversion over
 * every float whose low 12 bits are one of the rounding cases (ties,
 * just below and above, zero) plus random floats, and f16 -> f32 (plain
 * and added) over every half value, NaNs bit for bit too.  Where the CPU lacks F16C the path is
 * off and there is nothing to compare (said so on stdout). */
#include "ccl.h"
#include "harness.h"
#include "half_simd.h"
#include "reduce.h"

#define NX 65536

static int same_bytes(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

int main(void)
{
    if (!ccl__half_simd_force(1)) {
        printf("test_half_simd: this CPU has no F16C: only the portable path runs\n");
        PASS(!ccl__half_simd_on());
        return HARNESS_DONE("test_half_simd");
    }
    PASS(ccl__half_simd_on());

    /* Sums: every half x against y from a list, both paths. */
    uint16_t ys[257];
    int ny = 0;
    for (int i = 0; i < 65536; i += 256)
        ys[ny++] = (uint16_t)(i + 0x2a); /* every exponent, some mantissas */
    static const uint16_t special[] = {0x0000, 0x8000, 0x7c00, 0xfc00, 0x7e00,
                                       0x7d01, 0xfe55, 0x0001, 0x8001, 0x03ff,
                                       0x0400, 0x7bff, 0xfbff, 0x3c00, 0xbc00,
                                       0x3555, 0x5640, 0x7c01};
    int nspecial = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < nspecial && ny < 257; i++)
        ys[ny++] = special[i];
    uint16_t *x = harness_xmalloc(NX * 2), *y = harness_xmalloc(NX * 2);
    uint16_t *a = harness_xmalloc(NX * 2), *b = harness_xmalloc(NX * 2);
    int sum_bad = 0;
    for (int j = 0; j < ny; j++) {
        for (int i = 0; i < NX; i++) {
            x[i] = (uint16_t)i;
            y[i] = ys[j];
        }
        memcpy(a, x, NX * 2);
        memcpy(b, x, NX * 2);
        ccl__half_simd_force(1);
        PASS_RC(ccl__reduce(a, y, NX, CCL_F16, CCL_SUM));
        ccl__half_simd_force(0);
        PASS_RC(ccl__reduce(b, y, NX, CCL_F16, CCL_SUM));
        sum_bad += !same_bytes(a, b, NX * 2);
        /* AVG combines through the same kernel. */
        memcpy(a, x, NX * 2);
        memcpy(b, x, NX * 2);
        ccl__half_simd_force(1);
        PASS_RC(ccl__reduce(a, y, NX - 3, CCL_F16, CCL_AVG)); /* a ragged tail */
        ccl__half_simd_force(0);
        PASS_RC(ccl__reduce(b, y, NX - 3, CCL_F16, CCL_AVG));
        sum_bad += !same_bytes(a, b, NX * 2);
    }
    printf("f16 sums: %d x %d pairs, %d lists differ\n", NX, ny, sum_bad);
    PASS(sum_bad == 0);

    /* f32 -> f16: floats (hi << 12) | lo, every hi, lo the rounding cases. */
    static const uint32_t lows[] = {0x000, 0x001, 0x7ff, 0x800, 0x801, 0xfff};
    size_t nf = (size_t)1 << 20;
    float *f = harness_xmalloc(nf * 4);
    uint8_t *h1 = harness_xmalloc(nf * 2), *h2 = harness_xmalloc(nf * 2);
    int conv_bad = 0;
    for (size_t l = 0; l < sizeof lows / sizeof lows[0]; l++) {
        for (size_t i = 0; i < nf; i++) {
            uint32_t bits = (uint32_t)(i << 12) | lows[l];
            memcpy(&f[i], &bits, 4);
        }
        ccl__half_simd_force(1);
        ccl__f32_to_half_le(0, f, nf - 5, h1);
        ccl__half_simd_force(0);
        ccl__f32_to_half_le(0, f, nf - 5, h2);
        conv_bad += !same_bytes(h1, h2, (nf - 5) * 2);
    }
    uint64_t seed = 42;
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < nf; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t bits = (uint32_t)(seed >> 32);
            memcpy(&f[i], &bits, 4);
        }
        ccl__half_simd_force(1);
        ccl__f32_to_half_le(0, f, nf, h1);
        ccl__half_simd_force(0);
        ccl__f32_to_half_le(0, f, nf, h2);
        conv_bad += !same_bytes(h1, h2, nf * 2);
    }
    printf("f32 -> f16: %zu floats, %d lists differ\n", nf * 10, conv_bad);
    PASS(conv_bad == 0);

    /* f16 -> f32, plain and added, every half. */
    uint8_t *in = harness_xmalloc(NX * 2);
    for (int i = 0; i < NX; i++) {
        in[2 * i] = (uint8_t)i;
        in[2 * i + 1] = (uint8_t)(i >> 8);
    }
    float *o1 = harness_xmalloc(NX * 4), *o2 = harness_xmalloc(NX * 4);
    int back_bad = 0;
    for (int add = 0; add < 2; add++) {
        for (int i = 0; i < NX; i++)
            o1[i] = o2[i] = (float)(i % 97) * 0.25f - 7.0f;
        ccl__half_simd_force(1);
        ccl__half_le_to_f32(0, in, NX - 1, o1, add);
        ccl__half_simd_force(0);
        ccl__half_le_to_f32(0, in, NX - 1, o2, add);
        /* Bit for bit, NaNs included (a signalling half comes out quiet
         * from both). */
        for (int i = 0; i < NX - 1; i++)
            back_bad += memcmp(&o1[i], &o2[i], 4) != 0;
    }
    printf("f16 -> f32: %d values differ\n", back_bad);
    PASS(back_bad == 0);
    ccl__half_simd_force(1);

    /* Speed, printed only: a 16 Mi-element f16 sum both ways. */
    size_t big = (size_t)16 << 20;
    uint16_t *p = harness_xmalloc(big * 2), *q = harness_xmalloc(big * 2);
    for (size_t i = 0; i < big; i++) {
        p[i] = (uint16_t)(0x3000 + i % 4096);
        q[i] = 0x3800;
    }
    for (int on = 1; on >= 0; on--) {
        ccl__half_simd_force(on);
        double t0 = harness_now_seconds();
        ccl__reduce(p, q, big, CCL_F16, CCL_SUM);
        double t = harness_now_seconds() - t0;
        printf("f16 sum of 16 Mi elements, %s: %.1f ms (%.2f Gelem/s)\n",
               on ? "F16C" : "portable", t * 1e3, (double)big / t / 1e9);
    }
    ccl__half_simd_force(1);
    free(p), free(q), free(x), free(y), free(a), free(b), free(f), free(h1), free(h2);
    free(in), free(o1), free(o2);
    return HARNESS_DONE("test_half_simd");
}
