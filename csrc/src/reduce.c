/*
 * reduce.c - reduction kernels, f16/bf16 array conversions and a 64-bit
 * hash.
 *
 * ccl__reduce is the inner loop of a ring all-reduce: it runs once per
 * received chunk (1 MiB by default), so it has to run at memory speed.
 * Every dtype and op therefore gets its own loop, picked once per call
 * from a table, and the loops are written so that gcc -O2 and clang -O2
 * vectorise them without help from -O3 or target flags.
 *
 * Assumptions, all true on every platform pyccl builds for:
 *  - Floating point is IEEE 754 binary32/binary64 and runs in the default
 *    round-to-nearest-even mode.
 *  - int is at least 32 bits wide (POSIX requires it).
 *  - The fixed-width signed types are two's complement; C99 (7.18.1.1)
 *    guarantees that for intN_t, so a signed sum or product has the same
 *    bits as the unsigned one of the same width.
 */
#include "reduce.h"
#include "ccl.h"
#include "half.h"
#include "half_simd.h"

#include <math.h>
#include <string.h>

/* The f16 and bf16 conversions are in half.h (shared with quant.c). */

float ccl__f16_to_f32(uint16_t h) { return f16_to_f32_inline(h); }
uint16_t ccl__f32_to_f16(float f) { return (uint16_t)f32_to_f16_inline(f); }
float ccl__bf16_to_f32(uint16_t h) { return bf16_to_f32_inline(h); }
uint16_t ccl__f32_to_bf16(float f) { return (uint16_t)f32_to_bf16_inline(f); }

/* Arrays to and from the wire's little-endian 16-bit words (quant.c's F16
 * and BF16), 16 elements at a time through local arrays so that the
 * conversions above run as SIMD: each lane computes what the one-element
 * functions compute. */
#define HALF_LANES 16

void ccl__f32_to_half_le(int bf16, const float *x, size_t n, uint8_t *out)
{
    if (!bf16) { /* F16C where present (half_simd.c), the rest below */
        size_t done = ccl__half_simd_to_f16(x, n, out);
        x += done;
        out += 2 * done;
        n -= done;
    }
    for (size_t i = 0; i < n; i += HALF_LANES) {
        size_t k = n - i < HALF_LANES ? n - i : HALF_LANES;
        float v[HALF_LANES] = {0};
        uint32_t h[HALF_LANES];
        memcpy(v, x + i, k * sizeof *v);
        if (bf16)
            for (int j = 0; j < HALF_LANES; j++)
                h[j] = f32_to_bf16_inline(v[j]);
        else
            for (int j = 0; j < HALF_LANES; j++)
                h[j] = f32_to_f16_inline(v[j]);
        for (size_t j = 0; j < k; j++) {
            out[2 * (i + j)] = (uint8_t)h[j];
            out[2 * (i + j) + 1] = (uint8_t)(h[j] >> 8);
        }
    }
}

void ccl__half_le_to_f32(int bf16, const uint8_t *in, size_t n, float *out, int add)
{
    if (!bf16) {
        size_t done = ccl__half_simd_from_f16(in, n, out, add);
        in += 2 * done;
        out += done;
        n -= done;
    }
    for (size_t i = 0; i < n; i += HALF_LANES) {
        size_t k = n - i < HALF_LANES ? n - i : HALF_LANES;
        uint32_t h[HALF_LANES] = {0};
        float v[HALF_LANES];
        for (size_t j = 0; j < k; j++)
            h[j] = (uint32_t)in[2 * (i + j)] | (uint32_t)in[2 * (i + j) + 1] << 8;
        if (bf16)
            for (int j = 0; j < HALF_LANES; j++)
                v[j] = bf16_to_f32_inline(h[j]);
        else
            for (int j = 0; j < HALF_LANES; j++)
                v[j] = f16_to_f32_inline(h[j]);
        if (k == HALF_LANES && add)
            for (int j = 0; j < HALF_LANES; j++)
                out[i + j] += v[j];
        else if (k == HALF_LANES)
            memcpy(out + i, v, sizeof v);
        else
            for (size_t j = 0; j < k; j++)
                out[i + j] = add ? out[i + j] + v[j] : v[j];
    }
}

