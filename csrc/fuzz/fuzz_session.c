/*
 * fuzz_session.c - libFuzzer harness for whole sessions of untrusted bytes:
 * the handshake (HELLO prefix, HELLO, policy, proof) followed by a sequence
 * of frames, read the way the master and a peer read them.
 *
 * Build and run: `make -C csrc fuzz` (builds both harnesses).
 *
 * The first input byte picks who listens:
 *   0: the master, reading a peer's control link (REGISTER, REJOIN, REFORM,
 *      HEARTBEAT; anything else ends the session);
 *   1: a peer, reading the master's control link (GROUP, REJECT, PENDING,
 *      NOCHANGE, HEARTBEAT);
 *   2: a peer, reading another peer's mesh connection (DATA, ABORT,
 *      HEARTBEAT, BYE, DONE).
 * The second byte picks whether the listener holds a key (bit 0) and
 * whether the other end is on loopback (bit 1).  The rest is the byte
 * stream the other end sent.  The listener's own HELLO is fixed, so a
 * proof can never be right by chance, and a keyed session ends at the
 * proof: exactly what an attacker without the key can reach.  Every step
 * checks the invariants its caller relies on and aborts on a violation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "ccl.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        abort();
}

typedef struct stream {
    const uint8_t *p;
    size_t left;
} stream;

/* Copies the next n bytes into a heap buffer of exactly n bytes (so ASan
 * sees any overread), or returns NULL when the stream is shorter. */
static uint8_t *take(stream *s, size_t n)
{
    if (s->left < n)
        return NULL;
    uint8_t *b = malloc(n ? n : 1);
    check(b != NULL);
    memcpy(b, s->p, n);
    s->p += n;
    s->left -= n;
    return b;
}

static const int allowed[3][8] = {
    {CCL_FT_REGISTER, CCL_FT_REJOIN, CCL_FT_REFORM, CCL_FT_HEARTBEAT, 0},
    {CCL_FT_GROUP, CCL_FT_REJECT, CCL_FT_PENDING, CCL_FT_NOCHANGE,
     CCL_FT_HEARTBEAT, 0},
    {CCL_FT_DATA, CCL_FT_ABORT, CCL_FT_HEARTBEAT, CCL_FT_BYE, CCL_FT_DONE,
     CCL_FT_QUERY, CCL_FT_CONFIRM, 0},
};

/* The payload parser each listener runs for a frame type.  Returns 0 if
 * the payload is acceptable. */
static int parse_payload(int type, const uint8_t *in, size_t len)
{
    int rc = 0;
    switch (type) {
    case CCL_FT_REGISTER: {
        ccl__register_msg m;
        rc = ccl__register_decode(in, len, &m);
        if (!rc)
            check(m.world_size >= 1 && m.world_size <= CCL_MAX_WORLD &&
                  strlen(m.host) >= 1 && strlen(m.host) <= CCL_MAX_HOST);
        break;
    }
    case CCL_FT_REJOIN: {
        ccl__register_msg m;
        uint32_t epoch;
        rc = ccl__rejoin_decode(in, len, &epoch, &m);
        if (!rc)
            check(m.rank >= 0 && (uint32_t)m.rank < m.world_size);
        break;
    }
    case CCL_FT_REFORM: {
        ccl__reform_msg *m = malloc(sizeof *m);
        check(m != NULL);
        rc = ccl__reform_decode(in, len, m);
        if (!rc) {
            check(m->nlost <= CCL_MAX_WORLD);
            for (uint32_t i = 0; i < m->nlost; i++)
                check(m->lost[i] < CCL_MAX_WORLD);
        }
        free(m);
        break;
    }
    case CCL_FT_GROUP: {
        /* A peer sizes the member table from the peek, then decodes. */
        uint32_t world = 0;
        rc = ccl__group_peek(in, len, &world);
        if (rc)
            break;
        check(world >= 1 && world <= CCL_MAX_WORLD);
        ccl__group_msg g;
        g.members = calloc(world, sizeof *g.members);
        check(g.members != NULL);
        rc = ccl__group_decode(in, len, &g);
        if (!rc)
            check(g.world_size == world && g.your_rank < world);
        free(g.members);
        break;
    }
    case CCL_FT_REJECT:
    case CCL_FT_ABORT: {
        int code = 0;
        char msg[CCL_MAX_ERRMSG + 1];
        rc = ccl__errmsg_decode(in, len, &code, msg);
        if (!rc)
            check(strlen(msg) <= CCL_MAX_ERRMSG);
        break;
    }
    default:
        break; /* DATA payloads are bytes of the op; checked by header */
    }
    return rc;
}

