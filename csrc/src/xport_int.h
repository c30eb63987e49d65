/*
 * xport_int.h - the transport's own structures, shared by its files:
 * xport_conn.c (connection primitives) < xport_send.c (frames out) and
 * xport_recv.c (frames in) < xport_peers.c (members, liveness, events).
 * Nothing above the transport includes this file.
 */
#ifndef CCL_XPORT_INT_H
#define CCL_XPORT_INT_H

#include "aead.h"
#include "mac.h"
#include "sock.h"
#include "sock_shm.h"
#include "stats.h"
#include "xport.h"

/* Reads stop after this many bytes per connection and event, so one busy
 * connection cannot starve the others. */
#define XP_READ_BUDGET (4u << 20)
#define XP_DISCARD_CHUNK 65536
/* encrypt: a frame's payload is encrypted this much at a time, just
 * before the socket takes it, into the connection's own buffer, so the
 * buffer stays small and in cache (and the caller's memory is only read). */
#define XP_SEAL_CHUNK (256u << 10)

/* One frame waiting to be written: header bytes plus a payload that is
 * borrowed from the layer above (cookie set) or owned (control frames). */
typedef struct xp_req {
    struct xp_req *next;
    void *cookie;
    uint8_t hdr[CCL_HDR_LEN];
    const uint8_t *data;
    uint32_t len;
    uint8_t *owned;
} xp_req;

/* Receive states: a header, then its payload, then (frame MACs) its tag. */
enum { RX_HDR, RX_PAYLOAD, RX_TAG };

/* Frame MAC state of one connection.  Each direction has its own key, and
 * its frame count is the MAC's sequence number.  The MAC is computed as
 * bytes are written and checked as they are read; a frame is reported up
 * (on_frame, or on_header for a frame without payload) only after its tag
 * checked out. */
typedef struct xp_mac {
    /* Protocol 4: on a keyed connection every frame other than DATA is
     * MACed; DATA frames too only with frame_mac (data_too).  The sequence
     * numbers count the MACed frames of each direction. */
    int data_too;
    ccl__frame_mac_key tx_key, rx_key;
    ccl__frame_mac_ctx tx, rx;
    uint64_t tx_seq, rx_seq;
    uint8_t tx_tag[CCL_FRAME_MAC_TAG_LEN];
    int tx_sealed;
    uint8_t rx_tag[CCL_FRAME_MAC_TAG_LEN];
    size_t rx_tag_have;
    int tx_on, rx_on; /* the frame being written / read is MACed */
    /* encrypt (aead.h): every frame is sealed with the AEAD instead of the
     * frame MAC: the header in clear as associated data, the payload
     * encrypted, the AEAD's tag where the MAC's would be.  The counters
     * (nonces) are inside tx_aead and rx_aead.  On the send side the
     * payload's ciphertext is made XP_SEAL_CHUNK at a time into ct: bytes
     * [ct_from, ct_to) of the payload; on the receive side it is
     * decrypted in place where it lands. */
    ccl__aead *tx_aead, *rx_aead;
    uint8_t *ct;
    size_t ct_cap, ct_from, ct_to;
} xp_mac;

/* Whether a frame of this type carries a tag on a connection with mac m
 * (with encrypt, data_too is set: every frame is sealed). */
static inline int ccl__xp_macd(const xp_mac *m, int type)
{
    return m && (m->data_too || type != CCL_FT_DATA);
}

