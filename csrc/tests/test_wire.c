/*
 * test_wire.c - tests of the wire codec (src/wire.c).
 *
 * The checks come in four layers: round trips of every message, byte-exact
 * encodings against hand-written arrays (which pin the little-endian layout
 * that docs/protocol.md describes), every rejection rule one at a time, and
 * a deterministic mutation loop that feeds damaged encodings to every
 * decoder.  Inputs handed to decoders are copied into buffers of exactly
 * their length, so under `make sanitize` any read past the end is caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ccl.h"
#include "harness.h"
#include "wire.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------ */
/* Helpers */

/* The inputs drawn at random come from this seed (harness.h's generator),
 * so a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void fill_uuid(uint8_t uuid[16], uint8_t base)
{
    int i;
    for (i = 0; i < 16; i++)
        uuid[i] = (uint8_t)(base + i);
}

/* ------------------------------------------------------------------ */
/* Little-endian helpers */

static void test_le_helpers(void)
{
    uint8_t b[8];
    static const uint8_t le64[8] = {0x08, 0x07, 0x06, 0x05,
                                    0x04, 0x03, 0x02, 0x01};

    ccl__put_u16(b, 0x1234);
    PASS(b[0] == 0x34 && b[1] == 0x12);
    PASS(ccl__get_u16(b) == 0x1234);
    ccl__put_u32(b, 0xa1b2c3d4u);
    PASS(b[0] == 0xd4 && b[1] == 0xc3 && b[2] == 0xb2 && b[3] == 0xa1);
    PASS(ccl__get_u32(b) == 0xa1b2c3d4u);
    ccl__put_u64(b, 0x0102030405060708ull);
    PASS(memcmp(b, le64, 8) == 0);
    PASS(ccl__get_u64(b) == 0x0102030405060708ull);
    ccl__put_u64(b, UINT64_MAX);
    PASS(ccl__get_u64(b) == UINT64_MAX);
    ccl__put_u16(b, 0xffff);
    PASS(ccl__get_u16(b) == 0xffff);
}

/* ------------------------------------------------------------------ */
/* HELLO */

static ccl__hello sample_hello(void)
{
    ccl__hello h;
    memset(&h, 0, sizeof h);
    h.version = CCL_PROTOCOL_VERSION;
    h.role = CCL_ROLE_PEER_TO_PEER;
    h.epoch = 7;
    h.rank = 3;
    h.conn_index = 0x0a0b0c0du;
    fill_uuid(h.uuid, 0xa0);
    fill_uuid(h.nonce, 0x50);
    h.flags = CCL_HELLO_AUTH;
    return h;
}

static void test_hello_round_trip(void)
{
    uint8_t buf[CCL_HELLO_LEN];
    ccl__hello h = sample_hello(), d;
    uint8_t role;

    for (role = 1; role <= 3; role++) {
        h.role = role;
        h.rank = role == CCL_ROLE_MASTER ? 0xffffffffu : role;
        ccl__hello_encode(buf, &h);
        PASS_RC(ccl__hello_decode(buf, &d));
        PASS(d.version == h.version && d.role == h.role && d.flags == h.flags);
        PASS(d.epoch == h.epoch && d.rank == h.rank);
        PASS(d.conn_index == h.conn_index);
        PASS(memcmp(d.uuid, h.uuid, 16) == 0);
        PASS(memcmp(d.nonce, h.nonce, CCL_NONCE_LEN) == 0);
    }
}

static void test_hello_bytes(void)
{
    static const uint8_t want[CCL_HELLO_LEN] = {
        'P', 'Y', 'C', 'C', 'L', 0x00, '\r', '\n', /* magic */
        0x0a, 0x00,                                 /* version 10 */
        0x02,                                       /* role PEER_TO_PEER */
        0x01,                                       /* flags: AUTH */
        0x07, 0x00, 0x00, 0x00,                     /* epoch 7 */
        0x03, 0x00, 0x00, 0x00,                     /* rank 3 */
        0x0d, 0x0c, 0x0b, 0x0a,                     /* conn_index */
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
        0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, /* uuid */
        0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57,
        0x58, 0x59, 0x5a, 0x5b, 0x5c, 0x5d, 0x5e, 0x5f, /* nonce */
        0, 0, 0, 0, 0, 0, 0, 0                      /* reserved */
    };
    uint8_t buf[CCL_HELLO_LEN];
    ccl__hello h = sample_hello();

    PASS(CCL_PROTOCOL_VERSION == 10); /* the array above spells version 10 */
    memset(buf, 0xee, sizeof buf); /* the encoder must write every byte */
    ccl__hello_encode(buf, &h);
    PASS(memcmp(buf, want, CCL_HELLO_LEN) == 0);
}

static int hello_decode_copy(const uint8_t *src, ccl__hello *h)
{
    uint8_t *p = harness_exact_copy(src, CCL_HELLO_LEN);
    int rc = ccl__hello_decode(p, h);
    free(p);
    return rc;
}

static void test_hello_rejects(void)
{
    uint8_t good[CCL_HELLO_LEN], buf[CCL_HELLO_LEN];
    ccl__hello h = sample_hello(), d;
    int i;

    ccl__hello_encode(good, &h);

    /* Every byte of the magic matters. */
    for (i = 0; i < 8; i++) {
        memcpy(buf, good, sizeof buf);
        buf[i] ^= 0x40;
        PASS(hello_decode_copy(buf, &d) == CCL_ERR_PROTOCOL);
    }

    /* Another version: CCL_ERR_VERSION, with the version filled in. */
    memcpy(buf, good, sizeof buf);
    ccl__put_u16(buf + 8, 1);
    PASS(hello_decode_copy(buf, &d) == CCL_ERR_VERSION);
    PASS(d.version == 1);
    {
        /* The prefix alone is enough to tell: a version-1 peer sends only
         * 48 bytes, and must not be waited for. */
        uint16_t v = 0;
        PASS(ccl__hello_check_prefix(buf, &v) == CCL_ERR_VERSION && v == 1);
        PASS(ccl__hello_check_prefix(good, &v) == 0 && v == CCL_PROTOCOL_VERSION);
        buf[0] = 'Q';
        PASS(ccl__hello_check_prefix(buf, &v) == CCL_ERR_PROTOCOL);
        buf[0] = 'P';
    }
    ccl__put_u16(buf + 8, 0);
    PASS(hello_decode_copy(buf, &d) == CCL_ERR_VERSION);
    PASS(d.version == 0);

    /* Order: a bad magic wins over a bad version, and a bad version wins
     * over everything after it (a later version may lay it out anew). */
    memcpy(buf, good, sizeof buf);
    buf[0] = 'X';
    ccl__put_u16(buf + 8, CCL_PROTOCOL_VERSION + 1);
    PASS(hello_decode_copy(buf, &d) == CCL_ERR_PROTOCOL);
    memcpy(buf, good, sizeof buf);
    ccl__put_u16(buf + 8, CCL_PROTOCOL_VERSION + 1); /* a later version */
    buf[10] = 0;
    buf[11] = 1;
    buf[47] = 1;
    PASS(hello_decode_copy(buf, &d) == CCL_ERR_VERSION);
    PASS(d.version == CCL_PROTOCOL_VERSION + 1);

    /* Roles outside {1, 2, 3}. */
    {
        static const uint8_t bad_roles[] = {0, 4, 5, 0x7f, 0x80, 0xff};
        for (i = 0; i < (int)ARRAY_LEN(bad_roles); i++) {
            memcpy(buf, good, sizeof buf);
            buf[10] = bad_roles[i];
            PASS(hello_decode_copy(buf, &d) == CCL_ERR_PROTOCOL);
        }
    }

    /* Only known flags. */
    for (i = 0; i < 8; i++) {
        memcpy(buf, good, sizeof buf);
        buf[11] = (uint8_t)(1u << i);
        PASS(hello_decode_copy(buf, &d) ==
             ((1u << i) & CCL_HELLO_FLAGS_KNOWN ? 0 : CCL_ERR_PROTOCOL));
    }

    /* Every reserved byte must be zero. */
    for (i = 56; i < CCL_HELLO_LEN; i++) {
        memcpy(buf, good, sizeof buf);
        buf[i] = 0x01;
        PASS(hello_decode_copy(buf, &d) == CCL_ERR_PROTOCOL);
    }

    /* Epoch, rank, conn_index, uuid and nonce take any value. */
    memcpy(buf, good, sizeof buf);
    memset(buf + 12, 0xff, 44);
    PASS(hello_decode_copy(buf, &d) == 0);
    PASS(d.epoch == 0xffffffffu && d.rank == 0xffffffffu &&
         d.conn_index == 0xffffffffu && d.uuid[15] == 0xff &&
         d.nonce[0] == 0xff && d.nonce[15] == 0xff);
}