/* ------------------------------------------------------------------ */
/* How two elements combine.  Each macro gets the element type T and two
 * values of that type and yields a T. */

/* Unsigned sums.  uint8_t and uint16_t operands are promoted to int, where
 * the sum cannot overflow; the conversion back to T wraps. */
#define COMBINE_ADD(T, a, b) ((T)((a) + (b)))
/* Unsigned products.  Multiplying by 1u first makes the arithmetic
 * unsigned: uint16_t operands alone would be promoted to int, where
 * 65535 * 65535 overflows, which is undefined behaviour. */
#define COMBINE_UMUL(T, a, b) ((T)(1u * (a) * (b)))
#define COMBINE_FMUL(T, a, b) ((T)((a) * (b)))
#define COMBINE_MIN(T, a, b) ((a) < (b) ? (a) : (b))
#define COMBINE_AND(T, a, b) ((T)((a) & (b)))
#define COMBINE_OR(T, a, b) ((T)((a) | (b)))
#define COMBINE_XOR(T, a, b) ((T)((a) ^ (b)))
#define COMBINE_MAX(T, a, b) ((a) > (b) ? (a) : (b))

/* Float min and max follow a < b ? a : b (so min(-0, +0) is +0, the
 * second operand), except that a NaN in either operand gives a NaN: a NaN
 * means the data is broken, and a reduction must not hide that by
 * depending on which rank's value came first.  When only b is NaN the
 * comparison fails and picks b; the second select catches a NaN in a.
 * Two plain selects rather than one with || keep the loop free of control
 * flow, which gcc needs to vectorise the double version. */
#define COMBINE_FMIN(T, a, b) min_##T(a, b)
#define COMBINE_FMAX(T, a, b) max_##T(a, b)

static inline float min_float(float a, float b)
{
    float r = a < b ? a : b;
    return isnan(a) ? a : r;
}

static inline float max_float(float a, float b)
{
    float r = a > b ? a : b;
    return isnan(a) ? a : r;
}

static inline double min_double(double a, double b)
{
    double r = a < b ? a : b;
    return isnan(a) ? a : r;
}

static inline double max_double(double a, double b)
{
    double r = a > b ? a : b;
    return isnan(a) ? a : r;
}

/* f16 and bf16 combine in float and round once back to 16 bits.  float
 * has at least 2p + 2 bits of precision for both formats (p = 11 and 8),
 * so rounding to float first and then to 16 bits gives the same result as
 * rounding the exact result once: sums, products and AVG's division are
 * all correctly rounded. */
static inline float add_f32(float a, float b) { return a + b; }
static inline float mul_f32(float a, float b) { return a * b; }

/* ------------------------------------------------------------------ */
/* Loop skeleton.
 *
 * Elements are loaded and stored with memcpy, so buffers need no
 * alignment at all (a chunk of a byte buffer may start anywhere), and the
 * compilers still emit plain, possibly unaligned, vector loads.
 *
 * The main loop runs over blocks of a fixed number of elements.  gcc -O2
 * vectorises only loops whose vector code replaces the scalar loop
 * entirely (its "very cheap" cost model), which an inner loop with a
 * constant trip count satisfies and a loop over an unknown n does not.
 * The few leftover elements run one at a time.
 *
 * dst and src are restrict: they must not overlap, which is what lets the
 * compiler load and store whole vectors. */
#define BLOCK 64

#define ELEMENT(T, COMBINE, d, s, k)                                       \
    do {                                                                   \
        T a_, b_, r_;                                                      \
        memcpy(&a_, (d) + (k) * sizeof(T), sizeof(T));                     \
        memcpy(&b_, (s) + (k) * sizeof(T), sizeof(T));                     \
        r_ = COMBINE(T, a_, b_);                                           \
        memcpy((d) + (k) * sizeof(T), &r_, sizeof(T));                     \
    } while (0)

