/* test_master_handshake.c - the handshake step machine (handshake.h)
 * without sockets: two machines, a connector and an acceptor, are fed each
 * other's bytes, whole or one byte at a time, and must end as the master
 * and the peers rely on: both done with the same secrets, or both failed
 * with the message the operator needs.  It also checks that a machine
 * never asks for a byte beyond its own step, so the first frame after the
 * handshake is left for the frame reader. */
#include "ccl.h"
#include "handshake.h"
#include "harness.h"

#include <stdio.h>
#include <string.h>

static const uint8_t uuid_c[16] = {1}, uuid_a[16] = {2};

/* Moves at most `chunk` bytes from one machine's output to the other's
 * input; returns how many moved. */
static size_t move(ccl__hsm *from, ccl__hsm *to, size_t chunk)
{
    const uint8_t *w;
    uint8_t *r;
    size_t n = ccl__hsm_to_write(from, &w);
    size_t room = ccl__hsm_to_read(to, &r);
    if (n > room)
        n = room;
    if (n > chunk)
        n = chunk;
    if (n == 0)
        return 0;
    memcpy(r, w, n);
    ccl__hsm_wrote(from, n);
    ccl__hsm_read(to, n);
    return n;
}

static void pump(ccl__hsm *c, ccl__hsm *a, size_t chunk)
{
    while (move(c, a, chunk) + move(a, c, chunk) > 0)
        ;
}

static ccl__key key_of(const char *text)
{
    ccl__key k;
    memset(&k, 0, sizeof k);
    if (text)
        PASS_RC(ccl__key_set(&k, text, strlen(text), NULL, 0));
    return k;
}

typedef struct {
    ccl__hsm c, a;
} pair;

/* Starts a connector (peer to master) and an acceptor (the master, which
 * expects a peer) with the given keys and HELLO flags. */
static void start(pair *p, const ccl__key *kc, const ccl__key *ka, uint8_t flags,
                  int loopback)
{
    ccl__hello hc, ha;
    ccl__hello_fill(&hc, CCL_ROLE_PEER_TO_MASTER, 0, 0xffffffffu, 0, uuid_c);
    ccl__hello_fill(&ha, CCL_ROLE_MASTER, 0, 0xffffffffu, 0, uuid_a);
    hc.flags = ha.flags = flags;
    PASS_RC(ccl__hsm_start(&p->c, CCL_SIDE_CONNECTOR, &hc, kc, 0, loopback, 0,
                           "the master"));
    PASS_RC(ccl__hsm_start(&p->a, CCL_SIDE_ACCEPTOR, &ha, ka, 0, loopback,
                           CCL_ROLE_PEER_TO_MASTER, "the peer"));
}

static void test_agree(size_t chunk)
{
    ccl__key none = key_of(NULL), k = key_of("0123456789abcdef-shared");
    pair p;
    start(&p, &none, &none, 0, 1);
    pump(&p.c, &p.a, chunk);
    PASS(ccl__hsm_done(&p.c) && ccl__hsm_done(&p.a));
    PASS(!p.c.result.authed && p.c.result.theirs.role == CCL_ROLE_MASTER);
    PASS(p.a.result.theirs.role == CCL_ROLE_PEER_TO_MASTER);
    PASS(!memcmp(p.a.result.theirs.uuid, uuid_c, 16));

    start(&p, &k, &k, CCL_HELLO_FRAME_MAC, 1);
    pump(&p.c, &p.a, chunk);
    PASS(ccl__hsm_done(&p.c) && ccl__hsm_done(&p.a));
    PASS(p.c.result.authed && p.a.result.authed);
    /* One secret per direction: what one end sends, the other receives. */
    PASS(!memcmp(p.c.result.seed_tx, p.a.result.seed_rx, 32));
    PASS(!memcmp(p.a.result.seed_tx, p.c.result.seed_rx, 32));
    PASS(memcmp(p.c.result.seed_tx, p.c.result.seed_rx, 32) != 0);
    /* Done means done: nothing more to read, so the first frame that
     * follows stays in the socket for the frame reader. */
    uint8_t *r;
    PASS(ccl__hsm_to_read(&p.a, &r) == 0 && ccl__hsm_to_read(&p.c, &r) == 0);
}

