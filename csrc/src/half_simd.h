/*
 * half_simd.h - IEEE half sums and conversions with F16C where the CPU has
 * it (half_simd.c), bit for bit the portable results of half.h.  Pure.
 */
#ifndef CCL_HALF_SIMD_H
#define CCL_HALF_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Whether f16 sums and conversions use it now; tests
 * turn it off (on 0) to compare with the portable code, and learn whether
 * the CPU has it.  The three kernels do the first elements (a multiple of
 * 8) and return how many; 0 where the CPU lacks F16C. */
int ccl__half_simd_on(void);
int ccl__half_simd_force(int on);
size_t ccl__half_simd_sum_f16(unsigned char *d, const unsigned char *s, size_t n);
size_t ccl__half_simd_to_f16(const float *x, size_t n, uint8_t *out);
size_t ccl__half_simd_from_f16(const uint8_t *in, size_t n, float *out, int add);

#endif