/* ------------------------------------------------------------------ */
/* Frame header */

static ccl__hdr sample_data_hdr(void)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_DATA;
    h.coll = CCL_COLL_BROADCAST;
    h.dtype = CCL_I32;
    h.redop = CCL_SUM;
    h.epoch = 0x01020304u;
    h.tag = 0x1122334455667788ull;
    h.offset = 0x10;
    h.total = 0x100;
    h.length = 0x20;
    h.step = 0x0506;
    return h;
}

static ccl__hdr ctrl_hdr(uint8_t type, uint32_t length)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = type;
    h.epoch = 3;
    h.tag = 42;
    h.length = length;
    return h;
}

static int hdr_same(const ccl__hdr *a, const ccl__hdr *b)
{
    return a->type == b->type && a->coll == b->coll && a->dtype == b->dtype &&
           a->redop == b->redop && a->epoch == b->epoch && a->tag == b->tag &&
           a->offset == b->offset && a->total == b->total &&
           a->length == b->length && a->step == b->step &&
           a->root == b->root;
}

/* Encodes h, decodes a heap copy of the bytes and returns the result. */
static int hdr_check(const ccl__hdr *h, ccl__hdr *out)
{
    uint8_t buf[CCL_HDR_LEN];
    uint8_t *p;
    int rc;

    ccl__hdr_encode(buf, h);
    p = harness_exact_copy(buf, CCL_HDR_LEN);
    rc = ccl__hdr_decode(p, out);
    free(p);
    return rc;
}

/* Every control frame type and the largest payload it may announce. */
static const struct { uint8_t type; uint32_t cap; } ctl[] = {
    {CCL_FT_ABORT, 6 + CCL_MAX_ERRMSG},
    {CCL_FT_REJECT, 6 + CCL_MAX_ERRMSG},
    {CCL_FT_HEARTBEAT, 0},
    {CCL_FT_BYE, 0},
    {CCL_FT_DONE, 0},
    {CCL_FT_REGISTER, 32 + CCL_MAX_HOST},
    {CCL_FT_GROUP, CCL_MAX_CTRL_PAYLOAD},
    {CCL_FT_REFORM, 12 + 4 * CCL_MAX_WORLD},
    {CCL_FT_NOCHANGE, 0},
    {CCL_FT_PENDING, 0},
    {CCL_FT_REJOIN, 4 + 32 + CCL_MAX_HOST},
    {CCL_FT_STATS, 72 + 28 * 256},
};

static void test_hdr_round_trip(void)
{
    ccl__hdr h = sample_data_hdr(), d;
    int coll, dt, op;

    PASS_RC(hdr_check(&h, &d));
    PASS(hdr_same(&h, &d));

    /* Every valid collective, dtype and operator. */
    for (coll = CCL_COLL_ALLREDUCE_RING; coll <= CCL_COLL_LAST; coll++)
        for (dt = 0; dt < CCL_DTYPE_COUNT; dt++)
            for (op = 0; op < CCL_REDOP_COUNT; op++) {
                h.coll = (uint8_t)coll;
                h.dtype = (uint8_t)dt;
                h.redop = (uint8_t)op;
                PASS(hdr_check(&h, &d) == 0 && hdr_same(&h, &d));
            }

    /* Extremes of the 64-bit fields. */
    h = sample_data_hdr();
    h.tag = UINT64_MAX;
    h.total = UINT64_MAX;
    h.offset = UINT64_MAX - CCL_MAX_DATA_PAYLOAD;
    h.length = CCL_MAX_DATA_PAYLOAD;
    h.epoch = UINT32_MAX;
    h.step = UINT16_MAX - 1; /* UINT16_MAX is the probe step: no payload */
    h.root = CCL_MAX_WORLD - 1;
    PASS(hdr_check(&h, &d) == 0 && hdr_same(&h, &d));

    /* Every control type at its cap and at zero length. */
    {
        size_t i;
        for (i = 0; i < ARRAY_LEN(ctl); i++) {
            ccl__hdr c = ctrl_hdr(ctl[i].type, ctl[i].cap);
            PASS(hdr_check(&c, &d) == 0 && hdr_same(&c, &d));
            c.length = 0;
            PASS(hdr_check(&c, &d) == 0 && hdr_same(&c, &d));
        }
    }
}

static void test_hdr_bytes(void)
{
    static const uint8_t want[CCL_HDR_LEN] = {
        0x01, 0x03, 0x06, 0x00,                         /* DATA BROADCAST I32 SUM */
        0x04, 0x03, 0x02, 0x01,                         /* epoch */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* tag */
        0x10, 0, 0, 0, 0, 0, 0, 0,                      /* offset */
        0x00, 0x01, 0, 0, 0, 0, 0, 0,                   /* total */
        0x20, 0x00, 0x00, 0x00,                         /* length */
        0x06, 0x05,                                     /* step */
        0x00, 0x00                                      /* flags */
    };
    uint8_t buf[CCL_HDR_LEN];
    ccl__hdr h = sample_data_hdr(), d;

    memset(buf, 0xee, sizeof buf);
    ccl__hdr_encode(buf, &h);
    PASS(memcmp(buf, want, CCL_HDR_LEN) == 0);
    PASS_RC(ccl__hdr_decode(want, &d));
    PASS(hdr_same(&h, &d));
}

static int type_known(int t)
{
    return t == CCL_FT_DATA || t == CCL_FT_ABORT || t == CCL_FT_HEARTBEAT ||
           t == CCL_FT_BYE || t == CCL_FT_DONE || t == CCL_FT_QUERY || t == CCL_FT_CONFIRM ||
           t == CCL_FT_REGISTER || t == CCL_FT_GROUP ||
           t == CCL_FT_REJECT || t == CCL_FT_REFORM || t == CCL_FT_NOCHANGE ||
           t == CCL_FT_PENDING || t == CCL_FT_REJOIN || t == CCL_FT_STATS;
}

static void test_hdr_rejects_type_and_flags(void)
{
    ccl__hdr h, d;
    int t, bit;

    /* Unknown types, whatever the other fields say. */
    for (t = 0; t < 256; t++) {
        if (type_known(t))
            continue;
        h = ctrl_hdr((uint8_t)t, 0);
        PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
        PASS(d.type == (uint8_t)t); /* filled even when rejected */
    }

    /* Bytes 38-39: a root on DATA (below CCL_MAX_WORLD), zero elsewhere;
     * each bit on its own. */
    for (t = 0; t < 256; t++) {
        if (!type_known(t))
            continue;
        for (bit = 0; bit < 16; bit++) {
            h = t == CCL_FT_DATA ? sample_data_hdr() : ctrl_hdr((uint8_t)t, 0);
            h.root = (uint16_t)(1u << bit);
            int ok = t == CCL_FT_DATA && h.root < CCL_MAX_WORLD;
            PASS(hdr_check(&h, &d) == (ok ? 0 : CCL_ERR_PROTOCOL));
            PASS(!ok || d.root == h.root);
        }
    }
    /* A probe carries nothing and points nowhere. */
    h = sample_data_hdr();
    h.step = CCL_STEP_PROBE;
    h.length = 0;
    h.offset = 0;
    PASS(hdr_check(&h, &d) == 0 && d.step == CCL_STEP_PROBE);
    h.length = 4;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.length = 0;
    h.offset = 1;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
}

