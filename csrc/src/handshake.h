/*
 * handshake.h - the handshake every connection starts with: both HELLOs,
 * the policy of auth.h, then (with a key) the proofs.
 *
 * It is written once, as a state machine over bytes (ccl__hsm): it says
 * what to write and how many bytes it wants to read next, and consumes
 * them; it makes no socket call and reads no clock.  Two drivers move the
 * bytes: ccl__handshake below, blocking with a deadline (peers, on every
 * connection they make or accept), and the master's event loop,
 * nonblocking (master.c).  The machine asks for exactly the bytes of its
 * current step and never more, so a driver that reads what it is asked
 * for never swallows the first frame that follows the handshake.
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
    uint8_t seed_tx[32]; /* frame MAC secrets (authed): what we send */
    uint8_t seed_rx[32]; /* ... and what we receive */
} ccl__hs;

#define CCL_HS_ERRLEN 400

/* One handshake in progress.  The fields are the machine's own; drivers
 * use the functions below. */
typedef struct ccl__hsm {
    int side;            /* enum ccl__side */
    int state;           /* see handshake.c */
    int expect_role;     /* 0, or the only role the other end may have */
    int allow_insecure;
    int loopback;        /* the other end's address is a loopback one */
    const ccl__key *key; /* borrowed: must outlive the handshake */
    const char *who;     /* borrowed: names the other end in messages */
    ccl__hello me;
    uint8_t mine[CCL_HELLO_LEN];   /* the transcript: our HELLO ... */
    uint8_t theirs[CCL_HELLO_LEN]; /* ... and theirs */
    uint8_t proof[CCL_PROOF_LEN];  /* the proof or answer being read */
    size_t have;                   /* bytes of the current step read */
    uint8_t out[CCL_HELLO_LEN + CCL_PROOF_LEN];
    size_t out_len, out_done;      /* bytes queued, bytes written */
    ccl__hs result;
    int rc;                        /* the failure, once failed */
    char err[CCL_HS_ERRLEN];       /* what failed, naming `who` */
    size_t cause_at; /* err + cause_at: the cause alone, without "handshake
                        with <who>: " (for logs that name the peer already) */
} ccl__hsm;

/* Fills the fields of a HELLO that do not depend on the connection (the
 * handshake adds a fresh nonce and the flags). */
void ccl__hello_fill(ccl__hello *h, int role, uint32_t epoch, uint32_t rank,
                     uint32_t idx, const uint8_t uuid[16]);

/* Starts a handshake as `side`.  `mine` gets a fresh nonce and the AUTH
 * flag when key->len > 0; FRAME_MAC is the caller's to set.  `loopback`
 * says whether the other end's address is a loopback one (the policy
 * needs it); `expect_role` (0 for any) refuses an end of another role as
 * a bad HELLO.  Our HELLO is queued for writing at once: neither end waits
 * for the other before sending it, so the exchange cannot deadlock.
 * Returns CCL_OK, or CCL_ERR_IO when there are no random bytes. */
int ccl__hsm_start(ccl__hsm *s, int side, const ccl__hello *mine,
                   const ccl__key *key, int allow_insecure, int loopback,
                   int expect_role, const char *who);

/* The bytes to write now (*p, return value; 0 when none), and how many of
 * them the driver wrote.  A failed handshake may still have bytes to
 * write (the acceptor's "your proof was wrong"): a driver sends them if it
 * can before it closes. */
size_t ccl__hsm_to_write(const ccl__hsm *s, const uint8_t **p);
void ccl__hsm_wrote(ccl__hsm *s, size_t n);

/* Where the next bytes read go (*p) and at most how many (the return
 * value; 0 when the machine wants nothing more: finished or failed). */
size_t ccl__hsm_to_read(ccl__hsm *s, uint8_t **p);
/* Accounts for n bytes placed where ccl__hsm_to_read said, and advances
 * when a step is complete.  Returns CCL_OK, or the failure (then s->rc and
 * s->err): CCL_ERR_VERSION / PROTOCOL / AUTH / MISMATCH. */
int ccl__hsm_read(ccl__hsm *s, size_t n);

/* 1 once the handshake succeeded and everything it wrote is written: then
 * s->result holds the outcome. */
int ccl__hsm_done(const ccl__hsm *s);
/* 1 if it failed (s->rc, s->err). */
int ccl__hsm_failed(const ccl__hsm *s);
/* 1 while the proofs are being exchanged: an I/O error then most likely
 * means the other end refused our key. */
int ccl__hsm_in_proof(const ccl__hsm *s);
/* Forgets the key-derived bytes the machine holds. */
void ccl__hsm_wipe(ccl__hsm *s);

/* Runs the handshake on a connected, blocking-mode fd as `side`, driving
 * ccl__hsm until `deadline`.  Returns CCL_OK, or CCL_ERR_VERSION /
 * PROTOCOL / AUTH / MISMATCH / IO / TIMEOUT / PEER_LOST with a message
 * naming `who`. */
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