static void run_frames(stream *s, int who)
{
    for (int frames = 0; frames < 64; frames++) {
        uint8_t *hb = take(s, CCL_HDR_LEN);
        if (!hb)
            return;
        ccl__hdr h;
        int rc = ccl__hdr_decode(hb, &h);
        free(hb);
        if (rc)
            return; /* the listener closes the connection */
        int ok = 0;
        for (int i = 0; allowed[who][i]; i++)
            ok |= allowed[who][i] == h.type;
        if (!ok)
            return;
        /* The cap is checked before anything is allocated or read. */
        check(h.length <= (h.type == CCL_FT_DATA ? CCL_MAX_DATA_PAYLOAD
                                                 : CCL_MAX_CTRL_PAYLOAD));
        if (h.type == CCL_FT_DATA)
            check(h.offset <= h.total && h.total - h.offset >= h.length);
        uint8_t *payload = take(s, h.length);
        if (!payload)
            return; /* truncated: the listener waits, then times out */
        rc = parse_payload(h.type, payload, h.length);
        free(payload);
        if (rc)
            return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int who = data[0] % 3;
    int have_key = data[1] & 1, loopback = (data[1] >> 1) & 1;
    stream s = {data + 2, size - 2};
    static const uint8_t key_bytes[32] = "fuzzing key, 32 bytes long.....";
    ccl__key key;
    char err[400];
    check(ccl__key_set(&key, have_key ? key_bytes : NULL, have_key ? 32 : 0, err,
                       sizeof err) == CCL_OK);

    ccl__hello mine;
    memset(&mine, 0, sizeof mine);
    mine.version = CCL_PROTOCOL_VERSION;
    mine.role = who == 0 ? CCL_ROLE_MASTER
                         : who == 1 ? CCL_ROLE_PEER_TO_MASTER : CCL_ROLE_PEER_TO_PEER;
    mine.flags = have_key ? CCL_HELLO_AUTH : 0;
    memset(mine.nonce, 0x5a, sizeof mine.nonce);
    uint8_t mine_b[CCL_HELLO_LEN];
    ccl__hello_encode(mine_b, &mine);

    /* The version prefix first, as every reader does. */
    uint8_t *prefix = take(&s, CCL_HELLO_PREFIX_LEN);
    if (!prefix)
        return 0;
    uint16_t version = 0;
    int rc = ccl__hello_check_prefix(prefix, &version);
    check(rc == 0 || rc == CCL_ERR_PROTOCOL || rc == CCL_ERR_VERSION);
    if (rc == CCL_ERR_VERSION)
        check(version != CCL_PROTOCOL_VERSION);
    if (rc) {
        free(prefix);
        return 0;
    }
    uint8_t *rest = take(&s, CCL_HELLO_LEN - CCL_HELLO_PREFIX_LEN);
    if (!rest) {
        free(prefix);
        return 0;
    }
    uint8_t *theirs_b = malloc(CCL_HELLO_LEN);
    check(theirs_b != NULL);
    memcpy(theirs_b, prefix, CCL_HELLO_PREFIX_LEN);
    memcpy(theirs_b + CCL_HELLO_PREFIX_LEN, rest, CCL_HELLO_LEN - CCL_HELLO_PREFIX_LEN);
    free(prefix);
    free(rest);
    ccl__hello theirs;
    rc = ccl__hello_decode(theirs_b, &theirs);
    if (rc == 0)
        rc = ccl__auth_policy(have_key, &mine, &theirs, loopback, 0, "fuzz", err,
                              sizeof err);
    if (rc == 0 && have_key) {
        /* The other end is the connector in sessions 0 and 2. */
        uint8_t *proof = take(&s, CCL_PROOF_LEN);
        if (proof) {
            const uint8_t *hc = who == 1 ? mine_b : theirs_b;
            const uint8_t *ha = who == 1 ? theirs_b : mine_b;
            int side = who == 1 ? CCL_SIDE_ACCEPTOR : CCL_SIDE_CONNECTOR;
            /* Forging HMAC-SHA256 is out of a fuzzer's reach. */
            check(!ccl__auth_verify(&key, side, hc, ha, proof));
            free(proof);
        }
        rc = CCL_ERR_AUTH;
    }
    free(theirs_b);
    if (rc == 0) {
        check(!have_key && (loopback || 0));
        run_frames(&s, who);
    }
    ccl__key_wipe(&key);
    return 0;
}
