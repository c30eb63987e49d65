/*
 * wire.c - the wire codec declared in wire.h.
 * over 600 lines: one encoder and one checking decoder per frame type,
 * kept together so the caps and layouts are read in one place.
 *
 * Everything here is a pure function over byte arrays.  Encoders write
 * fields one at a time through the little-endian helpers, so the layout on
 * the wire never depends on the host's byte order, struct padding or
 * alignment.  Decoders read through a bounds-checked cursor, so no input,
 * however malformed, can make them read past the end of the buffer they
 * were given; every rule they enforce is listed in docs/protocol.md.
 */
#include "wire.h"

#include <string.h>

#include "ccl.h"

/* ccl.h documents conns_per_peer as 1..64; the wire enforces the same
 * range so a peer cannot make the other end open an unbounded pool. */
#define WIRE_MAX_CONNS 64

/* Fixed parts of the control payloads, in bytes (see docs/protocol.md). */
#define REGISTER_FIXED_LEN 29 /* u32 + u32 + u16 + u16 + 16 + u8 */
#define GROUP_FIXED_LEN 14    /* u32 epoch, u32 world_size, u32 rank, u16 K */
#define MEMBER_FIXED_LEN 19   /* u16 port, 16 uuid, u8 host_len */
#define MEMBER_MIN_LEN (MEMBER_FIXED_LEN + 1) /* a host has >= 1 byte */
#define RING_FIXED_LEN 3      /* u8 kind, u16 count, then count x u16 rank */
#define TUNE_LEN 33           /* u8 kind, u64, u64, u64, u32, u32 */
/* The kinds of GROUP's optional sections after the members, in the order
 * they must come (docs/protocol.md, "GROUP"). */
#define GROUP_SEC_RING 1
#define GROUP_SEC_TUNE 2
#define ERRMSG_FIXED_LEN 6    /* u32 code, u16 n */
#define HELLO_NONCE_OFF 40
#define HELLO_RESERVED_OFF 56

/* ------------------------------------------------------------------ */
/* Little-endian helpers.  Shifts on unsigned values are defined for every
 * byte order, which is the whole point of not casting structs. */

void ccl__put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

void ccl__put_u32(uint8_t *p, uint32_t v)
{
    ccl__put_u16(p, (uint16_t)(v & 0xffffu));
    ccl__put_u16(p + 2, (uint16_t)(v >> 16));
}

void ccl__put_u64(uint8_t *p, uint64_t v)
{
    ccl__put_u32(p, (uint32_t)(v & 0xffffffffu));
    ccl__put_u32(p + 4, (uint32_t)(v >> 32));
}

uint16_t ccl__get_u16(const uint8_t *p)
{
    return (uint16_t)((uint16_t)p[0] | (uint16_t)((uint16_t)p[1] << 8));
}

uint32_t ccl__get_u32(const uint8_t *p)
{
    return (uint32_t)ccl__get_u16(p) | ((uint32_t)ccl__get_u16(p + 2) << 16);
}

uint64_t ccl__get_u64(const uint8_t *p)
{
    return (uint64_t)ccl__get_u32(p) | ((uint64_t)ccl__get_u32(p + 4) << 32);
}

/* Converting an out-of-range unsigned value to a signed type is
 * implementation-defined in C99, so the two's complement reading of a u32
 * is spelled out arithmetically. */
static int32_t i32_from_u32(uint32_t v)
{
    if (v <= (uint32_t)INT32_MAX)
        return (int32_t)v;
    return (int32_t)(v - 2147483648u) - INT32_MAX - 1;
}

/* ------------------------------------------------------------------ */
/* Bounds-checked reader.  A read that would run past the end marks the
 * cursor bad and yields zeros; callers check `bad` once they are done, so
 * a parse cannot forget a length check and still read out of bounds. */

typedef struct wire_rd {
    const uint8_t *p;
    size_t len;
    size_t pos; /* always <= len */
    int bad;
} wire_rd;