#define DEFINE_REDUCE(name, T, COMBINE)                                    \
    static void name(unsigned char *restrict d,                            \
                     const unsigned char *restrict s, size_t n)            \
    {                                                                      \
        size_t i = 0;                                                      \
        for (; n - i >= BLOCK; i += BLOCK)                                 \
            for (size_t j = 0; j < BLOCK; j++)                             \
                ELEMENT(T, COMBINE, d, s, i + j);                          \
        for (; i < n; i++)                                                 \
            ELEMENT(T, COMBINE, d, s, i);                                  \
    }

/* f16 and bf16 go two elements at a time, as the two halves of a
 * uint32_t, so that every vector operation works on 32-bit lanes (the
 * width of the float arithmetic) and none has to repack 16-bit lanes.
 * Both halves get the same treatment and go back where they came from,
 * so this is right on either byte order.  An odd last element goes on
 * its own. */
#define PAIR_ELEMENT(FN, TO32, FROM32, d, s, k)                            \
    do {                                                                   \
        uint32_t a_, b_, lo_, hi_;                                         \
        memcpy(&a_, (d) + (k) * 4, 4);                                     \
        memcpy(&b_, (s) + (k) * 4, 4);                                     \
        lo_ = FROM32(FN(TO32(a_ & 0xffffu), TO32(b_ & 0xffffu)));          \
        hi_ = FROM32(FN(TO32(a_ >> 16), TO32(b_ >> 16)));                  \
        a_ = lo_ | hi_ << 16;                                              \
        memcpy((d) + (k) * 4, &a_, 4);                                     \
    } while (0)

#define DEFINE_REDUCE_16(name, FN, TO32, FROM32)                           \
    static void name(unsigned char *restrict d,                            \
                     const unsigned char *restrict s, size_t n)            \
    {                                                                      \
        size_t pairs = n / 2, i = 0;                                       \
        for (; pairs - i >= BLOCK; i += BLOCK)                             \
            for (size_t j = 0; j < BLOCK; j++)                             \
                PAIR_ELEMENT(FN, TO32, FROM32, d, s, i + j);               \
        for (; i < pairs; i++)                                             \
            PAIR_ELEMENT(FN, TO32, FROM32, d, s, i);                       \
        if (n % 2) {                                                       \
            uint16_t a_, b_;                                               \
            memcpy(&a_, d + (n - 1) * 2, 2);                               \
            memcpy(&b_, s + (n - 1) * 2, 2);                               \
            a_ = (uint16_t)FROM32(FN(TO32(a_), TO32(b_)));                 \
            memcpy(d + (n - 1) * 2, &a_, 2);                               \
        }                                                                  \
    }

DEFINE_REDUCE(sum_f32, float, COMBINE_ADD)
DEFINE_REDUCE(prod_f32, float, COMBINE_FMUL)
DEFINE_REDUCE(min_f32, float, COMBINE_FMIN)
DEFINE_REDUCE(max_f32, float, COMBINE_FMAX)

DEFINE_REDUCE(sum_f64, double, COMBINE_ADD)
DEFINE_REDUCE(prod_f64, double, COMBINE_FMUL)
DEFINE_REDUCE(min_f64, double, COMBINE_FMIN)
DEFINE_REDUCE(max_f64, double, COMBINE_FMAX)

/* A sum's NaN leaves as the one quiet NaN 0x7e00: which input's payload
 * an addition passes on depends on how the compiler ordered its operands
 * (and differs between the portable and the F16C code, half_simd.c), and
 * every rank must get the same bits. */
static inline uint32_t f32_to_f16_canon(float f)
{
    int nan = (int32_t)(f32_bits(f) & 0x7fffffffu) > 0x7f800000;
    return select_u32(nan, 0x7e00u, f32_to_f16_inline(f));
}

DEFINE_REDUCE_16(sum_f16, add_f32, f16_to_f32_inline, f32_to_f16_canon)
DEFINE_REDUCE_16(prod_f16, mul_f32, f16_to_f32_inline, f32_to_f16_inline)
DEFINE_REDUCE_16(min_f16, min_float, f16_to_f32_inline, f32_to_f16_inline)
DEFINE_REDUCE_16(max_f16, max_float, f16_to_f32_inline, f32_to_f16_inline)

