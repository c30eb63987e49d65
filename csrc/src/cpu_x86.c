/*
 * cpu_x86.c - CPU features for the SIMD paths (cpu_x86.h), read directly
 * with CPUID and XGETBV, as not every compiler's __builtin_cpu_supports
 * knows "f16c".  The callers cache the answer.
 */
#include "cpu_x86.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <stddef.h>

/* CPUID leaf 1 ECX, or 0 unless it says AVX and OSXSAVE and the OS
 * saves the XMM and YMM registers (XCR0 bits 1 and 2). */
static unsigned avx_leaf1_ecx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!((c >> 28) & 1) || !((c >> 27) & 1)) /* AVX, OSXSAVE */
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6u) == 6u ? c : 0;
}

int ccl__cpu_has_f16c(void)
{
    return (avx_leaf1_ecx() >> 29) & 1;
}

int ccl__cpu_has_avx2(void)
{
    if (!avx_leaf1_ecx() || __get_cpuid_max(0, NULL) < 7)
        return 0;
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 5) & 1;
}

#else

int ccl__cpu_has_f16c(void)
{
    return 0;
}

int ccl__cpu_has_avx2(void)
{
    return 0;
}

#endif
