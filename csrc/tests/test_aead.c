/* test_aead.c - the AEAD wrapper (src/aead.c) against published
 * known-answer vectors, and its own rules: any split of a frame gives the
 * same bytes, in place works, a changed byte of ciphertext, header or tag
 * fails, the counter is the nonce and never wraps, the key derivation
 * matches an independent HMAC (Python's), and the test hook that hides
 * libcrypto gives the clear error.  Skips (exit 0) where libcrypto is not
 * installed.
 *
 * Vectors: AES-256-GCM test cases 14 and 16 of McGrew and Viega, "The
 * Galois/Counter Mode of Operation" (also in NIST's GCM validation set);
 * ChaCha20-Poly1305 from RFC 8439 section 2.8.2. */
#include "aead.h"
#include "ccl.h"
#include "harness.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    for (; s[0] && s[1]; s += 2)
        sscanf(s, "%2hhx", &out[n++]);
    return n;
}

typedef struct {
    const char *name;
    int alg;
    const char *key, *iv, *aad, *pt, *ct, *tag;
} kat_t;

static const kat_t KATS[] = {
    {"AES-256-GCM case 14 (zero key, zero nonce)", CCL_AEAD_AES256GCM,
     "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "00000000000000000000000000000000",
     "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
    {"AES-256-GCM case 16 (with AAD)", CCL_AEAD_AES256GCM,
     "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"ChaCha20-Poly1305 RFC 8439 2.8.2", CCL_AEAD_CHACHA20POLY1305,
     "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
     "070000004041424344454647", "50515253c0c1c2c3c4c5c6c7",
     /* "Ladies and Gentlemen of the class of '99: If I could offer you
      * only one tip for the future, sunscreen would be it." */
     "4c616469657320616e642047656e746c656d656e206f662074686520636c6173"
     "73206f66202739393a204966204920636f756c64206f6666657220796f75206f"
     "6e6c79206f6e652074697020666f7220746865206675747572652c2073756e73"
     "637265656e20776f756c642062652069742e",
     "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
     "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
     "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
     "3ff4def08e4b7a9de576d26586cec64b6116",
     "1ae10b594f09e26a7e902ecbd0600691"},
};

static void kat(const kat_t *t)
{
    uint8_t key[32], iv[12], aad[64], pt[256], ct[256], tag[16], out[256],
        got[16];
    char err[300];
    unhex(t->key, key);
    unhex(t->iv, iv);
    size_t na = unhex(t->aad, aad), np = unhex(t->pt, pt);
    PASS(unhex(t->ct, ct) == np);
    unhex(t->tag, tag);
    ccl__aead *e, *d;
    PASS_RC(ccl__aead_new(&e, t->alg, 1, key, err, sizeof err));
    PASS_RC(ccl__aead_new(&d, t->alg, 0, key, err, sizeof err));
    if (!e || !d)
        goto out;
    /* Whole, then again in odd pieces on the same context (it is reused
     * frame after frame). */
    for (int split = 0; split < 2; split++) {
        PASS_RC(ccl__aead_start_iv(e, iv, aad, na));
        size_t step = split ? 7 : np, done = 0;
        while (done < np) {
            size_t n = np - done < step ? np - done : step;
            PASS_RC(ccl__aead_update(e, out + done, pt + done, n));
            done += n;
        }
        PASS_RC(ccl__aead_seal(e, got));
        PASS(memcmp(out, ct, np) == 0);
        PASS(memcmp(got, tag, 16) == 0);
    }
    /* Opening in place gives the plaintext back and accepts the tag. */
    memcpy(out, ct, np);
    PASS_RC(ccl__aead_start_iv(d, iv, aad, na));
    PASS_RC(ccl__aead_update(d, out, out, np));
    PASS(ccl__aead_open(d, tag) == CCL_OK);
    PASS(memcmp(out, pt, np) == 0);
    /* One flipped bit anywhere (ciphertext, associated data, tag) fails. */
    for (int where = 0; where < 3; where++) {
        uint8_t c2[256], a2[64], t2[16];
        memcpy(c2, ct, np);
        memcpy(a2, aad, na);
        memcpy(t2, tag, 16);
        if (where == 0)
            c2[np / 2] ^= 0x01;
        else if (where == 1 && na)
            a2[0] ^= 0x80;
        else
            t2[15] ^= 0x10;
        PASS_RC(ccl__aead_start_iv(d, iv, a2, na));
        PASS_RC(ccl__aead_update(d, c2, c2, np));
        PASS(ccl__aead_open(d, t2) == CCL_ERR_AUTH);
    }
    fprintf(stderr, "  %s: ok\n", t->name);
out:
    ccl__aead_free(e);
    ccl__aead_free(d);
}

/* The counter is the nonce: frame n under start() equals the explicit
 * nonce le64(n) || 0^4; the counter never reaches UINT64_MAX. */
static void counter_nonce(void)
{
    uint8_t key[32], hdr[40], msg[1000], a[1000], b[1000], ta[16], tb[16];
    char err[200];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)(3 * i + 1);
    for (int i = 0; i < 40; i++)
        hdr[i] = (uint8_t)i;
    for (int i = 0; i < 1000; i++)
        msg[i] = (uint8_t)(i * 7);
    ccl__aead *e = NULL, *f = NULL;
    PASS_RC(ccl__aead_new(&e, CCL_AEAD_AES256GCM, 1, key, err, sizeof err));
    PASS_RC(ccl__aead_new(&f, CCL_AEAD_AES256GCM, 1, key, err, sizeof err));
    if (!e || !f)
        goto out;
    PASS(ccl__aead_counter(e) == 0);
    ccl__aead_set_counter(e, 5);
    PASS_RC(ccl__aead_start(e, hdr, sizeof hdr));
    PASS(ccl__aead_counter(e) == 6);
    PASS_RC(ccl__aead_update(e, a, msg, sizeof msg));
    PASS_RC(ccl__aead_seal(e, ta));
    uint8_t iv[12] = {0};
    ccl__put_u64(iv, 5);
    PASS_RC(ccl__aead_start_iv(f, iv, hdr, sizeof hdr));
    PASS_RC(ccl__aead_update(f, b, msg, sizeof msg));
    PASS_RC(ccl__aead_seal(f, tb));
    PASS(memcmp(a, b, sizeof a) == 0 && memcmp(ta, tb, 16) == 0);
    /* Two frames never share a keystream: the next frame differs. */
    PASS_RC(ccl__aead_start(e, hdr, sizeof hdr));
    PASS_RC(ccl__aead_update(e, b, msg, sizeof msg));
    PASS_RC(ccl__aead_seal(e, tb));
    PASS(memcmp(a, b, sizeof a) != 0);
    /* The last values: UINT64_MAX - 1 is used, then the counter is
     * spent and the connection must close. */
    ccl__aead_set_counter(e, UINT64_MAX - 1);
    PASS_RC(ccl__aead_start(e, hdr, sizeof hdr));
    PASS_RC(ccl__aead_seal(e, ta));
    PASS(ccl__aead_start(e, hdr, sizeof hdr) == CCL_ERR_PROTOCOL);
    PASS(ccl__aead_start(e, hdr, sizeof hdr) == CCL_ERR_PROTOCOL);
out:
    ccl__aead_free(e);
    ccl__aead_free(f);
}