/* The f16 sum through F16C where the CPU has it (half_simd.c: the same
 * bits), the rest portably. */
static void sum_f16_any(unsigned char *restrict d, const unsigned char *restrict s,
                        size_t n)
{
    size_t done = ccl__half_simd_sum_f16(d, s, n);
    sum_f16(d + 2 * done, s + 2 * done, n - done);
}

DEFINE_REDUCE_16(sum_bf16, add_f32, bf16_to_f32_inline, f32_to_bf16_inline)
DEFINE_REDUCE_16(prod_bf16, mul_f32, bf16_to_f32_inline, f32_to_bf16_inline)
DEFINE_REDUCE_16(min_bf16, min_float, bf16_to_f32_inline, f32_to_bf16_inline)
DEFINE_REDUCE_16(max_bf16, max_float, bf16_to_f32_inline, f32_to_bf16_inline)

/* Signed integers have no sum or product loops of their own: under two's
 * complement the wrapped signed result has exactly the bits of the
 * unsigned one, and unsigned overflow is defined where signed overflow is
 * not.  They only need their own min and max. */
DEFINE_REDUCE(sum_u8, uint8_t, COMBINE_ADD)
DEFINE_REDUCE(prod_u8, uint8_t, COMBINE_UMUL)
DEFINE_REDUCE(min_u8, uint8_t, COMBINE_MIN)
DEFINE_REDUCE(max_u8, uint8_t, COMBINE_MAX)
DEFINE_REDUCE(min_i8, int8_t, COMBINE_MIN)
DEFINE_REDUCE(max_i8, int8_t, COMBINE_MAX)

DEFINE_REDUCE(sum_u16, uint16_t, COMBINE_ADD)
DEFINE_REDUCE(prod_u16, uint16_t, COMBINE_UMUL)
DEFINE_REDUCE(min_u16, uint16_t, COMBINE_MIN)
DEFINE_REDUCE(max_u16, uint16_t, COMBINE_MAX)
DEFINE_REDUCE(min_i16, int16_t, COMBINE_MIN)
DEFINE_REDUCE(max_i16, int16_t, COMBINE_MAX)

DEFINE_REDUCE(sum_u32, uint32_t, COMBINE_ADD)
DEFINE_REDUCE(prod_u32, uint32_t, COMBINE_UMUL)
DEFINE_REDUCE(min_u32, uint32_t, COMBINE_MIN)
DEFINE_REDUCE(max_u32, uint32_t, COMBINE_MAX)
DEFINE_REDUCE(min_i32, int32_t, COMBINE_MIN)
DEFINE_REDUCE(max_i32, int32_t, COMBINE_MAX)

DEFINE_REDUCE(sum_u64, uint64_t, COMBINE_ADD)
DEFINE_REDUCE(prod_u64, uint64_t, COMBINE_UMUL)
DEFINE_REDUCE(min_u64, uint64_t, COMBINE_MIN)
DEFINE_REDUCE(max_u64, uint64_t, COMBINE_MAX)
DEFINE_REDUCE(min_i64, int64_t, COMBINE_MIN)
DEFINE_REDUCE(max_i64, int64_t, COMBINE_MAX)

/* Bitwise operators, integers only (signed ones share the unsigned
 * loops: the bits are the same). */
