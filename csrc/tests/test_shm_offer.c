/* test_shm_offer.c - SHM_OFFER and SHM_ANSWER (shm_offer.c): the layout
 * of docs/protocol.md byte by byte, round trips, every reserved byte and
 * the name's terminator checked, the path comparison's verdicts, and the
 * tags: bound to the seed, to every byte of the offer, and the answer's
 * to the offer it answers. */
#include "ccl.h"
#include "harness.h"
#include "shm_offer.h"
#include "wire.h"

static ccl__shm_offer sample(void)
{
    ccl__shm_offer o;
    memset(&o, 0, sizeof o);
    o.ring_bytes = 2u << 20;
    for (int i = 0; i < 16; i++) {
        o.path.boot_id[i] = (uint8_t)(0x10 + i);
        o.nonce[i] = (uint8_t)(0x80 + i);
    }
    o.path.netns_dev = 4;
    o.path.netns_ino = 4026531840ull;
    uint8_t c[18] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0xd4, 0x31};
    uint8_t a[18] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1, 0x1f, 0x90};
    memcpy(o.path.connector, c, 18);
    memcpy(o.path.acceptor, a, 18);
    snprintf(o.name, sizeof o.name, "/pyccl-1234-0011223344556677");
    return o;
}

int main(void)
{
    ccl__shm_offer o = sample(), back;
    uint8_t b[CCL_SHM_OFFER_LEN];
    memset(b, 0xee, sizeof b);
    ccl__shm_offer_encode(b, &o);
    /* The documented layout. */
    PASS(memcmp(b, "PYCCLSHO", 8) == 0);
    PASS(ccl__get_u16(b + 8) == 1 && b[10] == 0 && b[11] == 0);
    PASS(ccl__get_u32(b + 12) == (2u << 20));
    PASS(b[16] == 0x10 && b[31] == 0x1f);
    PASS(ccl__get_u64(b + 32) == 4 && ccl__get_u64(b + 40) == 4026531840ull);
    PASS(b[48 + 12] == 127 && b[48 + 16] == 0xd4 && b[66 + 17] == 0x90);
    PASS(b[84] == 0x80 && b[99] == 0x8f);
    PASS(memcmp(b + 100, "/pyccl-1234-", 12) == 0 && b[100 + 28] == 0);
    for (int i = 129; i < CCL_SHM_OFFER_LEN; i++)
        PASS(b[i] == 0);
    PASS(ccl__shm_offer_decode(b, &back) == CCL_OK);
    PASS(memcmp(&back.path, &o.path, sizeof o.path) == 0);
    PASS(strcmp(back.name, o.name) == 0 && back.ring_bytes == o.ring_bytes);
    PASS(memcmp(back.nonce, o.nonce, 16) == 0);

    /* Reserved bytes, magic, version, the name's terminator. */
    int bad_at[] = {0, 8, 10, 11, 140, 163, 164, 167}; /* 140: after the name's NUL */
    for (size_t i = 0; i < sizeof bad_at / sizeof bad_at[0]; i++) {
        uint8_t c[CCL_SHM_OFFER_LEN];
        memcpy(c, b, sizeof c);
        c[bad_at[i]] ^= 0x41;
        PASS(ccl__shm_offer_decode(c, &back) == CCL_ERR_PROTOCOL);
    }

    /* The answer. */
    uint8_t a[CCL_SHM_ANSWER_LEN];
    int reason = -1;
    ccl__shm_answer_encode(a, CCL_SHM_NOT_DIRECT);
    PASS(memcmp(a, "PYCCLSHA", 8) == 0 && a[8] == 3);
    PASS(ccl__shm_answer_decode(a, &reason) == CCL_OK && reason == CCL_SHM_NOT_DIRECT);
    a[12] = 1;
    PASS(ccl__shm_answer_decode(a, &reason) == CCL_ERR_PROTOCOL);
    PASS(strstr(ccl__shm_reason(CCL_SHM_NOT_DIRECT), "relay") != NULL);

    /* Paths: the same connection from both ends, then one difference each. */
    ccl__shm_path p = o.path, q = o.path;
    PASS(ccl__shm_path_compare(&p, &q) == CCL_SHM_OK);
    q.boot_id[5] ^= 1;
    PASS(ccl__shm_path_compare(&p, &q) == CCL_SHM_OTHER_HOST);
    q = p;
    q.netns_ino++;
    PASS(ccl__shm_path_compare(&p, &q) == CCL_SHM_OTHER_NETNS);
    q = p;
    q.connector[17] ^= 1; /* a relay's port */
    PASS(ccl__shm_path_compare(&p, &q) == CCL_SHM_NOT_DIRECT);
    q = p;
    q.acceptor[15] ^= 1;
    PASS(ccl__shm_path_compare(&p, &q) == CCL_SHM_NOT_DIRECT);

    /* Tags: any changed byte, another seed, another offer. */
    uint8_t seed[32], seed2[32], t1[16], t2[16];
    for (int i = 0; i < 32; i++) {
        seed[i] = (uint8_t)i;
        seed2[i] = (uint8_t)(i + 1);
    }
    ccl__shm_offer_tag(seed, b, t1);
    ccl__shm_offer_tag(seed2, b, t2);
    PASS(memcmp(t1, t2, 16) != 0);
    int all_differ = 1;
    for (int i = 0; i < CCL_SHM_OFFER_LEN; i++) {
        b[i] ^= 1;
        ccl__shm_offer_tag(seed, b, t2);
        all_differ &= memcmp(t1, t2, 16) != 0;
        b[i] ^= 1;
    }
    PASS(all_differ);
    ccl__shm_answer_encode(a, CCL_SHM_OK);
    ccl__shm_answer_tag(seed, b, a, t1);
    b[120] ^= 1;
    ccl__shm_answer_tag(seed, b, a, t2);
    PASS(memcmp(t1, t2, 16) != 0);
    b[120] ^= 1;
    ccl__shm_offer_tag(seed, b, t2);
    PASS(memcmp(t1, t2, 16) != 0); /* offer and answer tags differ */
    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
