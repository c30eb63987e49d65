/*
 * aead.h - authenticated encryption of frames (encrypt=True), from the
 * system's OpenSSL libcrypto loaded at run time.
 *
 * Why a library and why at run time: a cipher is the one piece of this
 * code base that must not be hand-written (constant time, hardware AES,
 * years of review), and OpenSSL's libcrypto is on nearly every Linux
 * machine already (Python's own ssl module links it).  Loading it with
 * dlopen keeps `pip install .` free of OpenSSL headers and of a link-time
 * dependency: a machine without libcrypto builds and runs pyccl, and only
 * encrypt=True fails there, with an error naming the missing library.
 * The few EVP functions used are declared here by hand (aead.c); their
 * signatures are the same in OpenSSL 1.1 and 3.x.
 *
 * The wire uses AES-256-GCM (docs/security.md says why: it measured
 * faster than ChaCha20-Poly1305 here, with AES-NI and PCLMULQDQ).
 * ChaCha20-Poly1305 is kept behind the same interface for the benchmark
 * and the known-answer tests, and for a later choice on hosts without AES
 * instructions.
 *
 * One ccl__aead is one direction of one connection: a key, fixed for its
 * life, and a frame counter that is the nonce.  Frames are sealed
 * incrementally (start with the header as associated data, any number of
 * updates, then seal or open), so a sender can encrypt a frame piece by
 * piece as the socket takes it and a receiver can decrypt bytes in place
 * as they arrive.  The counter lives inside the object and only counts
 * up, so a nonce is never used twice under one key; when it would wrap,
 * start refuses and the connection must close.
 *
 * No socket I/O here: the transport moves the bytes.  Loading the library
 * is the only system interaction (dlopen, once per process).
 */
#ifndef CCL_AEAD_H
#define CCL_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define CCL_AEAD_KEY_LEN 32
#define CCL_AEAD_TAG_LEN 16
#define CCL_AEAD_NONCE_LEN 12

enum ccl__aead_alg {
    CCL_AEAD_AES256GCM = 1,       /* the wire's */
    CCL_AEAD_CHACHA20POLY1305 = 2 /* for comparison (bench, tests) */
};

/* Loads libcrypto if it is not loaded yet: CCL_OK, or CCL_ERR_INVALID_ARG
 * with a message naming the library, the reason and the fix.  Tries
 * $PYCCL_LIBCRYPTO first when set, then libcrypto.so.3, libcrypto.so.1.1,
 * libcrypto.so (and the macOS names).  Thread-safe; a success is kept for
 * the process, a failure is retried on the next call.  Test hook: with
 * PYCCL_TEST_NO_LIBCRYPTO set to a non-empty value other than "0", it
 * fails as if no library were installed (tests of that path only). */
int ccl__aead_load(char *err, size_t errlen);
/* The loaded library's version ("OpenSSL 3.0.13 30 Jan 2024"), or "" when
 * none is loaded. */
const char *ccl__aead_library(void);
/* 1 if `alg` is usable (library loaded and the cipher present). */
int ccl__aead_has(int alg);

typedef struct ccl__aead ccl__aead;

/* A sealing (encrypting = 1) or opening (0) context for `alg` under `key`
 * (copied into the library's context; the caller wipes its copy).  The
 * first frame gets counter 0.  CCL_OK, CCL_ERR_INVALID_ARG (not loaded,
 * cipher absent), CCL_ERR_NOMEM, or CCL_ERR_INTERNAL (the library
 * refused), each with a message. */
int ccl__aead_new(ccl__aead **out, int alg, int encrypting,
                  const uint8_t key[CCL_AEAD_KEY_LEN], char *err, size_t errlen);
/* Frees the context; the library wipes the key schedule.  NULL is fine. */
void ccl__aead_free(ccl__aead *a);

/* Starts the next frame: nonce = le64(counter) || 4 zero bytes, then the
 * counter counts up; aad (the frame header, sent in clear) is
 * authenticated.  CCL_OK; CCL_ERR_PROTOCOL when the counter is spent (the
 * connection must close: a nonce may never repeat); CCL_ERR_INTERNAL. */
int ccl__aead_start(ccl__aead *a, const uint8_t *aad, size_t aad_len);
/* Starts a frame with an explicit 12-byte nonce, leaving the counter
 * alone: for known-answer tests only (their nonces are not counters).
 * The transport never calls it. */
int ccl__aead_start_iv(ccl__aead *a, const uint8_t iv[CCL_AEAD_NONCE_LEN],
                       const uint8_t *aad, size_t aad_len);
/* Encrypts or decrypts n bytes from in to out (out == in is allowed:
 * in place; other overlaps are not).  Any split of a frame into updates
 * gives the same bytes.  CCL_OK or CCL_ERR_INTERNAL. */
int ccl__aead_update(ccl__aead *a, uint8_t *out, const uint8_t *in, size_t n);
/* Ends a sealed frame: its tag.  CCL_OK or CCL_ERR_INTERNAL. */
int ccl__aead_seal(ccl__aead *a, uint8_t tag[CCL_AEAD_TAG_LEN]);
/* Ends an opened frame: CCL_OK if `tag` is right for the header and the
 * ciphertext given, CCL_ERR_AUTH if not (the plaintext already written
 * must then be thrown away, and the connection closed). */
int ccl__aead_open(ccl__aead *a, const uint8_t tag[CCL_AEAD_TAG_LEN]);
/* The counter the next start will use (tests; and wrap-around checks). */
uint64_t ccl__aead_counter(const ccl__aead *a);
/* Sets it: for the wrap-around test only. */
void ccl__aead_set_counter(ccl__aead *a, uint64_t next);

/* The AEAD key of one direction of a connection, from that direction's
 * 32-byte handshake seed (auth.h, ccl__auth_frame_seed): HMAC-SHA256(seed,
 * "pyccl frame aead v1" || le32(0)), the counter-mode KDF the frame MAC
 * keys come from (mac.c) with a label of its own, so the AEAD key is
 * independent of the MAC keys of the same seed. */
void ccl__aead_derive_key(const uint8_t seed[32], uint8_t key[CCL_AEAD_KEY_LEN]);

#endif
