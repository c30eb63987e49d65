/*
 * test_reduce.c - reduction kernels, f16/bf16 conversions and ccl__hash64.
 *
 * Expected values come from two independent sources: hand-written tables
 * (worked out with exact arithmetic outside C) and slow reference
 * implementations below that share no code with reduce.c: f16 and bf16
 * values are decoded with ldexp, and rounding back is a binary search over
 * every representable value, comparing exactly in double.
 */
#include "ccl.h"
#include "reduce.h"
#include "harness.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* Helpers. */

static uint32_t bits_of_float(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ------------------------------------------------------------------ */
/* Reference f16 / bf16 arithmetic. */

enum half_kind { HALF_F16, HALF_BF16 };

/* The pattern of +infinity and the number of mantissa bits. */
static unsigned half_inf(int kind) { return kind == HALF_F16 ? 0x7c00u : 0x7f80u; }
static int half_mant_bits(int kind) { return kind == HALF_F16 ? 10 : 7; }

static int half_is_nan(int kind, uint16_t h)
{
    return (h & 0x7fffu) > half_inf(kind);
}

/* Magnitude of a non-negative pattern <= the infinity pattern.  The
 * infinity pattern is given the value 2^(emax+1), the next power of two
 * after the largest finite value: IEEE rounds to infinity exactly when
 * rounding to that value with an unbounded exponent would. */
static double half_mag(int kind, unsigned p)
{
    int mb = half_mant_bits(kind);
    int bias = kind == HALF_F16 ? 15 : 127;
    unsigned e = p >> mb;
    unsigned m = p & ((1u << mb) - 1u);
    if (e == 0)
        return ldexp((double)m, 1 - bias - mb);
    return ldexp((double)((1u << mb) + m), (int)e - bias - mb);
}

static double half_value(int kind, uint16_t h)
{
    double v;
    if (half_is_nan(kind, h))
        return NAN;
    if ((h & 0x7fffu) == half_inf(kind))
        v = INFINITY;
    else
        v = half_mag(kind, h & 0x7fffu);
    return (h & 0x8000u) ? -v : v;
}

/* Rounds x to the nearest f16/bf16, ties to even, by binary search.
 * x must not be NaN. */
static uint16_t half_round(int kind, double x)
{
    unsigned sign = signbit(x) ? 0x8000u : 0u;
    double ax = fabs(x);
    unsigned inf = half_inf(kind);
    unsigned lo = 0, hi = inf, r;

    if (ax >= half_mag(kind, inf))
        return (uint16_t)(sign | inf);
    /* Invariant: mag(lo) <= ax < mag(hi). */
    while (hi - lo > 1) {
        unsigned mid = lo + (hi - lo) / 2;
        if (half_mag(kind, mid) <= ax)
            lo = mid;
        else
            hi = mid;
    }
    /* Both sums are exact in double: 2 * ax is a float times two, and
     * neighbouring 16-bit values are a few bits apart. */
    double twice = 2.0 * ax;
    double mid2 = half_mag(kind, lo) + half_mag(kind, hi);
    if (twice < mid2)
        r = lo;
    else if (twice > mid2)
        r = hi;
    else
        r = (lo & 1u) ? hi : lo;
    return (uint16_t)(sign | r);
}

/* ------------------------------------------------------------------ */
/* Conversion tests. */

/* Checks one float -> 16-bit conversion against the reference. */
static int check_narrow(int kind, float f)
{
    uint16_t got = kind == HALF_F16 ? ccl__f32_to_f16(f) : ccl__f32_to_bf16(f);
    if (isnan(f)) {
        /* A NaN stays a NaN of the same sign with the quiet bit set. */
        uint16_t quiet = (uint16_t)(1u << (half_mant_bits(kind) - 1));
        return half_is_nan(kind, got) && (got & quiet) &&
               (got & 0x8000u) == ((bits_of_float(f) >> 16) & 0x8000u);
    }
    uint16_t want = half_round(kind, (double)f);
    if (got != want) {
        fprintf(stderr, "  %s(%a = 0x%08x) = 0x%04x, want 0x%04x\n",
                kind == HALF_F16 ? "f32_to_f16" : "f32_to_bf16", (double)f,
                (unsigned)bits_of_float(f), got, want);
        return 0;
    }
    return 1;
}

static void test_widen_all(int kind)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = kind == HALF_F16 ? ccl__f16_to_f32(h) : ccl__bf16_to_f32(h);
        uint32_t fb = bits_of_float(f);
        if (half_is_nan(kind, h)) {
            /* The payload moves to the top of the float mantissa, so the
             * quiet bit stays the quiet bit; an f16 NaN comes out quiet
             * (as F16C gives it: half_simd.c), a bf16 one as it was. */
            int shift = 23 - half_mant_bits(kind);
            uint32_t mant = h & ((1u << half_mant_bits(kind)) - 1u);
            uint32_t want = ((uint32_t)(h & 0x8000u) << 16) | 0x7f800000u |
                            (mant << shift) | (kind == HALF_F16 ? 0x00400000u : 0u);
            if (fb != want)
                bad++;
        } else {
            /* The reference is exact and a float holds every value. */
            if (fb != bits_of_float((float)half_value(kind, h)))
                bad++;
        }
        /* Round trip: every value comes back; a NaN comes back quiet. */
        uint16_t back = kind == HALF_F16 ? ccl__f32_to_f16(f) : ccl__f32_to_bf16(f);
        uint16_t quiet = (uint16_t)(1u << (half_mant_bits(kind) - 1));
        uint16_t want = half_is_nan(kind, h) ? (uint16_t)(h | quiet) : h;
        if (back != want) {
            if (bad < 5)
                fprintf(stderr, "  round trip 0x%04x -> 0x%04x\n", h, back);
            bad++;
        }
    }
    PASS(bad == 0);
}

/* Every representable value, every midpoint between neighbours (the
 * ties) and the floats just either side of each midpoint, for both
 * signs. */
static void test_narrow_ties(int kind)
{
    int bad = 0;
    for (unsigned p = 0; p < half_inf(kind) && bad < 5; p++) {
        double mid = (half_mag(kind, p) + half_mag(kind, p + 1)) / 2;
        float f = (float)mid;
        if ((double)f != mid) /* midpoints need one more bit: exact */
            bad++;
        float probes[4] = { (float)half_mag(kind, p), f,
                            nextafterf(f, 0.0f), nextafterf(f, INFINITY) };
        for (int i = 0; i < 4; i++) {
            bad += !check_narrow(kind, probes[i]);
            bad += !check_narrow(kind, -probes[i]);
        }
    }
    PASS(bad == 0);
}

static void test_narrow_random(int kind, uint64_t *rng)
{
    int bad = 0;
    for (int i = 0; i < 1000000 && bad < 5; i++) {
        uint64_t r = harness_rng_next(rng);
        /* Any bit pattern (NaNs, huge, tiny, subnormal floats) ... */
        if (!check_narrow(kind, float_of_bits((uint32_t)r)))
            bad++;
        /* ... and floats whose exponent is near the target's range,
         * where rounding is interesting. */
        uint32_t lo_exp = kind == HALF_F16 ? 95 : 0;
        uint32_t span = kind == HALF_F16 ? 50 : 255;
        uint32_t e = lo_exp + (uint32_t)((r >> 32) % span);
        uint32_t bits = (uint32_t)(r >> 63) << 31 | e << 23 |
                        ((uint32_t)(r >> 8) & 0x7fffffu);
        if (!check_narrow(kind, float_of_bits(bits)))
            bad++;
    }
    PASS(bad == 0);
}

