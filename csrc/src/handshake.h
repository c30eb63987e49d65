/*
 * handshake.h - the blocking handshake a peer runs on each connection it
 * makes or accepts (the master runs the same steps nonblocking, in
 * master.c): HELLOs, the policy of auth.h, then the proofs.
 */
#ifndef CCL_HANDSHAKE_H
#define CCL_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "wire.h"

typedef struct ccl__hs {
    ccl__hello theirs;  /* the other end's HELLO, decoded */
    int authed;         /* both ends proved the key */
    uint8_t seed_tx[32]; /* frame MAC secrets (authed, FRAME_MAC): what we send */
    uint8_t seed_rx[32]; /* ... and what we receive */
} ccl__hs;

/* Fills the fields of a HELLO that do not depend on the connection (the
 * handshake adds a fresh nonce and the flags). */
void ccl__hello_fill(ccl__hello *h, int role, uint32_t epoch, uint32_t rank,
                     uint32_t idx, const uint8_t uuid[16]);

/* Runs the handshake on a connected, blocking-mode fd as `side`.  `mine`
 * gets a fresh nonce and the AUTH flag when key->len > 0; FRAME_MAC is the
 * caller's to set.  Returns CCL_OK, or CCL_ERR_VERSION / PROTOCOL / AUTH /
 * MISMATCH / IO / TIMEOUT / PEER_LOST with a message naming `who`. */
int ccl__handshake(int fd, int side, const ccl__hello *mine, const ccl__key *key,
                   int allow_insecure, uint64_t deadline, const char *who,
                   ccl__hs *out, char *err, size_t errlen);

/* Called when a master or communicator is created: without a key, every
 * host it talks to or listens on must be loopback (NULL hosts are
 * skipped; "0.0.0.0" and "::" are not loopback), unless allow_insecure,
 * which prints a warning once per process.  CCL_OK or CCL_ERR_AUTH. */
int ccl__insecure_check(int have_key, int allow_insecure, const char *host_a,
                        const char *host_b, char *err, size_t errlen);

#endif
