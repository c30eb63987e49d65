/*
 * fuzz_wire.c - libFuzzer harness for the wire decoders (src/wire.c).
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c99 -D_GNU_SOURCE \
 *       -Icsrc/include -Icsrc/src csrc/fuzz/fuzz_wire.c csrc/src/wire.c \
 *       csrc/src/result.c -o /tmp/fuzz_wire
 *   /tmp/fuzz_wire -max_total_time=30 csrc/fuzz/corpus/wire
 *
 * Every input goes to every decoder.  A decoder may refuse it, but if it
 * accepts, the result must satisfy the documented invariants and, because
 * every encoding is canonical, re-encode to exactly the input bytes.  Any
 * violation calls abort() so libFuzzer records the input as a crash.
 * Fixed-size messages are copied into buffers of exactly their size, so
 * AddressSanitizer catches a read one byte past the message as well.
 */
#include "shm_offer.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ccl.h"
#include "stats_wire.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

static int host_ok(const char *host)
{
    size_t n = strlen(host), i;

    if (n < 1 || n > CCL_MAX_HOST)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)host[i] < 0x21 || (unsigned char)host[i] > 0x7e)
            return 0;
    return 1;
}

static void fuzz_hello(const uint8_t *data, size_t size)
{
    uint8_t *in, re[CCL_HELLO_LEN];
    ccl__hello h;
    int rc;

    if (size < CCL_HELLO_LEN)
        return;
    in = malloc(CCL_HELLO_LEN);
    check(in != NULL);
    memcpy(in, data, CCL_HELLO_LEN);
    rc = ccl__hello_decode(in, &h);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL || rc == CCL_ERR_VERSION);
    if (rc == CCL_ERR_VERSION)
        check(h.version != CCL_PROTOCOL_VERSION);
    if (rc == 0) {
        check(h.version == CCL_PROTOCOL_VERSION && (h.flags & ~CCL_HELLO_FLAGS_KNOWN) == 0);
        check(h.role >= 1 && h.role <= 3);
        ccl__hello_encode(re, &h);
        check(memcmp(re, in, CCL_HELLO_LEN) == 0);
    }
    free(in);
}

static int hdr_ok(const ccl__hdr *h)
{
    if (h->type != CCL_FT_DATA && h->root != 0)
        return 0;
    switch (h->type) {
    case CCL_FT_DATA:
        return h->coll >= 1 && h->coll <= CCL_COLL_LAST && h->dtype < CCL_DTYPE_COUNT &&
               h->redop < CCL_REDOP_COUNT && h->root < CCL_MAX_WORLD &&
               (h->step != CCL_STEP_PROBE || (h->length == 0 && h->offset == 0)) &&
               h->length <= CCL_MAX_DATA_PAYLOAD && h->offset <= h->total &&
               h->total - h->offset >= h->length;
    case CCL_FT_ABORT:
    case CCL_FT_REJECT: return h->length <= 6 + CCL_MAX_ERRMSG;
    case CCL_FT_HEARTBEAT:
    case CCL_FT_BYE:
    case CCL_FT_DONE:
    case CCL_FT_CONFIRM:
    case CCL_FT_NOCHANGE:
    case CCL_FT_PENDING: return h->length == 0;
    case CCL_FT_QUERY: return h->length <= CCL_MAX_WORLD / 8;
    case CCL_FT_REFORM: return h->length <= 12 + 4 * CCL_MAX_WORLD;
    case CCL_FT_REJOIN: return h->length <= 4 + 32 + CCL_MAX_HOST;
    case CCL_FT_REGISTER: return h->length <= 32 + CCL_MAX_HOST;
    case CCL_FT_GROUP: return h->length <= CCL_MAX_CTRL_PAYLOAD;
    case CCL_FT_STATS: return h->length <= CCL_STATS_MAX_LEN;
    default: return 0;
    }
}

static void fuzz_hdr(const uint8_t *data, size_t size)
{
    uint8_t *in, re[CCL_HDR_LEN];
    ccl__hdr h;
    int rc;

    if (size < CCL_HDR_LEN)
        return;
    in = malloc(CCL_HDR_LEN);
    check(in != NULL);
    memcpy(in, data, CCL_HDR_LEN);
    rc = ccl__hdr_decode(in, &h);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc == 0) {
        check(hdr_ok(&h));
        ccl__hdr_encode(re, &h);
        check(memcmp(re, in, CCL_HDR_LEN) == 0);
    }
    free(in);
}

static void fuzz_register(const uint8_t *data, size_t size)
{
    ccl__register_msg m;
    uint8_t re[128];
    int rc = ccl__register_decode(data, size, &m);

    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc != 0)
        return;
    check(m.world_size >= 1 && m.world_size <= CCL_MAX_WORLD);
    check(m.rank >= -1 && (m.rank < 0 || (uint32_t)m.rank < m.world_size));
    check(m.listen_port != 0);
    check(m.conns_per_peer >= 1 && m.conns_per_peer <= 64);
    check(host_ok(m.host));
    check(ccl__register_encode(re, sizeof re, &m) == size);
    check(memcmp(re, data, size) == 0);
}

