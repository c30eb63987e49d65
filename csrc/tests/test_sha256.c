/*
 * test_sha256.c - tests of SHA-256, HMAC-SHA256 and ccl__ct_equal
 * (src/sha256.c).
 *
 * Expected digests come from the published vectors (FIPS 180-4 examples,
 * RFC 4231) or, for the extra cases, from Python's hashlib and hmac; the
 * script that produced them is quoted next to each table.  On top of
 * those fixed answers, every length 0..200 is hashed whole, byte by byte
 * and in random pieces, which must all agree: this is what covers the
 * padding boundaries at 55/56 and 63/64 mod 64 from every side.  Inputs
 * are heap copies of exactly their length, so under `make sanitize` a read
 * past the end is caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "sha256.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Helpers */

/* The inputs drawn at random come from this seed (harness.h's generator),
 * so a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* The fixed test pattern: byte j of the message is (j * 167 + 13) mod 256.
 * It repeats every 256 bytes, so any window that starts at a multiple of
 * 256 is the same bytes as the start of the pattern. */
static uint8_t pattern_byte(size_t j)
{
    return (uint8_t)(j * 167u + 13u);
}

static void fill_pattern(uint8_t *p, size_t n)
{
    size_t j;
    for (j = 0; j < n; j++)
        p[j] = pattern_byte(j);
}

/* Does the digest (or its first n bytes) equal the lower-case hex string,
 * which must have exactly 2n digits?  On a mismatch it prints both. */
static int digest_is(const uint8_t *d, size_t n, const char *hex)
{
    size_t i;
    int ok = strlen(hex) == 2 * n;
    for (i = 0; ok && i < n; i++) {
        int hi = harness_hexval(hex[2 * i]), lo = harness_hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0 || d[i] != (uint8_t)(hi << 4 | lo))
            ok = 0;
    }
    if (!ok) {
        fprintf(stderr, "  got      ");
        for (i = 0; i < n; i++)
            fprintf(stderr, "%02x", d[i]);
        fprintf(stderr, "\n  expected %s\n", hex);
    }
    return ok;
}

/* Hashes msg in pieces at random cut points. */
static void sha256_random_split(const uint8_t *msg, size_t n, uint8_t out[32])
{
    ccl__sha256_ctx s;
    size_t off = 0;
    ccl__sha256_init(&s);
    while (off < n) {
        /* Pieces up to 150 bytes span zero, one and two block edges. */
        size_t take = harness_rng_below(&rng, 151);
        if (take > n - off)
            take = n - off;
        /* Zero-length updates are mixed in on purpose. */
        ccl__sha256_update(&s, msg + off, take);
        off += take;
    }
    ccl__sha256_final(&s, out);
}

/* ------------------------------------------------------------------ */
/* SHA-256 known answers */

static void test_sha256_vectors(void)
{
    /* FIPS 180-4 / NIST CSRC example values. */
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc",
         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
         "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    uint8_t d[32];
    size_t i;

    for (i = 0; i < ARRAY_LEN(v); i++) {
        size_t n = strlen(v[i].msg);
        uint8_t *m = harness_exact_copy(v[i].msg, n);
        ccl__sha256(m, n, d);
        PASS(digest_is(d, 32, v[i].hex));
        sha256_random_split(m, n, d);
        PASS(digest_is(d, 32, v[i].hex));
        free(m);
    }

    /* The empty message through a NULL pointer, one-shot and incremental. */
    {
        const char *empty =
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        ccl__sha256_ctx s;
        ccl__sha256(NULL, 0, d);
        PASS(digest_is(d, 32, empty));
        ccl__sha256_init(&s);
        ccl__sha256_update(&s, NULL, 0);
        ccl__sha256_update(&s, NULL, 0);
        ccl__sha256_final(&s, d);
        PASS(digest_is(d, 32, empty));
    }

    /* One million 'a': once whole, once in 1000 pieces of 1000 and once in
     * pieces of 1, 2, 3, ... bytes, none of which line up with a block. */
    {
        const char *hex =
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
        size_t n = 1000000, off, step;
        uint8_t *m = harness_xmalloc(n);
        ccl__sha256_ctx s;
        memset(m, 'a', n);
        ccl__sha256(m, n, d);
        PASS(digest_is(d, 32, hex));

        ccl__sha256_init(&s);
        for (off = 0; off < n; off += 1000)
            ccl__sha256_update(&s, m + off, 1000);
        ccl__sha256_final(&s, d);
        PASS(digest_is(d, 32, hex));

        ccl__sha256_init(&s);
        for (off = 0, step = 1; off < n; off += step, step++) {
            if (step > n - off)
                step = n - off;
            ccl__sha256_update(&s, m + off, step);
        }
        ccl__sha256_final(&s, d);
        PASS(digest_is(d, 32, hex));
        free(m);
    }
}

