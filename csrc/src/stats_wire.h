/*
 * stats_wire.h - the STATS control frame's payload (member -> master):
 * a compact summary of one member's counters and of the links it
 * receives on.  Pure codec, no I/O; layout byte by byte in
 * docs/protocol.md ("STATS").  The payload has its own version byte, so
 * the summary can grow without a new protocol version: a master skips a
 * report of a version it does not know (and counts it) instead of
 * dropping the member.
 */
#ifndef CCL_STATS_WIRE_H
#define CCL_STATS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define CCL_STATS_MSG_VERSION 2
#define CCL_STATS_FIXED_LEN 72
#define CCL_STATS_LINK_LEN 28
#define CCL_STATS_MAX_LINKS 256
#define CCL_STATS_MAX_LEN (CCL_STATS_FIXED_LEN + CCL_STATS_LINK_LEN * CCL_STATS_MAX_LINKS)
#define CCL_STATS_LINK_SLOW 1u /* the member's own verdict on this link */

typedef struct ccl__stats_link_msg {
    uint32_t peer;     /* sender's rank of the link's other end */
    uint32_t rate_kbs; /* receive rate, 1000 bytes/s units (0: no sample) */
    uint32_t rtt_us;   /* smoothed round trip (0: none) */
    uint32_t samples;  /* rate samples taken so far this epoch */
    uint64_t rx_bytes; /* bytes received from that peer this epoch */
    uint8_t flags;     /* CCL_STATS_LINK_* */
} ccl__stats_link_msg;

typedef struct ccl__stats_msg {
    uint8_t version;
    uint16_t nlinks;
    uint32_t epoch, rank, size;
    uint64_t ops_ok, ops_failed, tx_bytes, rx_bytes, op_bytes, op_time_us;
    uint64_t tx_peak;  /* bytes/s: the member's fastest op's send rate (version 2) */
    ccl__stats_link_msg links[CCL_STATS_MAX_LINKS];
} ccl__stats_msg;

/* Writes the payload; returns its length (0 if cap is too small or
 * nlinks is over the cap). */
size_t ccl__stats_msg_encode(uint8_t *out, size_t cap, const ccl__stats_msg *m);
/* 0; CCL_ERR_VERSION for another payload version (m->version set);
 * CCL_ERR_PROTOCOL for a wrong length, nonzero reserved bytes or unknown
 * flags. */
int ccl__stats_msg_decode(const uint8_t *in, size_t len, ccl__stats_msg *m);

#endif
