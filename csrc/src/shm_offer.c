/*
 * shm_offer.c - SHM_OFFER and SHM_ANSWER (shm_offer.h): codecs, the path
 * comparison and the tags.  No I/O.
 */
#include "shm_offer.h"

#include <string.h>

#include "../include/ccl.h"
#include "sha256.h"
#include "wire.h"

#define OFFER_MAGIC "PYCCLSHO"
#define ANSWER_MAGIC "PYCCLSHA"
#define SHM_WIRE_VERSION 1

/* SHM_OFFER:
 *   [0..8) magic  [8..10) version u16  [10..12) 0  [12..16) ring_bytes u32
 *   [16..32) boot id  [32..40) netns dev u64  [40..48) netns inode u64
 *   [48..66) connector endpoint  [66..84) acceptor endpoint
 *   [84..100) nonce  [100..164) name, NUL-padded  [164..168) 0 */
void ccl__shm_offer_encode(uint8_t out[CCL_SHM_OFFER_LEN], const ccl__shm_offer *o)
{
    memset(out, 0, CCL_SHM_OFFER_LEN);
    memcpy(out, OFFER_MAGIC, 8);
    ccl__put_u16(out + 8, SHM_WIRE_VERSION);
    ccl__put_u32(out + 12, o->ring_bytes);
    memcpy(out + 16, o->path.boot_id, 16);
    ccl__put_u64(out + 32, o->path.netns_dev);
    ccl__put_u64(out + 40, o->path.netns_ino);
    memcpy(out + 48, o->path.connector, 18);
    memcpy(out + 66, o->path.acceptor, 18);
    memcpy(out + 84, o->nonce, CCL_SHM_NONCE_LEN);
    size_t n = strnlen(o->name, CCL_SHM_NAME_LEN - 1);
    memcpy(out + 100, o->name, n);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int ccl__shm_offer_decode(const uint8_t in[CCL_SHM_OFFER_LEN], ccl__shm_offer *o)
{
    memset(o, 0, sizeof *o);
    if (memcmp(in, OFFER_MAGIC, 8) || ccl__get_u16(in + 8) != SHM_WIRE_VERSION ||
        !all_zero(in + 10, 2) || !all_zero(in + 164, 4) || in[163] != 0)
        return CCL_ERR_PROTOCOL;
    o->ring_bytes = ccl__get_u32(in + 12);
    memcpy(o->path.boot_id, in + 16, 16);
    o->path.netns_dev = ccl__get_u64(in + 32);
    o->path.netns_ino = ccl__get_u64(in + 40);
    memcpy(o->path.connector, in + 48, 18);
    memcpy(o->path.acceptor, in + 66, 18);
    memcpy(o->nonce, in + 84, CCL_SHM_NONCE_LEN);
    memcpy(o->name, in + 100, 64); /* in[163] == 0: terminated */
    size_t n = strlen(o->name);
    if (!all_zero(in + 100 + n, 64 - n)) /* NUL-padded, as documented */
        return CCL_ERR_PROTOCOL;
    return CCL_OK;
}

/* SHM_ANSWER: [0..8) magic  [8] reason (0: accepted)  [9..16) 0 */
void ccl__shm_answer_encode(uint8_t out[CCL_SHM_ANSWER_LEN], int reason)
{
    memset(out, 0, CCL_SHM_ANSWER_LEN);
    memcpy(out, ANSWER_MAGIC, 8);
    out[8] = (uint8_t)reason;
}

int ccl__shm_answer_decode(const uint8_t in[CCL_SHM_ANSWER_LEN], int *reason)
{
    if (memcmp(in, ANSWER_MAGIC, 8) || !all_zero(in + 9, 7))
        return CCL_ERR_PROTOCOL;
    *reason = in[8];
    return CCL_OK;
}

const char *ccl__shm_reason(int reason)
{
    switch (reason) {
    case CCL_SHM_OK: return "accepted";
    case CCL_SHM_OTHER_HOST: return "the ends are on different hosts";
    case CCL_SHM_OTHER_NETNS: return "the ends are in different network namespaces";
    case CCL_SHM_NOT_DIRECT: return "the ends' TCP endpoints do not mirror each "
                                    "other (a relay, proxy or NAT between them)";
    case CCL_SHM_ATTACH_FAILED: return "the shared memory file could not be "
                                       "opened or checked";
    case CCL_SHM_UNKNOWN_PATH: return "the acceptor cannot tell its host or "
                                      "network namespace";
    default: return "unknown reason";
    }
}

int ccl__shm_path_compare(const ccl__shm_path *c, const ccl__shm_path *a)
{
    if (memcmp(c->boot_id, a->boot_id, 16))
        return CCL_SHM_OTHER_HOST;
    if (c->netns_dev != a->netns_dev || c->netns_ino != a->netns_ino)
        return CCL_SHM_OTHER_NETNS;
    if (memcmp(c->connector, a->connector, 18) || memcmp(c->acceptor, a->acceptor, 18))
        return CCL_SHM_NOT_DIRECT;
    return CCL_SHM_OK;
}

static void tag_of(const uint8_t seed[32], const char *label, const uint8_t *a,
                   size_t alen, const uint8_t *b, size_t blen,
                   uint8_t tag[CCL_SHM_TAG_LEN])
{
    ccl__hmac_ctx h;
    uint8_t full[32];
    ccl__hmac_init(&h, seed, 32);
    ccl__hmac_update(&h, label, strlen(label));
    ccl__hmac_update(&h, a, alen);
    if (blen)
        ccl__hmac_update(&h, b, blen);
    ccl__hmac_final(&h, full);
    memcpy(tag, full, CCL_SHM_TAG_LEN);
    ccl__wipe(full, sizeof full);
    ccl__wipe(&h, sizeof h);
}

void ccl__shm_offer_tag(const uint8_t seed[32], const uint8_t offer[CCL_SHM_OFFER_LEN],
                        uint8_t tag[CCL_SHM_TAG_LEN])
{
    tag_of(seed, "pyccl shm offer v1", offer, CCL_SHM_OFFER_LEN, NULL, 0, tag);
}

void ccl__shm_answer_tag(const uint8_t seed[32], const uint8_t offer[CCL_SHM_OFFER_LEN],
                         const uint8_t answer[CCL_SHM_ANSWER_LEN],
                         uint8_t tag[CCL_SHM_TAG_LEN])
{
    tag_of(seed, "pyccl shm answer v1", offer, CCL_SHM_OFFER_LEN, answer,
           CCL_SHM_ANSWER_LEN, tag);
}