static void rd_init(wire_rd *r, const uint8_t *p, size_t len)
{
    r->p = p;
    r->len = p ? len : 0;
    r->pos = 0;
    r->bad = 0;
}

/* Returns a pointer to the next n bytes and advances, or NULL (and marks
 * the cursor bad) if fewer than n bytes remain. */
static const uint8_t *rd_take(wire_rd *r, size_t n)
{
    const uint8_t *at;

    if (r->bad || r->len - r->pos < n) {
        r->bad = 1;
        return NULL;
    }
    at = r->p + r->pos;
    r->pos += n;
    return at;
}

static uint8_t rd_u8(wire_rd *r)
{
    const uint8_t *at = rd_take(r, 1);
    return at ? at[0] : 0;
}

static uint16_t rd_u16(wire_rd *r)
{
    const uint8_t *at = rd_take(r, 2);
    return at ? ccl__get_u16(at) : 0;
}

static uint32_t rd_u32(wire_rd *r)
{
    const uint8_t *at = rd_take(r, 4);
    return at ? ccl__get_u32(at) : 0;
}

static uint64_t rd_u64(wire_rd *r)
{
    const uint8_t *at = rd_take(r, 8);
    return at ? ccl__get_u64(at) : 0;
}

static void rd_bytes(wire_rd *r, void *dst, size_t n)
{
    const uint8_t *at = rd_take(r, n);
    if (at)
        memcpy(dst, at, n);
    else
        memset(dst, 0, n);
}

/* True once every byte has been consumed and nothing was read past the
 * end: control payloads must not carry trailing bytes. */
static int rd_done(const wire_rd *r)
{
    return !r->bad && r->pos == r->len;
}

/* Writer cursor.  Encoders compute their exact size and check it against
 * the capacity before writing, so the writer itself needs no checks. */

typedef struct wire_wr {
    uint8_t *p;
    size_t pos;
} wire_wr;

static void wr_u8(wire_wr *w, uint8_t v)
{
    w->p[w->pos++] = v;
}

static void wr_u16(wire_wr *w, uint16_t v)
{
    ccl__put_u16(w->p + w->pos, v);
    w->pos += 2;
}

static void wr_u32(wire_wr *w, uint32_t v)
{
    ccl__put_u32(w->p + w->pos, v);
    w->pos += 4;
}

static void wr_u64(wire_wr *w, uint64_t v)
{
    ccl__put_u64(w->p + w->pos, v);
    w->pos += 8;
}

static void wr_bytes(wire_wr *w, const void *src, size_t n)
{
    memcpy(w->p + w->pos, src, n);
    w->pos += n;
}

/* ------------------------------------------------------------------ */
/* Shared validation rules. */

/* Host names travel as printable ASCII without spaces (0x21..0x7e): that
 * keeps them safe to print in error messages and to pass to the resolver. */
static int host_char_ok(uint8_t c)
{
    return c >= 0x21 && c <= 0x7e;
}

static int host_bytes_ok(const uint8_t *p, size_t n)
{
    size_t i;

    if (n < 1 || n > CCL_MAX_HOST)
        return 0;
    for (i = 0; i < n; i++)
        if (!host_char_ok(p[i]))
            return 0;
    return 1;
}

/* Length of a NUL-terminated host held in a CCL_MAX_HOST + 1 array, or 0
 * if it is empty, unterminated within the array, or has a bad byte.  The
 * scan never looks past the array, even if the caller forgot the NUL. */
static size_t host_str_len(const char host[CCL_MAX_HOST + 1])
{
    size_t n = 0;

    while (n <= CCL_MAX_HOST && host[n] != '\0')
        n++;
    if (n > CCL_MAX_HOST)
        return 0;
    return host_bytes_ok((const uint8_t *)host, n) ? n : 0;
}

/* Reads host_len then the host bytes into a NUL-terminated buffer.
 * Returns 1 if the host is valid. */
