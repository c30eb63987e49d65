/*
 * auth.h - the authenticated handshake's pure part: proofs, the policy
 * that decides whether a connection may go on, and the per-frame MAC
 * seeds.  No I/O; handshake.c (blocking, peers) and master.c (nonblocking)
 * move the bytes.
 *
 * The exchange on every connection, after both HELLOs (docs/protocol.md,
 * "Authentication"):
 *
 *   connector -> acceptor  PROOF_C = HMAC(K, "pyccl/2 connector" || HC || HA)
 *   acceptor  -> connector PROOF_A = HMAC(K, "pyccl/2 acceptor"  || HC || HA)
 *                          or 32 zero bytes: "your proof was wrong"
 *
 * HC and HA are the 64 HELLO bytes the connector and the acceptor sent.
 * They carry a fresh random nonce from each side, the sender's role,
 * epoch, rank and identity, so a proof is good for this one connection
 * only: replaying an old one fails on the other side's new nonce, and a
 * proof made for another identity or epoch does not match this transcript.
 * The labels differ by side, so a proof cannot be reflected back to the
 * end that made it.  The acceptor checks the connector first and answers
 * a stranger with zeros, so it never computes a proof for someone who has
 * not shown the key.
 */
#ifndef CCL_AUTH_H
#define CCL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define CCL_PROOF_LEN 32
#define CCL_KEY_MIN 16   /* shorter keys are refused: guessable */
#define CCL_KEY_MAX 1024

/* A pre-shared key; len 0 means "no key configured". */
typedef struct ccl__key {
    uint8_t bytes[CCL_KEY_MAX];
    size_t len;
} ccl__key;

/* Which end of a connection: the one that connected, or the one that
 * accepted. */
enum ccl__side { CCL_SIDE_CONNECTOR = 0, CCL_SIDE_ACCEPTOR = 1 };

/* Copies a caller's key: CCL_OK, or CCL_ERR_INVALID_ARG with a reason for a
 * key shorter than CCL_KEY_MIN or longer than CCL_KEY_MAX.  NULL or len 0
 * gives "no key". */
int ccl__key_set(ccl__key *k, const void *bytes, size_t len, char *err,
                 size_t errlen);
/* Overwrites the key bytes (the compiler may not drop the stores). */
void ccl__key_wipe(ccl__key *k);

/* The proof `side` sends on a connection whose HELLOs were hc and ha. */
void ccl__auth_proof(const ccl__key *k, int side,
                     const uint8_t hc[CCL_HELLO_LEN],
                     const uint8_t ha[CCL_HELLO_LEN], uint8_t out[CCL_PROOF_LEN]);
/* 1 if `got` is the proof `side` must send, else 0 (constant time). */
int ccl__auth_verify(const ccl__key *k, int side, const uint8_t hc[CCL_HELLO_LEN],
                     const uint8_t ha[CCL_HELLO_LEN],
                     const uint8_t got[CCL_PROOF_LEN]);
/* 1 if `got` is the acceptor's "your proof was wrong" (all zero). */
int ccl__auth_is_refusal(const uint8_t got[CCL_PROOF_LEN]);

/* The secret that keys the frame MACs sent by `from_side` on this
 * connection: one per direction, fresh per connection. */
void ccl__auth_frame_seed(const ccl__key *k, int from_side,
                          const uint8_t hc[CCL_HELLO_LEN],
                          const uint8_t ha[CCL_HELLO_LEN], uint8_t out[32]);

/* Decides, after both HELLOs and before any proof, whether the connection
 * may go on.  have_key: we hold a key.  loopback: the other end's address
 * is a loopback one.  allow_insecure: the user allowed unauthenticated
 * connections from other hosts.  Returns 0, or CCL_ERR_AUTH (keys on one
 * side only, no key off loopback) or CCL_ERR_MISMATCH (frame MACs or
 * encryption on one side only) with a message naming `who` and the fix. */
int ccl__auth_policy(int have_key, const ccl__hello *mine,
                     const ccl__hello *theirs, int loopback,
                     int allow_insecure, const char *who, char *err,
                     size_t errlen);

#endif