static void test_hdr_rejects_data(void)
{
    ccl__hdr h, d;

    h = sample_data_hdr();
    h.coll = 0;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.coll = CCL_COLL_LAST + 1;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.coll = 0xff;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);

    h = sample_data_hdr();
    h.dtype = CCL_DTYPE_COUNT;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.dtype = 0xff;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);

    h = sample_data_hdr();
    h.redop = CCL_REDOP_COUNT;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.redop = 0xff;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);

    /* The payload cap. */
    h = sample_data_hdr();
    h.offset = 0;
    h.total = UINT64_MAX;
    h.length = CCL_MAX_DATA_PAYLOAD;
    PASS(hdr_check(&h, &d) == 0);
    h.length = CCL_MAX_DATA_PAYLOAD + 1;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.length = UINT32_MAX;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);

    /* offset + length must fit within total. */
    h = sample_data_hdr();
    h.total = 100;
    h.offset = 60;
    h.length = 40;
    PASS(hdr_check(&h, &d) == 0); /* ends exactly at total */
    h.length = 41;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.offset = 101;
    h.length = 0;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL); /* starts beyond total */
    h.offset = 100;
    PASS(hdr_check(&h, &d) == 0); /* empty payload at the very end */
    h.total = 0;
    h.offset = 0;
    PASS(hdr_check(&h, &d) == 0); /* a zero-byte op (barrier) */
    h.length = 1;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);

    /* offset + length overflowing 64 bits must not wrap into range. */
    h = sample_data_hdr();
    h.total = UINT64_MAX;
    h.offset = UINT64_MAX - 3;
    h.length = 4;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL); /* the sum is 2^64 */
    h.length = 3;
    PASS(hdr_check(&h, &d) == 0); /* sum = 2^64 - 1 = total */
    h.offset = UINT64_MAX;
    h.length = 16;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    h.total = 8;
    h.offset = UINT64_MAX - 7; /* wraps to 8 if added naively */
    h.length = 16;
    PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
}

static void test_hdr_rejects_lengths(void)
{
    ccl__hdr h, d;
    size_t i;

    for (i = 0; i < ARRAY_LEN(ctl); i++) {
        h = ctrl_hdr(ctl[i].type, ctl[i].cap + 1);
        PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
        h.length = UINT32_MAX;
        PASS(hdr_check(&h, &d) == CCL_ERR_PROTOCOL);
    }
}

/* Non-DATA frames: coll, dtype, redop, offset, total and step are not
 * validated, so garbage there is accepted and passed through. */
static void test_hdr_ignores_non_data_fields(void)
{
    static const uint8_t types[] = {CCL_FT_ABORT, CCL_FT_HEARTBEAT, CCL_FT_BYE,
                                    CCL_FT_REGISTER, CCL_FT_GROUP,
                                    CCL_FT_REJECT};
    ccl__hdr h, d;
    size_t i;

    for (i = 0; i < ARRAY_LEN(types); i++) {
        h = ctrl_hdr(types[i], 0);
        h.coll = 0xff;
        h.dtype = 0xff;
        h.redop = 0xff;
        h.offset = UINT64_MAX;
        h.total = 1;
        h.step = 0xffff;
        PASS(hdr_check(&h, &d) == 0 && hdr_same(&h, &d));
    }
}

/* ------------------------------------------------------------------ */
/* REGISTER */

static ccl__register_msg sample_register(void)
{
    ccl__register_msg m;
    memset(&m, 0, sizeof m);
    m.world_size = 4;
    m.rank = -1;
    m.listen_port = 0x1234;
    m.conns_per_peer = 2;
    fill_uuid(m.uuid, 0);
    strcpy(m.host, "h1");
    return m;
}

static int register_same(const ccl__register_msg *a, const ccl__register_msg *b)
{
    return a->world_size == b->world_size && a->rank == b->rank &&
           a->listen_port == b->listen_port &&
           a->conns_per_peer == b->conns_per_peer &&
           memcmp(a->uuid, b->uuid, 16) == 0 && strcmp(a->host, b->host) == 0;
}

static int register_decode_copy(const uint8_t *src, size_t len,
                                ccl__register_msg *m)
{
    uint8_t *p = harness_exact_copy(src, len);
    int rc = ccl__register_decode(p, len, m);
    free(p);
    return rc;
}

/* Encodes m and checks that it decodes back to the same message. */
static void register_round_trip(const ccl__register_msg *m)
{
    uint8_t buf[128];
    ccl__register_msg d;
    size_t n = ccl__register_encode(buf, sizeof buf, m);

    PASS(n == 29 + strlen(m->host));
    PASS(register_decode_copy(buf, n, &d) == 0);
    PASS(register_same(m, &d));
}

static void test_register_round_trip(void)
{
    ccl__register_msg m = sample_register();
    int i;

    register_round_trip(&m);
    m.rank = 0;
    register_round_trip(&m);
    m.rank = 3;
    register_round_trip(&m);
    m.world_size = CCL_MAX_WORLD;
    m.rank = CCL_MAX_WORLD - 1;
    m.listen_port = 0xffff;
    m.conns_per_peer = 64;
    for (i = 0; i < CCL_MAX_HOST; i++)
        m.host[i] = (char)(0x21 + (i % 94));
    m.host[CCL_MAX_HOST] = '\0';
    register_round_trip(&m);
    m.world_size = 1;
    m.rank = 0;
    m.conns_per_peer = 1;
    m.listen_port = 1;
    strcpy(m.host, "~");
    register_round_trip(&m);
    strcpy(m.host, "[::1]");
    register_round_trip(&m);
}

static void test_register_bytes(void)
{
    static const uint8_t want[] = {
        0x04, 0x00, 0x00, 0x00, /* world_size 4 */
        0xff, 0xff, 0xff, 0xff, /* rank -1 */
        0x34, 0x12,             /* listen_port 0x1234 */
        0x02, 0x00,             /* conns_per_peer 2 */
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
        0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, /* uuid */
        0x02, 'h', '1'          /* host */
    };
    uint8_t buf[128];
    ccl__register_msg m = sample_register(), d;
    size_t n = ccl__register_encode(buf, sizeof buf, &m);

    PASS(n == sizeof want);
    PASS(memcmp(buf, want, sizeof want) == 0);
    PASS(register_decode_copy(want, sizeof want, &d) == 0);
    PASS(register_same(&m, &d));

    /* A non-negative rank is the plain little-endian value. */
    m.rank = 0x0203;
    m.world_size = CCL_MAX_WORLD;
    n = ccl__register_encode(buf, sizeof buf, &m);
    PASS(n == sizeof want && buf[4] == 0x03 && buf[5] == 0x02 &&
         buf[6] == 0 && buf[7] == 0);
}

/* One damaged field for the reject tests: the `width` bytes (1, 2 or 4,
 * little-endian) at `off` set to `value`. */
typedef struct {
    size_t off;
    int width;
    uint32_t value;
} field_poke;

/* For each poke: a fresh copy of the n good bytes with that one field
 * damaged, which `reject` must refuse. */
static void reject_each_poke(const uint8_t *good, size_t n, const field_poke *pokes,
                             size_t npokes,
                             void (*reject)(const uint8_t *buf, size_t len))
{
    uint8_t buf[256];
    size_t i;
    PASS(n <= sizeof buf);
    for (i = 0; i < npokes && n <= sizeof buf; i++) {
        const field_poke *p = &pokes[i];
        memcpy(buf, good, n);
        if (p->width == 4)
            ccl__put_u32(buf + p->off, p->value);
        else if (p->width == 2)
            ccl__put_u16(buf + p->off, (uint16_t)p->value);
        else
            buf[p->off] = (uint8_t)p->value;
        reject(buf, n);
    }
}

/* Decodes damaged bytes: the decoder must refuse them and leave its output
 * untouched. */
static void register_reject_bytes(const uint8_t *buf, size_t len)
{
    ccl__register_msg d;
    memset(&d, 0x5a, sizeof d);
    PASS(register_decode_copy(buf, len, &d) == CCL_ERR_PROTOCOL);
    PASS(d.world_size == 0x5a5a5a5au); /* untouched on failure */
}