static void derive(void)
{
    uint8_t seed[32], key[32], want[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    ccl__aead_derive_key(seed, key);
    /* Python: hmac.new(bytes(range(32)), b"pyccl frame aead v1" +
     * (0).to_bytes(4, "little"), hashlib.sha256).hexdigest() */
    unhex("181d76c614e3063a54c3490d13a42dd3e55cec04d7d2e930467fec2c6ade0f98",
          want);
    PASS(memcmp(key, want, 32) == 0);
}

static void hook(void)
{
    char err[600];
    setenv("PYCCL_TEST_NO_LIBCRYPTO", "1", 1);
    PASS(ccl__aead_load(err, sizeof err) == CCL_ERR_INVALID_ARG);
    PASS(strstr(err, "libcrypto") != NULL);
    PASS(strstr(err, "PYCCL_TEST_NO_LIBCRYPTO") != NULL);
    setenv("PYCCL_TEST_NO_LIBCRYPTO", "0", 1);
    PASS_RC(ccl__aead_load(err, sizeof err));
    unsetenv("PYCCL_TEST_NO_LIBCRYPTO");
}

int main(void)
{
    char err[600];
    if (ccl__aead_load(err, sizeof err) != CCL_OK) {
        fprintf(stderr, "test_aead: SKIP: %s\n", err);
        return 0;
    }
    fprintf(stderr, "  library: %s\n", ccl__aead_library());
    for (size_t i = 0; i < sizeof KATS / sizeof KATS[0]; i++) {
        if (!ccl__aead_has(KATS[i].alg)) {
            fprintf(stderr, "  %s: cipher absent, skipped\n", KATS[i].name);
            continue;
        }
        kat(&KATS[i]);
    }
    counter_nonce();
    derive();
    hook();
    return HARNESS_DONE("test_aead");
}
