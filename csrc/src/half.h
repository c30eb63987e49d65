/*
 * half.h - IEEE half and bfloat16 conversions of one element, as static
 * inline functions written so that a loop of them vectorises at -O2
 * (reduce.c's f16/bf16 reductions, quant.c's F16/BF16 through
 * reduce.c's array conversions).  Pure: bits in, bits out, the same on
 * every platform (round to nearest even; NaN stays NaN, overflow becomes
 * infinity).
 */
#ifndef CCL_HALF_H
#define CCL_HALF_H

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Bit casts.  memcpy is the one well-defined way to reinterpret bits in
 * C99 without breaking strict aliasing; compilers turn it into a plain
 * register move. */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Returns a when c is 1 and b when c is 0.  The conversions below pick
 * between several candidate results with this mask select rather than
 * with branches: gcc will not if-convert branches that guard float
 * arithmetic (it may trap under -ftrapping-math), and a loop with control
 * flow in it is not vectorised. */
static inline uint32_t select_u32(int c, uint32_t a, uint32_t b)
{
    uint32_t mask = 0u - (uint32_t)c;
    return (a & mask) | (b & ~mask);
}

/* The conversions take and return 16-bit patterns in a uint32_t, and
 * compare magnitudes as int32_t (they always fit): SSE2 has no unsigned
 * 32-bit compare, and any uint16_t in the chain makes the vectoriser
 * shuffle between 16- and 32-bit lanes, which costs more than the
 * arithmetic itself. */

/* ------------------------------------------------------------------ */
/* IEEE half precision (1 sign, 5 exponent, 10 mantissa bits). */

static inline float f16_to_f32_inline(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16;
    int32_t em = (int32_t)(h & 0x7fffu); /* exponent and mantissa */

    /* A normal half becomes a normal float by moving the fields into
     * place and rebiasing the exponent from 15 to 127. */
    uint32_t normal = ((uint32_t)em << 13) + ((127u - 15u) << 23);
    /* A subnormal half (or zero) is em * 2^-24.  em has at most 10 bits,
     * so the conversion and the product are exact, and the result is a
     * normal float: no subnormal float is ever produced or consumed, which
     * keeps this exact (and fast) even when flush-to-zero is switched
     * on. */
    uint32_t subnormal = f32_bits((float)em * 0x1p-24f);
    /* Infinity and NaN keep their mantissa (the NaN payload), so the
     * quiet bit of a half NaN lands on the quiet bit of the float; a
     * signalling NaN comes out quiet, as F16C's conversion gives it
     * (half_simd.c: the two must give the same bits). */
    uint32_t special = ((uint32_t)em << 13) | 0x7f800000u |
                       select_u32(em > 0x7c00, 0x00400000u, 0);

    uint32_t r = select_u32(em >= 0x0400, normal, subnormal);
    r = select_u32(em >= 0x7c00, special, r);
    return bits_f32(sign | r);
}

static inline uint32_t f32_to_f16_inline(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t a = x & 0x7fffffffu; /* |f| as bits, ordered like the values */
    int32_t ia = (int32_t)a;

    /* Results in the normal half range (|f| >= 2^-14): rebias the
     * exponent, then round the 13 mantissa bits that are dropped to
     * nearest even by adding 0xfff plus the lowest kept bit.  A carry out
     * of the mantissa correctly bumps the exponent. */
    uint32_t rebiased = a - ((127u - 15u) << 23);
    uint32_t normal =
        (rebiased + 0xfffu + ((rebiased >> 13) & 1u)) >> 13;
    /* Results below 2^-14 are multiples of 2^-24.  Adding 0.5 moves |f|
     * into [0.5, 1), where the float spacing is exactly 2^-24, so the
     * hardware addition rounds |f| to the nearest multiple of 2^-24, ties
     * to even, and the low mantissa bits of the sum are the half's bits.
     * Rounding up to 2^-14 gives 0x400, the smallest normal half, which is
     * the right answer.  (The exact sum needs at most 63 significant bits,
     * so even x87 extended precision rounds it only once.) */
    uint32_t subnormal = f32_bits(bits_f32(a) + 0.5f) - 0x3f000000u;
    /* A NaN stays a NaN: keep the top of the payload and set the quiet
     * bit, which also stops a payload that lives only in the low bits from
     * turning the NaN into an infinity. */
    uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu);

    uint32_t r = select_u32(ia >= 0x38800000, normal, subnormal);
    /* 0x477ff000 is 65520, halfway between the largest half (65504) and
     * 65536; ties go to the even neighbour, which is infinity. */
    r = select_u32(ia >= 0x477ff000, 0x7c00u, r);
    r = select_u32(ia > 0x7f800000, nan, r);
    return sign | r;
}

/* ------------------------------------------------------------------ */
/* bfloat16: the top half of a float. */

static inline float bf16_to_f32_inline(uint32_t h)
{
    return bits_f32(h << 16);
}

static inline uint32_t f32_to_bf16_inline(float f)
{
    uint32_t x = f32_bits(f);
    /* Round the 16 dropped bits to nearest even.  This works on the bits
     * of any finite float, subnormals included, and a carry out of the
     * largest finite value gives infinity, as it should.  It cannot carry
     * out of 32 bits because NaNs are handled apart. */
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    /* Rounding a NaN's bits could carry into the exponent and give an
     * infinity, so a NaN is truncated and made quiet instead. */
    uint32_t nan = (x >> 16) | 0x0040u;
    return select_u32((int32_t)(x & 0x7fffffffu) > 0x7f800000, nan, rounded);
}

#endif
