/*
 * mac.h - message authentication for frames on a byte stream: Poly1305
 * (RFC 8439 section 2.5), NHPoly1305 (the hash inside Adiantum), and a
 * Wegman-Carter frame MAC built from them.  Pure functions over memory, no
 * I/O, no allocation.
 *
 * Three layers, each usable on its own:
 *
 *   ccl__poly1305_*     the one-time authenticator of RFC 8439.  Its key
 *                       (r, s) must never authenticate two messages.
 *   ccl__nhpoly1305_*   NHPoly1305 exactly as Linux crypto/nhpoly1305.c:
 *                       NH over 1024-byte chunks (4 Toeplitz passes of
 *                       32-bit words), each 32-byte NH digest fed through
 *                       the Poly1305 polynomial without the final "+ s".
 *                       It is an almost-Delta-universal hash for inputs of
 *                       equal length, not a MAC and not a cryptographic
 *                       hash.  NH reads each message word once and costs
 *                       about one multiply per 4 bytes, which is what
 *                       makes long messages fast; Poly1305 then only sees
 *                       32 bytes per 1024.
 *   ccl__frame_mac_*    tag = (H(message) + pad(seq)) mod 2^128, where H is
 *                       NHPoly1305 followed by one Poly1305 block holding
 *                       the message length, and pad(seq) is a pseudorandom
 *                       16-byte value derived from the key and the frame's
 *                       sequence number.  See "Frame MAC" below for why a
 *                       sequence number must never repeat under one key.
 *
 * Every form is incremental (init, any number of updates, final) and gives
 * the same result for any split of the input.  All multi-byte values are
 * read and written little-endian through shifts, so results do not depend
 * on the host's byte order or on alignment.  After final a context holds
 * no key or message material and must be initialised again before reuse.
 *
 * Poly1305 uses 44/44/42-bit limbs and 64x64->128-bit multiplies where the
 * compiler has unsigned __int128, and 26-bit limbs with 32x32->64-bit
 * multiplies elsewhere (or when CCL_MAC_NO_INT128 is defined, which lets
 * the tests exercise that path on any host).  Both give identical results.
 */
#ifndef CCL_MAC_H
#define CCL_MAC_H

#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

#if defined(__SIZEOF_INT128__) && !defined(CCL_MAC_NO_INT128)
#define CCL_POLY1305_LIMBS64 1
#endif

#define CCL_POLY1305_KEY_LEN 32 /* r (clamped) then s */
#define CCL_POLY1305_TAG_LEN 16
#define CCL_POLY1305_BLOCK_LEN 16

#define CCL_NH_UNIT_LEN 16    /* NH consumes the message 16 bytes at a time */
#define CCL_NH_CHUNK_LEN 1024 /* one NH digest per 1024 message bytes */
#define CCL_NH_PASSES 4       /* Toeplitz passes: 4 x 64-bit digest words */
#define CCL_NH_KEY_WORDS 268  /* 256 words for a chunk + 4 per extra pass */
#define CCL_NH_KEY_LEN (4 * CCL_NH_KEY_WORDS) /* 1072 bytes */
#define CCL_NHPOLY1305_KEY_LEN (16 + CCL_NH_KEY_LEN) /* 1088, Linux layout */
#define CCL_NHPOLY1305_LEN 16

#define CCL_FRAME_MAC_SEED_LEN 32
#define CCL_FRAME_MAC_TAG_LEN 16

/* ------------------------------------------------------------------ */
/* Poly1305 (RFC 8439 section 2.5) */

typedef struct ccl__poly1305_ctx {
#ifdef CCL_POLY1305_LIMBS64
    uint64_t r[3]; /* clamped r in 44/44/42-bit limbs */
    uint64_t h[3]; /* accumulator, partly reduced mod 2^130 - 5 */
#else
    uint32_t r[5]; /* clamped r in 26-bit limbs */
    uint32_t h[5];
#endif
    uint8_t s[16];   /* added to the accumulator at the end */
    uint8_t buf[16]; /* a partial block waiting for more input */
    size_t buflen;   /* bytes used in buf, always < 16 between calls */
} ccl__poly1305_ctx;