static void test_register_rejects(void)
{
    uint8_t good[128], buf[160];
    ccl__register_msg m = sample_register();
    size_t n = ccl__register_encode(good, sizeof good, &m), len;
    static const uint8_t bad_host_bytes[] = {0x00, 0x09, 0x0a, 0x20,
                                             0x7f, 0x80, 0xff};
    static const field_poke bad_fields[] = {
        /* host_len disagreeing with the payload length, both ways. */
        {28, 1, 3}, {28, 1, 1},
        /* world_size 0 and above the cap. */
        {0, 4, 0}, {0, 4, CCL_MAX_WORLD + 1}, {0, 4, UINT32_MAX},
        /* rank < -1 (-2, INT32_MIN) and rank >= world_size (4). */
        {4, 4, 0xfffffffeu}, {4, 4, 0x80000000u}, {4, 4, 4}, {4, 4, 0x7fffffffu},
        /* port 0. */
        {8, 2, 0},
        /* conns_per_peer 0 and 65 and more. */
        {10, 2, 0}, {10, 2, 65}, {10, 2, 0xffff},
    };
    size_t i;

    PASS(n == 31);

    /* Every truncation, and one extra byte. */
    for (len = 0; len < n; len++)
        register_reject_bytes(good, len);
    memcpy(buf, good, n);
    buf[n] = 0;
    register_reject_bytes(buf, n + 1);

    reject_each_poke(good, n, bad_fields, ARRAY_LEN(bad_fields),
                     register_reject_bytes);
    /* Bad host bytes, at each position. */
    for (i = 0; i < ARRAY_LEN(bad_host_bytes); i++) {
        field_poke at[] = {{29, 1, bad_host_bytes[i]}, {30, 1, bad_host_bytes[i]}};
        reject_each_poke(good, n, at, ARRAY_LEN(at), register_reject_bytes);
    }

    /* host_len 0 (with an exact length) and 65. */
    memcpy(buf, good, 29);
    buf[28] = 0;
    register_reject_bytes(buf, 29);
    memcpy(buf, good, 29);
    buf[28] = CCL_MAX_HOST + 1;
    memset(buf + 29, 'a', CCL_MAX_HOST + 1);
    register_reject_bytes(buf, 29 + CCL_MAX_HOST + 1);
    buf[28] = CCL_MAX_HOST;
    PASS(register_decode_copy(buf, 29 + CCL_MAX_HOST, &m) == 0);
    PASS(strlen(m.host) == CCL_MAX_HOST);
}

/* A copy of `good` with one change (the statements after it, made on the
 * caller's `bad`) must be refused: `encode` writes nothing into the
 * caller's `buf`.  A failure names the change. */
