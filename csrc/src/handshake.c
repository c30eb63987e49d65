/*
 * handshake.c - the handshake of handshake.h: the state machine, and the
 * blocking driver the peers use (the master drives the same machine from
 * its event loop).
 *
 * The steps, each a state: read the other end's HELLO prefix (magic and
 * version, so a peer of another version is named rather than waited
 * for), then the rest of its HELLO, apply the policy, then with a key the
 * proofs: the connector queues its proof and reads the acceptor's answer;
 * the acceptor reads the connector's proof and answers with its own, or
 * with zeros when the proof was wrong.
 */
#include "handshake.h"
#include "log.h"
#include "sha256.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ccl.h"
#include "sock.h"

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

void ccl__hello_fill(ccl__hello *h, int role, uint32_t epoch, uint32_t rank,
                     uint32_t idx, const uint8_t uuid[16])
{
    memset(h, 0, sizeof *h);
    h->version = CCL_PROTOCOL_VERSION;
    h->role = (uint8_t)role;
    h->epoch = epoch;
    h->rank = rank;
    h->conn_index = idx;
    memcpy(h->uuid, uuid, 16);
}

/* ---- the machine ---- */

enum hs_state { HS_HELLO_PREFIX, HS_HELLO_REST, HS_PROOF, HS_DONE, HS_FAILED };

/* Records a failure.  `named` messages read "handshake with <who>: <cause>"
 * and remember where the cause starts; the others name `who` their own
 * way (or not at all). */
