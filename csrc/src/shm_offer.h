/*
 * shm_offer.h - the two messages that move a peer connection into shared
 * memory (sock_shm.h), as pure functions over bytes.
 *
 * When both HELLOs of connection 0 of a peer pair carry the SHM flag, the
 * connector creates the rings and sends SHM_OFFER right after the
 * handshake; the acceptor checks that the connection's path is the same
 * from its end (one host, one network namespace, mirrored endpoints),
 * attaches, and answers SHM_ANSWER, accepted or not with a reason.  Both
 * messages are fixed-size.  On a keyed connection each carries a 16-byte
 * tag (HMAC-SHA256 of a label and the message under the sender's MAC seed
 * from the handshake; the answer's covers the offer too), so a party
 * without the key can neither move a connection into a file of its
 * choosing nor turn the answer around.  docs/protocol.md, "Same-host
 * connections", has the layouts.
 */
#ifndef CCL_SHM_OFFER_H
#define CCL_SHM_OFFER_H

#include <stddef.h>
#include <stdint.h>

#include "sock_shm.h"

#define CCL_SHM_OFFER_LEN 168
#define CCL_SHM_ANSWER_LEN 16
#define CCL_SHM_TAG_LEN 16

typedef struct ccl__shm_offer {
    uint32_t ring_bytes;
    ccl__shm_path path;                /* the connector's view */
    uint8_t nonce[CCL_SHM_NONCE_LEN];  /* in the file's header */
    char name[CCL_SHM_NAME_LEN];       /* in /dev/shm, NUL-terminated */
} ccl__shm_offer;

/* Why an offer was declined (SHM_ANSWER's reason byte). */
enum {
    CCL_SHM_OK = 0,
    CCL_SHM_OTHER_HOST = 1,      /* another boot id */
    CCL_SHM_OTHER_NETNS = 2,     /* another network namespace */
    CCL_SHM_NOT_DIRECT = 3,      /* endpoints do not mirror: relay, proxy, NAT */
    CCL_SHM_ATTACH_FAILED = 4,   /* the file could not be opened or checked */
    CCL_SHM_UNKNOWN_PATH = 5,    /* the acceptor cannot tell its own path */
};

/* Text for a reason. */
const char *ccl__shm_reason(int reason);

void ccl__shm_offer_encode(uint8_t out[CCL_SHM_OFFER_LEN], const ccl__shm_offer *o);
/* 0, or CCL_ERR_PROTOCOL for a bad magic/version, nonzero reserved
 * bytes or a name that is not NUL-terminated. */
int ccl__shm_offer_decode(const uint8_t in[CCL_SHM_OFFER_LEN], ccl__shm_offer *o);

void ccl__shm_answer_encode(uint8_t out[CCL_SHM_ANSWER_LEN], int reason);
/* 0 with *reason set, or CCL_ERR_PROTOCOL. */
int ccl__shm_answer_decode(const uint8_t in[CCL_SHM_ANSWER_LEN], int *reason);

/* The reason a connector's path and the acceptor's own differ, or
 * CCL_SHM_OK when they are the same connection seen from both ends. */
int ccl__shm_path_compare(const ccl__shm_path *connector,
                          const ccl__shm_path *acceptor);

/* Tags (keyed connections): over the offer, and over offer + answer. */
void ccl__shm_offer_tag(const uint8_t seed[32], const uint8_t offer[CCL_SHM_OFFER_LEN],
                        uint8_t tag[CCL_SHM_TAG_LEN]);
void ccl__shm_answer_tag(const uint8_t seed[32], const uint8_t offer[CCL_SHM_OFFER_LEN],
                         const uint8_t answer[CCL_SHM_ANSWER_LEN],
                         uint8_t tag[CCL_SHM_TAG_LEN]);

#endif