static void fuzz_group(const uint8_t *data, size_t size)
{
    ccl__group_msg g;
    uint32_t ws = 0, i;
    uint8_t *re;
    int rc = ccl__group_peek(data, size, &ws);

    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc != 0)
        return;
    check(ws >= 1 && ws <= CCL_MAX_WORLD && size >= 14 + (size_t)ws * 20);
    memset(&g, 0, sizeof g);
    /* Exactly the peeked count, so a decoder writing one member too many
     * is caught by AddressSanitizer. */
    g.members = malloc(ws * sizeof *g.members);
    check(g.members != NULL);
    rc = ccl__group_decode(data, size, &g);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc == 0) {
        check(g.world_size == ws && g.your_rank < ws);
        check(g.conns_per_peer >= 1 && g.conns_per_peer <= 64);
        for (i = 0; i < ws; i++)
            check(g.members[i].port != 0 && host_ok(g.members[i].host));
        re = malloc(size);
        check(re != NULL);
        check(ccl__group_encode(re, size, &g) == size);
        check(memcmp(re, data, size) == 0);
        free(re);
    }
    free(g.members);
}

static void fuzz_errmsg(const uint8_t *data, size_t size)
{
    char msg[CCL_MAX_ERRMSG + 1];
    int code = 0;
    size_t n, i;
    int rc = ccl__errmsg_decode(data, size, &code, msg);

    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc != 0)
        return;
    n = strlen(msg);
    check(n <= CCL_MAX_ERRMSG && size == 6 + n);
    check((uint32_t)code == ccl__get_u32(data));
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)msg[i];
        check(c >= 0x20 && c <= 0x7e);
        check(c == data[6 + i] || c == '?');
    }
}

static void fuzz_reform(const uint8_t *data, size_t size)
{
    static ccl__reform_msg m;
    int rc = ccl__reform_decode(data, size, &m);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc != 0)
        return;
    check(m.nlost <= CCL_MAX_WORLD && size == 12 + 4 * (size_t)m.nlost);
    for (uint32_t i = 1; i < m.nlost; i++)
        check(m.lost[i] > m.lost[i - 1]);
}

static void fuzz_rejoin(const uint8_t *data, size_t size)
{
    ccl__register_msg m;
    uint32_t epoch = 0;
    int rc = ccl__rejoin_decode(data, size, &epoch, &m);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL);
    if (rc == 0)
        check(epoch >= 1 && m.rank >= 0 && (uint32_t)m.rank < m.world_size);
}

/* STATS (stats_wire.c): a payload that decodes has the exact length for
 * its links and valid ranks, and encodes back to the same bytes. */
static void fuzz_stats(const uint8_t *data, size_t size)
{
    static ccl__stats_msg m;
    static uint8_t back[CCL_STATS_MAX_LEN];
    int rc = ccl__stats_msg_decode(data, size, &m);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL || rc == CCL_ERR_VERSION);
    if (rc != 0)
        return;
    check(m.nlinks <= CCL_STATS_MAX_LINKS && m.rank < m.size &&
          size == CCL_STATS_FIXED_LEN + (size_t)m.nlinks * CCL_STATS_LINK_LEN);
    for (int i = 0; i < m.nlinks; i++)
        check(m.links[i].peer < m.size && m.links[i].peer != m.rank);
    check(ccl__stats_msg_encode(back, sizeof back, &m) == size &&
          memcmp(back, data, size) == 0);
}

/* SHM_OFFER and SHM_ANSWER: a decoded offer re-encodes to its input
 * exactly (every byte is either a field or a checked zero), and its name
 * is always terminated. */
static void fuzz_shm(const uint8_t *data, size_t size)
{
    if (size >= CCL_SHM_OFFER_LEN) {
        uint8_t *in = malloc(CCL_SHM_OFFER_LEN), re[CCL_SHM_OFFER_LEN];
        check(in != NULL);
        memcpy(in, data, CCL_SHM_OFFER_LEN);
        ccl__shm_offer o;
        int rc = ccl__shm_offer_decode(in, &o);
        check(rc == 0 || rc == CCL_ERR_PROTOCOL);
        if (rc == 0) {
            check(memchr(o.name, 0, sizeof o.name) != NULL);
            ccl__shm_offer_encode(re, &o);
            check(memcmp(re, in, CCL_SHM_OFFER_LEN) == 0);
        }
        free(in);
    }
    if (size >= CCL_SHM_ANSWER_LEN) {
        uint8_t *in = malloc(CCL_SHM_ANSWER_LEN), re[CCL_SHM_ANSWER_LEN];
        check(in != NULL);
        memcpy(in, data, CCL_SHM_ANSWER_LEN);
        int reason = -1;
        int rc = ccl__shm_answer_decode(in, &reason);
        check(rc == 0 || rc == CCL_ERR_PROTOCOL);
        if (rc == 0) {
            check(reason >= 0 && reason <= 255 && ccl__shm_reason(reason) != NULL);
            ccl__shm_answer_encode(re, reason);
            check(memcmp(re, in, CCL_SHM_ANSWER_LEN) == 0);
        }
        free(in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_shm(data, size);
    fuzz_stats(data, size);
    fuzz_reform(data, size);
    fuzz_rejoin(data, size);
    fuzz_hello(data, size);
    fuzz_hdr(data, size);
    fuzz_register(data, size);
    fuzz_group(data, size);
    fuzz_errmsg(data, size);
    return 0;
}
