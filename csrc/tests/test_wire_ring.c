/* test_wire_ring.c - the optional sections at the end of a GROUP payload,
 * the ring order and the tuning (docs/protocol.md, "GROUP"): their bytes,
 * that they are optional, and every way a decoder refuses them. */
#include "ccl.h"
#include "harness.h"
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ccl__member mb[3];

static ccl__group_msg three(void)
{
    ccl__group_msg g;
    memset(mb, 0, sizeof mb);
    for (int i = 0; i < 3; i++) {
        mb[i].port = (uint16_t)(1 + i);
        memset(mb[i].uuid, 0x11 * (i + 1), 16);
        snprintf(mb[i].host, sizeof mb[i].host, "h%d", i);
        mb[i].ring_pos = (uint32_t)i;
    }
    memset(&g, 0, sizeof g);
    g.epoch = 2;
    g.world_size = 3;
    g.your_rank = 1;
    g.conns_per_peer = 1;
    g.members = mb;
    return g;
}

/* Decodes a heap copy of exactly len bytes into d (members: 3 entries). */
static int decode(const uint8_t *src, size_t len, ccl__group_msg *d, ccl__member *out)
{
    uint8_t *p = harness_exact_copy(src, len);
    memset(d, 0, sizeof *d);
    d->members = out;
    int rc = ccl__group_decode(p, len, d);
    free(p);
    return rc;
}

static void test_bytes_and_round_trip(void)
{
    uint8_t buf[256];
    ccl__member out[3];
    ccl__group_msg g = three(), d;
    size_t plain = ccl__group_encode(buf, sizeof buf, &g);
    PASS(plain == 14 + 3 * 21);
    /* Without the ring: decoded as the rank order. */
    PASS(decode(buf, plain, &d, out) == 0);
    PASS(!d.has_ring && out[0].ring_pos == 0 && out[1].ring_pos == 1 &&
         out[2].ring_pos == 2);
    /* Ring 0 -> 2 -> 1: rank 2 at position 1, rank 1 at position 2. */
    g.has_ring = 1;
    mb[1].ring_pos = 2;
    mb[2].ring_pos = 1;
    size_t n = ccl__group_encode(buf, sizeof buf, &g);
    PASS(n == plain + 3 + 3 * 2);
    static const uint8_t tail[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00};
    PASS(memcmp(buf + plain, tail, sizeof tail) == 0);
    PASS(decode(buf, n, &d, out) == 0);
    PASS(d.has_ring && out[0].ring_pos == 0 && out[1].ring_pos == 2 &&
         out[2].ring_pos == 1);
    /* The identity may be sent explicitly too, and comes back as sent. */
    mb[1].ring_pos = 1;
    mb[2].ring_pos = 2;
    n = ccl__group_encode(buf, sizeof buf, &g);
    PASS(n == plain + 9);
    PASS(decode(buf, n, &d, out) == 0 && d.has_ring);
    uint8_t again[256];
    PASS(ccl__group_encode(again, sizeof again, &d) == n &&
         memcmp(again, buf, n) == 0);
}

static void test_decoder_refuses(void)
{
    uint8_t buf[256], bad[256];
    ccl__member out[3];
    ccl__group_msg g = three(), d;
    g.has_ring = 1;
    size_t n = ccl__group_encode(buf, sizeof buf, &g), plain = n - 9;
    PASS(decode(buf, n, &d, out) == 0);
    /* Every truncation that leaves part of the ring. */
    for (size_t len = plain + 1; len < n; len++)
        PASS(decode(buf, len, &d, out) == CCL_ERR_PROTOCOL);
    /* A trailing byte. */
    memcpy(bad, buf, n);
    bad[n] = 0;
    PASS(decode(bad, n + 1, &d, out) == CCL_ERR_PROTOCOL);
    /* A count other than world_size. */
    memcpy(bad, buf, n);
    bad[plain + 1] = 2;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    bad[plain + 1] = 4;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    /* A rank twice, a rank out of range. */
    memcpy(bad, buf, n);
    bad[plain + 5] = 0;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 7] = 3;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 8] = 1; /* rank 0x0101 */
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    /* Section kinds: 0 and unknown ones are refused. */
    memcpy(bad, buf, n);
    bad[plain] = 0;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    bad[plain] = 3;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
}