static int rd_host(wire_rd *r, char host[CCL_MAX_HOST + 1])
{
    size_t n = rd_u8(r);
    const uint8_t *at = rd_take(r, n);

    if (!at || !host_bytes_ok(at, n))
        return 0;
    memcpy(host, at, n);
    host[n] = '\0';
    return 1;
}

static int conns_ok(uint32_t k)
{
    return k >= 1 && k <= WIRE_MAX_CONNS;
}

static int role_ok(uint8_t role)
{
    return role == CCL_ROLE_PEER_TO_MASTER || role == CCL_ROLE_PEER_TO_PEER ||
           role == CCL_ROLE_MASTER;
}

static int all_zero(const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ */
/* HELLO */

void ccl__hello_encode(uint8_t out[CCL_HELLO_LEN], const ccl__hello *h)
{
    memset(out, 0, CCL_HELLO_LEN);
    memcpy(out, CCL_MAGIC, 8);
    ccl__put_u16(out + 8, h->version);
    out[10] = h->role;
    out[11] = h->flags;
    ccl__put_u32(out + 12, h->epoch);
    ccl__put_u32(out + 16, h->rank);
    ccl__put_u32(out + 20, h->conn_index);
    memcpy(out + 24, h->uuid, 16);
    memcpy(out + HELLO_NONCE_OFF, h->nonce, CCL_NONCE_LEN);
    /* [56..64) stays zero: reserved for a later version. */
}

int ccl__hello_check_prefix(const uint8_t in[CCL_HELLO_PREFIX_LEN],
                            uint16_t *version)
{
    *version = 0;
    /* The magic comes first so that a stranger talking to our port (an
     * HTTP client, a port scanner) gets a protocol error, not a version
     * error that would suggest it is an old pyccl. */
    if (memcmp(in, CCL_MAGIC, 8) != 0)
        return CCL_ERR_PROTOCOL;
    *version = ccl__get_u16(in + 8);
    /* Nothing after the version is interpreted when versions differ,
     * because another version may lay those bytes out differently. */
    return *version == CCL_PROTOCOL_VERSION ? 0 : CCL_ERR_VERSION;
}

int ccl__hello_decode(const uint8_t in[CCL_HELLO_LEN], ccl__hello *h)
{
    memset(h, 0, sizeof *h);
    int rc = ccl__hello_check_prefix(in, &h->version);
    if (rc)
        return rc;
    h->role = in[10];
    h->flags = in[11];
    h->epoch = ccl__get_u32(in + 12);
    h->rank = ccl__get_u32(in + 16);
    h->conn_index = ccl__get_u32(in + 20);
    memcpy(h->uuid, in + 24, 16);
    memcpy(h->nonce, in + HELLO_NONCE_OFF, CCL_NONCE_LEN);
    if (!role_ok(h->role))
        return CCL_ERR_PROTOCOL;
    if ((h->flags & ~CCL_HELLO_FLAGS_KNOWN) != 0 || !all_zero(in + HELLO_RESERVED_OFF,
                                   CCL_HELLO_LEN - HELLO_RESERVED_OFF))
        return CCL_ERR_PROTOCOL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Frame header */

const char *ccl__coll_name(int coll)
{
    static const char *const names[] = {
        "unknown", "all_reduce (ring)", "all_reduce (star)", "broadcast",
        "all_gather", "reduce_scatter", "barrier", "send/recv", "gather",
        "scatter", "all_to_all", "all_gather (sizes per rank)",
        "reduce_scatter (sizes per rank)", "reduce", "all_reduce (star, quantized)",
        "all_reduce (ring, quantized)", "all_reduce (direct)",
        "all_reduce (direct, quantized)"};
    return coll >= 1 && coll <= CCL_COLL_LAST ? names[coll] : names[0];
}

const char *ccl__dtype_name(int dtype)
{
    static const char *const names[CCL_DTYPE_COUNT] = {
        "float32", "float64", "float16", "bfloat16", "int8",   "int16",
        "int32",   "int64",   "uint8",   "uint16",   "uint32", "uint64"};
    return dtype >= 0 && dtype < CCL_DTYPE_COUNT ? names[dtype] : "unknown";
}

const char *ccl__redop_name(int redop)
{
    static const char *const names[CCL_REDOP_COUNT] = {
        "sum", "avg", "min", "max", "prod", "band", "bor", "bxor"};
    return redop >= 0 && redop < CCL_REDOP_COUNT ? names[redop] : "unknown";
}

void ccl__hdr_encode(uint8_t out[CCL_HDR_LEN], const ccl__hdr *h)
{
    out[0] = h->type;
    out[1] = h->coll;
    out[2] = h->dtype;
    out[3] = h->redop;
    ccl__put_u32(out + 4, h->epoch);
    ccl__put_u64(out + 8, h->tag);
    ccl__put_u64(out + 16, h->offset);
    ccl__put_u64(out + 24, h->total);
    ccl__put_u32(out + 32, h->length);
    ccl__put_u16(out + 36, h->step);
    ccl__put_u16(out + 38, h->root);
}

void ccl__ctl_hdr_encode(uint8_t out[CCL_HDR_LEN], int type, uint32_t epoch,
                         uint64_t tag, uint32_t length)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.epoch = epoch;
    h.tag = tag;
    h.length = length;
    ccl__hdr_encode(out, &h);
}

/* DATA carries the op's identity so the receiver can catch ranks that
 * disagree; anything outside the known enums cannot belong to a valid op,
 * and the range check guarantees offset + length fits the op's buffer
 * without any addition that could overflow. */
static int data_hdr_ok(const ccl__hdr *h)
{
    if (h->coll < CCL_COLL_ALLREDUCE_RING || h->coll > CCL_COLL_LAST)
        return 0;
    if (h->dtype >= CCL_DTYPE_COUNT || h->redop >= CCL_REDOP_COUNT)
        return 0;
    if (h->length > CCL_MAX_DATA_PAYLOAD)
        return 0;
    if (h->step == CCL_STEP_PROBE && (h->length != 0 || h->offset != 0))
        return 0;
    return h->offset <= h->total && h->length <= h->total - h->offset;
}

/* The largest payload each type may announce, checked before the reader
 * allocates or waits for that many bytes.  Returns 0 for an unknown type
 * (which also has no valid length) through the `known` flag. */
static uint32_t type_max_len(uint8_t type, int *known)
{
    *known = 1;
    switch (type) {
    case CCL_FT_DATA: return CCL_MAX_DATA_PAYLOAD;
    case CCL_FT_ABORT:
    case CCL_FT_REJECT: return ERRMSG_FIXED_LEN + CCL_MAX_ERRMSG;
    case CCL_FT_HEARTBEAT:
    case CCL_FT_BYE:
    case CCL_FT_DONE:
    case CCL_FT_CONFIRM: return 0;
    case CCL_FT_QUERY: return CCL_MAX_WORLD / 8;
    case CCL_FT_REGISTER: return 32 + CCL_MAX_HOST;
    case CCL_FT_GROUP: return CCL_MAX_CTRL_PAYLOAD;
    case CCL_FT_REFORM: return 12 + 4 * CCL_MAX_WORLD;
    case CCL_FT_REJOIN: return 4 + 32 + CCL_MAX_HOST;
    /* CCL_STATS_MAX_LEN of stats_wire.h (not included: stats_wire.c uses
     * this file); test_stats checks that the two agree. */
    case CCL_FT_STATS: return 72 + 28 * 256;
    case CCL_FT_NOCHANGE:
    case CCL_FT_PENDING: return 0;
    default: *known = 0; return 0;
    }
}

int ccl__hdr_decode(const uint8_t in[CCL_HDR_LEN], ccl__hdr *h)
{
    int known;
    uint32_t cap;

    /* Every field is filled before validation so that a caller can name
     * the offending value in its error message. */
    h->type = in[0];
    h->coll = in[1];
    h->dtype = in[2];
    h->redop = in[3];
    h->epoch = ccl__get_u32(in + 4);
    h->tag = ccl__get_u64(in + 8);
    h->offset = ccl__get_u64(in + 16);
    h->total = ccl__get_u64(in + 24);
    h->length = ccl__get_u32(in + 32);
    h->step = ccl__get_u16(in + 36);
    h->root = ccl__get_u16(in + 38);

    cap = type_max_len(h->type, &known);
    if (!known || h->length > cap)
        return CCL_ERR_PROTOCOL;
    if (h->type == CCL_FT_DATA ? h->root >= CCL_MAX_WORLD : h->root != 0)
        return CCL_ERR_PROTOCOL;
    if (h->type == CCL_FT_DATA && !data_hdr_ok(h))
        return CCL_ERR_PROTOCOL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* REGISTER */

/* A register message is valid if the decoder would accept its encoding;
 * the encoder applies the same rules so we never send what a correct peer
 * must reject. */
static int register_fields_ok(uint32_t world_size, int32_t rank,
                              uint16_t port, uint16_t conns)
{
    if (world_size == 0 || world_size > CCL_MAX_WORLD)
        return 0;
    if (rank < -1 || (rank >= 0 && (uint32_t)rank >= world_size))
        return 0;
    return port != 0 && conns_ok(conns);
}

size_t ccl__register_encode(uint8_t *out, size_t cap, const ccl__register_msg *m)
{
    size_t host_len = host_str_len(m->host);
    size_t need = REGISTER_FIXED_LEN + host_len;
    wire_wr w;

    if (host_len == 0 ||
        !register_fields_ok(m->world_size, m->rank, m->listen_port,
                            m->conns_per_peer))
        return 0;
    if (!out || cap < need)
        return 0;
    w.p = out;
    w.pos = 0;
    wr_u32(&w, m->world_size);
    /* Converting a negative int32 to uint32 is defined (modulo 2^32),
     * which yields the two's complement bytes on every platform. */
    wr_u32(&w, (uint32_t)m->rank);
    wr_u16(&w, m->listen_port);
    wr_u16(&w, m->conns_per_peer);
    wr_bytes(&w, m->uuid, 16);
    wr_u8(&w, (uint8_t)host_len);
    wr_bytes(&w, m->host, host_len);
    return w.pos;
}

int ccl__register_decode(const uint8_t *in, size_t len, ccl__register_msg *m)
{
    ccl__register_msg tmp;
    wire_rd r;

    /* Parse into a local copy so *m is untouched unless all rules hold. */
    memset(&tmp, 0, sizeof tmp);
    rd_init(&r, in, len);
    tmp.world_size = rd_u32(&r);
    tmp.rank = i32_from_u32(rd_u32(&r));
    tmp.listen_port = rd_u16(&r);
    tmp.conns_per_peer = rd_u16(&r);
    rd_bytes(&r, tmp.uuid, 16);
    if (!rd_host(&r, tmp.host) || !rd_done(&r))
        return CCL_ERR_PROTOCOL;
    if (!register_fields_ok(tmp.world_size, tmp.rank, tmp.listen_port,
                            tmp.conns_per_peer))
        return CCL_ERR_PROTOCOL;
    *m = tmp;
    return 0;
}

/* ------------------------------------------------------------------ */
/* GROUP */

static int group_fields_ok(uint32_t world_size, uint32_t your_rank,
                           uint32_t conns)
{
    return world_size >= 1 && world_size <= CCL_MAX_WORLD &&
           your_rank < world_size && conns_ok(conns);
}

/* Whether the members' ring positions are a permutation of the ranks. */
static int ring_ok(const ccl__group_msg *m)
{
    uint8_t seen[CCL_MAX_WORLD];
    memset(seen, 0, m->world_size);
    for (uint32_t i = 0; i < m->world_size; i++) {
        uint32_t p = m->members[i].ring_pos;
        if (p >= m->world_size || seen[p])
            return 0;
        seen[p] = 1;
    }
    return 1;
}

/* A tuning's thresholds: at least 1 byte, at most CCL_TUNE_MAX_BYTES. */
static int tune_ok(const ccl__tuning *t)
{
    return t->allreduce_star_max >= 1 && t->allreduce_star_max <= CCL_TUNE_MAX_BYTES &&
           t->allreduce_direct_max <= CCL_TUNE_MAX_BYTES &&
           t->bcast_direct_max >= 1 && t->bcast_direct_max <= CCL_TUNE_MAX_BYTES;
}

/* Exact encoded size of m, or 0 if any field breaks a decoder rule. */
static size_t group_size(const ccl__group_msg *m)
{
    size_t need = GROUP_FIXED_LEN;
    uint32_t i;

    if (!group_fields_ok(m->world_size, m->your_rank, m->conns_per_peer) ||
        !m->members)
        return 0;
    for (i = 0; i < m->world_size; i++) {
        size_t host_len = host_str_len(m->members[i].host);
        if (host_len == 0 || m->members[i].port == 0)
            return 0;
        need += MEMBER_FIXED_LEN + host_len;
    }
    if (m->has_ring) {
        if (!ring_ok(m))
            return 0;
        need += RING_FIXED_LEN + 2 * (size_t)m->world_size;
    }
    if (m->has_tune) {
        if (!tune_ok(&m->tune))
            return 0;
        need += TUNE_LEN;
    }
    /* Unreachable with today's caps (4096 * 83 + 14 bytes), but it keeps
     * the encoder honest should the caps ever change. */
    return need <= CCL_MAX_CTRL_PAYLOAD ? need : 0;
}

size_t ccl__group_encode(uint8_t *out, size_t cap, const ccl__group_msg *m)
{
    size_t need = group_size(m);
    wire_wr w;
    uint32_t i;

    if (need == 0 || !out || cap < need)
        return 0;
    w.p = out;
    w.pos = 0;
    wr_u32(&w, m->epoch);
    wr_u32(&w, m->world_size);
    wr_u32(&w, m->your_rank);
    wr_u16(&w, m->conns_per_peer);
    for (i = 0; i < m->world_size; i++) {
        const ccl__member *mb = &m->members[i];
        size_t host_len = host_str_len(mb->host);
        wr_u16(&w, mb->port);
        wr_bytes(&w, mb->uuid, 16);
        wr_u8(&w, (uint8_t)host_len);
        wr_bytes(&w, mb->host, host_len);
    }
    if (m->has_ring) {
        /* The ring order: the rank at each position, position 0 first. */
        uint16_t order[CCL_MAX_WORLD];
        for (i = 0; i < m->world_size; i++)
            order[m->members[i].ring_pos] = (uint16_t)i;
        wr_u8(&w, GROUP_SEC_RING);
        wr_u16(&w, (uint16_t)m->world_size);
        for (i = 0; i < m->world_size; i++)
            wr_u16(&w, order[i]);
    }
    if (m->has_tune) {
        wr_u8(&w, GROUP_SEC_TUNE);
        wr_u64(&w, m->tune.allreduce_star_max);
        wr_u64(&w, m->tune.allreduce_direct_max);
        wr_u64(&w, m->tune.bcast_direct_max);
        wr_u32(&w, m->tune.latency_us);
        wr_u32(&w, m->tune.rate_kbs);
    }
    return w.pos;
}

int ccl__group_peek(const uint8_t *in, size_t len, uint32_t *world_size)
{
    uint32_t ws;

    if (!in || len < GROUP_FIXED_LEN)
        return CCL_ERR_PROTOCOL;
    ws = ccl__get_u32(in + 4);
    if (ws < 1 || ws > CCL_MAX_WORLD)
        return CCL_ERR_PROTOCOL;
    /* Every member takes at least MEMBER_MIN_LEN bytes, so a count the
     * payload cannot possibly hold is refused before the caller allocates
     * for it.  ws <= 4096 keeps the product far from overflowing. */
    if ((len - GROUP_FIXED_LEN) / MEMBER_MIN_LEN < ws)
        return CCL_ERR_PROTOCOL;
    *world_size = ws;
    return 0;
}

static int rd_member(wire_rd *r, ccl__member *mb)
{
    mb->port = rd_u16(r);
    rd_bytes(r, mb->uuid, 16);
    if (!rd_host(r, mb->host))
        return 0;
    return mb->port != 0;
}

int ccl__group_decode(const uint8_t *in, size_t len, ccl__group_msg *m)
{
    uint32_t ws, epoch, your_rank, conns, i;
    wire_rd r;

    /* The peek repeats the allocation-size checks, so decode is safe even
     * if the caller skipped it; the members array must still hold the
     * peeked number of entries. */
    if (ccl__group_peek(in, len, &ws) != 0)
        return CCL_ERR_PROTOCOL;
    if (!m->members)
        return CCL_ERR_INVALID_ARG;
    rd_init(&r, in, len);
    epoch = rd_u32(&r);
    (void)rd_u32(&r); /* world_size, already read by the peek */
    your_rank = rd_u32(&r);
    conns = rd_u16(&r);
    if (!group_fields_ok(ws, your_rank, conns))
        return CCL_ERR_PROTOCOL;
    for (i = 0; i < ws; i++) {
        if (!rd_member(&r, &m->members[i]))
            return CCL_ERR_PROTOCOL;
        m->members[i].ring_pos = i;
    }
    /* The optional sections, each at most once and in increasing kind
     * order: the ring order (exactly a u16 count equal to world_size and
     * that many distinct ranks) and the tuning. */
    m->has_ring = 0;
    m->has_tune = 0;
    ccl__tune_default(&m->tune);
    uint32_t last_kind = 0;
    while (!rd_done(&r) && !r.bad) {
        uint32_t kind = rd_u8(&r);
        if (kind <= last_kind)
            return CCL_ERR_PROTOCOL;
        last_kind = kind;
        if (kind == GROUP_SEC_RING) {
            uint8_t seen[CCL_MAX_WORLD];
            memset(seen, 0, ws);
            if (rd_u16(&r) != ws)
                return CCL_ERR_PROTOCOL;
            for (i = 0; i < ws; i++) {
                uint32_t rank = rd_u16(&r);
                if (r.bad || rank >= ws || seen[rank])
                    return CCL_ERR_PROTOCOL;
                seen[rank] = 1;
                m->members[rank].ring_pos = i;
            }
            m->has_ring = 1;
        } else if (kind == GROUP_SEC_TUNE) {
            m->tune.allreduce_star_max = rd_u64(&r);
            m->tune.allreduce_direct_max = rd_u64(&r);
            m->tune.bcast_direct_max = rd_u64(&r);
            m->tune.latency_us = rd_u32(&r);
            m->tune.rate_kbs = rd_u32(&r);
            if (r.bad || !tune_ok(&m->tune))
                return CCL_ERR_PROTOCOL;
            m->has_tune = 1;
        } else {
            return CCL_ERR_PROTOCOL;
        }
    }
    if (!rd_done(&r))
        return CCL_ERR_PROTOCOL;
    m->epoch = epoch;
    m->world_size = ws;
    m->your_rank = your_rank;
    m->conns_per_peer = (uint16_t)conns;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Error message (ABORT, REJECT) */

size_t ccl__errmsg_encode(uint8_t *out, size_t cap, int code, const char *msg)
{
    size_t n = 0;
    wire_wr w;

    /* Long texts are cut rather than refused: an abort must always be
     * sendable, and the code carries the meaning anyway. */
    if (msg)
        while (n < CCL_MAX_ERRMSG && msg[n] != '\0')
            n++;
    if (!out || cap < ERRMSG_FIXED_LEN + n)
        return 0;
    w.p = out;
    w.pos = 0;
    /* int -> uint32_t is defined modulo 2^32. */
    wr_u32(&w, (uint32_t)code);
    wr_u16(&w, (uint16_t)n);
    wr_bytes(&w, msg ? msg : "", n);
    return w.pos;
}

/* The text ends up in logs and exception messages, so only printable
 * ASCII (space included) survives; anything else becomes '?'. */
static char msg_char(uint8_t c)
{
    return (c >= 0x20 && c <= 0x7e) ? (char)c : '?';
}

int ccl__errmsg_decode(const uint8_t *in, size_t len, int *code,
                       char msg[CCL_MAX_ERRMSG + 1])
{
    wire_rd r;
    uint32_t raw;
    size_t n, i;
    const uint8_t *text;

    rd_init(&r, in, len);
    raw = rd_u32(&r);
    n = rd_u16(&r);
    if (r.bad || n > CCL_MAX_ERRMSG)
        return CCL_ERR_PROTOCOL;
    text = rd_take(&r, n);
    if (!text || !rd_done(&r))
        return CCL_ERR_PROTOCOL;
    for (i = 0; i < n; i++)
        msg[i] = msg_char(text[i]);
    msg[n] = '\0';
    *code = (int)i32_from_u32(raw);
    return 0;
}

/* ------------------------------------------------------------------ */
/* REFORM */

size_t ccl__reform_encode(uint8_t *out, size_t cap, const ccl__reform_msg *m)
{
    if (m->nlost > CCL_MAX_WORLD)
        return 0;
    size_t need = 12 + 4 * (size_t)m->nlost;
    if (cap < need)
        return 0;
    ccl__put_u32(out, m->epoch);
    ccl__put_u32(out + 4, m->wait_ms);
    ccl__put_u32(out + 8, m->nlost);
    for (uint32_t i = 0; i < m->nlost; i++) {
        /* The decoder's rule: sorted by rank, ranks distinct. */
        if (m->lost[i] >= CCL_MAX_WORLD || (i > 0 && m->lost[i] <= m->lost[i - 1]))
            return 0;
        ccl__put_u32(out + 12 + 4 * i,
                     m->lost[i] | (m->expel[i] ? CCL_REFORM_EXPEL : 0));
    }
    return need;
}

int ccl__reform_decode(const uint8_t *in, size_t len, ccl__reform_msg *m)
{
    if (len < 12)
        return CCL_ERR_PROTOCOL;
    uint32_t n = ccl__get_u32(in + 8);
    if (n > CCL_MAX_WORLD || len != 12 + 4 * (size_t)n)
        return CCL_ERR_PROTOCOL;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t e = ccl__get_u32(in + 12 + 4 * i);
        uint32_t r = e & ~CCL_REFORM_EXPEL;
        /* Sorted and distinct keeps the master's bookkeeping linear. */
        if (r >= CCL_MAX_WORLD || (i > 0 && r <= m->lost[i - 1]))
            return CCL_ERR_PROTOCOL;
        m->lost[i] = r;
        m->expel[i] = (e & CCL_REFORM_EXPEL) != 0;
    }
    m->epoch = ccl__get_u32(in);
    m->wait_ms = ccl__get_u32(in + 4);
    m->nlost = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* REJOIN */

size_t ccl__rejoin_encode(uint8_t *out, size_t cap, uint32_t epoch,
                          const ccl__register_msg *m)
{
    /* A member comes back with its rank: the decoder refuses "any". */
    if (cap < 4 || epoch == 0 || m->rank < 0)
        return 0;
    size_t n = ccl__register_encode(out + 4, cap - 4, m);
    if (!n)
        return 0;
    ccl__put_u32(out, epoch);
    return 4 + n;
}

int ccl__rejoin_decode(const uint8_t *in, size_t len, uint32_t *epoch,
                       ccl__register_msg *m)
{
    if (len < 4)
        return CCL_ERR_PROTOCOL;
    uint32_t e = ccl__get_u32(in);
    /* A member has a rank: "any" makes no sense when coming back. */
    if (e == 0 || ccl__register_decode(in + 4, len - 4, m) != 0 || m->rank < 0)
        return CCL_ERR_PROTOCOL;
    *epoch = e;
    return 0;
}
