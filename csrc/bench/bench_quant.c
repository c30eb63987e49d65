/*
 * bench_quant.c - how fast the quantized encodings (src/quant.c) run on
 * one core: MB/s of f32 data encoded, decoded and decoded-and-added, per
 * format, next to a plain f32 add of the same buffers (the work of an
 * unquantized ring hop) for scale.  Not part of `make test`; run
 *
 *   make -C csrc bench-quant
 *
 * Each cell is the best of RUNS timings of a loop long enough (about 20
 * ms) for clock_gettime to resolve it, over 1 MiB of f32 (a ring unit is
 * smaller; it stays in cache as a unit just received or about to be sent
 * would).  Data: Gaussian-like values in blocks of 256, so every level
 * of every format is used.  The machine is shared: read it with
 * `uptime` next to it.  For counts that do not depend on load,
 * `bench_quant once` runs each format's encode, stochastic encode,
 * decode and decode-add exactly once, untimed, for
 *
 *   valgrind --tool=callgrind --toggle-collect=ccl__quant_encode \
 *            csrc/build/bench_quant once
 *
 * (all formats; `once u8` one format, `once u8 sr` the stochastic
 * encode alone; divide by N = 262144 for instructions per element).
 * With PYCCL_QUANT_PORTABLE=1 in the environment the AVX2 kernels
 * (src/quant_simd.c) are off: the portable code's speed and counts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ccl.h"
#include "quant_simd.h"
#include "quant.h"

#define N (256 * 1024) /* elements: 1 MiB of f32 */
#define BLOCK 256
#define RUNS 5
#define TARGET_SECONDS 0.02

static float x[N], acc[N];
static uint8_t enc[8 * N];
static volatile float sink;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { ENCODE, ENCODE_SR, DECODE, DECODE_ADD, ADD_F32 };

static void once(int what, int fmt)
{
    switch (what) {
    case ENCODE: ccl__quant_encode(fmt, x, N, BLOCK, 0, 0, enc); break;
    case ENCODE_SR: ccl__quant_encode(fmt, x, N, BLOCK, 12345, 0, enc); break;
    case DECODE: ccl__quant_decode(fmt, enc, N, BLOCK, acc); break;
    case DECODE_ADD: ccl__quant_decode_add(fmt, enc, N, BLOCK, acc); break;
    default:
        for (size_t i = 0; i < N; i++)
            acc[i] += x[i];
    }
    sink = acc[N / 2];
}

/* MB/s of f32 (4 bytes an element) through one kind of work. */
static double rate(int what, int fmt)
{
    long reps = 1;
    for (;;) {
        double t0 = now_seconds();
        for (long r = 0; r < reps; r++)
            once(what, fmt);
        if (now_seconds() - t0 >= TARGET_SECONDS)
            break;
        reps *= 2;
    }
    double best = 1e30;
    for (int k = 0; k < RUNS; k++) {
        double t0 = now_seconds();
        for (long r = 0; r < reps; r++)
            once(what, fmt);
        double t = (now_seconds() - t0) / reps;
        best = t < best ? t : best;
    }
    return 4.0 * N / best / 1e6;
}

int main(int argc, char **argv)
{
    static const struct { int fmt; const char *name; } F[] = {
        {CCL_QUANT_U8, "u8"},     {CCL_QUANT_U4, "u4"},     {CCL_QUANT_E3M0, "e3m0"},
        {CCL_QUANT_F16, "f16"},   {CCL_QUANT_BF16, "bf16"},
    };
    const char *portable = getenv("PYCCL_QUANT_PORTABLE");
    if (portable && strcmp(portable, "1") == 0)
        ccl__quant_simd_force(0);
    printf("codec path: %s\n", ccl__quant_simd_on() ? "AVX2" : "portable");
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < N; i++) {
        /* Sum of four uniforms: roughly Gaussian, mixed signs. */
        float v = 0;
        for (int k = 0; k < 4; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            v += (float)(s >> 40) * (1.0f / 16777216.0f) - 0.5f;
        }
        x[i] = v * 0.01f;
    }
    if (argc > 1 && strcmp(argv[1], "once") == 0) {
        for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
            int q = F[f].fmt;
            if (argc > 2 && strcmp(argv[2], F[f].name) != 0)
                continue; /* `once u8`: that format only */
            if (argc > 3 && strcmp(argv[3], "sr") == 0) {
                once(ENCODE_SR, q); /* `once u8 sr`: the stochastic encode */
                continue;
            }
            once(ENCODE, q);
            once(DECODE, q);
            once(DECODE_ADD, q);
        }
        return 0;
    }
    printf("codec speed, one core, MB/s of f32 (1 MiB, block %d; plain f32 add: %.0f)\n",
           BLOCK, rate(ADD_F32, 0));
    printf("%-6s %10s %10s %10s %10s\n", "format", "encode", "encode-sr", "decode",
           "decode-add");
    for (size_t f = 0; f < sizeof F / sizeof F[0]; f++) {
        int q = F[f].fmt, mm = q == CCL_QUANT_U8 || q == CCL_QUANT_U4 || q == CCL_QUANT_E3M0;
        double e = rate(ENCODE, q), sr = mm ? rate(ENCODE_SR, q) : 0;
        ccl__quant_encode(q, x, N, BLOCK, 0, 0, enc);
        double d = rate(DECODE, q), da = rate(DECODE_ADD, q);
        if (mm)
            printf("%-6s %10.0f %10.0f %10.0f %10.0f\n", F[f].name, e, sr, d, da);
        else
            printf("%-6s %10.0f %10s %10.0f %10.0f\n", F[f].name, e, "-", d, da);
    }
    return 0;
}