static void test_conversions(uint64_t *rng)
{
    /* Spot values. */
    PASS(ccl__f32_to_f16(1.0f) == 0x3c00);
    PASS(ccl__f32_to_f16(-2.0f) == 0xc000);
    PASS(ccl__f32_to_f16(65504.0f) == 0x7bff);
    PASS(ccl__f32_to_f16(65519.99f) == 0x7bff);
    PASS(ccl__f32_to_f16(65520.0f) == 0x7c00);  /* tie goes to infinity */
    PASS(ccl__f32_to_f16(1e9f) == 0x7c00);
    PASS(ccl__f32_to_f16(-INFINITY) == 0xfc00);
    PASS(ccl__f32_to_f16(0x1p-24f) == 0x0001);  /* smallest subnormal */
    PASS(ccl__f32_to_f16(0x1p-25f) == 0x0000);  /* tie to even: zero */
    PASS(ccl__f32_to_f16(0x1.8p-24f) == 0x0002); /* tie to even: two */
    PASS(ccl__f32_to_f16(0x1.ff8p-15f) == 0x03ff); /* largest subnormal */
    PASS(ccl__f32_to_f16(0x1.ffcp-15f) == 0x0400); /* tie, up to normal */
    PASS(ccl__f32_to_f16(-0.0f) == 0x8000);
    PASS(ccl__f32_to_f16(1e-45f) == 0x0000);    /* float subnormal */
    PASS(ccl__f32_to_f16(NAN) == 0x7e00);
    PASS(ccl__f32_to_f16(float_of_bits(0x7f800001u)) == 0x7e00); /* sNaN */
    PASS(ccl__f16_to_f32(0x3555) == 0x1.554p-2f);
    PASS(ccl__f16_to_f32(0x0001) == 0x1p-24f);
    PASS(isinf(ccl__f16_to_f32(0xfc00)) && ccl__f16_to_f32(0xfc00) < 0);
    PASS(ccl__f32_to_bf16(1.0f) == 0x3f80);
    PASS(ccl__f32_to_bf16(float_of_bits(0x3f808000u)) == 0x3f80); /* tie, even */
    PASS(ccl__f32_to_bf16(float_of_bits(0x3f818000u)) == 0x3f82); /* tie, up */
    PASS(ccl__f32_to_bf16(float_of_bits(0x7f7f8000u)) == 0x7f80); /* to inf */
    PASS(ccl__f32_to_bf16(float_of_bits(0x7f7f7fffu)) == 0x7f7f);
    PASS(ccl__f32_to_bf16(float_of_bits(0x7fffffffu)) == 0x7fff); /* NaN */
    PASS(ccl__f32_to_bf16(float_of_bits(0x7f80ffffu)) == 0x7fc0); /* sNaN */
    PASS(ccl__f32_to_bf16(float_of_bits(0xff800001u)) == 0xffc0);
    PASS(ccl__f32_to_bf16(float_of_bits(0x00008000u)) == 0x0000);
    PASS(ccl__f32_to_bf16(float_of_bits(0x00018000u)) == 0x0002);
    PASS(ccl__bf16_to_f32(0x3eab) == 0x1.56p-2f);

    for (int kind = HALF_F16; kind <= HALF_BF16; kind++) {
        test_widen_all(kind);
        test_narrow_ties(kind);
        test_narrow_random(kind, rng);
    }
}

/* ------------------------------------------------------------------ */
/* Element access for any dtype, as raw bits in a uint64_t. */

enum kind { K_F32, K_F64, K_F16, K_BF16, K_SINT, K_UINT };

static const struct dtype_info {
    int kind;
    int bits;
    const char *name;
} DT[CCL_DTYPE_COUNT] = {
    [CCL_F32] = { K_F32, 32, "f32" },   [CCL_F64] = { K_F64, 64, "f64" },
    [CCL_F16] = { K_F16, 16, "f16" },   [CCL_BF16] = { K_BF16, 16, "bf16" },
    [CCL_I8] = { K_SINT, 8, "i8" },     [CCL_I16] = { K_SINT, 16, "i16" },
    [CCL_I32] = { K_SINT, 32, "i32" },  [CCL_I64] = { K_SINT, 64, "i64" },
    [CCL_U8] = { K_UINT, 8, "u8" },     [CCL_U16] = { K_UINT, 16, "u16" },
    [CCL_U32] = { K_UINT, 32, "u32" },  [CCL_U64] = { K_UINT, 64, "u64" },
};

static const char *OPNAME[CCL_REDOP_COUNT] = { "sum", "avg", "min", "max",
                                               "prod", "band", "bor", "bxor" };

/* Bitwise ops exist for integer dtypes only. */
static int op_applies(int dtype, int op)
{
    return op < CCL_BAND || DT[dtype].kind == K_SINT || DT[dtype].kind == K_UINT;
}

static uint64_t mask_of(int bits)
{
    return bits == 64 ? ~UINT64_C(0) : (UINT64_C(1) << bits) - 1u;
}

static uint64_t load_raw(int dtype, const unsigned char *p)
{
    switch (DT[dtype].bits) {
    case 8: return p[0];
    case 16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 32: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
    }
}

static void store_raw(int dtype, unsigned char *p, uint64_t raw)
{
    switch (DT[dtype].bits) {
    case 8: p[0] = (unsigned char)raw; break;
    case 16: { uint16_t v = (uint16_t)raw; memcpy(p, &v, 2); break; }
    case 32: { uint32_t v = (uint32_t)raw; memcpy(p, &v, 4); break; }
    default: memcpy(p, &raw, 8); break;
    }
}

/* Sign-extends a raw value of the given width, without relying on
 * implementation-defined conversions. */
static int64_t sext(uint64_t raw, int bits)
{
    if (bits == 64) {
        int64_t v;
        memcpy(&v, &raw, 8);
        return v;
    }
    raw &= mask_of(bits);
    if (raw >> (bits - 1))
        return (int64_t)raw - ((int64_t)1 << bits);
    return (int64_t)raw;
}

static double f64_of(uint64_t raw)
{
    double d;
    memcpy(&d, &raw, 8);
    return d;
}

