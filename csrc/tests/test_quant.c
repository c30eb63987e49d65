/* test_quant.c - the quantized encodings against their analytic error
 * bounds on random and adversarial data (all equal, one huge outlier,
 * denormals, mixed signs, tiny and odd blocks), NaN and infinity refused
 * by U8/U4/E3M0 and carried by F16/BF16, sizes, determinism (the same
 * input gives the same bytes, and decoding is the same bits twice),
 * decode_add, and stochastic rounding that is unbiased on average. */
#include "ccl.h"
#include "harness.h"
#include "quant.h"

#include <math.h>
#include <string.h>

#define MAXN 3000

static const char *NAME[] = {"-", "u8", "u4", "e3m0", "f16", "bf16"};

/* The largest error format fmt may make on element x of a block whose
 * min, max and largest magnitude are lo, hi, amax (stochastic: one step). */
static double bound(int fmt, double x, double lo, double hi, double amax, int stoch)
{
    double k = stoch ? 1.0 : 0.5;
    switch (fmt) {
    case CCL_QUANT_U8: return k * (hi - lo) / 255 * 1.0001 + 1e-30;
    case CCL_QUANT_U4: return k * (hi - lo) / 15 * 1.0001 + 1e-30;
    case CCL_QUANT_E3M0: {
        /* Levels are powers of two apart: nearest is within a third of
         * the value (stochastic: within the gap), and below the smallest
         * level amax/64 the error is at most that level. */
        double a = fabs(x), floor_lvl = amax / 64;
        return a < floor_lvl ? floor_lvl : (stoch ? a : a / 3) * 1.0001;
    }
    case CCL_QUANT_F16: return fabs(x) * pow(2, -11) + pow(2, -25);
    default: return fabs(x) * pow(2, -8) + 1e-38;
    }
}

static int check(int fmt, const float *x, size_t n, uint32_t block, uint64_t seed)
{
    static uint8_t enc[16 * MAXN], enc2[16 * MAXN];
    static float out[MAXN], out2[MAXN];
    size_t sz = ccl__quant_size(fmt, n, block);
    if (sz > sizeof enc || ccl__quant_encode(fmt, x, n, block, seed, 7, enc) != 0)
        return 1;
    ccl__quant_encode(fmt, x, n, block, seed, 7, enc2);
    if (memcmp(enc, enc2, sz) != 0)
        return 1; /* not deterministic */
    ccl__quant_decode(fmt, enc, n, block, out);
    ccl__quant_decode(fmt, enc, n, block, out2);
    if (memcmp(out, out2, n * sizeof *out) != 0)
        return 1;
    int bad = 0;
    int blocked = fmt <= CCL_QUANT_E3M0;
    for (size_t b = 0; b < n; b += blocked ? block : n) {
        size_t m = blocked ? (n - b < block ? n - b : block) : n;
        double lo = x[b], hi = x[b], amax = 0;
        for (size_t i = b; i < b + m; i++) {
            lo = x[i] < lo ? x[i] : lo;
            hi = x[i] > hi ? x[i] : hi;
            amax = fabs(x[i]) > amax ? fabs(x[i]) : amax;
        }
        for (size_t i = b; i < b + m; i++) {
            if (fmt == CCL_QUANT_F16 && fabs(x[i]) > 65520) {
                /* beyond half's range: infinity of the same sign (documented) */
                bad += !(isinf(out[i]) && (out[i] > 0) == (x[i] > 0));
                continue;
            }
            double err = fabs((double)out[i] - (double)x[i]);
            if (!(err <= bound(fmt, x[i], lo, hi, amax, seed != 0))) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s block %u: x %.9g -> %.9g (err %g, bound %g)\n",
                            NAME[fmt], block, x[i], out[i], err,
                            bound(fmt, x[i], lo, hi, amax, seed != 0));
            }
        }
    }
    /* decode_add adds exactly the decoded values. */
    for (size_t i = 0; i < n; i++)
        out2[i] = 1.5f;
    ccl__quant_decode_add(fmt, enc, n, block, out2);
    for (size_t i = 0; i < n; i++)
        bad += out2[i] != 1.5f + out[i];
    return bad;
}