/* key: 16 bytes of r (clamped here, as RFC 8439 says) then 16 bytes of s. */
void ccl__poly1305_init(ccl__poly1305_ctx *p, const uint8_t key[32]);
/* m may be NULL when n is 0. */
void ccl__poly1305_update(ccl__poly1305_ctx *p, const void *m, size_t n);
/* Writes the tag and wipes the context. */
void ccl__poly1305_final(ccl__poly1305_ctx *p, uint8_t tag[16]);
void ccl__poly1305(const uint8_t key[32], const void *m, size_t n,
                   uint8_t tag[16]);

/* ------------------------------------------------------------------ */
/* NHPoly1305 (Adiantum; Linux crypto/nhpoly1305.c) */

/* The expanded key.  NH key words are kept as numbers, decoded once from
 * their little-endian bytes, and each group of four is stored in the order
 * (k0, k2, k1, k3): NH multiplies word 0 with word 2 and word 1 with word
 * 3 of every 16-byte unit, and with that order the vector code can add a
 * shuffled unit to the key and multiply adjacent words without shuffling
 * the key again on every use. */
typedef struct ccl__nhpoly1305_key {
    uint32_t nh[CCL_NH_KEY_WORDS]; /* NH key, pair order (see above) */
    uint8_t poly_r[16];            /* Poly1305 r, not yet clamped */
} ccl__nhpoly1305_key;

/* The NH kernels.  Auto picks the fastest one this CPU runs; the others
 * exist so tests and benchmarks can compare them.  All give identical
 * results. */
enum ccl__nh_impl {
    CCL_NH_AUTO = 0,
    CCL_NH_PORTABLE = 1, /* plain C, any host */
    CCL_NH_SSE2 = 2,     /* x86 with SSE2 (every x86-64) */
    CCL_NH_AVX2 = 3      /* x86-64 with AVX2, detected at run time */
};

/* NH adds the digest of `units` 16-byte units at m to sums[0..3], using
 * the key words from `key` on (key points at the first unit's group). */
typedef void (*ccl__nh_fn)(const uint32_t *key, const uint8_t *m,
                           size_t units, uint64_t sums[4]);

typedef struct ccl__nhpoly1305_ctx {
    ccl__poly1305_ctx poly;          /* r from the key; s is 0 or the pad */
    const ccl__nhpoly1305_key *key;  /* must outlive the context */
    ccl__nh_fn nh;                   /* the NH kernel in use */
    uint64_t sums[CCL_NH_PASSES];    /* NH digest of the current chunk so far */
    size_t chunk_done;               /* bytes of that chunk hashed, < 1024 */
    uint8_t buf[CCL_NH_UNIT_LEN];    /* a partial unit waiting for input */
    size_t buflen;                   /* bytes used in buf, < 16 between calls */
    uint64_t nbytes;                 /* message bytes absorbed so far */
} ccl__nhpoly1305_ctx;

/* raw: 16 bytes of Poly1305 r, then the 1072-byte NH key (the layout of
 * Linux's crypto_nhpoly1305_setkey). */
void ccl__nhpoly1305_setkey(ccl__nhpoly1305_key *k,
                            const uint8_t raw[CCL_NHPOLY1305_KEY_LEN]);
void ccl__nhpoly1305_init(ccl__nhpoly1305_ctx *c, const ccl__nhpoly1305_key *k);
void ccl__nhpoly1305_update(ccl__nhpoly1305_ctx *c, const void *m, size_t n);
/* The Linux-compatible digest: no length block, no "+ s".  Wipes c. */
void ccl__nhpoly1305_final(ccl__nhpoly1305_ctx *c, uint8_t out[16]);
void ccl__nhpoly1305(const ccl__nhpoly1305_key *k, const void *m, size_t n,
                     uint8_t out[16]);

/* 1 if `impl` is compiled in and this CPU can run it, else 0. */
int ccl__nh_impl_available(int impl);
/* Makes c use the NH kernel `impl` from now on; an unavailable one is
 * ignored.  For tests and benchmarks: init already picks the fastest, and
 * since the kernels agree, switching mid-message changes nothing. */
