/*
 * auth.c - the pure part of the authenticated handshake (see auth.h).
 */
#include "auth.h"

#include <stdio.h>
#include <string.h>

#include "ccl.h"
#include "sha256.h"

static const char LABEL_CONNECTOR[] = "pyccl/2 connector";
static const char LABEL_ACCEPTOR[] = "pyccl/2 acceptor";
static const char LABEL_FRAME_C2A[] = "pyccl/2 frames connector->acceptor";
static const char LABEL_FRAME_A2C[] = "pyccl/2 frames acceptor->connector";

int ccl__key_set(ccl__key *k, const void *bytes, size_t len, char *err,
                 size_t errlen)
{
    memset(k, 0, sizeof *k);
    if (!bytes || len == 0)
        return CCL_OK;
    if (len < CCL_KEY_MIN || len > CCL_KEY_MAX) {
        snprintf(err, errlen, "the key has %zu bytes; it must have %d..%d "
                 "(a random 32-byte key: `pyccl keygen`)", len, CCL_KEY_MIN,
                 CCL_KEY_MAX);
        return CCL_ERR_INVALID_ARG;
    }
    memcpy(k->bytes, bytes, len);
    k->len = len;
    return CCL_OK;
}

void ccl__key_wipe(ccl__key *k)
{
    ccl__wipe(k->bytes, sizeof k->bytes);
    k->len = 0;
}

static void mac_transcript(const ccl__key *k, const char *label,
                           const uint8_t hc[CCL_HELLO_LEN],
                           const uint8_t ha[CCL_HELLO_LEN], uint8_t out[32])
{
    ccl__hmac_ctx h;
    ccl__hmac_init(&h, k->bytes, k->len);
    /* The label's NUL is hashed too, so no label is a prefix of another
     * label followed by transcript bytes. */
    ccl__hmac_update(&h, label, strlen(label) + 1);
    ccl__hmac_update(&h, hc, CCL_HELLO_LEN);
    ccl__hmac_update(&h, ha, CCL_HELLO_LEN);
    ccl__hmac_final(&h, out);
}

void ccl__auth_proof(const ccl__key *k, int side,
                     const uint8_t hc[CCL_HELLO_LEN],
                     const uint8_t ha[CCL_HELLO_LEN], uint8_t out[CCL_PROOF_LEN])
{
    mac_transcript(k, side == CCL_SIDE_CONNECTOR ? LABEL_CONNECTOR : LABEL_ACCEPTOR,
                   hc, ha, out);
}

int ccl__auth_verify(const ccl__key *k, int side, const uint8_t hc[CCL_HELLO_LEN],
                     const uint8_t ha[CCL_HELLO_LEN],
                     const uint8_t got[CCL_PROOF_LEN])
{
    uint8_t want[CCL_PROOF_LEN];
    ccl__auth_proof(k, side, hc, ha, want);
    return ccl__ct_equal(want, got, CCL_PROOF_LEN);
}

int ccl__auth_is_refusal(const uint8_t got[CCL_PROOF_LEN])
{
    static const uint8_t zero[CCL_PROOF_LEN];
    return ccl__ct_equal(zero, got, CCL_PROOF_LEN);
}

void ccl__auth_frame_seed(const ccl__key *k, int from_side,
                          const uint8_t hc[CCL_HELLO_LEN],
                          const uint8_t ha[CCL_HELLO_LEN], uint8_t out[32])
{
    mac_transcript(k, from_side == CCL_SIDE_CONNECTOR ? LABEL_FRAME_C2A
                                                      : LABEL_FRAME_A2C,
                   hc, ha, out);
}

int ccl__auth_policy(int have_key, const ccl__hello *mine,
                     const ccl__hello *theirs, int loopback,
                     int allow_insecure, const char *who, char *err,
                     size_t errlen)
{
    int they_auth = (theirs->flags & CCL_HELLO_AUTH) != 0;
    if (have_key && !they_auth) {
        snprintf(err, errlen, "%s has no key configured, and this end requires "
                 "one (set PYCCL_KEY or PYCCL_KEY_FILE there too)", who);
        return CCL_ERR_AUTH;
    }
    if (!have_key && they_auth) {
        snprintf(err, errlen, "%s requires a key, and none is configured here "
                 "(set PYCCL_KEY or PYCCL_KEY_FILE, or pass key=...)", who);
        return CCL_ERR_AUTH;
    }
    if (!have_key && !loopback && !allow_insecure) {
        snprintf(err, errlen, "%s is not on this host and no key is configured: "
                 "unauthenticated connections are allowed on loopback only "
                 "(configure a key, or allow_insecure to accept the risk)", who);
        return CCL_ERR_AUTH;
    }
    int mine_mac = (mine->flags & CCL_HELLO_FRAME_MAC) != 0;
    int their_mac = (theirs->flags & CCL_HELLO_FRAME_MAC) != 0;
    if (mine_mac != their_mac) {
        snprintf(err, errlen, "frame MACs are %s here but %s at %s: every peer "
                 "must use the same frame_mac setting",
                 mine_mac ? "on" : "off", their_mac ? "on" : "off", who);
        return CCL_ERR_MISMATCH;
    }
    int mine_enc = (mine->flags & CCL_HELLO_ENCRYPT) != 0;
    int their_enc = (theirs->flags & CCL_HELLO_ENCRYPT) != 0;
    if (mine_enc != their_enc) {
        snprintf(err, errlen, "encryption is %s here but %s at %s: every peer "
                 "must use the same encrypt setting",
                 mine_enc ? "on" : "off", their_enc ? "on" : "off", who);
        return CCL_ERR_MISMATCH;
    }
    /* A HELLO carrying our own nonce is our HELLO played back at us. */
    if (memcmp(mine->nonce, theirs->nonce, CCL_NONCE_LEN) == 0) {
        snprintf(err, errlen, "%s echoed our own HELLO", who);
        return CCL_ERR_AUTH;
    }
    return CCL_OK;
}