#define ENCODE_REFUSES(encode, good, ...)                                  \
    do {                                                                   \
        bad = (good);                                                      \
        __VA_ARGS__;                                                       \
        PASS(encode(buf, sizeof buf, &bad) == 0 && #__VA_ARGS__);          \
    } while (0)

static void test_register_encode_refuses(void)
{
    uint8_t buf[128];
    ccl__register_msg m = sample_register(), bad;
    size_t n = ccl__register_encode(buf, sizeof buf, &m);

    /* Capacity: one byte short fails, exact fits. */
    PASS(ccl__register_encode(buf, n - 1, &m) == 0);
    PASS(ccl__register_encode(buf, n, &m) == n);
    PASS(ccl__register_encode(buf, 0, &m) == 0);
    PASS(ccl__register_encode(NULL, 0, &m) == 0);

    ENCODE_REFUSES(ccl__register_encode, m, bad.host[0] = '\0');
    /* 65 chars, no NUL */
    ENCODE_REFUSES(ccl__register_encode, m,
                   memset(bad.host, 'a', sizeof bad.host));
    ENCODE_REFUSES(ccl__register_encode, m, strcpy(bad.host, "a b"));
    ENCODE_REFUSES(ccl__register_encode, m, bad.host[1] = (char)0xc3);
    ENCODE_REFUSES(ccl__register_encode, m, bad.world_size = 0);
    ENCODE_REFUSES(ccl__register_encode, m,
                   bad.world_size = CCL_MAX_WORLD + 1);
    ENCODE_REFUSES(ccl__register_encode, m, bad.rank = -2);
    ENCODE_REFUSES(ccl__register_encode, m, bad.rank = 4);
    ENCODE_REFUSES(ccl__register_encode, m, bad.listen_port = 0);
    ENCODE_REFUSES(ccl__register_encode, m, bad.conns_per_peer = 0);
    ENCODE_REFUSES(ccl__register_encode, m, bad.conns_per_peer = 65);
}

/* ------------------------------------------------------------------ */
/* GROUP */

static ccl__member sample_members[3];

static ccl__group_msg sample_group(void)
{
    ccl__group_msg g;

    memset(sample_members, 0, sizeof sample_members);
    sample_members[0].port = 8080;
    memset(sample_members[0].uuid, 0x11, 16);
    strcpy(sample_members[0].host, "a");
    sample_members[1].port = 1;
    memset(sample_members[1].uuid, 0x22, 16);
    strcpy(sample_members[1].host, "bc");
    sample_members[2].port = 0xffff;
    memset(sample_members[2].uuid, 0x33, 16);
    strcpy(sample_members[2].host, "node-3.example.org");

    memset(&g, 0, sizeof g);
    g.epoch = 9;
    g.world_size = 2;
    g.your_rank = 1;
    g.conns_per_peer = 3;
    g.members = sample_members;
    return g;
}

/* Peeks, allocates exactly the peeked count and decodes a heap copy of
 * exactly len bytes.  On success the caller frees d->members. */
static int group_decode_copy(const uint8_t *src, size_t len, ccl__group_msg *d)
{
    uint8_t *p = harness_exact_copy(src, len);
    uint32_t ws = 0;
    int rc = ccl__group_peek(p, len, &ws);

    memset(d, 0, sizeof *d);
    if (rc == 0) {
        d->members = calloc(ws, sizeof *d->members);
        if (!d->members)
            exit(2);
        rc = ccl__group_decode(p, len, d);
        if (rc == 0 && d->world_size != ws)
            rc = -1000; /* a decode that disagrees with its peek */
        if (rc != 0) {
            free(d->members);
            d->members = NULL;
        }
    }
    free(p);
    return rc;
}

static int group_same(const ccl__group_msg *a, const ccl__group_msg *b)
{
    uint32_t i;

    if (a->epoch != b->epoch || a->world_size != b->world_size ||
        a->your_rank != b->your_rank || a->conns_per_peer != b->conns_per_peer)
        return 0;
    for (i = 0; i < a->world_size; i++) {
        const ccl__member *x = &a->members[i], *y = &b->members[i];
        if (x->port != y->port || memcmp(x->uuid, y->uuid, 16) != 0 ||
            strcmp(x->host, y->host) != 0)
            return 0;
    }
    return 1;
}

static size_t group_expected_len(const ccl__group_msg *g)
{
    size_t n = 14;
    uint32_t i;
    for (i = 0; i < g->world_size; i++)
        n += 19 + strlen(g->members[i].host);
    return n;
}

static void group_round_trip(const ccl__group_msg *g)
{
    size_t cap = group_expected_len(g);
    uint8_t *buf = malloc(cap);
    ccl__group_msg d;
    size_t n;

    if (!buf)
        exit(2);
    n = ccl__group_encode(buf, cap, g);
    PASS(n == cap);
    PASS(group_decode_copy(buf, n, &d) == 0);
    PASS(d.members && group_same(g, &d));
    free(d.members);
    free(buf);
}

static void test_group_round_trip(void)
{
    ccl__group_msg g = sample_group();
    ccl__member *big;
    uint32_t i;

    group_round_trip(&g);
    g.world_size = 1;
    g.your_rank = 0;
    g.conns_per_peer = 1;
    group_round_trip(&g);
    g.world_size = 3;
    g.your_rank = 2;
    g.conns_per_peer = 64;
    g.epoch = UINT32_MAX;
    group_round_trip(&g);

    /* The largest group: 4096 members with 64-byte hosts. */
    big = calloc(CCL_MAX_WORLD, sizeof *big);
    if (!big)
        exit(2);
    for (i = 0; i < CCL_MAX_WORLD; i++) {
        big[i].port = (uint16_t)(1 + i);
        fill_uuid(big[i].uuid, (uint8_t)i);
        memset(big[i].host, 'a' + (int)(i % 26), CCL_MAX_HOST);
        big[i].host[CCL_MAX_HOST] = '\0';
    }
    g.world_size = CCL_MAX_WORLD;
    g.your_rank = CCL_MAX_WORLD - 1;
    g.members = big;
    group_round_trip(&g);
    free(big);
}

static void test_group_bytes(void)
{
    static const uint8_t want[] = {
        0x09, 0x00, 0x00, 0x00, /* epoch 9 */
        0x02, 0x00, 0x00, 0x00, /* world_size 2 */
        0x01, 0x00, 0x00, 0x00, /* your_rank 1 */
        0x03, 0x00,             /* conns_per_peer 3 */
        0x90, 0x1f,             /* member 0: port 8080 */
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x01, 'a',
        0x01, 0x00,             /* member 1: port 1 */
        0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
        0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
        0x02, 'b', 'c'
    };
    uint8_t buf[sizeof want + 8];
    ccl__group_msg g = sample_group(), d;
    uint32_t ws = 0;

    PASS(ccl__group_encode(buf, sizeof buf, &g) == sizeof want);
    PASS(memcmp(buf, want, sizeof want) == 0);
    PASS(ccl__group_peek(want, sizeof want, &ws) == 0 && ws == 2);
    PASS(group_decode_copy(want, sizeof want, &d) == 0);
    PASS(d.members && group_same(&g, &d));
    free(d.members);
}

static int group_peek_copy(const uint8_t *src, size_t len, uint32_t *ws)
{
    uint8_t *p = harness_exact_copy(src, len);
    int rc = ccl__group_peek(p, len, ws);
    free(p);
    return rc;
}

static void test_group_peek(void)
{
    uint8_t buf[14 + 3 * 20 + 16];
    uint32_t ws;
    size_t len;

    memset(buf, 0, sizeof buf);
    ccl__put_u32(buf + 4, 3);
    /* Too short for the fixed part, then for three minimal members. */
    for (len = 0; len < 14 + 3 * 20; len++)
        PASS(group_peek_copy(buf, len, &ws) == CCL_ERR_PROTOCOL);
    ws = 0;
    PASS(group_peek_copy(buf, 14 + 3 * 20, &ws) == 0 && ws == 3);
    /* Peek checks only the minimum; decode rejects what lies beyond. */
    PASS(group_peek_copy(buf, sizeof buf, &ws) == 0 && ws == 3);

    ccl__put_u32(buf + 4, 0);
    PASS(group_peek_copy(buf, sizeof buf, &ws) == CCL_ERR_PROTOCOL);
    ccl__put_u32(buf + 4, CCL_MAX_WORLD + 1);
    PASS(group_peek_copy(buf, sizeof buf, &ws) == CCL_ERR_PROTOCOL);
    ccl__put_u32(buf + 4, UINT32_MAX);
    PASS(group_peek_copy(buf, sizeof buf, &ws) == CCL_ERR_PROTOCOL);
    /* A count whose minimum size exceeds len, even at the cap. */
    ccl__put_u32(buf + 4, CCL_MAX_WORLD);
    PASS(group_peek_copy(buf, sizeof buf, &ws) == CCL_ERR_PROTOCOL);
    PASS(ccl__group_peek(NULL, 0, &ws) == CCL_ERR_PROTOCOL);
}

static void group_reject_bytes(const uint8_t *buf, size_t len)
{
    ccl__group_msg d;
    PASS(group_decode_copy(buf, len, &d) != 0);
}

/* Decode without the peek's help, so decode's own checks are exercised:
 * members sized generously and the input copied to an exact buffer. */
static int group_decode_only(const uint8_t *src, size_t len)
{
    ccl__member members[8];
    ccl__group_msg d;
    uint8_t *p = harness_exact_copy(src, len);
    int rc;

    memset(&d, 0, sizeof d);
    d.members = members;
    rc = ccl__group_decode(p, len, &d);
    free(p);
    return rc;
}

static void test_group_rejects(void)
{
    uint8_t good[64], buf[96];
    ccl__group_msg g = sample_group();
    size_t n = ccl__group_encode(good, sizeof good, &g), len;
    static const uint8_t bad_host_bytes[] = {0x00, 0x20, 0x7f, 0xff};
    static const field_poke bad_fields[] = {
        /* your_rank >= world_size. */
        {8, 4, 2}, {8, 4, UINT32_MAX},
        /* conns_per_peer outside 1..64. */
        {12, 2, 0}, {12, 2, 65},
        /* A member with port 0 (first and last). */
        {14, 2, 0}, {34, 2, 0},
        /* host_len 0 is refused outright. */
        {32, 1, 0},
        /* The last host claims one byte more than is there; one byte
         * fewer (a trailing byte remains); far beyond the payload. */
        {52, 1, 3}, {52, 1, 1}, {52, 1, 0xff},
    };
    size_t i;

    PASS(n == 55);

    /* Every truncation: peek or decode must refuse each one. */
    for (len = 0; len < n; len++) {
        group_reject_bytes(good, len);
        PASS(group_decode_only(good, len) == CCL_ERR_PROTOCOL);
    }
    /* Trailing bytes. */
    memcpy(buf, good, n);
    memset(buf + n, 0, 8);
    for (len = n + 1; len <= n + 8; len++) {
        group_reject_bytes(buf, len);
        PASS(group_decode_only(buf, len) == CCL_ERR_PROTOCOL);
    }

    reject_each_poke(good, n, bad_fields, ARRAY_LEN(bad_fields), group_reject_bytes);
    /* Bad host bytes, in the first and the last host. */
    for (i = 0; i < ARRAY_LEN(bad_host_bytes); i++) {
        field_poke at[] = {{33, 1, bad_host_bytes[i]}, {54, 1, bad_host_bytes[i]}};
        reject_each_poke(good, n, at, ARRAY_LEN(at), group_reject_bytes);
    }

    /* world_size disagreeing with the members present: fewer announced
     * leaves a trailing member; more announced fails the peek's minimum
     * size (14 + 3 * 20 > 55) even though decode would run out anyway. */
    memcpy(buf, good, n);
    PASS(group_decode_only(buf, n) == 0);
    ccl__put_u32(buf + 4, 1);
    ccl__put_u32(buf + 8, 0);
    PASS(group_decode_only(buf, n) == CCL_ERR_PROTOCOL);
    ccl__put_u32(buf + 4, 3);
    PASS(group_decode_only(buf, n) == CCL_ERR_PROTOCOL);

    /* A members array the caller forgot is the caller's bug. */
    {
        ccl__group_msg d;
        memset(&d, 0, sizeof d);
        PASS(ccl__group_decode(good, n, &d) == CCL_ERR_INVALID_ARG);
    }
}

static void test_group_encode_refuses(void)
{
    uint8_t buf[128];
    ccl__group_msg g = sample_group(), bad;
    size_t n = ccl__group_encode(buf, sizeof buf, &g);

    PASS(n == 55);
    PASS(ccl__group_encode(buf, n - 1, &g) == 0);
    PASS(ccl__group_encode(buf, n, &g) == n);
    PASS(ccl__group_encode(NULL, 0, &g) == 0);

    ENCODE_REFUSES(ccl__group_encode, g, bad.world_size = 0);
    ENCODE_REFUSES(ccl__group_encode, g, bad.world_size = CCL_MAX_WORLD + 1);
    ENCODE_REFUSES(ccl__group_encode, g, bad.your_rank = 2);
    ENCODE_REFUSES(ccl__group_encode, g, bad.conns_per_peer = 0);
    ENCODE_REFUSES(ccl__group_encode, g, bad.conns_per_peer = 65);
    ENCODE_REFUSES(ccl__group_encode, g, bad.members = NULL);

    /* Bad members (sample_group() resets them first). */
    ENCODE_REFUSES(ccl__group_encode, sample_group(),
                   sample_members[1].port = 0);
    ENCODE_REFUSES(ccl__group_encode, sample_group(),
                   sample_members[1].host[0] = '\0');
    ENCODE_REFUSES(ccl__group_encode, sample_group(),
                   memset(sample_members[1].host, 'x', sizeof sample_members[1].host));
    ENCODE_REFUSES(ccl__group_encode, sample_group(),
                   sample_members[0].host[0] = '\n');
}

/* ------------------------------------------------------------------ */
/* Error messages */

static int errmsg_decode_copy(const uint8_t *src, size_t len, int *code,
                              char msg[CCL_MAX_ERRMSG + 1])
{
    uint8_t *p = harness_exact_copy(src, len);
    int rc = ccl__errmsg_decode(p, len, code, msg);
    free(p);
    return rc;
}

static void test_errmsg_round_trip(void)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG + 16];
    char msg[CCL_MAX_ERRMSG + 1], longmsg[600];
    int code = 0;
    size_t n;

    n = ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_PEER_LOST, "rank 2 lost");
    PASS(n == 6 + 11);
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0);
    PASS(code == CCL_ERR_PEER_LOST && strcmp(msg, "rank 2 lost") == 0);

    /* Empty and NULL texts. */
    n = ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_ABORTED, "");
    PASS(n == 6);
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0);
    PASS(code == CCL_ERR_ABORTED && msg[0] == '\0');
    n = ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_CLOSED, NULL);
    PASS(n == 6);
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0 && msg[0] == '\0');

    /* Codes keep their sign through the u32 field. */
    n = ccl__errmsg_encode(buf, sizeof buf, -5, "x");
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0 && code == -5);
    n = ccl__errmsg_encode(buf, sizeof buf, INT32_MIN, "x");
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0 && code == INT32_MIN);
    n = ccl__errmsg_encode(buf, sizeof buf, INT32_MAX, "x");
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0 && code == INT32_MAX);

    /* Texts longer than the cap are cut at exactly CCL_MAX_ERRMSG. */
    memset(longmsg, 'z', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    n = ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_IO, longmsg);
    PASS(n == 6 + CCL_MAX_ERRMSG);
    PASS(ccl__get_u16(buf + 4) == CCL_MAX_ERRMSG);
    PASS(errmsg_decode_copy(buf, n, &code, msg) == 0);
    PASS(strlen(msg) == CCL_MAX_ERRMSG && msg[0] == 'z');
    longmsg[CCL_MAX_ERRMSG] = '\0';
    PASS(ccl__errmsg_encode(buf, sizeof buf, 1, longmsg) == 6 + CCL_MAX_ERRMSG);
    longmsg[CCL_MAX_ERRMSG - 1] = '\0';
    PASS(ccl__errmsg_encode(buf, sizeof buf, 1, longmsg) ==
         6 + CCL_MAX_ERRMSG - 1);

    /* Capacity. */
    PASS(ccl__errmsg_encode(buf, 6 + 2, 1, "abc") == 0);
    PASS(ccl__errmsg_encode(buf, 6 + 3, 1, "abc") == 9);
    PASS(ccl__errmsg_encode(buf, 5, 1, NULL) == 0);
    PASS(ccl__errmsg_encode(NULL, 0, 1, "abc") == 0);
}

