/* test_wire_ring.c - the ring order at the end of a GROUP payload
 * (docs/protocol.md, "GROUP"): its bytes, that it is optional, and every
 * way a decoder refuses it. */
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
    PASS(n == plain + 2 + 3 * 2);
    static const uint8_t tail[] = {0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00};
    PASS(memcmp(buf + plain, tail, sizeof tail) == 0);
    PASS(decode(buf, n, &d, out) == 0);
    PASS(d.has_ring && out[0].ring_pos == 0 && out[1].ring_pos == 2 &&
         out[2].ring_pos == 1);
    /* The identity may be sent explicitly too, and comes back as sent. */
    mb[1].ring_pos = 1;
    mb[2].ring_pos = 2;
    n = ccl__group_encode(buf, sizeof buf, &g);
    PASS(n == plain + 8);
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
    size_t n = ccl__group_encode(buf, sizeof buf, &g), plain = n - 8;
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
    bad[plain] = 2;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    bad[plain] = 4;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    /* A rank twice, a rank out of range. */
    memcpy(bad, buf, n);
    bad[plain + 4] = 0;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 6] = 3;
    PASS(decode(bad, n, &d, out) == CCL_ERR_PROTOCOL);
    memcpy(bad, buf, n);
    bad[plain + 7] = 1; /* rank 0x0101 */
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

int main(void)
{
    test_bytes_and_round_trip();
    test_decoder_refuses();
    test_encoder_refuses();
    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