static int hs_fail(ccl__hsm *s, int rc, int named, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int hs_fail(ccl__hsm *s, int rc, int named, const char *fmt, ...)
{
    int n = 0;
    if (named)
        n = snprintf(s->err, sizeof s->err, "handshake with %s: ", s->who);
    if (n < 0 || (size_t)n >= sizeof s->err)
        n = 0;
    s->cause_at = (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err + n, sizeof s->err - (size_t)n, fmt, ap);
    va_end(ap);
    s->rc = rc;
    s->state = HS_FAILED;
    return rc;
}

static void hs_queue(ccl__hsm *s, const uint8_t *p, size_t n)
{
    /* Only a HELLO and one proof are ever queued: they fit. */
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
}

int ccl__hsm_start(ccl__hsm *s, int side, const ccl__hello *mine,
                   const ccl__key *key, int allow_insecure, int loopback,
                   int expect_role, const char *who)
{
    memset(s, 0, sizeof *s);
    s->side = side;
    s->key = key;
    s->allow_insecure = allow_insecure;
    s->loopback = loopback;
    s->expect_role = expect_role;
    s->who = who ? who : "the other end";
    s->me = *mine;
    if (key->len)
        s->me.flags |= CCL_HELLO_AUTH;
    else
        s->me.flags &= (uint8_t)~CCL_HELLO_AUTH;
    if (ccl__random_bytes(s->me.nonce, sizeof s->me.nonce))
        return hs_fail(s, CCL_ERR_IO, 1, "no random bytes for a nonce");
    ccl__hello_encode(s->mine, &s->me);
    hs_queue(s, s->mine, CCL_HELLO_LEN);
    s->state = HS_HELLO_PREFIX;
    return CCL_OK;
}

size_t ccl__hsm_to_write(const ccl__hsm *s, const uint8_t **p)
{
    *p = s->out + s->out_done;
    return s->out_len - s->out_done;
}

void ccl__hsm_wrote(ccl__hsm *s, size_t n)
{
    if (n > s->out_len - s->out_done)
        n = s->out_len - s->out_done;
    s->out_done += n;
}

size_t ccl__hsm_to_read(ccl__hsm *s, uint8_t **p)
{
    switch (s->state) {
    case HS_HELLO_PREFIX:
        *p = s->theirs + s->have;
        return CCL_HELLO_PREFIX_LEN - s->have;
    case HS_HELLO_REST:
        *p = s->theirs + CCL_HELLO_PREFIX_LEN + s->have;
        return CCL_HELLO_LEN - CCL_HELLO_PREFIX_LEN - s->have;
    case HS_PROOF:
        *p = s->proof + s->have;
        return CCL_PROOF_LEN - s->have;
    default:
        *p = NULL;
        return 0;
    }
}

/* Both HELLOs are in: the policy decides whether to go on, then the
 * proofs start (the connector proves first) or, without a key, we are
 * done. */
static int hs_hellos_in(ccl__hsm *s)
{
    ccl__hs *r = &s->result;
    if (ccl__hello_decode(s->theirs, &r->theirs) != 0 ||
        (s->expect_role && r->theirs.role != s->expect_role))
        return hs_fail(s, CCL_ERR_PROTOCOL, 1, "not a pyccl endpoint (bad hello)");
    char why[CCL_HS_ERRLEN];
    int rc = ccl__auth_policy(s->key->len > 0, &s->me, &r->theirs, s->loopback,
                              s->allow_insecure, s->who, why, sizeof why);
    if (rc)
        return hs_fail(s, rc, 0, "%s", why);
    if (s->key->len == 0) {
        s->state = HS_DONE;
        return CCL_OK;
    }
    if (s->side == CCL_SIDE_CONNECTOR) {
        uint8_t proof[CCL_PROOF_LEN];
        ccl__auth_proof(s->key, CCL_SIDE_CONNECTOR, s->mine, s->theirs, proof);
        hs_queue(s, proof, sizeof proof);
        ccl__wipe(proof, sizeof proof);
    }
    s->state = HS_PROOF;
    return CCL_OK;
}

/* The proofs are done: derive what the connection keeps. */
static int hs_authed(ccl__hsm *s, const uint8_t *hc, const uint8_t *ha)
{
    s->result.authed = 1;
    /* Protocol 4: every keyed connection gets MAC seeds, since control
     * frames are always authenticated; FRAME_MAC (on which the policy made
     * both ends agree) only decides whether DATA frames are too. */
    ccl__auth_frame_seed(s->key, s->side, hc, ha, s->result.seed_tx);
    ccl__auth_frame_seed(s->key, 1 - s->side, hc, ha, s->result.seed_rx);
    s->state = HS_DONE;
    return CCL_OK;
}

/* The other end's 32 proof bytes are in. */
static int hs_proof_in(ccl__hsm *s)
{
    if (s->side == CCL_SIDE_CONNECTOR) {
        if (ccl__auth_is_refusal(s->proof))
            return hs_fail(s, CCL_ERR_AUTH, 0, "%s refused our key: the two ends "
                           "have different keys", s->who);
        if (!ccl__auth_verify(s->key, CCL_SIDE_ACCEPTOR, s->mine, s->theirs,
                              s->proof))
            return hs_fail(s, CCL_ERR_AUTH, 0, "%s could not prove it holds the "
                           "key: it has another key, or it is not the endpoint "
                           "we meant to reach", s->who);
        return hs_authed(s, s->mine, s->theirs);
    }
    uint8_t answer[CCL_PROOF_LEN];
    if (!ccl__auth_verify(s->key, CCL_SIDE_CONNECTOR, s->theirs, s->mine,
                          s->proof)) {
        /* Tell an honest peer with another key what happened; a stranger
         * learns nothing from zeros. */
        memset(answer, 0, sizeof answer);
        hs_queue(s, answer, sizeof answer);
        return hs_fail(s, CCL_ERR_AUTH, 0, "%s failed authentication: wrong key, "
                       "or a replayed handshake", s->who);
    }
    ccl__auth_proof(s->key, CCL_SIDE_ACCEPTOR, s->theirs, s->mine, answer);
    hs_queue(s, answer, sizeof answer);
    ccl__wipe(answer, sizeof answer);
    return hs_authed(s, s->theirs, s->mine);
}

int ccl__hsm_read(ccl__hsm *s, size_t n)
{
    uint8_t *p;
    size_t want = ccl__hsm_to_read(s, &p);
    if (s->state == HS_FAILED)
        return s->rc;
    if (n > want)
        n = want; /* a driver bug; never read past the step */
    s->have += n;
    if (n < want)
        return CCL_OK;
    s->have = 0;
    if (s->state == HS_HELLO_PREFIX) {
        uint16_t version = 0;
        int rc = ccl__hello_check_prefix(s->theirs, &version);
        if (rc == CCL_ERR_VERSION)
            /* Nothing after the version is read: another version may lay
             * those bytes out differently. */
            return hs_fail(s, rc, 1, "it speaks protocol version %u, we speak %u",
                           version, CCL_PROTOCOL_VERSION);
        if (rc)
            return hs_fail(s, CCL_ERR_PROTOCOL, 1, "not a pyccl endpoint (bad hello)");
        s->state = HS_HELLO_REST;
        return CCL_OK;
    }
    if (s->state == HS_HELLO_REST)
        return hs_hellos_in(s);
    return hs_proof_in(s);
}

int ccl__hsm_done(const ccl__hsm *s)
{
    return s->state == HS_DONE && s->out_done == s->out_len;
}

int ccl__hsm_failed(const ccl__hsm *s)
{
    return s->state == HS_FAILED;
}

int ccl__hsm_in_proof(const ccl__hsm *s)
{
    return s->state == HS_PROOF;
}

void ccl__hsm_wipe(ccl__hsm *s)
{
    ccl__wipe(s->out, sizeof s->out);
    ccl__wipe(s->proof, sizeof s->proof);
    ccl__wipe(&s->result, sizeof s->result);
}

/* ---- the blocking driver ---- */

int ccl__handshake(int fd, int side, const ccl__hello *mine, const ccl__key *key,
                   int allow_insecure, uint64_t deadline, const char *who,
                   ccl__hs *out, char *err, size_t errlen)
{
    ccl__hsm s;
    char e[200];
    memset(out, 0, sizeof *out);
    ccl__hsm_start(&s, side, mine, key, allow_insecure,
                   ccl__sock_peer_is_loopback(fd), 0, who);
    while (!ccl__hsm_done(&s) && !ccl__hsm_failed(&s)) {
        const uint8_t *w;
        uint8_t *r;
        int io = CCL_OK;
        size_t n = ccl__hsm_to_write(&s, &w);
        if (n) {
            io = ccl__sock_send_all(fd, w, n, deadline, e, sizeof e);
            if (io == CCL_OK)
                ccl__hsm_wrote(&s, n);
        } else if ((n = ccl__hsm_to_read(&s, &r)) > 0) {
            io = ccl__sock_recv_all(fd, r, n, deadline, e, sizeof e);
            if (io == CCL_OK)
                ccl__hsm_read(&s, n); /* a failure is kept in s */
        }
        if (io != CCL_OK) {
            /* An acceptor that refused our proof may close before we read
             * its answer: say what is most likely. */
            if (side == CCL_SIDE_CONNECTOR && ccl__hsm_in_proof(&s))
                ERRF("handshake with %s: %s (if this repeats, check that both "
                     "ends have the same key)", who, e);
            else
                ERRF("handshake with %s: %s", who, e);
            ccl__hsm_wipe(&s);
            return io;
        }
    }
    int rc = CCL_OK;
    if (ccl__hsm_failed(&s)) {
        /* Best effort: the acceptor's "your proof was wrong". */
        const uint8_t *w;
        size_t n = ccl__hsm_to_write(&s, &w);
        if (n)
            ccl__sock_send_all(fd, w, n, deadline, NULL, 0);
        ERRF("%s", s.err);
        rc = s.rc;
    } else {
        *out = s.result;
    }
    ccl__hsm_wipe(&s);
    return rc;
}

int ccl__insecure_check(int have_key, int allow_insecure, const char *host_a,
                        const char *host_b, char *err, size_t errlen)
{
    static int warned;
    if (have_key)
        return CCL_OK;
    const char *hosts[2] = {host_a, host_b};
    for (int i = 0; i < 2; i++) {
        if (!hosts[i] || ccl__host_is_loopback(hosts[i]))
            continue;
        if (allow_insecure) {
            if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
                ccl__log(CCL_LOG_WARNING, "no key configured and "
                         "allow_insecure is set: connections to and from %s are "
                         "not authenticated; anyone who can reach the ports can "
                         "join the group (set PYCCL_KEY or PYCCL_KEY_FILE)",
                         hosts[i]);
            return CCL_OK;
        }
        ERRF("%s is not a loopback address and no key is configured: without "
             "a key pyccl talks over loopback only.  Set PYCCL_KEY or "
             "PYCCL_KEY_FILE (the same key everywhere; `pyccl keygen` makes "
             "one), or allow_insecure on a network you trust", hosts[i]);
        return CCL_ERR_AUTH;
    }
    return CCL_OK;
}