static void test_errmsg_bytes(void)
{
    static const uint8_t want[] = {
        0x05, 0x00, 0x00, 0x00, /* code 5 */
        0x02, 0x00,             /* n 2 */
        'h', 'i'
    };
    static const uint8_t neg[] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00};
    uint8_t buf[16];
    char msg[CCL_MAX_ERRMSG + 1];
    int code;

    PASS(ccl__errmsg_encode(buf, sizeof buf, 5, "hi") == sizeof want);
    PASS(memcmp(buf, want, sizeof want) == 0);
    PASS(ccl__errmsg_encode(buf, sizeof buf, -1, "") == sizeof neg);
    PASS(memcmp(buf, neg, sizeof neg) == 0);
    PASS(errmsg_decode_copy(neg, sizeof neg, &code, msg) == 0 && code == -1);
}

static void test_errmsg_rejects(void)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG + 2];
    char msg[CCL_MAX_ERRMSG + 1];
    int code = 77;
    size_t n = ccl__errmsg_encode(buf, sizeof buf, 3, "hello"), len;

    /* Every truncation and a trailing byte. */
    for (len = 0; len < n; len++)
        PASS(errmsg_decode_copy(buf, len, &code, msg) == CCL_ERR_PROTOCOL);
    buf[n] = 'x';
    PASS(errmsg_decode_copy(buf, n + 1, &code, msg) == CCL_ERR_PROTOCOL);
    PASS(code == 77); /* untouched on failure */

    /* n above the cap, even with the bytes present. */
    memset(buf, 'a', sizeof buf);
    ccl__put_u32(buf, 1);
    ccl__put_u16(buf + 4, CCL_MAX_ERRMSG + 1);
    PASS(errmsg_decode_copy(buf, 6 + CCL_MAX_ERRMSG + 1, &code, msg) ==
         CCL_ERR_PROTOCOL);
    ccl__put_u16(buf + 4, 0xffff);
    PASS(errmsg_decode_copy(buf, sizeof buf, &code, msg) == CCL_ERR_PROTOCOL);
    ccl__put_u16(buf + 4, CCL_MAX_ERRMSG);
    PASS(errmsg_decode_copy(buf, 6 + CCL_MAX_ERRMSG, &code, msg) == 0);
    PASS(strlen(msg) == CCL_MAX_ERRMSG);
}

static void test_errmsg_sanitizes(void)
{
    static const uint8_t raw[] = {0x01, 0, 0, 0, 0x08, 0,
                                  'a', 0x00, '\n', 0x7f, 0x80, 0xff, ' ', '~'};
    char msg[CCL_MAX_ERRMSG + 1];
    int code;

    PASS(errmsg_decode_copy(raw, sizeof raw, &code, msg) == 0);
    PASS(code == 1 && memcmp(msg, "a????? ~", 9) == 0);
}

/* ------------------------------------------------------------------ */
/* Mutation loop.
 *
 * Valid encodings of every message are damaged at random (byte flips,
 * random bytes, truncation, extension) and handed to every decoder.  Each
 * decoder must either refuse with its documented code or produce values
 * that satisfy every invariant; for the accepted ones the encoding is also
 * canonical, so re-encoding must reproduce the input byte for byte. */

#define FUZZ_ITERS 200000
#define FUZZ_MAX 512

typedef struct fuzz_seed {
    uint8_t bytes[FUZZ_MAX];
    size_t len;
} fuzz_seed;

typedef struct fuzz_stats {
    long ok[5];  /* hello, hdr, register, group, errmsg */
    long bad[5];
    long violations;
} fuzz_stats;

static void fuzz_violation(fuzz_stats *st, const char *what)
{
    if (st->violations++ < 10)
        fprintf(stderr, "FAIL mutation loop: %s\n", what);
}

/* Counts one decode by decoder `which` (the index in ok[] and bad[]):
 * 1 when it accepted.  A refusal must say CCL_ERR_PROTOCOL, or `also`
 * where that decoder has a second documented code. */
static int fuzz_tally(fuzz_stats *st, int which, int rc, int also)
{
    static const char *const unexpected[5] = {
        "hello: unexpected code", "hdr: unexpected code",
        "register: unexpected code", "group: unexpected code",
        "errmsg: unexpected code"};
    if (rc == 0) {
        st->ok[which]++;
        return 1;
    }
    st->bad[which]++;
    if (rc != CCL_ERR_PROTOCOL && rc != also)
        fuzz_violation(st, unexpected[which]);
    return 0;
}

