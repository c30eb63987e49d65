/*
 * reduce.h - reduction kernels: pure functions over memory, no I/O.
 *
 * f16 and bf16 are widened to f32, combined, and rounded back to nearest
 * even, element by element, so every rank that runs the same kernel on
 * the same bytes gets the same bytes.  Integer sums and products wrap
 * (two's complement), as in C unsigned arithmetic.
 */
#ifndef CCL_REDUCE_H
#define CCL_REDUCE_H

#include <stddef.h>
#include <stdint.h>

/* dst[i] = dst[i] (op) src[i] for i < n.  AVG combines as SUM; the
 * division happens once, in ccl__reduce_finish.  Returns 0, or -1 for an
 * unknown dtype or op. */
int ccl__reduce(void *dst, const void *src, size_t n, int dtype, int redop);

/* Whether redop applies to dtype (the bitwise ones only to integers). */
int ccl__redop_valid(int dtype, int redop);

/* Applies the final step of an op to n elements in place: for AVG,
 * divides by nranks (integers: truncating division of the wrapped sum);
 * for every other op it does nothing. */
int ccl__reduce_finish(void *buf, size_t n, int dtype, int redop, int nranks);
/* The index of the first NaN or infinity in x[0..n), or n if there is
 * none. */
size_t ccl__f32_first_nonfinite(const float *x, size_t n);

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays
 * NaN, overflow becomes infinity). */
float ccl__f16_to_f32(uint16_t h);
uint16_t ccl__f32_to_f16(float f);
float ccl__bf16_to_f32(uint16_t h);
uint16_t ccl__f32_to_bf16(float f);
/* The same over arrays, as the wire's little-endian 16-bit words: n
 * floats to 2n bytes, and 2n bytes to n floats (add: added to out). */
void ccl__f32_to_half_le(int bf16, const float *x, size_t n, uint8_t *out);
void ccl__half_le_to_f32(int bf16, const uint8_t *in, size_t n, float *out, int add);

/* A fast 64-bit hash of a byte string, identical on every platform (it
 * reads bytes little-endian, never depends on alignment or host order). */
uint64_t ccl__hash64(const void *data, size_t len, uint64_t seed);

#endif