int main(void)
{
    uint64_t rng = 42;
    static float x[MAXN];
    uint32_t blocks[] = {1, 2, 7, 64, 256};
    size_t lens[] = {0, 1, 2, 3, 63, 64, 65, 255, 1000, MAXN};
    for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_BF16; fmt++) {
        int bad = 0;
        for (size_t bi = 0; bi < sizeof blocks / sizeof *blocks; bi++)
            for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
                size_t n = lens[li];
                for (int kind = 0; kind < 6; kind++) {
                    for (size_t i = 0; i < n; i++) {
                        double u = (double)(harness_rng_next(&rng) >> 11) / 9007199254740992.0;
                        switch (kind) {
                        case 0: x[i] = (float)(u * 2 - 1); break;                /* mixed */
                        case 1: x[i] = 3.25f; break;                            /* all equal */
                        case 2: x[i] = i == n / 2 ? 1e30f : (float)u; break;     /* outlier */
                        case 3: x[i] = (float)(u * 1e-39); break;               /* denormals */
                        case 4: x[i] = (float)(-u * 1000); break;               /* negative */
                        default: x[i] = (float)((u - 0.5) * 1e-3 * (i % 5)); break;
                        }
                    }
                    bad += check(fmt, x, n, blocks[bi], 0);
                    bad += check(fmt, x, n, blocks[bi], 0x5eedull + (uint64_t)kind);
                }
            }
        fprintf(stderr, "  %s: %d out of bounds\n", NAME[fmt], bad);
        PASS(bad == 0);
    }
    /* Pieces at block boundaries (the owner's step, quant_op.c's
     * ccl__quant_finish_keep): encoding a unit piece by piece, each piece
     * from its own first element's index (the stochastic draws), gives
     * the whole unit's bytes, and decoding piece by piece its floats. */
    {
        static float y[MAXN], d1[MAXN], d2[MAXN];
        static uint8_t w1[9 * MAXN], w2[9 * MAXN];
        uint32_t pblocks[] = {1, 7, 64, 256};
        int same = 1;
        for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_BF16; fmt++)
            for (size_t bi = 0; bi < sizeof pblocks / sizeof *pblocks; bi++)
                for (uint64_t seed = 0; seed < 2; seed++) {
                    uint32_t b = fmt >= CCL_QUANT_F16 ? 0 : pblocks[bi];
                    size_t n = MAXN - 5, piece = b ? b * 3 : 100, base = 1000;
                    for (size_t i = 0; i < n; i++)
                        y[i] = (float)((double)(harness_rng_next(&rng) >> 11) /
                                           9007199254740992.0 * 8 - 4);
                    PASS(ccl__quant_encode(fmt, y, n, b, seed * 77, base, w1) == 0);
                    ccl__quant_decode(fmt, w1, n, b, d1);
                    size_t off = 0;
                    for (size_t p = 0; p < n; p += piece) {
                        size_t m = n - p < piece ? n - p : piece;
                        same &= ccl__quant_encode(fmt, y + p, m, b, seed * 77, base + p,
                                                  w2 + off) == 0;
                        ccl__quant_decode(fmt, w2 + off, m, b, d2 + p);
                        off += ccl__quant_size(fmt, m, b);
                    }
                    same &= off == ccl__quant_size(fmt, n, b);
                    same &= memcmp(w1, w2, off) == 0 && memcmp(d1, d2, n * 4) == 0;
                }
        PASS(same);
    }
    /* Sizes. */
    PASS(ccl__quant_size(CCL_QUANT_U8, 256, 256) == 8 + 256);
    PASS(ccl__quant_size(CCL_QUANT_U4, 257, 256) == 8 + 128 + 8 + 1);
    PASS(ccl__quant_size(CCL_QUANT_E3M0, 10, 4) == 3 * 4 + 2 + 2 + 1);
    PASS(ccl__quant_size(CCL_QUANT_F16, 10, 0) == 20);
    PASS(ccl__quant_size(CCL_QUANT_U8, 10, 0) == 0);
    PASS(ccl__quant_size(99, 10, 4) == 0);
    /* NaN and infinity: refused where there is no code for them. */
    float bad[4] = {1, NAN, 2, 3}, inf[2] = {INFINITY, 1};
    uint8_t enc[64];
    for (int fmt = CCL_QUANT_U8; fmt <= CCL_QUANT_E3M0; fmt++) {
        PASS(ccl__quant_encode(fmt, bad, 4, 4, 0, 0, enc) == -1);
        PASS(ccl__quant_encode(fmt, inf, 2, 2, 0, 0, enc) == -1);
    }
    float back[4];
    PASS(ccl__quant_encode(CCL_QUANT_F16, bad, 4, 0, 0, 0, enc) == 0);
    ccl__quant_decode(CCL_QUANT_F16, enc, 4, 0, back);
    PASS(isnan(back[1]) && back[0] == 1 && back[3] == 3);
    PASS(ccl__quant_encode(CCL_QUANT_BF16, inf, 2, 0, 0, 0, enc) == 0);
    ccl__quant_decode(CCL_QUANT_BF16, enc, 2, 0, back);
    PASS(isinf(back[0]) && back[1] == 1);
    /* Stochastic rounding is unbiased: the mean of many encodings of one
     * value between two levels comes out near the value. */
    static float v[4096], dv[4096];
    static uint8_t e2[8 * 4096];
    for (int i = 0; i < 4096; i++)
        v[i] = i % 2 ? 0.3f : 0.0f; /* levels 0 and 1/15 * 1 ... */
    v[1] = 1.0f;                     /* ... with a block range of [0, 1] */
    double sum = 0;
    int cnt = 0;
    for (int s = 1; s <= 20; s++) {
        ccl__quant_encode(CCL_QUANT_U4, v, 4096, 4096, (uint64_t)s, 0, e2);
        ccl__quant_decode(CCL_QUANT_U4, e2, 4096, 4096, dv);
        for (int i = 3; i < 4096; i += 2) {
            sum += dv[i];
            cnt++;
        }
    }
    fprintf(stderr, "  stochastic u4 mean of 0.3: %.4f\n", sum / cnt);
    PASS(fabs(sum / cnt - 0.3) < 0.002);
    return HARNESS_DONE("test_quant");
}
