/*
 * quant_simd.h - the inner loops of quant.c's encodings with AVX2, where
 * the CPU has it (quant_simd.c), bit for bit the portable results.  Pure.
 *
 * Each kernel does the first elements of its range (a multiple of 16 or
 * 32) and returns how many; quant.c does the rest, and all of it where
 * the kernels return 0 (no AVX2, or turned off).  Element j of a range
 * is computed by exactly the f32 and integer operations quant.c uses,
 * in the same order, so the bytes and floats do not depend on which
 * path ran: ranks on different CPUs stay bit-identical.
 */
#ifndef CCL_QUANT_SIMD_H
#define CCL_QUANT_SIMD_H

#include <stddef.h>
#include <stdint.h>

/* Whether the kernels run now; tests turn them off (on 0) to compare
 * with the portable code.  force returns whether the CPU has AVX2. */
int ccl__quant_simd_on(void);
int ccl__quant_simd_force(int on);

/* Min, max and finiteness in 16 lanes: lane j takes elements j, j + 16,
 * ... of x[0..done) in order, as quant.c's block_range does (lo, hi and
 * z hold each lane's running value on entry and on return).  Groups of
 * 16. */
size_t ccl__qsimd_range(const float *x, size_t m, float lo[16], float hi[16], float z[16]);

/* Min-max codes (levels 0..top) of x[0..done), in groups of 32: codes
 * gets bytes (U8) or nibbles (U4, low first).  seed 0: round to nearest;
 * else stochastic, the draw of element i from (seed, index0 + i). */
size_t ccl__qsimd_mm_codes(const float *x, size_t m, float lo, float step, int top,
                           uint64_t seed, uint64_t index0, uint8_t *codes, int nibbles);
/* E3M0 codes of x[0..done) in a block whose levels are L[0..8) (L[7]
 * the scale, which is > 0), in groups of 32. */
size_t ccl__qsimd_e3_codes(const float *x, size_t m, const float L[8], uint64_t seed,
                           uint64_t index0, uint8_t *codes);

/* Decodes (add: adds) min-max codes: base + code * step, in groups of
 * 32. */
size_t ccl__qsimd_mm_decode(const uint8_t *codes, size_t m, float base, float step,
                            float *out, int add, int nibbles);
/* Decodes (add: adds) E3M0 nibbles through the 16-entry table of the
 * block's values, in groups of 32. */
size_t ccl__qsimd_e3_decode(const uint8_t *codes, size_t m, const float tab[16], float *out,
                            int add);

/* bfloat16 to and from the wire's little-endian words, in groups of 16,
 * as half.h's one-element functions. */
size_t ccl__qsimd_to_bf16(const float *x, size_t n, uint8_t *out);
size_t ccl__qsimd_from_bf16(const uint8_t *in, size_t n, float *out, int add);

#endif