/* ------------------------------------------------------------------ */
/* Every length 0..200 */

static void test_sha256_lengths(void)
{
    /* From Python:
     *   pat = bytes((i*167+13) & 0xff for i in range(201))
     *   hashlib.sha256(pat[:n]).hexdigest()
     * and, over all n in 0..200, the SHA-256 of the 201 concatenated
     * digests. */
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "b2ca0adc388a66d3a5a7f6541239331d5a867eede554e11262241271faaf36c5"},
        {56, "3768eff44f1df02704a832cf708935fbed9bb74d0714fbe75454c266c4e12856"},
        {57, "a35b6298adfbc5ec16dc51a8d52145daa2a68f1d66e837d85bed6783d874c5cb"},
        {63, "dc06ea9e456da9f9fc2276564018231c36196ff7745bf505fd7f503aec5c67fd"},
        {64, "b68fe543b0b5a544e32eb08712e697bfcd3a3cb491563c3b1cba112d378f4bdb"},
        {65, "587cdb9ad9be371721f2f84a84eb09f2b698ec19bbe2d7c222179996547a04a6"},
        {119, "b27b61037be684924f5497ee79c784f09c971d8c8c3136f6270e0fd34775aa1b"},
        {120, "00c666e960132985e9c99dc98bf25782df791138d0f1252b69781694ed97d693"},
        {127, "805f2702e76ff5d578052c965ded05a689d9293fd86c5584b0db399d33e9745c"},
        {128, "cd77acfc16d0964a4c3ef06f0678a5c88d2d610de00f7b997676fea5b4d2ae9e"},
    };
    const char *all =
        "a0b467bb960e58387aceb2f39cbf8fbc0ca59b277b040842812d22b7c7db3ba8";
    uint8_t pat[200];
    uint8_t whole[32], piece[32], all_d[32];
    ccl__sha256_ctx all_s;
    size_t n, i;
    int mismatches = 0;

    fill_pattern(pat, sizeof pat);
    ccl__sha256_init(&all_s);
    for (n = 0; n <= 200; n++) {
        uint8_t *m = harness_exact_copy(pat, n);
        ccl__sha256_ctx s;
        int trial;

        ccl__sha256(m, n, whole);
        ccl__sha256_update(&all_s, whole, 32);

        /* Byte by byte. */
        ccl__sha256_init(&s);
        for (i = 0; i < n; i++)
            ccl__sha256_update(&s, m + i, 1);
        ccl__sha256_final(&s, piece);
        mismatches += memcmp(whole, piece, 32) != 0;

        /* Random split points. */
        for (trial = 0; trial < 8; trial++) {
            sha256_random_split(m, n, piece);
            mismatches += memcmp(whole, piece, 32) != 0;
        }

        /* Two pieces, cut at every point. */
        for (i = 0; i <= n; i++) {
            ccl__sha256_init(&s);
            ccl__sha256_update(&s, m, i);
            ccl__sha256_update(&s, m + i, n - i);
            ccl__sha256_final(&s, piece);
            mismatches += memcmp(whole, piece, 32) != 0;
        }

        for (i = 0; i < ARRAY_LEN(v); i++)
            if (v[i].n == n)
                PASS(digest_is(whole, 32, v[i].hex));
        free(m);
    }
    ccl__sha256_final(&all_s, all_d);
    PASS(mismatches == 0);
    PASS(digest_is(all_d, 32, all));

    /* The input's alignment makes no difference. */
    {
        uint8_t *m = harness_xmalloc(200 + 8);
        ccl__sha256(pat, 200, whole);
        for (i = 0; i < 8; i++) {
            memcpy(m + i, pat, 200);
            ccl__sha256(m + i, 200, piece);
            PASS(memcmp(whole, piece, 32) == 0);
        }
        free(m);
    }
}

