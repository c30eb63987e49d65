/*
 * xport.h - the transport: K TCP connections per peer, frames in and out.
 *
 * The transport moves frames.  It knows connections, their send queues
 * (one queue per peer, pulled by whichever of the peer's connections can
 * write, so one op is striped over the pool by each connection's
 * progress), frame MACs, heartbeats and silence, parking a connection
 * that must stop reading, and BYE.  It knows nothing about ops: a frame's
 * payload goes where the layer above says, through a *sink* it hands back
 * when the header arrives, and everything the transport has to report
 * goes up through the callback table ccl__xport_ops (nng's transport ops
 * and gloo's pairs have the same shape).  Payloads of queued frames are
 * borrowed, tagged with an opaque cookie, until on_sent reports them
 * written or ccl__xport_purge detaches them.
 *
 * Every function runs with the communicator's drive lock held (see
 * communicator.h); callbacks run inside them, so a callback may call back into
 * the transport (a connection may be closed under the caller: functions
 * check for that).
 */
#ifndef CCL_XPORT_H
#define CCL_XPORT_H

#include <stddef.h>
#include <stdint.h>

#include "ccl.h"
#include "handshake.h"
#include "sock_shm.h"
#include "stats.h"
#include "wire.h"

typedef struct ccl__xport ccl__xport;

/* Where the payload of an arriving frame goes. */
enum ccl__sink_kind {
    CCL_SINK_DISCARD = 0, /* read and dropped */
    CCL_SINK_LAND,        /* straight into dst */
    CCL_SINK_STAGE,       /* into the connection's staging buffer; consume
                             takes each run of whole units as it arrives */
    CCL_SINK_KEEP,        /* into a heap buffer handed over in on_frame */
    CCL_SINK_PARK         /* not now: stop reading this connection, offer
                             the header again at ccl__xport_unpark_all */
};

typedef struct ccl__sink ccl__sink;
struct ccl__sink {
    int kind;
    uint8_t *dst;  /* LAND: where bytes go; STAGE: for consume's use */
    size_t unit;   /* STAGE: consume sees multiples of this (>= 1) */
    /* STAGE: bytes [off, off + len) of the payload are in src. */
    void (*consume)(const ccl__sink *s, const uint8_t *src, size_t off, size_t len);
    void *owner;   /* the layer above's tag (an op): ccl__xport_detach */
    void *arg;     /* anything consume needs */
    uint8_t *target; /* STAGE: for consume's use (kept apart from dst, which */
    uint64_t where;  /*  the op layer reads as "bytes about to be written") */
    int from;        /* STAGE: for consume's use (the sending rank) */
};

typedef struct ccl__xport_ops {
    /* A header arrived (a frame without payload: after its MAC checked).
     * Sets *sink, which starts as DISCARD. */
    void (*on_header)(void *ctx, int peer, const ccl__hdr *h, ccl__sink *sink);
    /* The frame is complete and its MAC checked.  kept: the payload of a
     * KEEP sink, which now belongs to the callee (NULL otherwise). */
    void (*on_frame)(void *ctx, int peer, const ccl__hdr *h, const ccl__sink *sink,
                     uint8_t *kept);
    /* A queued frame with this cookie has been written whole. */
    void (*on_sent)(void *ctx, void *cookie);
    /* The peer is out: a connection failed, or it fell silent.  Every
     * connection to it is closed and its queue dropped. */
    void (*on_broken)(void *ctx, int peer, int code, const char *why);
    /* Every connection of the peer said BYE; tag is what the last said. */
    void (*on_bye)(void *ctx, int peer, uint64_t tag);
} ccl__xport_ops;

/* One member as the transport needs it. */
typedef struct ccl__xport_member {
    const char *host;
    uint16_t port;
} ccl__xport_member;

int ccl__xport_create(ccl__xport **out, int poller, const ccl__xport_ops *ops,
                      void *ctx);
void ccl__xport_destroy(ccl__xport *x);

/* Starts an epoch: size members, this one at rank self, K connections per
 * other member (not yet connected), frames stamped with epoch. */
