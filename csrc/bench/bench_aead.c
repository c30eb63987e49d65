/*
 * bench_aead.c - how fast the ciphers of encrypt=True run on one core
 * (src/aead.c over the system's libcrypto), next to the hand-written frame
 * MAC (src/mac.c) and to what libcrypto would offer in its place.  Not
 * part of `make`; from the repository root:
 *
 *   cc -O2 -std=c99 -D_GNU_SOURCE -Icsrc/include -Icsrc/src \
 *      csrc/bench/bench_aead.c csrc/src/aead.c csrc/src/mac.c \
 *      csrc/src/sha256.c csrc/src/wire.c -ldl -pthread \
 *      -o /tmp/bench_aead && /tmp/bench_aead
 *
 * Rows, per frame size (GB/s = payload bytes per second):
 *   memcpy               for scale
 *   frame MAC            NHPoly1305 + pad, ours (frame_mac=True)
 *   GMAC (libcrypto)     AES-256-GCM over the payload as associated data
 *                        only: libcrypto's fastest MAC-only candidate
 *   AES-256-GCM seal     encrypt into another buffer (the send path)
 *   AES-256-GCM open     decrypt in place and check (the receive path)
 *   ChaCha20-Poly1305    the same two
 * and the fixed per-frame cost of the frame MAC's pad (ours, HMAC-SHA256
 * with a precomputed key state) against libcrypto's HMAC() one-shot.
 * Each cell is the best of 7 runs of a loop of about 20 ms over buffers
 * that stay in cache, as a frame about to be sent or just received is.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aead.h"
#include "ccl.h"
#include "mac.h"

#define RUNS 7
#define TARGET_SECONDS 0.02

static volatile uint8_t sink;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum what { MEMCPY, FRAME_MAC, GMAC, SEAL, OPEN, PAD_OURS, PAD_LIBCRYPTO };

typedef const void *(*md_fn)(void);
typedef unsigned char *(*hmac_fn)(const void *md, const void *key, int keylen,
                                  const unsigned char *d, size_t n,
                                  unsigned char *out, unsigned *outlen);

typedef struct bench {
    enum what what;
    ccl__frame_mac_key *mkey;
    ccl__aead *enc, *dec;
    uint8_t *src, *dst;
    size_t n;
    uint8_t tags[16];
    hmac_fn hmac;
    const void *md;
} bench;

static void run(bench *b, long reps)
{
    static const uint8_t hdr[40] = {1};
    uint8_t tag[16], d[32];
    unsigned dl;
    for (long r = 0; r < reps; r++) {
        switch (b->what) {
        case MEMCPY:
            memcpy(b->dst, b->src, b->n);
            break;
        case FRAME_MAC: {
            ccl__frame_mac_ctx c;
            ccl__frame_mac_init(&c, b->mkey, (uint64_t)r);
            ccl__frame_mac_update(&c, hdr, sizeof hdr);
            ccl__frame_mac_update(&c, b->src, b->n);
            ccl__frame_mac_final(&c, tag);
            break;
        }
        case GMAC:
            ccl__aead_start(b->enc, b->src, b->n);
            ccl__aead_seal(b->enc, tag);
            break;
        case SEAL:
            ccl__aead_start(b->enc, hdr, sizeof hdr);
            ccl__aead_update(b->enc, b->dst, b->src, b->n);
            ccl__aead_seal(b->enc, tag);
            break;
        case OPEN:
            /* The tag will not match (the buffer is reused): the cost of
             * a real open is the same. */
            ccl__aead_start(b->dec, hdr, sizeof hdr);
            ccl__aead_update(b->dec, b->dst, b->dst, b->n);
            ccl__aead_open(b->dec, b->tags);
            break;
        case PAD_OURS: {
            ccl__frame_mac_ctx c;
            ccl__frame_mac_init(&c, b->mkey, (uint64_t)r);
            ccl__frame_mac_final(&c, tag);
            break;
        }
        case PAD_LIBCRYPTO: {
            uint8_t seq[8];
            memcpy(seq, &r, sizeof seq);
            b->hmac(b->md, b->src, 32, seq, sizeof seq, d, &dl);
            tag[0] = d[0];
            break;
        }
        }
        sink ^= tag[0] ^ b->dst[0];
    }
}