static void fuzz_hello(const uint8_t *in, size_t len, fuzz_stats *st)
{
    ccl__hello h;
    uint8_t re[CCL_HELLO_LEN];
    int rc;

    if (len < CCL_HELLO_LEN)
        return;
    rc = ccl__hello_decode(in, &h);
    if (!fuzz_tally(st, 0, rc, CCL_ERR_VERSION)) {
        if (rc == CCL_ERR_VERSION && h.version == CCL_PROTOCOL_VERSION)
            fuzz_violation(st, "hello: version error for our version");
        return;
    }
    if (h.version != CCL_PROTOCOL_VERSION ||
        (h.flags & ~CCL_HELLO_FLAGS_KNOWN) != 0 || h.role < 1 || h.role > 3)
        fuzz_violation(st, "hello: accepted an invalid field");
    ccl__hello_encode(re, &h);
    if (memcmp(re, in, CCL_HELLO_LEN) != 0)
        fuzz_violation(st, "hello: re-encoding differs");
}

static int hdr_invariants(const ccl__hdr *h)
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
    case CCL_FT_DONE: return h->length == 0;
    case CCL_FT_REGISTER: return h->length <= 32 + CCL_MAX_HOST;
    case CCL_FT_GROUP: return h->length <= CCL_MAX_CTRL_PAYLOAD;
    case CCL_FT_REFORM: return h->length <= 12 + 4 * CCL_MAX_WORLD;
    case CCL_FT_REJOIN: return h->length <= 4 + 32 + CCL_MAX_HOST;
    case CCL_FT_STATS: return h->length <= 72 + 28 * 256;
    case CCL_FT_NOCHANGE:
    case CCL_FT_PENDING: return h->length == 0;
    default: return 0;
    }
}

static void fuzz_hdr(const uint8_t *in, size_t len, fuzz_stats *st)
{
    ccl__hdr h;
    uint8_t re[CCL_HDR_LEN];

    if (len < CCL_HDR_LEN ||
        !fuzz_tally(st, 1, ccl__hdr_decode(in, &h), CCL_ERR_PROTOCOL))
        return;
    if (!hdr_invariants(&h))
        fuzz_violation(st, "hdr: accepted an invalid header");
    ccl__hdr_encode(re, &h);
    if (memcmp(re, in, CCL_HDR_LEN) != 0)
        fuzz_violation(st, "hdr: re-encoding differs");
}

static int host_valid(const char *host)
{
    size_t n = strlen(host), i;
    if (n < 1 || n > CCL_MAX_HOST)
        return 0;
    for (i = 0; i < n; i++)
        if ((unsigned char)host[i] < 0x21 || (unsigned char)host[i] > 0x7e)
            return 0;
    return 1;
}

static void fuzz_register(const uint8_t *in, size_t len, fuzz_stats *st)
{
    ccl__register_msg m;
    uint8_t re[128];
    size_t n;
    int rc = ccl__register_decode(in, len, &m);

    if (!fuzz_tally(st, 2, rc, CCL_ERR_PROTOCOL))
        return;
    if (m.world_size < 1 || m.world_size > CCL_MAX_WORLD || m.rank < -1 ||
        (m.rank >= 0 && (uint32_t)m.rank >= m.world_size) ||
        m.listen_port == 0 || m.conns_per_peer < 1 || m.conns_per_peer > 64 ||
        !host_valid(m.host))
        fuzz_violation(st, "register: accepted an invalid message");
    n = ccl__register_encode(re, sizeof re, &m);
    if (n != len || memcmp(re, in, len) != 0)
        fuzz_violation(st, "register: re-encoding differs");
}

static int group_invariants(const ccl__group_msg *g, uint32_t peeked)
{
    uint32_t i;

    if (g->world_size != peeked || g->world_size < 1 ||
        g->world_size > CCL_MAX_WORLD || g->your_rank >= g->world_size ||
        g->conns_per_peer < 1 || g->conns_per_peer > 64)
        return 0;
    for (i = 0; i < g->world_size; i++)
        if (g->members[i].port == 0 || !host_valid(g->members[i].host))
            return 0;
    return 1;
}

static void fuzz_group(const uint8_t *in, size_t len, fuzz_stats *st)
{
    ccl__group_msg g;
    uint32_t ws = 0;
    uint8_t *re;
    size_t n;
    int rc = ccl__group_peek(in, len, &ws);

    if (rc == 0 && (ws < 1 || ws > CCL_MAX_WORLD || len < 14 + (size_t)ws * 20))
        fuzz_violation(st, "group: peek accepted an impossible count");
    memset(&g, 0, sizeof g);
    if (rc == 0) {
        g.members = malloc(ws * sizeof *g.members);
        if (!g.members)
            exit(2);
        rc = ccl__group_decode(in, len, &g);
    }
    if (!fuzz_tally(st, 3, rc, CCL_ERR_PROTOCOL)) {
        free(g.members);
        return;
    }
    if (!group_invariants(&g, ws))
        fuzz_violation(st, "group: accepted an invalid message");
    re = malloc(len);
    if (!re)
        exit(2);
    n = ccl__group_encode(re, len, &g);
    if (n != len || memcmp(re, in, len) != 0)
        fuzz_violation(st, "group: re-encoding differs");
    free(re);
    free(g.members);
}

static void fuzz_errmsg(const uint8_t *in, size_t len, fuzz_stats *st)
{
    char msg[CCL_MAX_ERRMSG + 1];
    int code = 0;
    size_t n, i;
    int rc = ccl__errmsg_decode(in, len, &code, msg);

    if (!fuzz_tally(st, 4, rc, CCL_ERR_PROTOCOL))
        return;
    n = strlen(msg);
    if (len != 6 + n || n > CCL_MAX_ERRMSG)
        fuzz_violation(st, "errmsg: text length disagrees with payload");
    for (i = 0; i < n; i++)
        if ((unsigned char)msg[i] < 0x20 || (unsigned char)msg[i] > 0x7e)
            fuzz_violation(st, "errmsg: non-printable byte survived");
    if ((uint32_t)code != ccl__get_u32(in))
        fuzz_violation(st, "errmsg: code differs from its bytes");
    for (i = 0; i < n; i++)
        if (in[6 + i] >= 0x20 && in[6 + i] <= 0x7e && msg[i] != (char)in[6 + i])
            fuzz_violation(st, "errmsg: printable byte changed");
}

static size_t build_seeds(fuzz_seed *seeds)
{
    size_t k = 0;
    ccl__hello h = sample_hello();
    ccl__hdr hd = sample_data_hdr();
    ccl__register_msg r = sample_register();
    ccl__group_msg g = sample_group();

    ccl__hello_encode(seeds[k].bytes, &h);
    seeds[k++].len = CCL_HELLO_LEN;
    ccl__hdr_encode(seeds[k].bytes, &hd);
    seeds[k++].len = CCL_HDR_LEN;
    hd = ctrl_hdr(CCL_FT_GROUP, 55);
    ccl__hdr_encode(seeds[k].bytes, &hd);
    seeds[k++].len = CCL_HDR_LEN;
    seeds[k].len = ccl__register_encode(seeds[k].bytes, FUZZ_MAX, &r);
    k++;
    strcpy(r.host, "worker-17.cluster.local");
    r.rank = 2;
    seeds[k].len = ccl__register_encode(seeds[k].bytes, FUZZ_MAX, &r);
    k++;
    seeds[k].len = ccl__group_encode(seeds[k].bytes, FUZZ_MAX, &g);
    k++;
    g.world_size = 3;
    seeds[k].len = ccl__group_encode(seeds[k].bytes, FUZZ_MAX, &g);
    k++;
    seeds[k].len = ccl__errmsg_encode(seeds[k].bytes, FUZZ_MAX, 9, "op aborted");
    k++;
    seeds[k].len = ccl__errmsg_encode(seeds[k].bytes, FUZZ_MAX, 15, "");
    k++;
    return k;
}

/* Applies one random damage to buf (logical length *len, capacity
 * FUZZ_MAX). */