int ccl__xport_reset(ccl__xport *x, int size, int self, int conns_per_peer,
                     uint32_t epoch, const ccl__xport_member *members);
/* Closes every connection and forgets the members. */
void ccl__xport_clear(ccl__xport *x);
/* Mesh setup hands a connected, handshaken fd over, with its
 * shared-memory rings when it has them (shm, or NULL; taken over on
 * success, freed with the connection).  hs (may be NULL)
 * keys the frame MACs (of DATA frames too when frame_mac) or, when
 * encrypt, the AEAD of every frame; its seeds are wiped.  CCL_OK, or
 * CCL_ERR_NOMEM / AUTH / INTERNAL with a message (the fd is then the
 * caller's to close). */
int ccl__xport_adopt(ccl__xport *x, int peer, int index, int fd,
                     ccl__hs *hs, int frame_mac, int encrypt, ccl__shm *shm,
                     char *err, size_t errlen);
/* Connections of peer whose frames go through shared memory. */
int ccl__xport_shm_conns(const ccl__xport *x, int peer);
/* Whether connection index of peer is still to be made. */
int ccl__xport_wants(const ccl__xport *x, int peer, int index);
int ccl__xport_conns(const ccl__xport *x, int peer);
/* Registers every adopted connection with the poller. */
int ccl__xport_start(ccl__xport *x, int peer_timeout_ms);
/* Automatic connections (on: conns_per_peer was 0): each peer's data
 * frames use only as many of its connections as its round trip needs
 * (conns_auto.h), chosen now and every 500 ms; off: all of them. */
void ccl__xport_set_auto(ccl__xport *x, int on);
/* Connections of the peer that take data frames now. */
int ccl__xport_active(const ccl__xport *x, int peer);
/* Bumped whenever connections are freed: events gathered before point at
 * freed memory. */
uint64_t ccl__xport_generation(const ccl__xport *x);

/* Queues a frame (header fields from h, length = len).  data is borrowed
 * until on_sent(cookie) or ccl__xport_purge(cookie).  A NULL cookie makes
 * a control frame: data is copied.  0, or CCL_ERR_NOMEM. */
int ccl__xport_send(ccl__xport *x, int peer, ccl__hdr *h, const uint8_t *data,
                    uint32_t len, void *cookie);
/* The same with a payload that becomes the transport's (freed once
 * written or dropped, also when this fails). */
int ccl__xport_send_owned(ccl__xport *x, int peer, ccl__hdr *h, uint8_t *owned,
                          uint32_t len, void *cookie);
/* Takes back every queued frame of cookie (a half-written one is finished
 * from a copy: the stream must stay whole). */
void ccl__xport_purge(ccl__xport *x, void *cookie);
/* Payload being received into sinks owned by owner is discarded instead. */
void ccl__xport_detach(ccl__xport *x, void *owner);
/* Ends every connection to peer (reported through on_broken). */
void ccl__xport_break(ccl__xport *x, int peer, int code, const char *why);
/* Offers the saved header of every parked connection again. */
void ccl__xport_unpark_all(ccl__xport *x);
/* Heartbeats and silence: call at least every ccl__xport_timer_ms. */
void ccl__xport_tick(ccl__xport *x, uint64_t now_ms);
int ccl__xport_timer_ms(const ccl__xport *x, int busy);
/* Test hook (CCL_TEST_TX_BYTES_PER_S): connections held for the send rate
 * write again.  Call on every loop pass, before taking the time for the
 * timers (it completes frames, which stamps op progress). */
void ccl__xport_resume(ccl__xport *x);
/* Writes BYE (carrying tag) on every connection that is between frames,
 * waiting at most 200 ms per connection. */
void ccl__xport_say_bye(ccl__xport *x, uint64_t tag);

/* What membership reports about a peer at the safe point. */
int ccl__xport_peer_open(const ccl__xport *x, int peer);
int ccl__xport_peer_misbehaved(const ccl__xport *x, int peer);
void ccl__xport_stats(const ccl__xport *x, uint64_t *tx, uint64_t *rx);
/* The communicator's counters (stats.h); lives as long as the transport. */
ccl__stats *ccl__xport_stats_of(ccl__xport *x);

#endif
