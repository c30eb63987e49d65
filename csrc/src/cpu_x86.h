/*
 * cpu_x86.h - what the CPU (and the OS, which must save the YMM
 * registers) lets the SIMD paths use, read once from CPUID and XGETBV.
 * 0 on anything but x86-64 with gcc or clang.  Pure: no I/O.
 */
#ifndef CCL_CPU_X86_H
#define CCL_CPU_X86_H

/* AVX and F16C (half_simd.c). */
int ccl__cpu_has_f16c(void);
/* AVX and AVX2 (quant_simd.c). */
int ccl__cpu_has_avx2(void);

#endif