static void mutate_once(uint8_t *buf, size_t *len)
{
    size_t pos;

    switch (harness_rng_below(&rng, 6)) {
    case 0: /* flip a bit */
    case 1:
        if (*len) {
            pos = harness_rng_below(&rng, *len);
            buf[pos] ^= (uint8_t)(1u << harness_rng_below(&rng, 8));
        }
        break;
    case 2: /* overwrite a byte, biased to boundary values */
        if (*len) {
            static const uint8_t pick[] = {0x00, 0x01, 0x7f, 0x80, 0xff, 0x20};
            pos = harness_rng_below(&rng, *len);
            buf[pos] = harness_rng_below(&rng, 2)
                           ? (uint8_t)harness_rng_next(&rng)
                           : pick[harness_rng_below(&rng, ARRAY_LEN(pick))];
        }
        break;
    case 3: /* truncate */
        *len = harness_rng_below(&rng, *len + 1);
        break;
    case 4: /* extend with random bytes */
    {
        size_t add = 1 + harness_rng_below(&rng, 16), i;
        if (*len + add > FUZZ_MAX)
            add = FUZZ_MAX - *len;
        for (i = 0; i < add; i++)
            buf[*len + i] = (uint8_t)harness_rng_next(&rng);
        *len += add;
        break;
    }
    default: /* shorten or lengthen by one (off-by-one length bugs) */
        if (harness_rng_below(&rng, 2) && *len)
            (*len)--;
        else if (*len < FUZZ_MAX)
            buf[(*len)++] = 0;
        break;
    }
}

/* Hands len bytes to every decoder, from a heap copy of exactly that size
 * (so a read past the end trips AddressSanitizer). */
static void fuzz_all(const uint8_t *bytes, size_t len, fuzz_stats *st)
{
    uint8_t *in = harness_exact_copy(bytes, len);
    fuzz_hello(in, len, st);
    fuzz_hdr(in, len, st);
    fuzz_register(in, len, st);
    fuzz_group(in, len, st);
    fuzz_errmsg(in, len, st);
    free(in);
}

static void test_mutations(void)
{
    fuzz_seed seeds[16];
    fuzz_stats st;
    size_t nseeds = build_seeds(seeds), s;
    long iter;
    int k;

    memset(&st, 0, sizeof st);
    for (s = 0; s < nseeds; s++)
        PASS(seeds[s].len > 0);

    for (iter = 0; iter < FUZZ_ITERS; iter++) {
        uint8_t work[FUZZ_MAX];
        const fuzz_seed *seed = &seeds[harness_rng_below(&rng, nseeds)];
        size_t len = seed->len;
        int m, nmut = 1 + (int)harness_rng_below(&rng, 4);

        memcpy(work, seed->bytes, len);
        /* One iteration in eight runs the seed undamaged, so acceptance
         * paths (and re-encoding) get exercised as well. */
        if (harness_rng_below(&rng, 8) != 0)
            for (m = 0; m < nmut; m++)
                mutate_once(work, &len);
        fuzz_all(work, len, &st);
    }

    PASS(st.violations == 0);
    /* Both outcomes must have happened for every decoder, or the loop
     * proved little. */
    for (k = 0; k < 5; k++)
        PASS(st.ok[k] > 0 && st.bad[k] > 0);
    printf("mutation loop: %d iterations; accepted/rejected hello %ld/%ld, "
           "hdr %ld/%ld, register %ld/%ld, group %ld/%ld, errmsg %ld/%ld\n",
           FUZZ_ITERS, st.ok[0], st.bad[0], st.ok[1], st.bad[1], st.ok[2],
           st.bad[2], st.ok[3], st.bad[3], st.ok[4], st.bad[4]);
}

/* Fully random inputs of every small length, not derived from seeds. */
static void test_random_noise(void)
{
    fuzz_stats st;
    int iter;

    memset(&st, 0, sizeof st);
    for (iter = 0; iter < 20000; iter++) {
        uint8_t work[160];
        size_t len = harness_rng_below(&rng, sizeof work + 1);

        harness_rng_fill(&rng, work, len);
        fuzz_all(work, len, &st);
    }
    PASS(st.violations == 0);
}

static void test_rejoin(void)
{
    ccl__register_msg m, d;
    uint8_t buf[128];
    uint32_t e = 0;
    memset(&m, 0, sizeof m);
    m.world_size = 4;
    m.rank = 2;
    m.listen_port = 4000;
    m.conns_per_peer = 2;
    memcpy(m.host, "10.1.2.3", 9);
    size_t n = ccl__rejoin_encode(buf, sizeof buf, 9, &m);
    PASS(n > 4);
    PASS(ccl__rejoin_decode(buf, n, &e, &d) == 0 && e == 9 && d.rank == 2 &&
         d.world_size == 4 && strcmp(d.host, "10.1.2.3") == 0);
    for (size_t len = 0; len < n; len++)
        PASS(ccl__rejoin_decode(buf, len, &e, &d) == CCL_ERR_PROTOCOL);
    PASS(ccl__rejoin_encode(buf, sizeof buf, 0, &m) == 0); /* epoch 0 */
    /* Rank -1 ("any") is refused both ways: the encoder keeps the
     * decoder's rule, and bytes that say so anyway do not decode. */
    m.rank = -1;
    PASS(ccl__rejoin_encode(buf, sizeof buf, 9, &m) == 0);
    m.rank = 2;
    n = ccl__rejoin_encode(buf, sizeof buf, 9, &m);
    PASS(n > 8);
    memset(buf + 8, 0xff, 4); /* the rank field of the REGISTER part */
    PASS(ccl__rejoin_decode(buf, n, &e, &d) == CCL_ERR_PROTOCOL);
}

static void test_reform(void)
{
    static ccl__reform_msg m, d;
    uint8_t buf[12 + 4 * 8];
    m.epoch = 7;
    m.wait_ms = 5000;
    m.nlost = 3;
    m.lost[0] = 1;
    m.lost[1] = 4;
    m.lost[2] = 9;
    m.expel[1] = 1;
    size_t n = ccl__reform_encode(buf, sizeof buf, &m);
    PASS(n == 24);
    PASS(ccl__reform_decode(buf, n, &d) == 0);
    PASS(d.epoch == 7 && d.wait_ms == 5000 && d.nlost == 3 && d.lost[2] == 9);
    PASS(d.lost[1] == 4 && d.expel[1] == 1 && d.expel[0] == 0 && d.expel[2] == 0);
    PASS(buf[0] == 7 && buf[1] == 0 && buf[8] == 3 && buf[12] == 1);
    PASS(ccl__get_u32(buf + 16) == (4u | CCL_REFORM_EXPEL)); /* bit 31 */
    for (size_t len = 0; len < n; len++)
        PASS(ccl__reform_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    PASS(ccl__reform_decode(buf, n + 1, &d) == CCL_ERR_PROTOCOL);
    buf[16] = 1; /* not sorted: 1, 1, 9 */
    PASS(ccl__reform_decode(buf, n, &d) == CCL_ERR_PROTOCOL);
    buf[16] = 4;
    ccl__put_u32(buf + 8, UINT32_MAX); /* count overflow */
    PASS(ccl__reform_decode(buf, n, &d) == CCL_ERR_PROTOCOL);
    PASS(ccl__reform_encode(buf, 10, &m) == 0);
}

int main(void)
{
    test_le_helpers();
    test_reform();
    test_rejoin();
    test_hello_round_trip();
    test_hello_bytes();
    test_hello_rejects();
    test_hdr_round_trip();
    test_hdr_bytes();
    test_hdr_rejects_type_and_flags();
    test_hdr_rejects_data();
    test_hdr_rejects_lengths();
    test_hdr_ignores_non_data_fields();
    test_register_round_trip();
    test_register_bytes();
    test_register_rejects();
    test_register_encode_refuses();
    test_group_round_trip();
    test_group_bytes();
    test_group_peek();
    test_group_rejects();
    test_group_encode_refuses();
    test_errmsg_round_trip();
    test_errmsg_bytes();
    test_errmsg_rejects();
    test_errmsg_sanitizes();
    test_mutations();
    test_random_noise();
    return HARNESS_DONE("test_wire");
}