/* A message of 2^29 + 3 bytes is 2^32 + 24 bits long: the bit count needs
 * the upper half of the 64-bit length field, which a 32-bit counter would
 * lose.  It is fed as 3 bytes, then 1 MiB pieces, so after the first call
 * every block straddles two updates.  From Python: hashlib.sha256 over the
 * same pattern bytes (it repeats every 256 bytes, and 1 MiB is a multiple
 * of that). */
static void test_sha256_long(void)
{
    const char *hex =
        "c1d9c7bab040f743da089ca39274ec5975365a730da7425c5ff8c65190c5e279";
    size_t mib = (size_t)1 << 20, k;
    uint8_t *buf = harness_xmalloc(mib + 3);
    uint8_t d[32];
    ccl__sha256_ctx s;
    double t0, t;

    fill_pattern(buf, mib + 3);
    t0 = harness_now_seconds();
    ccl__sha256_init(&s);
    ccl__sha256_update(&s, buf, 3);
    for (k = 0; k < 512; k++)
        ccl__sha256_update(&s, buf + 3, mib);
    PASS(s.nbytes == ((uint64_t)1 << 29) + 3);
    ccl__sha256_final(&s, d);
    t = harness_now_seconds() - t0;
    PASS(digest_is(d, 32, hex));
    printf("  512 MiB + 3 bytes (bit count > 2^32) hashed in %.2f s\n", t);
    free(buf);
}

/* ------------------------------------------------------------------ */
/* HMAC-SHA256 */

