/*
 * shm_setup.c - the SHM_OFFER / SHM_ANSWER exchange of shm_setup.h.
 *
 * The connector always sends an offer once both HELLOs asked for one;
 * when it cannot make rings (no /dev/shm, /dev/shm full, no /proc) the
 * offer says so with ring size 0, so the acceptor never waits for bytes
 * that will not come.  Every refusal leaves the connection on TCP: shared
 * memory is only ever a faster path, never a condition.
 */
#include "shm_setup.h"

#include <stdio.h>
#include <string.h>

#include "../include/ccl.h"
#include "sha256.h"
#include "shm_offer.h"
#include "sock.h"

int ccl__shm_wanted(int we_want, const ccl__hs *hs, uint32_t conn_index)
{
    return we_want && (hs->theirs.flags & CCL_HELLO_SHM) && conn_index == 0;
}

static size_t tag_len(const ccl__hs *hs)
{
    return hs->authed ? CCL_SHM_TAG_LEN : 0;
}

uint32_t ccl__shm_ring_for(uint32_t world)
{
    /* Rings of 8 MiB let a writer run well ahead of its reader: measured
     * on 2 cores, a 64 MiB all-reduce at N = 2 took 15.4 ms against 16.5
     * with 2 MiB, and a u8 one 19.8 against 27 (docs/benchmarks.md); 16
     * MiB was slower again for f32 (the rings no longer stay in L3). */
    uint32_t ring = CCL_SHM_RING_BYTES;
    for (uint32_t w = 4; w < world && ring > CCL_SHM_RING_MIN; w *= 2)
        ring /= 2;
    return ring;
}

int ccl__shm_setup_connect(int fd, const ccl__hs *hs, uint32_t ring_bytes,
                           uint64_t deadline, ccl__shm **out, char *why,
                           size_t whylen, char *err, size_t errlen)
{
    *out = NULL;
    ccl__shm_offer o;
    memset(&o, 0, sizeof o);
    ccl__shm *rings = NULL;
    char local[200] = "";
    int rc = ccl__shm_path_of(fd, 1, &o.path, local, sizeof local);
    /* A small /dev/shm (a container's is often 64 MiB) refuses a large
     * file: smaller rings before none. */
    if (rc == CCL_OK) {
        rc = ccl__shm_create(ring_bytes, &rings, o.name, o.nonce, local, sizeof local);
        while (rc == CCL_ERR_NOMEM && ring_bytes > CCL_SHM_RING_MIN) {
            ring_bytes /= 2;
            rc = ccl__shm_create(ring_bytes, &rings, o.name, o.nonce, local,
                                 sizeof local);
        }
    }
    if (rc == CCL_OK)
        o.ring_bytes = ring_bytes;
    else
        memset(&o, 0, sizeof o); /* withdrawn: ring size 0 */
    uint8_t msg[CCL_SHM_OFFER_LEN + CCL_SHM_TAG_LEN];
    uint8_t ans[CCL_SHM_ANSWER_LEN + CCL_SHM_TAG_LEN];
    ccl__shm_offer_encode(msg, &o);
    if (hs->authed)
        ccl__shm_offer_tag(hs->seed_tx, msg, msg + CCL_SHM_OFFER_LEN);
    char e[160];
    rc = ccl__sock_send_all(fd, msg, CCL_SHM_OFFER_LEN + tag_len(hs), deadline, e,
                            sizeof e);
    if (rc == CCL_OK)
        rc = ccl__sock_recv_all(fd, ans, CCL_SHM_ANSWER_LEN + tag_len(hs), deadline,
                                e, sizeof e);
    ccl__shm_unlink(o.name); /* attached by now, or never will be */
    if (rc) {
        snprintf(err, errlen, "shared memory offer: %s", e);
        ccl__shm_free(rings);
        return rc;
    }
    int reason = 0;
    uint8_t tag[CCL_SHM_TAG_LEN];
    if (hs->authed) {
        ccl__shm_answer_tag(hs->seed_rx, msg, ans, tag);
        if (!ccl__ct_equal(tag, ans + CCL_SHM_ANSWER_LEN, CCL_SHM_TAG_LEN)) {
            snprintf(err, errlen, "shared memory answer failed its MAC check");
            ccl__shm_free(rings);
            return CCL_ERR_AUTH;
        }
    }
    if (ccl__shm_answer_decode(ans, &reason)) {
        snprintf(err, errlen, "malformed shared memory answer");
        ccl__shm_free(rings);
        return CCL_ERR_PROTOCOL;
    }
    if (!rings) {
        snprintf(why, whylen, "no shared memory here: %s", local);
        return CCL_OK;
    }
    if (reason != CCL_SHM_OK) {
        snprintf(why, whylen, "declined: %s", ccl__shm_reason(reason));
        ccl__shm_free(rings);
        return CCL_OK;
    }
    *out = rings;
    return CCL_OK;
}