static void test_wrong_key(void)
{
    ccl__key k1 = key_of("0123456789abcdef-one");
    ccl__key k2 = key_of("0123456789abcdef-two");
    pair p;
    start(&p, &k1, &k2, 0, 1);
    pump(&p.c, &p.a, 64);
    PASS(ccl__hsm_failed(&p.a) && p.a.rc == CCL_ERR_AUTH);
    PASS(strstr(p.a.err, "the peer failed authentication") != NULL);
    /* The acceptor's zeros reached the connector: it names the cause. */
    PASS(ccl__hsm_failed(&p.c) && p.c.rc == CCL_ERR_AUTH);
    PASS(strstr(p.c.err, "the master refused our key") != NULL);

    ccl__key none = key_of(NULL);
    start(&p, &none, &k1, 0, 1);
    pump(&p.c, &p.a, 64);
    PASS(ccl__hsm_failed(&p.a) && p.a.rc == CCL_ERR_AUTH);
    PASS(ccl__hsm_failed(&p.c) && p.c.rc == CCL_ERR_AUTH);
    PASS(strstr(p.c.err, "requires a key") != NULL);

    /* No key, and the other end is not on this host. */
    start(&p, &none, &none, 0, 0);
    pump(&p.c, &p.a, 64);
    PASS(ccl__hsm_failed(&p.a) && p.a.rc == CCL_ERR_AUTH);
}

/* Bytes that are not a HELLO of ours: another version, garbage, a peer of
 * the wrong role.  The acceptor stops at the first bad step. */
static void test_bad_hellos(void)
{
    ccl__key none = key_of(NULL);
    pair p;
    uint8_t *r;
    uint8_t bytes[CCL_HELLO_LEN];
    ccl__hello h;
    ccl__hello_fill(&h, CCL_ROLE_PEER_TO_MASTER, 0, 0, 0, uuid_c);
    h.version = 1;
    ccl__hello_encode(bytes, &h);
    start(&p, &none, &none, 0, 1);
    PASS(ccl__hsm_to_read(&p.a, &r) == CCL_HELLO_PREFIX_LEN);
    memcpy(r, bytes, CCL_HELLO_PREFIX_LEN);
    PASS(ccl__hsm_read(&p.a, CCL_HELLO_PREFIX_LEN) == CCL_ERR_VERSION);
    char want[64];
    snprintf(want, sizeof want, "it speaks protocol version 1, we speak %d",
             CCL_PROTOCOL_VERSION);
    PASS(!strcmp(p.a.err + p.a.cause_at, want));
    PASS(!strncmp(p.a.err, "handshake with the peer: ", 25));
    PASS(ccl__hsm_to_read(&p.a, &r) == 0);

    start(&p, &none, &none, 0, 1);
    ccl__hsm_to_read(&p.a, &r);
    memcpy(r, "GET / HTTP", CCL_HELLO_PREFIX_LEN);
    PASS(ccl__hsm_read(&p.a, CCL_HELLO_PREFIX_LEN) == CCL_ERR_PROTOCOL);
    PASS(!strcmp(p.a.err + p.a.cause_at, "not a pyccl endpoint (bad hello)"));

    /* A peer-to-peer HELLO on the master's port. */
    ccl__hello_fill(&h, CCL_ROLE_PEER_TO_PEER, 0, 0, 0, uuid_c);
    ccl__hello_encode(bytes, &h);
    start(&p, &none, &none, 0, 1);
    for (size_t i = 0; i < CCL_HELLO_LEN; i++) {
        PASS(ccl__hsm_to_read(&p.a, &r) > 0);
        *r = bytes[i];
        ccl__hsm_read(&p.a, 1);
    }
    PASS(ccl__hsm_failed(&p.a) && p.a.rc == CCL_ERR_PROTOCOL);
}

int main(void)
{
    test_agree(CCL_HELLO_LEN + CCL_PROOF_LEN);
    test_agree(1);
    test_agree(7);
    test_wrong_key();
    test_bad_hellos();
    return HARNESS_DONE("test_master_handshake");
}