typedef struct xp_conn {
    ccl__io_handler ev; /* first: the poller reports to it */
    ccl__xport *x;
    int fd, peer, index;
    /* send side */
    xp_req *cur;
    size_t cur_off; /* bytes of header + payload (+ tag) written */
    int out_armed;
    /* receive side */
    int rstate;
    uint8_t hbuf[CCL_HDR_LEN];
    size_t hpos;
    ccl__hdr h;
    ccl__sink sink;
    uint8_t *rdst;   /* where the payload's bytes go now */
    size_t rdone;    /* payload bytes received */
    size_t rtaken;   /* STAGE: payload bytes handed to consume */
    uint8_t *staging;
    size_t staging_cap;
    uint8_t *keep;   /* KEEP: the heap payload */
    int parked;
    xp_mac *mac;
    uint64_t rx_t0_ns; /* a large DATA frame's header arrived (stats) */
    uint64_t rx_b0;    /* the peer's rx_bytes then */
    /* Same host (sock_shm.h): frames go through these rings, and the
     * socket carries only doorbells.  shm_eof: the socket ended (the
     * rings may still hold the peer's last frames, read before the
     * connection fails); rx_more: reading stopped at its budget with
     * bytes left in the ring (no doorbell will come for them). */
    ccl__shm *shm;
    int shm_eof, rx_more;
} xp_conn;

typedef struct xp_peer {
    char host[CCL_MAX_HOST + 1];
    uint16_t port;
    xp_conn *conns;
    int nconns;
    int active;            /* connections [0, active) take data frames */
    xp_req *qhead, *qtail; /* frames not yet taken by a connection */
    uint64_t last_rx_ms;   /* any byte from this peer */
    uint64_t rx_bytes;     /* bytes from it on all connections (rates) */
    uint64_t last_tx_ms;   /* any frame queued to it */
    int misbehaved;        /* never set: see ccl__xp_conn_failed (blame) */
} xp_peer;

struct ccl__xport {
    int poller;
    const ccl__xport_ops *ops;
    void *ctx;
    xp_peer *peers;
    int size, self;
    uint32_t epoch;
    int peer_timeout_ms;
    xp_req *free_reqs;
    uint64_t tx_bytes, rx_bytes;
    uint64_t gen;
    uint64_t next_tick_ms; /* liveness checks run at most this often */
    uint64_t last_tick_ms; /* when they last ran */
    ccl__stats stats;      /* per link and per op (stats.h) */
    uint64_t next_rtt_ms;  /* RTT samples are taken at most this often */
    /* Test hook (CCL_TEST_TX_BYTES_PER_S): sends of this process are
     * held to a rate, like a slow uplink.  0: off. */
    double tx_rate, tx_tokens;
    uint64_t tx_refill_us;
    int tx_slow_peer; /* CCL_TEST_TX_SLOW_PEER: only sends to this rank; -1: all */
    int tx_waiting; /* a connection stopped for tokens: the tick resumes it */
    int lost_logged; /* peers lost this epoch (log levels) */
    int started;           /* ccl__xport_start ran for this epoch */
    int auto_conns;        /* choose each peer's active connections */
    uint64_t next_auto_ms; /* ... again at this time */
    int rx_more;           /* a connection has rx_more set */
};

/* xport_conn.c */
void ccl__xp_conn_events(xp_conn *k);
void ccl__xp_conn_close(xp_conn *k);
void ccl__xp_mac_free(xp_conn *k);
void ccl__xp_conn_failed(xp_conn *k, int code, const char *why);
void ccl__xp_conn_bye(xp_conn *k);
xp_req *ccl__xp_req_alloc(ccl__xport *x);
/* A connection's bytes in and out: its socket, or its shared-memory
 * rings (sock_shm.h), with the semantics of ccl__sock_read_some and
 * ccl__sock_writev_some. */
long ccl__xp_read_some(xp_conn *k, void *dst, size_t n, char *err, size_t errlen);
long ccl__xp_writev_some(xp_conn *k, struct iovec *iov, int n, char *err,
                         size_t errlen);
void ccl__xp_req_free(ccl__xport *x, xp_req *r);
/* xport_send.c */
void ccl__xp_flush(xp_conn *k);
void ccl__xp_kick(ccl__xport *x, int peer);
/* xport_recv.c */
void ccl__xp_read(xp_conn *k);
void ccl__xp_unpark(xp_conn *k);

#endif