static uint64_t raw_of_f64(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static int raw_is_nan(int dtype, uint64_t raw)
{
    switch (DT[dtype].kind) {
    case K_F32: return isnan(float_of_bits((uint32_t)raw));
    case K_F64: return isnan(f64_of(raw));
    case K_F16: return half_is_nan(HALF_F16, (uint16_t)raw);
    case K_BF16: return half_is_nan(HALF_BF16, (uint16_t)raw);
    default: return 0;
    }
}

/* Equal bits, or both NaN (which NaN an addition returns is up to the
 * hardware; that a NaN comes out is not). */
static int raw_same(int dtype, uint64_t got, uint64_t want)
{
    if (raw_is_nan(dtype, want))
        return raw_is_nan(dtype, got);
    return got == want;
}

/* The value of a float-kind raw element as a double, exactly. */
static double value_of(int dtype, uint64_t raw)
{
    switch (DT[dtype].kind) {
    case K_F32: return (double)float_of_bits((uint32_t)raw);
    case K_F64: return f64_of(raw);
    case K_F16: return half_value(HALF_F16, (uint16_t)raw);
    default: return half_value(HALF_BF16, (uint16_t)raw);
    }
}

/* Rounds a double to the dtype and returns its raw bits.  For f32 the
 * conversion rounds correctly; rounding twice (exact -> double -> f32 or
 * f16) is harmless because double has more than 2p + 2 bits. */
static uint64_t raw_round(int dtype, double x)
{
    switch (DT[dtype].kind) {
    case K_F32: return bits_of_float((float)x);
    case K_F64: return raw_of_f64(x);
    case K_F16: return isnan(x) ? 0x7e00u : half_round(HALF_F16, x);
    default: return isnan(x) ? 0x7fc0u : half_round(HALF_BF16, x);
    }
}

/* The reference combine: dst (op) src for one element. */
static uint64_t ref_combine(int dtype, int op, uint64_t a, uint64_t b)
{
    int bits = DT[dtype].bits;
    uint64_t m = mask_of(bits);
    if (op == CCL_AVG)
        op = CCL_SUM;
    if (op == CCL_BAND)
        return a & b & m;
    if (op == CCL_BOR)
        return (a | b) & m;
    if (op == CCL_BXOR)
        return (a ^ b) & m;

    if (DT[dtype].kind == K_SINT) {
        int64_t x = sext(a, bits), y = sext(b, bits);
        switch (op) {
        case CCL_SUM:
            if (bits < 64)
                return (uint64_t)(x + y) & m;
            return a + b;
        case CCL_PROD:
            if (bits <= 32)
                return (uint64_t)(x * y) & m; /* |x * y| <= 2^62 */
            return a * b;
        case CCL_MIN: return (uint64_t)(x < y ? x : y) & m;
        default: return (uint64_t)(x > y ? x : y) & m;
        }
    }
    if (DT[dtype].kind == K_UINT) {
        switch (op) {
        case CCL_SUM: return (a + b) & m;
        case CCL_PROD: return (a * b) & m;
        case CCL_MIN: return a < b ? a : b;
        default: return a > b ? a : b;
        }
    }
    /* Floats. */
    double x = value_of(dtype, a), y = value_of(dtype, b);
    switch (op) {
    case CCL_SUM: return raw_round(dtype, x + y);
    case CCL_PROD: return raw_round(dtype, x * y);
    case CCL_MIN:
        if (isnan(x) || isnan(y))
            return raw_round(dtype, NAN);
        return x < y ? a : b; /* the exact operand, signed zeros too */
    default:
        if (isnan(x) || isnan(y))
            return raw_round(dtype, NAN);
        return x > y ? a : b;
    }
}

/* The reference AVG finish: truncating integer division, true float
 * division. */
static uint64_t ref_avg(int dtype, uint64_t x, int nranks)
{
    int bits = DT[dtype].bits;
    switch (DT[dtype].kind) {
    case K_SINT: return (uint64_t)(sext(x, bits) / nranks) & mask_of(bits);
    case K_UINT: return x / (uint64_t)nranks;
    default: return raw_round(dtype, value_of(dtype, x) / nranks);
    }
}

/* A random element, biased towards edge values. */
static uint64_t random_raw(int dtype, uint64_t *rng)
{
    uint64_t r = harness_rng_next(rng);
    int bits = DT[dtype].bits;
    unsigned pick = (unsigned)(r >> 56);
    uint64_t v = harness_rng_next(rng);

    switch (DT[dtype].kind) {
    case K_SINT:
    case K_UINT: {
        static const uint64_t edges[] = { 0, 1, 2, ~UINT64_C(0) };
        if (pick < 32)
            return edges[pick & 3] & mask_of(bits);
        if (pick < 48) /* the signed minimum and maximum */
            return ((pick & 1) ? (mask_of(bits) >> 1)
                               : (mask_of(bits) >> 1) + 1) & mask_of(bits);
        if (pick < 96) /* small magnitudes keep products from vanishing */
            return (uint64_t)sext(v % 41, bits) - 20u;
        return v & mask_of(bits);
    }
    case K_F16:
    case K_BF16:
        return v & 0xffffu; /* every pattern is fair game */
    case K_F32:
        if (pick < 16) {
            static const uint32_t specials[] = {
                0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,
                0x7fc00000u, 0x00000001u, 0x7f7fffffu, 0x00800000u };
            return specials[pick & 7];
        }
        if (pick < 80)
            return bits_of_float((float)((int)(v % 2001) - 1000) / 8);
        if (pick < 160) /* moderate exponents */
            return (v & 0x807fffffu) | (uint32_t)(100 + (v >> 40) % 56) << 23;
        return v & 0xffffffffu;
    default:
        if (pick < 16) {
            static const double specials[] = { 0.0, -0.0, INFINITY, -INFINITY,
                                               NAN, 0x1p-1074, 0x1.fffffffffffffp1023,
                                               0x1p-1022 };
            return raw_of_f64(specials[pick & 7]);
        }
        if (pick < 80)
            return raw_of_f64((double)((int)(v % 2001) - 1000) / 8);
        if (pick < 160)
            return (v & UINT64_C(0x800fffffffffffff)) |
                   (uint64_t)(1000 + (v >> 40) % 48) << 52;
        return v;
    }
}

/* ------------------------------------------------------------------ */
/* Hand-written cases: exact expected values for every dtype and op. */

/* Runs dst (op) src on n elements at the given byte offsets and compares
 * with want.  For AVG, nranks > 0 also runs the finish step. */
static void hand_run(int line, int dtype, int op, const void *a, const void *b,
                     const void *want, size_t n, int nranks, size_t doff,
                     size_t soff)
{
    size_t sz = ccl_dtype_size(dtype);
    unsigned char dbuf[160], sbuf[160];
    memcpy(dbuf + doff, a, n * sz);
    memcpy(sbuf + soff, b, n * sz);
    PASS(ccl__reduce(dbuf + doff, sbuf + soff, n, dtype, op) == 0);
    if (nranks > 0)
        PASS(ccl__reduce_finish(dbuf + doff, n, dtype, op, nranks) == 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t got = load_raw(dtype, dbuf + doff + i * sz);
        uint64_t exp = load_raw(dtype, (const unsigned char *)want + i * sz);
        if (!raw_same(dtype, got, exp)) {
            fprintf(stderr,
                    "FAIL line %d: %s %s[%zu] (nranks %d) = 0x%llx, want 0x%llx\n",
                    line, DT[dtype].name, OPNAME[op], i, nranks,
                    (unsigned long long)got, (unsigned long long)exp);
            PASS(0);
        }
    }
}

static void hand(int line, int dtype, int op, const void *a, const void *b,
                 const void *want, size_t bytes, int nranks)
{
    size_t n = bytes / ccl_dtype_size(dtype);
    /* Aligned, then at odd byte offsets that misalign every wide type. */
    hand_run(line, dtype, op, a, b, want, n, nranks, 0, 0);
    hand_run(line, dtype, op, a, b, want, n, nranks, 1, 3);
    hand_run(line, dtype, op, a, b, want, n, nranks, 7, 2);
}

#define HAND(dtype, op, a, b, want)                                        \
    hand(__LINE__, dtype, op, a, b, want, sizeof(a), 0)
#define HAND_AVG(dtype, a, b, want, nranks)                                \
    hand(__LINE__, dtype, CCL_AVG, a, b, want, sizeof(a), nranks)
/* All five ops on one pair of inputs; AVG is checked for 2 and 3 ranks. */
#define HAND_ALL(dtype, a, b, sum, prod, mn, mx, avg2, avg3)               \
    do {                                                                   \
        PASS(sizeof(a) == sizeof(b) && sizeof(a) == sizeof(sum));           \
        HAND(dtype, CCL_SUM, a, b, sum);                                   \
        HAND(dtype, CCL_AVG, a, b, sum);                                   \
        HAND(dtype, CCL_PROD, a, b, prod);                                 \
        HAND(dtype, CCL_MIN, a, b, mn);                                    \
        HAND(dtype, CCL_MAX, a, b, mx);                                    \
        HAND_AVG(dtype, a, b, avg2, 2);                                    \
        HAND_AVG(dtype, a, b, avg3, 3);                                    \
        HAND_AVG(dtype, a, b, sum, 1);                                     \
    } while (0)

static void test_hand_integers(void)
{
    {
        const int8_t a[] = { 100, -128, 127, -7, 5, -128 };
        const int8_t b[] = { 100, -1, 1, 0, -3, -128 };
        const int8_t sum[] = { -56, 127, -128, -7, 2, 0 };
        const int8_t prod[] = { 16, -128, 127, 0, -15, 0 };
        const int8_t mn[] = { 100, -128, 1, -7, -3, -128 };
        const int8_t mx[] = { 100, -1, 127, 0, 5, -128 };
        const int8_t avg2[] = { -28, 63, -64, -3, 1, 0 };
        const int8_t avg3[] = { -18, 42, -42, -2, 0, 0 };
        HAND_ALL(CCL_I8, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const int16_t a[] = { 30000, -32768, 32767, -7, 300 };
        const int16_t b[] = { 30000, -1, 1, 2, 300 };
        const int16_t sum[] = { -5536, 32767, -32768, -5, 600 };
        const int16_t prod[] = { -5888, -32768, 32767, -14, 24464 };
        const int16_t mn[] = { 30000, -32768, 1, -7, 300 };
        const int16_t mx[] = { 30000, -1, 32767, 2, 300 };
        const int16_t avg2[] = { -2768, 16383, -16384, -2, 300 };
        const int16_t avg3[] = { -1845, 10922, -10922, -1, 200 };
        HAND_ALL(CCL_I16, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const int32_t a[] = { 2000000000, INT32_MIN, INT32_MAX, -7, 65536,
                              123456789 };
        const int32_t b[] = { 2000000000, -1, 1, 2, 65536, -987654321 };
        const int32_t sum[] = { -294967296, INT32_MAX, INT32_MIN, -5, 131072,
                                -864197532 };
        const int32_t prod[] = { -1651507200, INT32_MIN, INT32_MAX, -14, 0,
                                 67153019 };
        const int32_t mn[] = { 2000000000, INT32_MIN, 1, -7, 65536, -987654321 };
        const int32_t mx[] = { 2000000000, -1, INT32_MAX, 2, 65536, 123456789 };
        const int32_t avg2[] = { -147483648, 1073741823, -1073741824, -2, 65536,
                                 -432098766 };
        const int32_t avg3[] = { -98322432, 715827882, -715827882, -1, 43690,
                                 -288065844 };
        HAND_ALL(CCL_I32, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const int64_t a[] = { INT64_MAX, INT64_MIN, INT64_C(3037000500), -7,
                              INT64_C(4294967296), INT64_C(-1234567890123) };
        const int64_t b[] = { 1, -1, INT64_C(3037000500), 2,
                              INT64_C(4294967296), INT64_C(9876543210) };
        const int64_t sum[] = { INT64_MIN, INT64_MAX, INT64_C(6074001000), -5,
                                INT64_C(8589934592), INT64_C(-1224691346913) };
        const int64_t prod[] = { INT64_MAX, INT64_MIN,
                                 INT64_C(-9223372036709301616), -14, 0,
                                 INT64_C(34720243671903346) };
        const int64_t mn[] = { 1, INT64_MIN, INT64_C(3037000500), -7,
                               INT64_C(4294967296), INT64_C(-1234567890123) };
        const int64_t mx[] = { INT64_MAX, -1, INT64_C(3037000500), 2,
                               INT64_C(4294967296), INT64_C(9876543210) };
        const int64_t avg2[] = { INT64_C(-4611686018427387904),
                                 INT64_C(4611686018427387903),
                                 INT64_C(3037000500), -2, INT64_C(4294967296),
                                 INT64_C(-612345673456) };
        const int64_t avg3[] = { INT64_C(-3074457345618258602),
                                 INT64_C(3074457345618258602),
                                 INT64_C(2024667000), -1, INT64_C(2863311530),
                                 INT64_C(-408230448971) };
        HAND_ALL(CCL_I64, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const uint8_t a[] = { 200, 255, 0, 16, 7 };
        const uint8_t b[] = { 100, 1, 0, 16, 3 };
        const uint8_t sum[] = { 44, 0, 0, 32, 10 };
        const uint8_t prod[] = { 32, 255, 0, 0, 21 };
        const uint8_t mn[] = { 100, 1, 0, 16, 3 };
        const uint8_t mx[] = { 200, 255, 0, 16, 7 };
        const uint8_t avg2[] = { 22, 0, 0, 16, 5 };
        const uint8_t avg3[] = { 14, 0, 0, 10, 3 };
        HAND_ALL(CCL_U8, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        /* 65535 * 65535 overflows int if uint16_t is promoted naively. */
        const uint16_t a[] = { 65535, 65535, 1000, 256, 40000 };
        const uint16_t b[] = { 1, 65535, 70, 256, 30000 };
        const uint16_t sum[] = { 0, 65534, 1070, 512, 4464 };
        const uint16_t prod[] = { 65535, 1, 4464, 0, 35840 };
        const uint16_t mn[] = { 1, 65535, 70, 256, 30000 };
        const uint16_t mx[] = { 65535, 65535, 1000, 256, 40000 };
        const uint16_t avg2[] = { 0, 32767, 535, 256, 2232 };
        const uint16_t avg3[] = { 0, 21844, 356, 170, 1488 };
        HAND_ALL(CCL_U16, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const uint32_t a[] = { 0xffffffffu, 0xffffffffu, 3000000000u, 65536, 7 };
        const uint32_t b[] = { 1, 0xffffffffu, 3000000000u, 65536, 3 };
        const uint32_t sum[] = { 0, 4294967294u, 1705032704u, 131072, 10 };
        const uint32_t prod[] = { 4294967295u, 1, 3800301568u, 0, 21 };
        const uint32_t mn[] = { 1, 0xffffffffu, 3000000000u, 65536, 3 };
        const uint32_t mx[] = { 0xffffffffu, 0xffffffffu, 3000000000u, 65536, 7 };
        const uint32_t avg2[] = { 0, 2147483647u, 852516352u, 65536, 5 };
        const uint32_t avg3[] = { 0, 1431655764u, 568344234u, 43690, 3 };
        HAND_ALL(CCL_U32, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        const uint64_t top = UINT64_C(1) << 63, max = ~UINT64_C(0);
        const uint64_t a[] = { max, max, top, UINT64_C(4294967296), 7 };
        const uint64_t b[] = { 1, max, top, UINT64_C(4294967296), 3 };
        const uint64_t sum[] = { 0, max - 1, 0, UINT64_C(8589934592), 10 };
        const uint64_t prod[] = { max, 1, 0, 0, 21 };
        const uint64_t mn[] = { 1, max, top, UINT64_C(4294967296), 3 };
        const uint64_t mx[] = { max, max, top, UINT64_C(4294967296), 7 };
        const uint64_t avg2[] = { 0, max / 2, 0, UINT64_C(4294967296), 5 };
        const uint64_t avg3[] = { 0, UINT64_C(6148914691236517204), 0,
                                  UINT64_C(2863311530), 3 };
        HAND_ALL(CCL_U64, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    {
        /* A large rank count: the divisor must not be narrowed to int8. */
        const int8_t a[] = { -128, 127, 100 };
        const int8_t b[] = { 0, 0, 100 };
        const int8_t want[] = { 0, 0, -0 };
        HAND_AVG(CCL_I8, a, b, want, 200);
        const uint8_t ua[] = { 255, 100 };
        const uint8_t ub[] = { 255, 100 };
        const uint8_t uwant[] = { 0, 0 };
        HAND_AVG(CCL_U8, ua, ub, uwant, 255);
    }
}

/* The hand cases of a 16-bit float format, in its own bits: the HAND_ALL
 * set (a and b through every op), a pair through SUM and PROD at rounding
 * ties, e averaged with zeros over two rank counts, and NaN operands (n1
 * op n2 gives nan for every op). */
typedef struct {
    int dtype;
    uint16_t a[8], b[8], sum[8], prod[8], mn[8], mx[8], avg2[8], avg3[8];
    uint16_t c[6], d[6], csum[6], cprod[6];
    uint16_t e[5];
    int avg_ranks[2];
    uint16_t avg_e[2][5];
    size_t nans; /* elements used of n1, n2 and nan */
    uint16_t n1[5], n2[5], nan[5];
} half_cases;

/* f16: ties at 1 + 2^-11, overflow at 65520, subnormals. */
static const half_cases f16_cases = {
    .dtype = CCL_F16,
    .a = { 0x3c00, 0x3c01, 0x7bff, 0x7bff, 0x0001, 0x03ff, 0xbc00, 0x8000 },
    .b = { 0x1000, 0x1000, 0x4c00, 0x4800, 0x0001, 0x0001, 0x3c00, 0x0000 },
    .sum = { 0x3c00, 0x3c02, 0x7c00, 0x7bff, 0x0002, 0x0400, 0x0000, 0x0000 },
    .prod = { 0x1000, 0x1001, 0x7c00, 0x7c00, 0x0000, 0x0000, 0xbc00, 0x8000 },
    .mn = { 0x1000, 0x1000, 0x4c00, 0x4800, 0x0001, 0x0001, 0xbc00, 0x0000 },
    .mx = { 0x3c00, 0x3c01, 0x7bff, 0x7bff, 0x0001, 0x03ff, 0x3c00, 0x0000 },
    /* Infinity stays infinite; 2 * 2^-24 / 3 rounds up to 2^-24. */
    .avg2 = { 0x3800, 0x3802, 0x7c00, 0x77ff, 0x0001, 0x0200, 0x0000, 0x0000 },
    .avg3 = { 0x3555, 0x3558, 0x7c00, 0x7555, 0x0001, 0x0155, 0x0000, 0x0000 },
    .c = { 0x0001, 0x0003, 0x3c01, 0x3555, 0x5bff, 0xfbff },
    .d = { 0x3800, 0x3800, 0x3c01, 0x4200, 0x5bff, 0x4000 },
    .csum = { 0x3800, 0x3800, 0x4001, 0x42ab, 0x5fff, 0xfbff },
    .cprod = { 0x0000, 0x0002, 0x3c02, 0x3c00, 0x7bfe, 0xfc00 },
    .e = { 0x3c00, 0x0001, 0x0003, 0x7bff, 0xc500 },
    /* 2^-24 / 2 ties to zero, 3 * 2^-24 / 2 ties to 2 * 2^-24. */
    .avg_ranks = { 2, 3 },
    .avg_e = { { 0x3800, 0x0000, 0x0002, 0x77ff, 0xc100 },
               { 0x3555, 0x0000, 0x0001, 0x7555, 0xbeab } },
    /* NaN in either operand gives NaN, for every op. */
    .nans = 5,
    .n1 = { 0x7e00, 0x3c00, 0x7c01, 0xfe00, 0x7e00 },
    .n2 = { 0x3c00, 0x7e00, 0x3c00, 0x7c00, 0x7e00 },
    .nan = { 0x7e00, 0x7e00, 0x7e00, 0x7e00, 0x7e00 },
};

/* bf16: ties at 1 + 2^-8, overflow, subnormals. */
static const half_cases bf16_cases = {
    .dtype = CCL_BF16,
    .a = { 0x3f80, 0x3f81, 0x7f7f, 0x7f7f, 0x7f7f, 0x0001, 0xbf80, 0x8000 },
    .b = { 0x3b80, 0x3b80, 0x7b00, 0x7a80, 0x7f7f, 0x0001, 0x3f80, 0x0000 },
    .sum = { 0x3f80, 0x3f82, 0x7f80, 0x7f7f, 0x7f80, 0x0002, 0x0000, 0x0000 },
    .prod = { 0x3b80, 0x3b81, 0x7f80, 0x7f80, 0x7f80, 0x0000, 0xbf80, 0x8000 },
    .mn = { 0x3b80, 0x3b80, 0x7b00, 0x7a80, 0x7f7f, 0x0001, 0xbf80, 0x0000 },
    .mx = { 0x3f80, 0x3f81, 0x7f7f, 0x7f7f, 0x7f7f, 0x0001, 0x3f80, 0x0000 },
    .avg2 = { 0x3f00, 0x3f02, 0x7f80, 0x7eff, 0x7f80, 0x0001, 0x0000, 0x0000 },
    .avg3 = { 0x3eab, 0x3ead, 0x7f80, 0x7eaa, 0x7f80, 0x0001, 0x0000, 0x0000 },
    .c = { 0x0001, 0x0003, 0x3f81, 0x3eab, 0x4b7f, 0xff7f },
    .d = { 0x3f00, 0x3f00, 0x3f81, 0x4040, 0x4b7f, 0x4000 },
    .csum = { 0x3f00, 0x3f00, 0x4001, 0x4055, 0x4bff, 0xff7f },
    .cprod = { 0x0000, 0x0002, 0x3f82, 0x3f80, 0x577e, 0xff80 },
    .e = { 0x3f80, 0x0001, 0x0003, 0x7f7f, 0xc0a0 },
    .avg_ranks = { 3, 7 },
    .avg_e = { { 0x3eab, 0x0000, 0x0001, 0x7eaa, 0xbfd5 },
               { 0x3e12, 0x0000, 0x0000, 0x7e12, 0xbf37 } },
    /* A NaN whose payload is only in the low bits must not round into an
     * infinity. */
    .nans = 4,
    .n1 = { 0x7fc0, 0x3f80, 0xffc1, 0x7f81 },
    .n2 = { 0x3f80, 0x7fc0, 0x3f80, 0x3f80 },
    .nan = { 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0 },
};

static void hand_half(const half_cases *h)
{
    static const uint16_t zero[5];
    HAND_ALL(h->dtype, h->a, h->b, h->sum, h->prod, h->mn, h->mx, h->avg2,
             h->avg3);
    HAND(h->dtype, CCL_SUM, h->c, h->d, h->csum);
    HAND(h->dtype, CCL_PROD, h->c, h->d, h->cprod);
    for (int i = 0; i < 2; i++)
        HAND_AVG(h->dtype, h->e, zero, h->avg_e[i], h->avg_ranks[i]);
    for (int op = 0; op < CCL_REDOP_COUNT; op++)
        if (op_applies(h->dtype, op))
            hand(__LINE__, h->dtype, op, h->n1, h->n2, h->nan,
                 h->nans * sizeof h->n1[0], 0);
}

static void test_hand_floats(void)
{
    {
        const float a[] = { 1.5f, -0.0f, 0.0f, NAN, 1.0f, INFINITY, 3e38f,
                            -2.0f };
        const float b[] = { 2.25f, 0.0f, -0.0f, 1.0f, NAN, -INFINITY, 3e38f,
                            0x1p-149f };
        const float sum[] = { 3.75f, 0.0f, 0.0f, NAN, NAN, NAN, INFINITY,
                              -2.0f };
        const float prod[] = { 3.375f, -0.0f, -0.0f, NAN, NAN, -INFINITY,
                               INFINITY, -0x1p-148f };
        /* min(-0, +0) is the second operand, as a < b ? a : b says. */
        const float mn[] = { 1.5f, 0.0f, -0.0f, NAN, NAN, -INFINITY, 3e38f,
                             -2.0f };
        const float mx[] = { 2.25f, 0.0f, -0.0f, NAN, NAN, INFINITY, 3e38f,
                             0x1p-149f };
        const float avg2[] = { 1.875f, 0.0f, 0.0f, NAN, NAN, NAN, INFINITY,
                               -1.0f };
        const float avg3[] = { 1.25f, 0.0f, 0.0f, NAN, NAN, NAN, INFINITY,
                               -2.0f / 3.0f };
        HAND_ALL(CCL_F32, a, b, sum, prod, mn, mx, avg2, avg3);
        /* True division, not multiplication by 1/3 (which differs here:
         * 3 * (1/3) rounds to exactly 1). */
        const float c[] = { 1.0f, 3.0f, 0.1f };
        const float z[] = { 0.0f, 0.0f, 0.0f };
        const float c7[] = { 1.0f / 7.0f, 3.0f / 7.0f, 0.1f / 7.0f };
        HAND_AVG(CCL_F32, c, z, c7, 7);
    }
    {
        const double a[] = { 1.5, -0.0, 0.0, NAN, 1.0, INFINITY, 1e308, -2.0 };
        const double b[] = { 2.25, 0.0, -0.0, 1.0, NAN, -INFINITY, 1e308,
                             0x1p-1074 };
        const double sum[] = { 3.75, 0.0, 0.0, NAN, NAN, NAN, INFINITY, -2.0 };
        const double prod[] = { 3.375, -0.0, -0.0, NAN, NAN, -INFINITY,
                                INFINITY, -0x1p-1073 };
        const double mn[] = { 1.5, 0.0, -0.0, NAN, NAN, -INFINITY, 1e308, -2.0 };
        const double mx[] = { 2.25, 0.0, -0.0, NAN, NAN, INFINITY, 1e308,
                              0x1p-1074 };
        const double avg2[] = { 1.875, 0.0, 0.0, NAN, NAN, NAN, INFINITY, -1.0 };
        const double avg3[] = { 1.25, 0.0, 0.0, NAN, NAN, NAN, INFINITY,
                                -2.0 / 3.0 };
        HAND_ALL(CCL_F64, a, b, sum, prod, mn, mx, avg2, avg3);
    }
    hand_half(&f16_cases);
    {
        /* min and max return the NaN operand itself, made quiet. */
        const uint16_t n1[] = { 0x7e00, 0x3c00, 0x7c01, 0xfe00, 0x7e00 };
        const uint16_t n2[] = { 0x3c00, 0x7e00, 0x3c00, 0x7c00, 0x7e00 };
        const uint16_t nmin[] = { 0x7e00, 0x7e00, 0x7e01, 0xfe00, 0x7e00 };
        unsigned char buf[sizeof n1];
        memcpy(buf, n1, sizeof n1);
        PASS(ccl__reduce(buf, n2, 5, CCL_F16, CCL_MIN) == 0);
        PASS(memcmp(buf, nmin, sizeof nmin) == 0);
    }
    hand_half(&bf16_cases);
}

/* ------------------------------------------------------------------ */
/* Randomised cases against the reference, for every dtype, op, a range of
 * lengths around the kernels' block size, and every byte misalignment. */

#define GUARD 16

static int random_case(int dtype, int op, size_t n, size_t doff, size_t soff,
                       uint64_t *rng)
{
    size_t sz = ccl_dtype_size(dtype);
    size_t bytes = n * sz;
    unsigned char *dmem = malloc(bytes + 2 * GUARD + 8);
    unsigned char *smem = malloc(bytes + 2 * GUARD + 8);
    unsigned char *orig_d = malloc(bytes + 1);
    unsigned char *orig_s = malloc(bytes + 1);
    int bad = 0;
    if (!dmem || !smem || !orig_d || !orig_s) {
        free(dmem); free(smem); free(orig_d); free(orig_s);
        return 1;
    }
    memset(dmem, 0xa5, bytes + 2 * GUARD + 8);
    memset(smem, 0x5a, bytes + 2 * GUARD + 8);
    unsigned char *d = dmem + GUARD + doff, *s = smem + GUARD + soff;
    for (size_t i = 0; i < n; i++) {
        store_raw(dtype, d + i * sz, random_raw(dtype, rng));
        store_raw(dtype, s + i * sz, random_raw(dtype, rng));
    }
    memcpy(orig_d, d, bytes);
    memcpy(orig_s, s, bytes);

    if (ccl__reduce(d, s, n, dtype, op) != 0)
        bad++;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = load_raw(dtype, orig_d + i * sz);
        uint64_t b = load_raw(dtype, orig_s + i * sz);
        uint64_t got = load_raw(dtype, d + i * sz);
        uint64_t want = ref_combine(dtype, op, a, b);
        if (!raw_same(dtype, got, want)) {
            if (bad < 3)
                fprintf(stderr,
                        "  %s %s n=%zu [%zu]: 0x%llx op 0x%llx = 0x%llx, want 0x%llx\n",
                        DT[dtype].name, OPNAME[op], n, i, (unsigned long long)a,
                        (unsigned long long)b, (unsigned long long)got,
                        (unsigned long long)want);
            bad++;
        }
    }
    /* Nothing outside dst[0..n) is written, and src is never written. */
    for (size_t i = 0; i < GUARD + doff; i++)
        bad += dmem[i] != 0xa5;
    for (size_t i = GUARD + doff + bytes; i < bytes + 2 * GUARD + 8; i++)
        bad += dmem[i] != 0xa5;
    bad += memcmp(s, orig_s, bytes) != 0;

    /* The finish step: AVG divides, every other op leaves the data be. */
    static const int ranks[] = { 1, 2, 3, 4, 7, 8, 100, 255, 1000 };
    int nranks = ranks[harness_rng_next(rng) % (sizeof ranks / sizeof ranks[0])];
    memcpy(orig_d, d, bytes);
    if (ccl__reduce_finish(d, n, dtype, op, nranks) != 0)
        bad++;
    for (size_t i = 0; i < n; i++) {
        uint64_t x = load_raw(dtype, orig_d + i * sz);
        uint64_t got = load_raw(dtype, d + i * sz);
        uint64_t want = op == CCL_AVG ? ref_avg(dtype, x, nranks) : x;
        if (!raw_same(dtype, got, want)) {
            if (bad < 3)
                fprintf(stderr, "  %s avg/%d n=%zu [%zu]: 0x%llx -> 0x%llx, want 0x%llx\n",
                        DT[dtype].name, nranks, n, i, (unsigned long long)x,
                        (unsigned long long)got, (unsigned long long)want);
            bad++;
        }
    }
    if (op != CCL_AVG)
        bad += memcmp(d, orig_d, bytes) != 0;
    for (size_t i = GUARD + doff + bytes; i < bytes + 2 * GUARD + 8; i++)
        bad += dmem[i] != 0xa5;

    free(dmem); free(smem); free(orig_d); free(orig_s);
    return bad;
}

static void test_random_reduce(uint64_t *rng)
{
    /* Lengths around the block size (64) and its multiples. */
    static const size_t lens[] = { 0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33,
                                   63, 64, 65, 127, 128, 129, 191, 1000, 1027 };
    for (int dtype = 0; dtype < CCL_DTYPE_COUNT; dtype++) {
        for (int op = 0; op < CCL_REDOP_COUNT; op++) {
            int bad = 0;
            if (!op_applies(dtype, op)) {
                float x = 1, y = 2;
                PASS(ccl__reduce(&x, &y, 1, dtype, op) == -1 && x == 1);
                continue;
            }
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                /* Every dst offset 0..7, each with a different src offset. */
                for (size_t off = 0; off < 8; off++)
                    bad += random_case(dtype, op, lens[li], off,
                                       (off * 3 + 1) % 8, rng);
            }
            if (bad)
                fprintf(stderr, "FAIL random %s %s: %d bad\n", DT[dtype].name,
                        OPNAME[op], bad);
            PASS(bad == 0);
        }
    }
}

/* f16 and bf16 arithmetic on many random pairs, checked element by
 * element against rounding the exact result once. */
static void test_half_pairs(uint64_t *rng)
{
    enum { N = 4096 };
    uint16_t a[N], b[N], d[N];
    static const int dtypes[] = { CCL_F16, CCL_BF16 };
    for (int k = 0; k < 2; k++) {
        int dtype = dtypes[k], bad = 0;
        for (int round = 0; round < 32; round++) {
            for (int op = 0; op < CCL_BAND; op++) { /* no bitwise on floats */
                for (int i = 0; i < N; i++) {
                    uint64_t r = harness_rng_next(rng);
                    a[i] = (uint16_t)r;
                    /* Half of the pairs are close in magnitude, so that
                     * sums cancel and round in interesting ways. */
                    b[i] = (r >> 63) ? (uint16_t)(r >> 16)
                                     : (uint16_t)(a[i] ^ ((r >> 32) & 0x80ffu));
                }
                memcpy(d, a, sizeof d);
                PASS(ccl__reduce(d, b, N, dtype, op) == 0);
                for (int i = 0; i < N; i++)
                    if (!raw_same(dtype, d[i], ref_combine(dtype, op, a[i], b[i])))
                        bad++;
            }
        }
        PASS(bad == 0);
    }
}

static void test_errors(void)
{
    float x[2] = { 1, 2 }, y[2] = { 3, 4 };
    PASS(ccl__reduce(x, y, 2, -1, CCL_SUM) == -1);
    PASS(ccl__reduce(x, y, 2, CCL_DTYPE_COUNT, CCL_SUM) == -1);
    PASS(ccl__reduce(x, y, 2, CCL_F32, -1) == -1);
    PASS(ccl__reduce(x, y, 2, CCL_F32, CCL_REDOP_COUNT) == -1);
    PASS(ccl__reduce(x, y, 0, CCL_DTYPE_COUNT, CCL_SUM) == -1);
    PASS(x[0] == 1 && x[1] == 2); /* a rejected call writes nothing */
    PASS(ccl__reduce_finish(x, 2, -1, CCL_AVG, 2) == -1);
    PASS(ccl__reduce_finish(x, 2, CCL_DTYPE_COUNT, CCL_AVG, 2) == -1);
    PASS(ccl__reduce_finish(x, 2, CCL_F32, -1, 2) == -1);
    PASS(ccl__reduce_finish(x, 2, CCL_F32, CCL_REDOP_COUNT, 2) == -1);
    PASS(ccl__reduce_finish(x, 2, CCL_F32, CCL_AVG, 0) == -1);
    PASS(ccl__reduce_finish(x, 2, CCL_F32, CCL_AVG, -3) == -1);
    PASS(x[0] == 1 && x[1] == 2);
    /* n = 0 touches nothing, so any pointer will do, even NULL. */
    for (int dt = 0; dt < CCL_DTYPE_COUNT; dt++)
        for (int op = 0; op < CCL_REDOP_COUNT; op++) {
            PASS(ccl__reduce(NULL, NULL, 0, dt, op) == (op_applies(dt, op) ? 0 : -1));
            PASS(ccl__reduce_finish(NULL, 0, dt, op, 5) == 0);
        }
    /* Non-AVG ops ignore nranks. */
    PASS(ccl__reduce_finish(x, 2, CCL_SUM, CCL_SUM, 0) == 0);
}

/* ------------------------------------------------------------------ */
/* ccl__hash64. */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int all_distinct(uint64_t *v, size_t n)
{
    qsort(v, n, sizeof v[0], cmp_u64);
    for (size_t i = 1; i < n; i++)
        if (v[i] == v[i - 1])
            return 0;
    return 1;
}

static void test_hash(uint64_t *rng)
{
    enum { MAXLEN = 300 };
    unsigned char data[MAXLEN], buf[MAXLEN + 16];
    for (size_t i = 0; i < MAXLEN; i++)
        data[i] = (unsigned char)harness_rng_next(rng);

    /* Known answers.  These pin the function down: the value must be the
     * same on every platform and build, since ranks compare hashes.  They
     * agree between gcc -O0, -O2 and -O3 -march=native, clang -O0 and -O2,
     * and a separate re-implementation in Python's arbitrary-precision
     * integers. */
    {
        unsigned char seq[1000];
        for (size_t i = 0; i < sizeof seq; i++)
            seq[i] = (unsigned char)(i * 7 + 3);
        PASS(ccl__hash64("", 0, 0) == UINT64_C(0xff1b64819dd3777c));
        PASS(ccl__hash64("a", 1, 0) == UINT64_C(0xb64ab6b7496e4f94));
        PASS(ccl__hash64("abc", 3, 0) == UINT64_C(0x0128c49b0f21ffab));
        PASS(ccl__hash64("abcdefgh", 8, 0) == UINT64_C(0x5e4883745fda268a));
        PASS(ccl__hash64(seq, 31, 0) == UINT64_C(0x33f3038447bd1f3a));
        PASS(ccl__hash64(seq, 32, 0) == UINT64_C(0x4a71d976def048d2));
        PASS(ccl__hash64(seq, 100, UINT64_C(0x123456789abcdef0)) ==
             UINT64_C(0x4d9e790008c29a5c));
        PASS(ccl__hash64(seq + 1, 999, 42) == UINT64_C(0x4053a51faeb61780));
        PASS(ccl__hash64(seq, 1000, 42) == UINT64_C(0x33674a052e95f688));
    }

    /* Distinct inputs of every length 0..300 hash to distinct values:
     * random bytes, all zeros (only the length differs), all 0xff, and
     * the random bytes again under another seed. */
    {
        static const unsigned char zeros[MAXLEN] = { 0 };
        unsigned char ones[MAXLEN];
        memset(ones, 0xff, sizeof ones);
        uint64_t *h = malloc(4 * (MAXLEN + 1) * sizeof *h);
        size_t k = 0;
        for (size_t len = 0; len <= MAXLEN; len++) {
            h[k++] = ccl__hash64(data, len, 0);
            h[k++] = ccl__hash64(zeros, len, 0);
            h[k++] = ccl__hash64(ones, len, 0);
            h[k++] = ccl__hash64(data, len, 1);
        }
        /* zeros, ones and data all agree at length 0, so drop duplicates
         * of the empty string first. */
        PASS(h[1] == h[0] && h[2] == h[0]);
        h[1] = h[k - 1] ^ 1;
        h[2] = h[k - 1] ^ 2;
        PASS(all_distinct(h, k));
        free(h);
    }

    /* Flipping any single bit, at any length, changes the hash, and all
     * the flipped variants of one input differ from each other. */
    {
        uint64_t *h = malloc((8 * MAXLEN + 1) * sizeof *h);
        int bad = 0;
        for (size_t len = 1; len <= MAXLEN; len++) {
            size_t k = 0;
            memcpy(buf, data, len);
            h[k++] = ccl__hash64(buf, len, 7);
            for (size_t bit = 0; bit < 8 * len; bit++) {
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                h[k++] = ccl__hash64(buf, len, 7);
                buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            }
            if (!all_distinct(h, k))
                bad++;
        }
        PASS(bad == 0);
        free(h);
    }

    /* The hash depends on the bytes, not on where they sit. */
    {
        int bad = 0;
        for (size_t len = 0; len <= MAXLEN; len++) {
            uint64_t want = ccl__hash64(data, len, 99);
            for (size_t off = 1; off < 16; off++) {
                memcpy(buf + off, data, len);
                bad += ccl__hash64(buf + off, len, 99) != want;
            }
        }
        PASS(bad == 0);
    }

    /* The seed changes the result, at every length. */
    {
        int bad = 0;
        for (size_t len = 0; len <= MAXLEN; len++) {
            uint64_t s[4] = { ccl__hash64(data, len, 0),
                              ccl__hash64(data, len, 1),
                              ccl__hash64(data, len, UINT64_C(1) << 63),
                              ccl__hash64(data, len, ~UINT64_C(0)) };
            bad += !all_distinct(s, 4);
        }
        PASS(bad == 0);
    }

    /* Avalanche: flipping one input bit flips each output bit about half
     * the time.  With 6400 or more samples per output bit the frequency is
     * within 0.45..0.55 unless the mixing is broken. */
    {
        static const size_t lens[] = { 4, 8, 13, 32, 40, 100 };
        int bad = 0;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t len = lens[li];
            long flips[64] = { 0 };
            long samples = 0;
            for (int t = 0; t < 200; t++) {
                for (size_t i = 0; i < len; i++)
                    buf[i] = (unsigned char)harness_rng_next(rng);
                uint64_t base = ccl__hash64(buf, len, 0);
                for (size_t bit = 0; bit < 8 * len; bit++) {
                    buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                    uint64_t diff = base ^ ccl__hash64(buf, len, 0);
                    buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                    for (int o = 0; o < 64; o++)
                        flips[o] += (long)((diff >> o) & 1u);
                    samples++;
                }
            }
            for (int o = 0; o < 64; o++) {
                double p = (double)flips[o] / (double)samples;
                if (p < 0.45 || p > 0.55) {
                    if (bad++ < 3)
                        fprintf(stderr, "  avalanche len %zu bit %d: %.3f\n",
                                len, o, p);
                }
            }
        }
        PASS(bad == 0);
    }
}

/* ------------------------------------------------------------------ */
/* Timings, printed for people, never asserted. */

static void print_timings(uint64_t *rng)
{
    size_t bytes = (size_t)16 << 20;
    unsigned char *big = malloc(bytes + 1);
    unsigned char *other = malloc(bytes + 1);
    if (!big || !other) {
        free(big);
        free(other);
        return;
    }
    for (size_t i = 0; i < bytes + 1; i++)
        big[i] = (unsigned char)harness_rng_next(rng);
    memcpy(other, big, bytes + 1);

    uint64_t sink = 0;
    double best = 1e9, best_unaligned = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = harness_now_seconds();
        sink ^= ccl__hash64(big, bytes, (uint64_t)rep);
        double t1 = harness_now_seconds();
        sink ^= ccl__hash64(big + 1, bytes, (uint64_t)rep);
        double t2 = harness_now_seconds();
        if (t1 - t0 < best) best = t1 - t0;
        if (t2 - t1 < best_unaligned) best_unaligned = t2 - t1;
    }
    printf("  hash64: %.2f GB/s (unaligned %.2f GB/s) [%llx]\n",
           (double)bytes / best / 1e9, (double)bytes / best_unaligned / 1e9,
           (unsigned long long)(sink & 0xf));

    /* One ring chunk, 1 MiB, per dtype: dst += src. */
    size_t chunk = (size_t)1 << 20;
    printf("  reduce sum, 1 MiB chunks (GB/s of dst):");
    for (int dtype = 0; dtype < CCL_DTYPE_COUNT; dtype++) {
        size_t n = chunk / ccl_dtype_size(dtype);
        /* Zeros keep every dtype finite however often it is summed. */
        memset(big, 0, chunk);
        memset(other, 0, chunk);
        double t0 = harness_now_seconds();
        for (int rep = 0; rep < 16; rep++)
            ccl__reduce(big, other, n, dtype, CCL_SUM);
        double t = harness_now_seconds() - t0;
        printf(" %s %.1f", DT[dtype].name, 16.0 * (double)chunk / t / 1e9);
    }
    printf("\n");
    free(big);
    free(other);
}

int main(void)
{
    uint64_t rng = 12345;
    test_conversions(&rng);
    test_hand_integers();
    test_hand_floats();
    test_errors();
    test_random_reduce(&rng);
    test_half_pairs(&rng);
    test_hash(&rng);
    print_timings(&rng);
    return HARNESS_DONE("test_reduce");
}
