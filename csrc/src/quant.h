/*
 * quant.h - quantized encodings of f32 data for the wire: pure functions
 * over memory, no I/O, the same bytes on every platform.
 *
 * Formats (enum ccl_quant in ccl.h):
 *  - U8, U4: min-max per block of `block` elements: an 8-byte header (the
 *    block's minimum and step, f32 little-endian), then one code per
 *    element (U8: a byte; U4: a nibble, low nibble first).  A value
 *    decodes to min + code * step; the error is at most step / 2 (round to
 *    nearest) or below step (stochastic rounding).
 *  - E3M0: sign and a 3-bit exponent per element (a nibble), per block a
 *    4-byte scale s (the largest magnitude): exponent 0 is zero, e > 0 is
 *    s * 2^(e - 7).  The error is at most a third of the value (or s/128
 *    for values below s/128).
 *  - F16, BF16: each element rounded to half or bfloat16 (nearest even).
 * Encoders refuse NaN and infinities for U8, U4 and E3M0 (they have no
 * code for them); F16 and BF16 carry them as they are.  Decoding is a
 * fixed sequence of f32 operations (no fused multiply-add: quant.c is
 * built with -ffp-contract=off), so every rank decodes the same bytes to
 * the same floats.
 */
#ifndef CCL_QUANT_H
#define CCL_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "ccl.h" /* enum ccl_quant */

/* Bytes that n elements take in format fmt; 0 for an unknown format or a
 * block of 0 (U8, U4, E3M0).  The nibble formats take the same bytes for
 * an odd count and the next even one: whoever frames an encoding must
 * carry the count. */
size_t ccl__quant_size(int fmt, size_t n, uint32_t block);
/* Encodes x[0..n) into out (ccl__quant_size bytes).  seed 0: round to
 * nearest; else stochastic rounding, from a hash of (seed, index0 + i),
 * so that every rank draws the same numbers for the same element.
 * Returns 0, or -1 if x holds NaN or infinity (U8, U4, E3M0). */
int ccl__quant_encode(int fmt, const float *x, size_t n, uint32_t block,
                      uint64_t seed, uint64_t index0, uint8_t *out);
/* Decodes n elements into out, or adds them to it. */
void ccl__quant_decode(int fmt, const uint8_t *in, size_t n, uint32_t block, float *out);
void ccl__quant_decode_add(int fmt, const uint8_t *in, size_t n, uint32_t block,
                           float *acc);

#endif