void ccl__nhpoly1305_set_impl(ccl__nhpoly1305_ctx *c, int impl);

/* ------------------------------------------------------------------ */
/* Frame MAC
 *
 * One key per direction per connection, derived from a 32-byte seed that
 * is itself fresh per connection and direction (auth.h makes them).  The
 * sender counts its frames 0, 1, 2, ... and MACs frame number seq with
 * that seq; the receiver checks frame number seq with the seq it expects
 * next, so a replayed, dropped or reordered frame fails too.
 *
 * Why it is a MAC: H(M) is the NHPoly1305 polynomial of M with the length
 * of M appended as a last block.  For any two different messages and any
 * 128-bit difference d, the probability over the key that H(M) - H(M') = d
 * mod 2^128 is tiny: about L/2^112 for messages of up to L bytes, so 2^-92
 * at 1 MiB.  The length block is what extends Adiantum's guarantee, which
 * holds for inputs of equal length only, to all messages; among other
 * things it stops zero bytes appended up to the next 16-byte boundary,
 * which NH pads with, from going unnoticed.  Adding pad(seq), a 128-bit
 * value that looks uniformly random to anyone without the key, hides H(M)
 * completely, so a tag tells an attacker nothing about the hash key, and
 * forging a tag for a seq whose pad is unused is a guess.
 *
 * Why seq must never repeat under one key: two tags made with the same pad
 * give tag - tag' = H(M) - H(M'), the pad cancels, and the attacker learns
 * a difference of hash values, which is exactly what the guarantee above
 * does not cover (it bounds guessing such a difference, not what follows
 * from seeing one).  For Poly1305-style hashes a few such differences are
 * enough to solve for r and then forge at will under that seq (the
 * well-known nonce-reuse attack on Poly1305 and GCM).  The caller
 * guarantees uniqueness by construction: a fresh key per connection and
 * direction, and seq counting that direction's frames from 0 without
 * wrapping (2^64 frames will not be sent).
 */
typedef struct ccl__frame_mac_key {
    ccl__nhpoly1305_key hash; /* NH key words and Poly1305 r */
    ccl__hmac_ctx pad;        /* HMAC-SHA256 already keyed with the pad key */
} ccl__frame_mac_key;

/* Expands seed into the NH key, the Poly1305 r and the pad key with
 * HMAC-SHA256 in counter mode (see mac.c for the labels). */
void ccl__frame_mac_key_init(ccl__frame_mac_key *k,
                             const uint8_t seed[CCL_FRAME_MAC_SEED_LEN]);
/* Overwrites the key (the compiler may not drop the stores). */
void ccl__frame_mac_key_wipe(ccl__frame_mac_key *k);

typedef struct ccl__frame_mac_ctx {
    ccl__nhpoly1305_ctx h; /* its poly.s holds pad(seq) */
} ccl__frame_mac_ctx;

/* k must outlive the context.  Costs two SHA-256 compressions for the
 * pad, whatever the message length. */
void ccl__frame_mac_init(ccl__frame_mac_ctx *c, const ccl__frame_mac_key *k,
                         uint64_t seq);
/* m may be NULL when n is 0. */
void ccl__frame_mac_update(ccl__frame_mac_ctx *c, const void *m, size_t n);
/* Writes the tag and wipes the context. */
void ccl__frame_mac_final(ccl__frame_mac_ctx *c,
                          uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);
/* Finishes c and returns 1 if its tag equals `tag`, else 0, comparing in
 * constant time.  Wipes the context. */
int ccl__frame_mac_final_verify(ccl__frame_mac_ctx *c,
                                const uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);
void ccl__frame_mac(const ccl__frame_mac_key *k, uint64_t seq, const void *m,
                    size_t n, uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);
/* 1 if tag is the MAC of m under (k, seq), else 0 (constant time). */
int ccl__frame_mac_verify(const ccl__frame_mac_key *k, uint64_t seq,
                          const void *m, size_t n,
                          const uint8_t tag[CCL_FRAME_MAC_TAG_LEN]);

#endif
