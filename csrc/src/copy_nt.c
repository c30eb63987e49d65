/*
 * copy_nt.c - copy_nt.h: a copy with non-temporal stores.
 */
#include "copy_nt.h"
#include "reduce.h"

#include <stdint.h>
#include <string.h>

/* An exponent of all ones: NaN or infinity (for the vector lanes; the
 * scalar scan is reduce.c's ccl__f32_first_nonfinite). */
#define EXP_MASK 0x7f800000u

/* Pieces of this many floats are copied, then looked into only if one of
 * their elements was flagged (the piece is still in the cache then). */
#define PIECE 1024

#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>

/* Below this a plain copy is as fast, and the bytes may as well be
 * cached. */
#define NT_MIN 4096

void ccl__copy_nt(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (n < NT_MIN) {
        memcpy(d, s, n);
        return;
    }
    /* Stream stores want 16-byte aligned destinations: copy up to one. */
    size_t head = (16 - ((uintptr_t)d & 15)) & 15;
    memcpy(d, s, head);
    d += head, s += head, n -= head;
    for (; n >= 64; d += 64, s += 64, n -= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, a);
        _mm_stream_si128((__m128i *)(d + 16), b);
        _mm_stream_si128((__m128i *)(d + 32), c);
        _mm_stream_si128((__m128i *)(d + 48), e);
    }
    memcpy(d, s, n);
    /* Stream stores are weakly ordered: make them visible before anything
     * this thread stores next (a restore reads them from this thread, but
     * an op may be freed or handed over on another). */
    _mm_sfence();
}

/* One piece: streamed 16 bytes at a time from the first element whose
 * address in dst is aligned, every lane's exponent compared with all ones
 * on the way.  1 if some element is NaN or infinite. */
static int piece_nt_f32(float *dst, const float *src, size_t n)
{
    const __m128i mask = _mm_set1_epi32((int)EXP_MASK);
    __m128i any = _mm_setzero_si128();
    size_t h = ((16 - ((uintptr_t)dst & 15)) & 15) / 4;
    if (h > n)
        h = n;
    int bad = ccl__f32_first_nonfinite(src, h) < h;
    memcpy(dst, src, h * 4);
    size_t i = h;
    for (; n - i >= 4; i += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
        any = _mm_or_si128(any, _mm_cmpeq_epi32(_mm_and_si128(v, mask), mask));
        _mm_stream_si128((__m128i *)(dst + i), v);
    }
    memcpy(dst + i, src + i, (n - i) * 4);
    return bad || _mm_movemask_epi8(any) != 0 ||
           ccl__f32_first_nonfinite(src + i, n - i) < n - i;
}

size_t ccl__copy_nt_f32_check(float *dst, const float *src, size_t n)
{
    size_t bad = n;
    for (size_t i = 0; i < n; i += PIECE) {
        size_t m = n - i < PIECE ? n - i : PIECE;
        if (piece_nt_f32(dst + i, src + i, m) && bad == n)
            bad = i + ccl__f32_first_nonfinite(src + i, m);
    }
    _mm_sfence();
    return bad;
}

#else

void ccl__copy_nt(void *dst, const void *src, size_t n)
{
    memcpy(dst, src, n);
}

size_t ccl__copy_nt_f32_check(float *dst, const float *src, size_t n)
{
    memcpy(dst, src, n * 4);
    return ccl__f32_first_nonfinite(src, n);
}

#endif