static void test_hmac_rfc4231(void)
{
    /* RFC 4231 section 4, test cases 1-7.  Case 5's tag is truncated to
     * 128 bits in the RFC, so only those bytes are compared. */
    static const char *case7 =
        "This is a test using a larger than block-size key and a larger "
        "than block-size data. The key needs to be hashed before being "
        "used by the HMAC algorithm.";
    uint8_t k20_0b[20], k20_aa[20], k25[25], k20_0c[20], k131[131];
    uint8_t d50_dd[50], d50_cd[50];
    struct {
        const uint8_t *key;
        size_t keylen;
        const void *msg;
        size_t msglen;
        size_t taglen;
        const char *hex;
    } v[7];
    uint8_t d[32];
    size_t i;

    memset(k20_0b, 0x0b, sizeof k20_0b);
    memset(k20_aa, 0xaa, sizeof k20_aa);
    for (i = 0; i < sizeof k25; i++)
        k25[i] = (uint8_t)(i + 1);
    memset(k20_0c, 0x0c, sizeof k20_0c);
    memset(k131, 0xaa, sizeof k131);
    memset(d50_dd, 0xdd, sizeof d50_dd);
    memset(d50_cd, 0xcd, sizeof d50_cd);

#define CASE(i_, k_, kl_, m_, ml_, t_, h_)                                \
    (v[i_].key = (k_), v[i_].keylen = (kl_), v[i_].msg = (m_),            \
     v[i_].msglen = (ml_), v[i_].taglen = (t_), v[i_].hex = (h_))
    CASE(0, k20_0b, 20, "Hi There", 8, 32,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    CASE(1, (const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, 32,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    CASE(2, k20_aa, 20, d50_dd, 50, 32,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    CASE(3, k25, 25, d50_cd, 50, 32,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    CASE(4, k20_0c, 20, "Test With Truncation", 20, 16,
         "a3b6167473100ee06e0c796c2955552b");
    CASE(5, k131, 131, "Test Using Larger Than Block-Size Key - Hash Key First",
         54, 32,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    CASE(6, k131, 131, case7, strlen(case7), 32,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
#undef CASE

    for (i = 0; i < ARRAY_LEN(v); i++) {
        uint8_t *key = harness_exact_copy(v[i].key, v[i].keylen);
        uint8_t *msg = harness_exact_copy(v[i].msg, v[i].msglen);
        ccl__hmac_ctx h;
        size_t j;

        ccl__hmac_sha256(key, v[i].keylen, msg, v[i].msglen, d);
        PASS(digest_is(d, v[i].taglen, v[i].hex));

        /* The same, one byte at a time. */
        ccl__hmac_init(&h, key, v[i].keylen);
        for (j = 0; j < v[i].msglen; j++)
            ccl__hmac_update(&h, msg + j, 1);
        ccl__hmac_final(&h, d);
        PASS(digest_is(d, v[i].taglen, v[i].hex));
        free(key);
        free(msg);
    }
}

static void test_hmac_keys(void)
{
    /* Key lengths around the 64-byte block, where a key is either padded
     * or hashed first.  From Python:
     *   key = bytes((i*29+5) & 0xff for i in range(kl))
     *   msg = bytes((i*167+13) & 0xff for i in range(100))
     *   hmac.new(key, msg, hashlib.sha256).hexdigest() */
    static const struct {
        size_t keylen;
        const char *hex;
    } v[] = {
        {0, "75f379d401dbbf0a38f8a9ad9e4c51e4d7a1d2ca01e6065f2a0f2359c46b8e2b"},
        {1, "e836f6d2ce4134ca65e499c971e08631dbc15c5c5389f012da74fd45848630a1"},
        {63, "1b526a04369e6ea3762e85daf5bb7b240f9e5628acb22dd6800ca8615cd9530e"},
        {64, "bcf4f0f71a44932c4990cda475d9894738f772a8be5f4db4053f6b594807b82b"},
        {65, "7aa793ab404ddc8628dde5eadc2e97ff3b952b942fb72f7b351b6c6470e2fdf6"},
        {200, "7546a79c9383bebdbff509e6a59e90bd0db177d107959e6262535012120a64c1"},
    };
    uint8_t keybuf[200], msgbuf[100];
    uint8_t whole[32], piece[32];
    size_t i, j;

    for (i = 0; i < sizeof keybuf; i++)
        keybuf[i] = (uint8_t)(i * 29u + 5u);
    fill_pattern(msgbuf, sizeof msgbuf);

    for (i = 0; i < ARRAY_LEN(v); i++) {
        uint8_t *key = harness_exact_copy(keybuf, v[i].keylen);
        uint8_t *msg = harness_exact_copy(msgbuf, sizeof msgbuf);
        int trial;

        ccl__hmac_sha256(key, v[i].keylen, msg, sizeof msgbuf, whole);
        PASS(digest_is(whole, 32, v[i].hex));

        /* Random splits of the message give the same tag. */
        for (trial = 0; trial < 8; trial++) {
            ccl__hmac_ctx h;
            size_t off = 0;
            ccl__hmac_init(&h, key, v[i].keylen);
            while (off < sizeof msgbuf) {
                size_t take = harness_rng_below(&rng, 40);
                if (take > sizeof msgbuf - off)
                    take = sizeof msgbuf - off;
                ccl__hmac_update(&h, msg + off, take);
                off += take;
            }
            ccl__hmac_final(&h, piece);
            PASS(memcmp(whole, piece, 32) == 0);
        }
        free(key);
        free(msg);
    }

    /* A key longer than a block is, by definition, the same key as its
     * SHA-256. */
    {
        uint8_t hk[32];
        ccl__sha256(keybuf, 200, hk);
        ccl__hmac_sha256(keybuf, 200, msgbuf, sizeof msgbuf, whole);
        ccl__hmac_sha256(hk, 32, msgbuf, sizeof msgbuf, piece);
        PASS(memcmp(whole, piece, 32) == 0);
    }

    /* An empty key may be NULL, and so may an empty message.  From
     * Python: hmac.new(b'', b'', hashlib.sha256).hexdigest() */
    {
        const char *hex =
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad";
        ccl__hmac_sha256(NULL, 0, NULL, 0, whole);
        PASS(digest_is(whole, 32, hex));
    }

    /* A key differing in one bit, and a message differing in one bit,
     * each change the tag. */
    for (j = 0; j < 8; j++) {
        uint8_t k2[65], m2[100];
        ccl__hmac_sha256(keybuf, 65, msgbuf, sizeof msgbuf, whole);
        memcpy(k2, keybuf, sizeof k2);
        k2[harness_rng_below(&rng, sizeof k2)] ^= (uint8_t)(1u << j);
        ccl__hmac_sha256(k2, sizeof k2, msgbuf, sizeof msgbuf, piece);
        PASS(memcmp(whole, piece, 32) != 0);
        memcpy(m2, msgbuf, sizeof m2);
        m2[harness_rng_below(&rng, sizeof m2)] ^= (uint8_t)(1u << j);
        ccl__hmac_sha256(keybuf, 65, m2, sizeof m2, piece);
        PASS(memcmp(whole, piece, 32) != 0);
    }
}

/* ------------------------------------------------------------------ */
/* ccl__ct_equal */

static void test_ct_equal(void)
{
    uint8_t a[64], b[64];
    size_t n, i;
    int bit, wrong = 0;

    for (i = 0; i < sizeof a; i++)
        a[i] = (uint8_t)harness_rng_next(&rng);
    memcpy(b, a, sizeof b);

    PASS(ccl__ct_equal(a, b, 0) == 1);
    PASS(ccl__ct_equal(NULL, NULL, 0) == 1);
    PASS(ccl__ct_equal(a, b, sizeof a) == 1);
    PASS(ccl__ct_equal(a, a, sizeof a) == 1);

    /* Each bit of each position, for each length that includes it; and
     * a difference just past the compared length is not seen. */
    for (n = 1; n <= sizeof a; n++) {
        for (i = 0; i < sizeof a; i++) {
            for (bit = 0; bit < 8; bit++) {
                int expect = i >= n;
                b[i] ^= (uint8_t)(1u << bit);
                wrong += ccl__ct_equal(a, b, n) != expect;
                b[i] ^= (uint8_t)(1u << bit);
            }
        }
    }
    PASS(wrong == 0);

    /* Every byte different, and 0x00 against 0xff. */
    for (i = 0; i < sizeof b; i++)
        b[i] = (uint8_t)~a[i];
    PASS(ccl__ct_equal(a, b, sizeof a) == 0);
    memset(a, 0, sizeof a);
    memset(b, 0xff, sizeof b);
    PASS(ccl__ct_equal(a, b, 1) == 0);
    memset(b, 0, sizeof b);
    PASS(ccl__ct_equal(a, b, sizeof a) == 1);
}

/* ------------------------------------------------------------------ */
/* Timings, printed for people, never asserted. */

static void print_timings(void)
{
    size_t bytes = (size_t)64 << 20;
    uint8_t *big = malloc(bytes);
    uint8_t d[32], tag[32];
    double best = 1e9, best_hmac = 1e9;
    int rep;

    if (!big)
        return;
    for (rep = 0; rep < (int)(bytes / 8); rep++) {
        uint64_t r = harness_rng_next(&rng);
        memcpy(big + 8 * (size_t)rep, &r, 8);
    }
    for (rep = 0; rep < 3; rep++) {
        double t0 = harness_now_seconds(), t1, t2;
        ccl__sha256(big, bytes, d);
        t1 = harness_now_seconds();
        ccl__hmac_sha256(d, 32, big, bytes, tag);
        t2 = harness_now_seconds();
        if (t1 - t0 < best) best = t1 - t0;
        if (t2 - t1 < best_hmac) best_hmac = t2 - t1;
    }
    printf("  sha256 64 MiB: %.0f MB/s, hmac-sha256: %.0f MB/s [%02x]\n",
           (double)bytes / best / 1e6, (double)bytes / best_hmac / 1e6,
           tag[0]);
    free(big);
}

int main(void)
{
    test_sha256_vectors();
    test_sha256_lengths();
    test_sha256_long();
    test_hmac_rfc4231();
    test_hmac_keys();
    test_ct_equal();
    print_timings();
    return HARNESS_DONE("test_sha256");
}