int ccl__shm_setup_accept(int fd, const ccl__hs *hs, uint64_t deadline,
                          ccl__shm **out, char *why, size_t whylen, char *err,
                          size_t errlen)
{
    *out = NULL;
    uint8_t msg[CCL_SHM_OFFER_LEN + CCL_SHM_TAG_LEN];
    uint8_t ans[CCL_SHM_ANSWER_LEN + CCL_SHM_TAG_LEN];
    char e[200];
    int rc = ccl__sock_recv_all(fd, msg, CCL_SHM_OFFER_LEN + tag_len(hs), deadline,
                                e, sizeof e);
    if (rc) {
        snprintf(err, errlen, "shared memory offer: %s", e);
        return rc;
    }
    uint8_t tag[CCL_SHM_TAG_LEN];
    if (hs->authed) {
        ccl__shm_offer_tag(hs->seed_rx, msg, tag);
        if (!ccl__ct_equal(tag, msg + CCL_SHM_OFFER_LEN, CCL_SHM_TAG_LEN)) {
            snprintf(err, errlen, "shared memory offer failed its MAC check");
            return CCL_ERR_AUTH;
        }
    }
    ccl__shm_offer o;
    if (ccl__shm_offer_decode(msg, &o)) {
        snprintf(err, errlen, "malformed shared memory offer");
        return CCL_ERR_PROTOCOL;
    }
    int reason = CCL_SHM_OK;
    ccl__shm *rings = NULL;
    ccl__shm_path mine;
    e[0] = 0;
    if (o.ring_bytes == 0) {
        reason = CCL_SHM_ATTACH_FAILED;
        snprintf(why, whylen, "the connecting end has no shared memory");
    } else if (ccl__shm_path_of(fd, 0, &mine, e, sizeof e)) {
        reason = CCL_SHM_UNKNOWN_PATH;
        snprintf(why, whylen, "declined: %s", e);
    } else if ((reason = ccl__shm_path_compare(&o.path, &mine)) != CCL_SHM_OK) {
        snprintf(why, whylen, "declined: %s", ccl__shm_reason(reason));
    } else if (ccl__shm_attach(o.name, o.nonce, o.ring_bytes, &rings, e, sizeof e)) {
        reason = CCL_SHM_ATTACH_FAILED;
        snprintf(why, whylen, "declined: %s", e);
    }
    ccl__shm_answer_encode(ans, reason);
    if (hs->authed)
        ccl__shm_answer_tag(hs->seed_tx, msg, ans, ans + CCL_SHM_ANSWER_LEN);
    rc = ccl__sock_send_all(fd, ans, CCL_SHM_ANSWER_LEN + tag_len(hs), deadline, e,
                            sizeof e);
    if (rc) {
        snprintf(err, errlen, "shared memory answer: %s", e);
        ccl__shm_free(rings);
        return rc;
    }
    *out = rings;
    return CCL_OK;
}