static double seconds_per_op(bench *b)
{
    long reps = 1;
    double best = 1e30;
    for (;;) {
        double t0 = now_seconds(), t;
        run(b, reps);
        t = now_seconds() - t0;
        if (t >= TARGET_SECONDS || reps > (1L << 30))
            break;
        reps *= t > 0 ? (long)(TARGET_SECONDS / t) + 1 : 16;
    }
    for (int i = 0; i < RUNS; i++) {
        double t0 = now_seconds();
        run(b, reps);
        double t = (now_seconds() - t0) / (double)reps;
        if (t < best)
            best = t;
    }
    return best;
}

int main(void)
{
    static const size_t sizes[] = {4096, 65536, 262144, 1 << 20};
    size_t maxn = 1 << 20;
    char err[600];
    if (ccl__aead_load(err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    uint8_t key[32], seed[32] = {1, 2, 3};
    memset(key, 7, sizeof key);
    static ccl__frame_mac_key mkey;
    ccl__frame_mac_key_init(&mkey, seed);
    bench b;
    memset(&b, 0, sizeof b);
    b.mkey = &mkey;
    b.src = malloc(maxn);
    b.dst = malloc(maxn);
    if (!b.src || !b.dst)
        return 2;
    for (size_t i = 0; i < maxn; i++)
        b.src[i] = b.dst[i] = (uint8_t)(i * 31);
    printf("%s; one core, GB/s of payload\n", ccl__aead_library());
    printf("%-24s", "frame bytes");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        printf("%10zu", sizes[s]);
    printf("\n");
    struct {
        const char *name;
        enum what what;
        int alg;
    } rows[] = {
        {"memcpy", MEMCPY, 0},
        {"frame MAC (ours)", FRAME_MAC, 0},
        {"GMAC (libcrypto)", GMAC, CCL_AEAD_AES256GCM},
        {"AES-256-GCM seal", SEAL, CCL_AEAD_AES256GCM},
        {"AES-256-GCM open", OPEN, CCL_AEAD_AES256GCM},
        {"ChaCha20-Poly1305 seal", SEAL, CCL_AEAD_CHACHA20POLY1305},
        {"ChaCha20-Poly1305 open", OPEN, CCL_AEAD_CHACHA20POLY1305},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        if (rows[r].alg && !ccl__aead_has(rows[r].alg))
            continue;
        b.what = rows[r].what;
        if (rows[r].alg &&
            (ccl__aead_new(&b.enc, rows[r].alg, 1, key, err, sizeof err) ||
             ccl__aead_new(&b.dec, rows[r].alg, 0, key, err, sizeof err))) {
            fprintf(stderr, "%s\n", err);
            return 2;
        }
        printf("%-24s", rows[r].name);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            b.n = sizes[s];
            printf("%10.2f", (double)b.n / seconds_per_op(&b) / 1e9);
            fflush(stdout);
        }
        printf("\n");
        ccl__aead_free(b.enc);
        ccl__aead_free(b.dec);
        b.enc = b.dec = NULL;
    }
    b.what = PAD_OURS;
    printf("per-frame pad, HMAC-SHA256 of 8 bytes: ours %.2f us",
           seconds_per_op(&b) * 1e6);
    /* libcrypto's HMAC through the same library handle pyccl loads (the
     * global namespace is searched: RTLD_LOCAL hides it, so open again). */
    void *h = dlopen("libcrypto.so.3", RTLD_NOW);
    if (!h)
        h = dlopen("libcrypto.so.1.1", RTLD_NOW);
    void *hp = h ? dlsym(h, "HMAC") : NULL, *mp = h ? dlsym(h, "EVP_sha256") : NULL;
    if (hp && mp) {
        md_fn md;
        memcpy(&b.hmac, &hp, sizeof hp);
        memcpy(&md, &mp, sizeof mp);
        b.md = md();
        b.what = PAD_LIBCRYPTO;
        printf(", libcrypto HMAC() %.2f us", seconds_per_op(&b) * 1e6);
    }
    printf("\n");
    free(b.src);
    free(b.dst);
    return 0;
}
