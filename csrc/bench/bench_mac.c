/*
 * bench_mac.c - how fast Poly1305 and the frame MAC (src/mac.c) run on one
 * core, next to memcpy of the same sizes for scale.  Not part of `make`;
 * from the repository root:
 *
 *   cc -O2 -std=c99 -D_GNU_SOURCE -Icsrc/include -Icsrc/src \
 *      csrc/bench/bench_mac.c csrc/src/mac.c csrc/src/sha256.c \
 *      csrc/src/wire.c -o /tmp/bench_mac && /tmp/bench_mac
 *
 * Each cell is the best of several runs of a loop long enough (about 20
 * ms) for clock_gettime to resolve it, over a buffer that stays in cache
 * between repetitions, as a frame just received or about to be sent
 * would.  The frame MAC rows include the per-frame pad (two SHA-256
 * compressions), which is why small frames run slower; the last line
 * gives that fixed cost on its own.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mac.h"

#define RUNS 7
#define TARGET_SECONDS 0.02

static volatile uint8_t sink; /* keeps results observable */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum what { MEMCPY, POLY1305, FRAME_MAC };

typedef struct bench {
    enum what what;
    int impl; /* NH kernel for FRAME_MAC */
    const ccl__frame_mac_key *key;
    const uint8_t *src;
    uint8_t *dst;
    size_t n;
} bench;

/* Runs the operation reps times. */
static void run(const bench *b, long reps)
{
    static const uint8_t pkey[32] = {0x85, 0xd6, 0xbe, 0x78, 0x57, 0x55,
                                     0x6d, 0x33, 0x7f, 0x44, 0x52, 0xfe,
                                     0x42, 0xd5, 0x06, 0xa8, 0x01, 0x03};
    uint8_t tag[16];
    long r;

    for (r = 0; r < reps; r++) {
        switch (b->what) {
        case MEMCPY:
            memcpy(b->dst, b->src, b->n);
            sink ^= b->dst[(size_t)r % b->n];
            break;
        case POLY1305:
            ccl__poly1305(pkey, b->src, b->n, tag);
            sink ^= tag[0];
            break;
        case FRAME_MAC: {
            ccl__frame_mac_ctx c;
            ccl__frame_mac_init(&c, b->key, (uint64_t)r);
            ccl__nhpoly1305_set_impl(&c.h, b->impl);
            ccl__frame_mac_update(&c, b->src, b->n);
            ccl__frame_mac_final(&c, tag);
            sink ^= tag[0];
            break;
        }
        }
    }
}

/* Seconds per operation, best of RUNS. */
static double seconds_per_op(const bench *b)
{
    long reps = 1;
    double best = 1e30;
    int i;

    /* Grow the repetition count until one run takes TARGET_SECONDS. */
    for (;;) {
        double t0 = now_seconds(), t;
        run(b, reps);
        t = now_seconds() - t0;
        if (t >= TARGET_SECONDS || reps > (1L << 30))
            break;
        reps *= t > 0 ? (long)(TARGET_SECONDS / t) + 1 : 16;
    }
    for (i = 0; i < RUNS; i++) {
        double t0 = now_seconds(), t;
        run(b, reps);
        t = (now_seconds() - t0) / (double)reps;
        if (t < best)
            best = t;
    }
    return best;
}

int main(void)
{
    static const size_t sizes[] = {4096, 65536, 1 << 20};
    static const int impls[] = {CCL_NH_AUTO, CCL_NH_AVX2, CCL_NH_SSE2,
                                CCL_NH_PORTABLE};
    static const char *impl_names[] = {"auto", "avx2", "sse2", "portable"};
    static uint8_t seed[32] = {1, 2, 3};
    ccl__frame_mac_key key;
    uint8_t *src, *dst;
    size_t si, i, maxn = 1 << 20;

    src = malloc(maxn);
    dst = malloc(maxn);
    if (!src || !dst)
        return 2;
    for (i = 0; i < maxn; i++)
        src[i] = (uint8_t)(i * 167u + 13u);
    memset(dst, 0, maxn);
    ccl__frame_mac_key_init(&key, seed);

    printf("GB/s on one core (1 GB = 1e9 bytes), best of %d runs\n", RUNS);
    printf("%-8s %8s %9s", "size", "memcpy", "poly1305");
    for (i = 0; i < sizeof impls / sizeof impls[0]; i++)
        if (ccl__nh_impl_available(impls[i]))
            printf(" %9s", impl_names[i]);
    printf("   <- frame MAC with NH kernel\n");

    for (si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        bench b;
        size_t n = sizes[si];
        memset(&b, 0, sizeof b);
        b.key = &key;
        b.src = src;
        b.dst = dst;
        b.n = n;
        if (n >= 1 << 20)
            printf("%4zu MiB ", n >> 20);
        else
            printf("%4zu KiB ", n >> 10);
        b.what = MEMCPY;
        printf(" %8.1f", (double)n / seconds_per_op(&b) / 1e9);
        b.what = POLY1305;
        printf(" %9.2f", (double)n / seconds_per_op(&b) / 1e9);
        b.what = FRAME_MAC;
        for (i = 0; i < sizeof impls / sizeof impls[0]; i++) {
            if (!ccl__nh_impl_available(impls[i]))
                continue;
            b.impl = impls[i];
            printf(" %9.2f", (double)n / seconds_per_op(&b) / 1e9);
        }
        printf("\n");
        fflush(stdout);
    }

    /* The fixed cost of a frame: init (the pad) and final on no data. */
    {
        bench b;
        memset(&b, 0, sizeof b);
        b.what = FRAME_MAC;
        b.key = &key;
        b.src = src;
        b.n = 0;
        printf("frame MAC of an empty frame: %.0f ns\n",
               seconds_per_op(&b) * 1e9);
    }
    ccl__frame_mac_key_wipe(&key);
    free(src);
    free(dst);
    return sink == 0x5a ? 1 : 0; /* never true in practice; uses sink */
}
