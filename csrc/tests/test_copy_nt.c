/*
 * test_copy_nt.c - the copies past the cache (copy_nt.h), the NaN and
 * infinity scan (ccl__f32_first_nonfinite), and AVG over a power of two
 * ranks, which multiplies by the reciprocal: the same bits as the
 * division for every float class (normal, subnormal, zero, infinity, NaN
 * payloads aside).
 */
#include "ccl.h"
#include "copy_nt.h"
#include "harness.h"
#include "reduce.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float f_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Every length 0..300 and a few large ones, every alignment of both ends. */
static void test_copy(uint64_t *rng)
{
    size_t lens[] = {0, 1, 15, 16, 63, 64, 65, 4095, 4096, 4097, 70001, 1 << 20};
    uint8_t *src = harness_xmalloc((1 << 20) + 64), *dst = harness_xmalloc((1 << 20) + 64);
    for (size_t i = 0; i < (1 << 20) + 64; i++)
        src[i] = (uint8_t)harness_rng_next(rng);
    int ok = 1;
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
        for (int so = 0; so < 16; so += 3)
            for (int d0 = 0; d0 < 16; d0 += 5) {
                memset(dst, 0xee, (1 << 20) + 64);
                ccl__copy_nt(dst + d0, src + so, lens[l]);
                ok &= memcmp(dst + d0, src + so, lens[l]) == 0;
                ok &= dst[d0 + lens[l]] == 0xee && (d0 == 0 || dst[d0 - 1] == 0xee);
            }
    PASS(ok);
    free(src);
    free(dst);
}

/* The checked copy copies everything and names the first bad element,
 * wherever it is (a piece's head, middle, tail; the unaligned head). */
static void test_checked_copy(uint64_t *rng)
{
    size_t n = 5000;
    float *src = harness_xmalloc((n + 8) * 4), *dst = harness_xmalloc((n + 8) * 4);
    uint32_t bad_bits[] = {0x7fc00000u, 0xffc00001u, 0x7f800000u, 0xff800000u,
                           0x7f800001u};
    size_t spots[] = {0, 1, 2, 3, 4, 1023, 1024, 1025, 2047, 4999};
    int ok = 1;
    for (int dalign = 0; dalign < 4; dalign++)
        for (size_t s = 0; s < sizeof spots / sizeof spots[0]; s++)
            for (size_t b = 0; b < sizeof bad_bits / sizeof bad_bits[0]; b++) {
                for (size_t i = 0; i < n; i++)
                    src[i] = (float)((int64_t)(harness_rng_next(rng) % 2001) - 1000) /
                             7.0f;
                src[spots[s]] = f_of(bad_bits[b]);
                if (spots[s] + 7 < n)
                    src[spots[s] + 7] = f_of(0x7f800000u); /* a later one */
                size_t got = ccl__copy_nt_f32_check(dst + dalign, src, n);
                ok &= got == spots[s];
                ok &= memcmp(dst + dalign, src, n * 4) == 0;
                ok &= ccl__f32_first_nonfinite(src, n) == spots[s];
            }
    /* None: n; the largest finite values and subnormals are not flagged. */
    for (size_t i = 0; i < n; i++)
        src[i] = i % 3 == 0 ? f_of(0x7f7fffffu) : i % 3 == 1 ? f_of(0x00000001u)
                                                              : -f_of(0x7f7fffffu);
    ok &= ccl__copy_nt_f32_check(dst + 1, src, n) == n;
    ok &= ccl__f32_first_nonfinite(src, n) == n;
    ok &= ccl__copy_nt_f32_check(dst, src, 0) == 0;
    PASS(ok);
    free(src);
    free(dst);
}

/* AVG over 2, 4, ..., 4096 ranks against x / n, bit for bit, on random
 * bit patterns (every class) and on the edges of the subnormal range. */
static void test_pow2_avg(uint64_t *rng)
{
    size_t n = 100000;
    float *a = harness_xmalloc(n * 4), *b = harness_xmalloc(n * 4);
    double *c = harness_xmalloc(n * 8), *d = harness_xmalloc(n * 8);
    int ok = 1;
    for (int ranks = 2; ranks <= 4096; ranks *= 2) {
        for (size_t i = 0; i < n; i++) {
            uint64_t r = harness_rng_next(rng);
            uint32_t u = (uint32_t)r;
            if (i % 4 == 0)
                u &= 0x80ffffffu; /* subnormal or tiny normal */
            memcpy(&a[i], &u, 4);
            memcpy(&c[i], &r, 8);
            if (i % 4 == 0)
                c[i] = ldexp((double)(r >> 40), -1074 + (int)(r % 40));
        }
        memcpy(b, a, n * 4);
        memcpy(d, c, n * 8);
        PASS(ccl__reduce_finish(a, n, CCL_F32, CCL_AVG, ranks) == 0);
        PASS(ccl__reduce_finish(c, n, CCL_F64, CCL_AVG, ranks) == 0);
        for (size_t i = 0; i < n; i++) {
            float q = b[i] / (float)ranks;
            double e = d[i] / (double)ranks;
            if (isnan(q))
                ok &= isnan(a[i]) != 0;
            else
                ok &= memcmp(&q, &a[i], 4) == 0;
            if (isnan(e))
                ok &= isnan(c[i]) != 0;
            else
                ok &= memcmp(&e, &c[i], 8) == 0;
        }
    }
    PASS(ok);
    free(a);
    free(b);
    free(c);
    free(d);
}

int main(void)
{
    uint64_t rng = 99;
    test_copy(&rng);
    test_checked_copy(&rng);
    test_pow2_avg(&rng);
    return HARNESS_DONE("test_copy_nt");
}