#define DEFINE_BITWISE(T, bits)                                            \
    DEFINE_REDUCE(band_u##bits, T, COMBINE_AND)                            \
    DEFINE_REDUCE(bor_u##bits, T, COMBINE_OR)                              \
    DEFINE_REDUCE(bxor_u##bits, T, COMBINE_XOR)
DEFINE_BITWISE(uint8_t, 8)
DEFINE_BITWISE(uint16_t, 16)
DEFINE_BITWISE(uint32_t, 32)
DEFINE_BITWISE(uint64_t, 64)

typedef void (*reduce_fn)(unsigned char *restrict d,
                          const unsigned char *restrict s, size_t n);

/* AVG combines exactly like SUM; its division waits for the last step. */
#define ROW(sum, prod, min, max)                                           \
    { [CCL_SUM] = sum, [CCL_AVG] = sum, [CCL_MIN] = min, [CCL_MAX] = max,  \
      [CCL_PROD] = prod }
#define IROW(sum, prod, min, max, bits)                                    \
    { [CCL_SUM] = sum, [CCL_AVG] = sum, [CCL_MIN] = min, [CCL_MAX] = max,  \
      [CCL_PROD] = prod, [CCL_BAND] = band_u##bits, [CCL_BOR] = bor_u##bits, \
      [CCL_BXOR] = bxor_u##bits }

static const reduce_fn reduce_table[CCL_DTYPE_COUNT][CCL_REDOP_COUNT] = {
    [CCL_F32] = ROW(sum_f32, prod_f32, min_f32, max_f32),
    [CCL_F64] = ROW(sum_f64, prod_f64, min_f64, max_f64),
    [CCL_F16] = ROW(sum_f16_any, prod_f16, min_f16, max_f16),
    [CCL_BF16] = ROW(sum_bf16, prod_bf16, min_bf16, max_bf16),
    [CCL_I8] = IROW(sum_u8, prod_u8, min_i8, max_i8, 8),
    [CCL_I16] = IROW(sum_u16, prod_u16, min_i16, max_i16, 16),
    [CCL_I32] = IROW(sum_u32, prod_u32, min_i32, max_i32, 32),
    [CCL_I64] = IROW(sum_u64, prod_u64, min_i64, max_i64, 64),
    [CCL_U8] = IROW(sum_u8, prod_u8, min_u8, max_u8, 8),
    [CCL_U16] = IROW(sum_u16, prod_u16, min_u16, max_u16, 16),
    [CCL_U32] = IROW(sum_u32, prod_u32, min_u32, max_u32, 32),
    [CCL_U64] = IROW(sum_u64, prod_u64, min_u64, max_u64, 64),
};

int ccl__redop_valid(int dtype, int redop)
{
    return dtype >= 0 && dtype < CCL_DTYPE_COUNT && redop >= 0 &&
           redop < CCL_REDOP_COUNT && reduce_table[dtype][redop] != NULL;
}

/* dst and src must not overlap: the kernels take them as restrict. */
int ccl__reduce(void *dst, const void *src, size_t n, int dtype, int redop)
{
    if (!ccl__redop_valid(dtype, redop))
        return -1;
    reduce_table[dtype][redop]((unsigned char *)dst,
                               (const unsigned char *)src, n);
    return 0;
}

/* ------------------------------------------------------------------ */
/* AVG's final division.
 *
 * Each dtype divides by nranks converted to a type D that holds any
 * positive int and, combined with T, gives the right arithmetic: true
 * division for floats (not a multiplication by 1/nranks, which rounds
 * twice), C's truncating division for integers.  For a signed T the
 * dividend is the wrapped sum read as signed, so -7 / 2 is -3. */

#define DIVIDE(T, x, div) ((T)((x) / (div)))
#define DIVIDE_H(T, x, div)                                                \
    ((T)f32_to_f16_inline(f16_to_f32_inline(x) / (div)))
#define DIVIDE_B(T, x, div)                                                \
    ((T)f32_to_bf16_inline(bf16_to_f32_inline(x) / (div)))

#define FINISH_ELEMENT(T, DIV, b, k, div)                                  \
    do {                                                                   \
        T x_;                                                              \
        memcpy(&x_, (b) + (k) * sizeof(T), sizeof(T));                     \
        x_ = DIV(T, x_, div);                                              \
        memcpy((b) + (k) * sizeof(T), &x_, sizeof(T));                     \
    } while (0)

/* BY: what each element is divided by (or multiplied with), computed
 * from nranks once. */
#define DEFINE_FINISH_BY(name, T, D, DIV, BY)                              \
    static void name(unsigned char *b, size_t n, int nranks)               \
    {                                                                      \
        const D div = BY;                                                  \
        size_t i = 0;                                                      \
        for (; n - i >= BLOCK; i += BLOCK)                                 \
            for (size_t j = 0; j < BLOCK; j++)                             \
                FINISH_ELEMENT(T, DIV, b, i + j, div);                     \
        for (; i < n; i++)                                                 \
            FINISH_ELEMENT(T, DIV, b, i, div);                             \
    }
#define DEFINE_FINISH(name, T, D, DIV) DEFINE_FINISH_BY(name, T, D, DIV, (D)nranks)

/* A power of two ranks: times the reciprocal, which is exact. */
#define SCALE(T, x, f) ((T)((x) * (f)))
DEFINE_FINISH_BY(scale_f32, float, float, SCALE, 1.0f / (float)nranks)
DEFINE_FINISH_BY(scale_f64, double, double, SCALE, 1.0 / (double)nranks)

/* int8..int32 and uint8/uint16 are promoted to int, where the quotient
 * always fits; uint32 needs unsigned division, the 64-bit types 64-bit
 * division. */
DEFINE_FINISH(avg_f32, float, float, DIVIDE)
DEFINE_FINISH(avg_f64, double, double, DIVIDE)
DEFINE_FINISH(avg_f16, uint16_t, float, DIVIDE_H)
DEFINE_FINISH(avg_bf16, uint16_t, float, DIVIDE_B)
DEFINE_FINISH(avg_i8, int8_t, int, DIVIDE)
DEFINE_FINISH(avg_i16, int16_t, int, DIVIDE)
DEFINE_FINISH(avg_i32, int32_t, int, DIVIDE)
DEFINE_FINISH(avg_i64, int64_t, int64_t, DIVIDE)
DEFINE_FINISH(avg_u8, uint8_t, int, DIVIDE)
DEFINE_FINISH(avg_u16, uint16_t, int, DIVIDE)
DEFINE_FINISH(avg_u32, uint32_t, uint32_t, DIVIDE)
DEFINE_FINISH(avg_u64, uint64_t, uint64_t, DIVIDE)

typedef void (*finish_fn)(unsigned char *b, size_t n, int nranks);

static const finish_fn avg_table[CCL_DTYPE_COUNT] = {
    [CCL_F32] = avg_f32, [CCL_F64] = avg_f64, [CCL_F16] = avg_f16,
    [CCL_BF16] = avg_bf16, [CCL_I8] = avg_i8, [CCL_I16] = avg_i16,
    [CCL_I32] = avg_i32, [CCL_I64] = avg_i64, [CCL_U8] = avg_u8,
    [CCL_U16] = avg_u16, [CCL_U32] = avg_u32, [CCL_U64] = avg_u64,
};

int ccl__reduce_finish(void *buf, size_t n, int dtype, int redop, int nranks)
{
    if (dtype < 0 || dtype >= CCL_DTYPE_COUNT || redop < 0 ||
        redop >= CCL_REDOP_COUNT)
        return -1;
    if (redop != CCL_AVG)
        return 0;
    /* An average over no ranks has no meaning, and dividing by zero or a
     * negative count would be undefined or wrong. */
    if (nranks < 1)
        return -1;
    /* Dividing by one changes no value, so skip the pass over memory. */
    if (nranks == 1)
        return 0;
    if ((nranks & (nranks - 1)) == 0 && (dtype == CCL_F32 || dtype == CCL_F64)) {
        /* A power of two: its reciprocal is exact, so x * (1/n) is the
         * same correctly rounded x/n (one rounding of the same real
         * number, subnormal results included), at multiply speed where a
         * division takes several times as long. */
        (dtype == CCL_F32 ? scale_f32 : scale_f64)((unsigned char *)buf, n, nranks);
        return 0;
    }
    avg_table[dtype]((unsigned char *)buf, n, nranks);
    return 0;
}

/* An exponent of all ones is NaN or infinity.  The loop ORs whole blocks
 * so that it vectorises; the element is looked for only in a block that
 * has one. */
size_t ccl__f32_first_nonfinite(const float *x, size_t n)
{
    const uint32_t e = 0x7f800000u;
    size_t i = 0;
    for (; n - i >= BLOCK; i += BLOCK) {
        uint32_t any = 0;
        for (size_t j = 0; j < BLOCK; j++) {
            uint32_t b;
            memcpy(&b, x + i + j, 4);
            any |= (uint32_t)((b & e) == e);
        }
        if (any)
            break;
    }
    for (; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        if ((b & e) == e)
            return i;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* ccl__hash64.
 *
 * Structure: four independent 64-bit lanes each absorb one 8-byte word
 * per 32-byte stripe, so the four multiply chains overlap in the CPU and
 * the loop is limited by throughput, not by the latency of one chain.
 * Each absorb step, acc = rotl(acc + w * K2, 31) * K1, is a bijection of
 * acc for a fixed w and of w for a fixed acc (K1 and K2 are odd), so a
 * change in any one word always changes its lane.  The lanes are folded
 * together, the tail of fewer than 32 bytes is absorbed word by word, the
 * length is mixed in (so that inputs that differ only by trailing zero
 * bytes differ), and a final xorshift-multiply avalanche spreads every
 * input bit over all output bits.  Every later step is also a bijection
 * of the state, so changing a single word of input can never leave the
 * result unchanged.
 *
 * Words are read little-endian from single bytes; compilers fuse the byte
 * loads into one load on little-endian hosts, and the result does not
 * depend on host byte order or on the alignment of the input. */

#define K1 UINT64_C(0x9E3779B97F4A7C15) /* 2^64 / golden ratio */
#define K2 UINT64_C(0xBF58476D1CE4E5B9) /* odd constants with well-mixed */
#define K3 UINT64_C(0x94D049BB133111EB) /* bits, as used by splitmix64 */
#define K4 UINT64_C(0xD6E8FEB86659FD93)

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    /* Callers pass constants in 1..63, so neither shift is by 64. */
    return (x << r) | (x >> (64u - r));
}

static inline uint64_t read_u64le(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
           (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
           (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static inline uint64_t absorb(uint64_t acc, uint64_t w)
{
    return rotl64(acc + w * K2, 31) * K1;
}

/* Folds one lane, or one tail word, into the running hash. */
static inline uint64_t fold(uint64_t h, uint64_t v)
{
    return rotl64(h ^ absorb(0, v), 27) * K1 + K4;
}

uint64_t ccl__hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t left = len;
    uint64_t h;

    if (left >= 32) {
        /* Distinct starting values, so that no two lanes compute the
         * same function of their words. */
        uint64_t v0 = seed + K3;
        uint64_t v1 = seed + 2 * K3;
        uint64_t v2 = seed + 3 * K3;
        uint64_t v3 = seed + 4 * K3;
        do {
            v0 = absorb(v0, read_u64le(p));
            v1 = absorb(v1, read_u64le(p + 8));
            v2 = absorb(v2, read_u64le(p + 16));
            v3 = absorb(v3, read_u64le(p + 24));
            p += 32;
            left -= 32;
        } while (left >= 32);
        /* Each lane goes through its own multiply rounds; a chain of
         * folds keeps the merge a bijection of every single lane. */
        h = fold(K4, v0);
        h = fold(h, v1);
        h = fold(h, v2);
        h = fold(h, v3);
    } else {
        h = seed + K4;
    }

    h += (uint64_t)len * K3;

    while (left >= 8) {
        h = fold(h, read_u64le(p));
        p += 8;
        left -= 8;
    }
    if (left > 0) {
        /* The last 1..7 bytes as one zero-extended little-endian word;
         * the length mixed in above tells it apart from real zeros. */
        uint64_t w = 0;
        for (size_t i = 0; i < left; i++)
            w |= (uint64_t)p[i] << (8 * i);
        h = fold(h ^ K2, w);
    }

    /* Avalanche: each xorshift moves high bits down, each multiply moves
     * low bits up, until every output bit depends on every input bit. */
    h ^= h >> 32;
    h *= K2;
    h ^= h >> 29;
    h *= K3;
    h ^= h >> 32;
    return h;
}