static void test_encoder_refuses(void)
{
    uint8_t buf[256];
    ccl__group_msg g = three();
    g.has_ring = 1;
    mb[2].ring_pos = 1; /* two members at position 1 */
    PASS(ccl__group_encode(buf, sizeof buf, &g) == 0);
    mb[2].ring_pos = 3; /* past the end */
    PASS(ccl__group_encode(buf, sizeof buf, &g) == 0);
    g.has_ring = 0; /* not sent, so not checked */
    PASS(ccl__group_encode(buf, sizeof buf, &g) == 14 + 3 * 21);
}

static ccl__tuning sample_tune(void)
{
    ccl__tuning t;
    t.allreduce_star_max = 0x01020304ull;
    t.allreduce_direct_max = 0x00100000ull;
    t.bcast_direct_max = 65536;
    t.latency_us = 25000;
    t.rate_kbs = 125000;
    return t;
}

static void test_tuning(void)
{
    uint8_t buf[256], bad[256];
    ccl__member out[3];
    ccl__group_msg g = three(), d;
    size_t plain = ccl__group_encode(buf, sizeof buf, &g);
    PASS(decode(buf, plain, &d, out) == 0 && !d.has_tune);
    /* Absent: the defaults. */
    PASS(d.tune.allreduce_star_max == CCL_TUNE_FLOOR_BYTES &&
         d.tune.bcast_direct_max == CCL_TUNE_FLOOR_BYTES && d.tune.latency_us == 0);
    g.has_tune = 1;
    g.tune = sample_tune();
    size_t n = ccl__group_encode(buf, sizeof buf, &g);
    PASS(n == plain + 33);
    static const uint8_t tail[] = {
        0x02,                                           /* kind: tuning */
        0x04, 0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, /* all-reduce star max */
        0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, /* all-reduce direct max */
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, /* broadcast direct max */
        0xa8, 0x61, 0x00, 0x00,                         /* latency 25000 us */
        0x48, 0xe8, 0x01, 0x00};                        /* rate 125000 kB/s */
    PASS(memcmp(buf + plain, tail, sizeof tail) == 0);
    PASS(decode(buf, n, &d, out) == 0 && d.has_tune && !d.has_ring);
    PASS(d.tune.allreduce_star_max == 0x01020304ull && d.tune.bcast_direct_max == 65536 &&
         d.tune.allreduce_direct_max == 0x00100000ull &&
         d.tune.latency_us == 25000 && d.tune.rate_kbs == 125000);
    for (size_t len = plain + 1; len < n; len++)
        PASS(decode(buf, len, &d, out) == CCL_ERR_PROTOCOL);
    /* Thresholds of 0 or over 1 GiB. */
    memcpy(bad, buf, n);
    memset(bad + plain + 1, 0, 8);
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 17 + 3] = 0x40; /* broadcast max 2^30 + 65536 */
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 9 + 3] = 0x40; /* direct max 2^30 + 2^20 */
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    memset(bad + plain + 9, 0, 8); /* direct max 0: never, allowed */
    PASS(decode(bad, n, &d, out) == 0 && d.tune.allreduce_direct_max == 0);
    /* Both sections: ring first, then tuning; never the other way round,
     * never a kind twice. */
    g.has_ring = 1;
    mb[1].ring_pos = 2;
    mb[2].ring_pos = 1;
    size_t both = ccl__group_encode(buf, sizeof buf, &g);
    PASS(both == plain + 9 + 33);
    PASS(decode(buf, both, &d, out) == 0 && d.has_tune && d.has_ring &&
         out[1].ring_pos == 2 && d.tune.latency_us == 25000);
    memcpy(bad, buf + plain + 9, 33);       /* tuning first ... */
    memcpy(bad + 33, buf + plain, 9);       /* ... then the ring */
    uint8_t swapped[256];
    memcpy(swapped, buf, plain);
    memcpy(swapped + plain, bad, 42);
    PASS(decode(swapped, both, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(swapped, buf, plain + 9);
    memcpy(swapped + plain + 9, buf + plain, 9); /* the ring twice */
    PASS(decode(swapped, plain + 18, &d, out) == CCL_ERR_PROTOCOL);
    /* The encoder refuses what the decoder would. */
    g.tune.bcast_direct_max = 0;
    PASS(ccl__group_encode(buf, sizeof buf, &g) == 0);
    g.tune.bcast_direct_max = CCL_TUNE_MAX_BYTES + 1;
    PASS(ccl__group_encode(buf, sizeof buf, &g) == 0);
}

int main(void)
{
    test_bytes_and_round_trip();
    test_tuning();
    test_decoder_refuses();
    test_encoder_refuses();
    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
