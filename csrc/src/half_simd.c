/*
 * half_simd.c - IEEE half (f16) sums and conversions with the F16C
 * instructions, where the CPU has them (x86-64 with AVX and F16C; checked
 * once, at run time).  The portable code of half.h converts one element
 * at a time in integer arithmetic, a quarter of f32's speed for a sum;
 * F16C converts 8 at once.
 *
 * The results are bit for bit the portable ones (csrc/tests/test_half_simd.c
 * compares them over every half value): both widen exactly, add in f32
 * and round to nearest even.  NaNs: a sum that is NaN becomes the quiet
 * NaN 0x7e00 in both (which input's payload an addition passes on
 * depends on operand order, which differs between the two); a converted
 * NaN keeps the top of its payload and comes out quiet in both.  Only the f16 sum (and AVG, which combines as a sum)
 * and the wire's f16 conversions go this way; bf16 is a shift and already
 * runs at memory speed in portable code.
 */
#include "half_simd.h"
#include "cpu_x86.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_F16C_PATH 1
#include <immintrin.h>
#endif

/* Whether the CPU has the instructions: -1 until checked.  Tests turn
 * the path off to compare it with the portable one. */
static int simd_avail = -1;
static int simd_off;

static int simd_available(void)
{
    int s = __atomic_load_n(&simd_avail, __ATOMIC_RELAXED);
    if (s < 0) {
        s = ccl__cpu_has_f16c();
        __atomic_store_n(&simd_avail, s, __ATOMIC_RELAXED);
    }
    return s;
}

int ccl__half_simd_on(void)
{
    return simd_available() && !__atomic_load_n(&simd_off, __ATOMIC_RELAXED);
}

int ccl__half_simd_force(int on)
{
    __atomic_store_n(&simd_off, !on, __ATOMIC_RELAXED);
    return simd_available();
}

#ifdef HAVE_F16C_PATH

__attribute__((target("avx,f16c")))
static size_t sum_f16c(unsigned char *d, const unsigned char *s, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + 2 * i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        __m256 sum = _mm256_add_ps(a, b);
        __m128i r = _mm256_cvtps_ph(sum, _MM_FROUND_TO_NEAREST_INT);
        /* NaN lanes become 0x7e00, as in reduce.c (sum_f16). */
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(sum, sum, _CMP_UNORD_Q));
        __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan),
                                        _mm256_extractf128_si256(nan, 1));
        r = _mm_blendv_epi8(r, _mm_set1_epi16(0x7e00), nan16);
        _mm_storeu_si128((__m128i *)(d + 2 * i), r);
    }
    return i;
}

__attribute__((target("avx,f16c")))
static size_t to_half_f16c(const float *x, size_t n, uint8_t *out)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        __m128i r = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(out + 2 * i), r);
    }
    return i;
}

__attribute__((target("avx,f16c")))
static size_t from_half_f16c(const uint8_t *in, size_t n, float *out, int add)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i)));
        if (add)
            v = _mm256_add_ps(_mm256_loadu_ps(out + i), v);
        _mm256_storeu_ps(out + i, v);
    }
    return i;
}

#endif

/* The wire's f16 words are little-endian, as x86 memory is: the F16C path
 * exists only there, so no byte swapping is needed. */

size_t ccl__half_simd_sum_f16(unsigned char *d, const unsigned char *s, size_t n)
{
#ifdef HAVE_F16C_PATH
    if (ccl__half_simd_on())
        return sum_f16c(d, s, n);
#endif
    (void)d, (void)s, (void)n;
    return 0;
}

size_t ccl__half_simd_to_f16(const float *x, size_t n, uint8_t *out)
{
#ifdef HAVE_F16C_PATH
    if (ccl__half_simd_on())
        return to_half_f16c(x, n, out);
#endif
    (void)x, (void)n, (void)out;
    return 0;
}

size_t ccl__half_simd_from_f16(const uint8_t *in, size_t n, float *out, int add)
{
#ifdef HAVE_F16C_PATH
    if (ccl__half_simd_on())
        return from_half_f16c(in, n, out, add);
#endif
    (void)in, (void)n, (void)out, (void)add;
    return 0;
}
