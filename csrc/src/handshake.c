/*
 * handshake.c - the blocking handshake of handshake.h.
 */
#include "handshake.h"
#include "log.h"

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

/* Sends our HELLO and reads theirs: the version first, so an endpoint of
 * another version is named rather than waited for. */
static int swap_hellos(int fd, const uint8_t mine[CCL_HELLO_LEN],
                       uint8_t theirs[CCL_HELLO_LEN], ccl__hello *h,
                       uint64_t deadline, const char *who, char *err,
                       size_t errlen)
{
    char e[200];
    int rc = ccl__sock_send_all(fd, mine, CCL_HELLO_LEN, deadline, e, sizeof e);
    if (!rc)
        rc = ccl__sock_recv_all(fd, theirs, CCL_HELLO_PREFIX_LEN, deadline, e,
                                sizeof e);
    if (rc) {
        ERRF("handshake with %s: %s", who, e);
        return rc;
    }
    uint16_t version = 0;
    rc = ccl__hello_check_prefix(theirs, &version);
    if (rc == CCL_ERR_VERSION) {
        ERRF("handshake with %s: it speaks protocol version %u, we speak %u",
             who, version, CCL_PROTOCOL_VERSION);
        return rc;
    }
    if (!rc)
        rc = ccl__sock_recv_all(fd, theirs + CCL_HELLO_PREFIX_LEN,
                                CCL_HELLO_LEN - CCL_HELLO_PREFIX_LEN, deadline, e,
                                sizeof e);
    if (rc == CCL_ERR_PROTOCOL || (!rc && ccl__hello_decode(theirs, h))) {
        ERRF("handshake with %s: not a pyccl endpoint (bad hello)", who);
        return CCL_ERR_PROTOCOL;
    }
    if (rc) {
        ERRF("handshake with %s: %s", who, e);
        return rc;
    }
    return CCL_OK;
}

/* The proofs, once both HELLOs are in: the connector proves first. */
static int prove(int fd, int side, const ccl__key *key,
                 const uint8_t hc[CCL_HELLO_LEN], const uint8_t ha[CCL_HELLO_LEN],
                 uint64_t deadline, const char *who, char *err, size_t errlen)
{
    char e[200];
    uint8_t proof[CCL_PROOF_LEN], got[CCL_PROOF_LEN];
    int rc;
    if (side == CCL_SIDE_CONNECTOR) {
        ccl__auth_proof(key, CCL_SIDE_CONNECTOR, hc, ha, proof);
        rc = ccl__sock_send_all(fd, proof, sizeof proof, deadline, e, sizeof e);
        if (!rc)
            rc = ccl__sock_recv_all(fd, got, sizeof got, deadline, e, sizeof e);
        if (rc) {
            /* An acceptor that refused our proof may close before we read
             * its answer: say what is most likely. */
            ERRF("handshake with %s: %s (if this repeats, check that both ends "
                 "have the same key)", who, e);
            return rc;
        }
        if (ccl__auth_is_refusal(got)) {
            ERRF("%s refused our key: the two ends have different keys", who);
            return CCL_ERR_AUTH;
        }
        if (!ccl__auth_verify(key, CCL_SIDE_ACCEPTOR, hc, ha, got)) {
            ERRF("%s could not prove it holds the key: it has another key, or "
                 "it is not the endpoint we meant to reach", who);
            return CCL_ERR_AUTH;
        }
        return CCL_OK;
    }
    rc = ccl__sock_recv_all(fd, got, sizeof got, deadline, e, sizeof e);
    if (rc) {
        ERRF("handshake with %s: %s", who, e);
        return rc;
    }
    if (!ccl__auth_verify(key, CCL_SIDE_CONNECTOR, hc, ha, got)) {
        /* Tell an honest peer with another key what happened; a stranger
         * learns nothing from zeros. */
        memset(proof, 0, sizeof proof);
        ccl__sock_send_all(fd, proof, sizeof proof, deadline, NULL, 0);
        ERRF("%s failed authentication: wrong key, or a replayed handshake", who);
        return CCL_ERR_AUTH;
    }
    ccl__auth_proof(key, CCL_SIDE_ACCEPTOR, hc, ha, proof);
    rc = ccl__sock_send_all(fd, proof, sizeof proof, deadline, e, sizeof e);
    if (rc)
        ERRF("handshake with %s: %s", who, e);
    return rc;
}

int ccl__handshake(int fd, int side, const ccl__hello *mine, const ccl__key *key,
                   int allow_insecure, uint64_t deadline, const char *who,
                   ccl__hs *out, char *err, size_t errlen)
{
    ccl__hello me = *mine;
    uint8_t mb[CCL_HELLO_LEN], tb[CCL_HELLO_LEN];
    memset(out, 0, sizeof *out);
    if (key->len)
        me.flags |= CCL_HELLO_AUTH;
    else
        me.flags &= (uint8_t)~CCL_HELLO_AUTH;
    if (ccl__random_bytes(me.nonce, sizeof me.nonce)) {
        ERRF("handshake with %s: no random bytes for a nonce", who);
        return CCL_ERR_IO;
    }
    ccl__hello_encode(mb, &me);
    int rc = swap_hellos(fd, mb, tb, &out->theirs, deadline, who, err, errlen);
    if (rc)
        return rc;
    rc = ccl__auth_policy(key->len > 0, &me, &out->theirs,
                          ccl__sock_peer_is_loopback(fd), allow_insecure, who,
                          err, errlen);
    if (rc || key->len == 0)
        return rc;
    const uint8_t *hc = side == CCL_SIDE_CONNECTOR ? mb : tb;
    const uint8_t *ha = side == CCL_SIDE_CONNECTOR ? tb : mb;
    rc = prove(fd, side, key, hc, ha, deadline, who, err, errlen);
    if (rc)
        return rc;
    out->authed = 1;
    /* The policy made sure both ends agree on frame MACs. */
    if (me.flags & CCL_HELLO_FRAME_MAC) {
        ccl__auth_frame_seed(key, side, hc, ha, out->seed_tx);
        ccl__auth_frame_seed(key, 1 - side, hc, ha, out->seed_rx);
    }
    return CCL_OK;
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
