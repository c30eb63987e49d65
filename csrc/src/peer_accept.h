/*
 * peer_accept.h - a communicator's listen port, served all the time.
 *
 * Peers connect to each other's listen ports when a mesh is built, but
 * anyone can connect at any time.  The acceptor takes every connection as
 * soon as it arrives (the listen socket is in the communicator's event
 * loop, so it is served while ops run too), runs the handshake of each
 * nonblocking and concurrently with a deadline, and keeps the ones that
 * finished it (with a key: proved it) until the mesh of their epoch takes
 * them.  Strangers therefore cost a reform nothing: a silent connection
 * sits in a slot until its deadline, it is never waited on.
 *
 * Caps: PA_SLOTS connections in the handshake at once, PA_PER_ADDR from
 * one address.  When a cap is full a newcomer is not refused: the slot of
 * the connection that has shown the least (silent ones first, then the
 * oldest) is taken from it.  A member's handshake takes one round trip,
 * so a member always finishes long before it is the oldest, while
 * strangers that hold slots are pushed out by the next arrivals; that is
 * how members expected at this epoch take precedence over any number of
 * strangers (all members can share one address with them, as on
 * loopback, so precedence cannot come from the address alone).
 */
#ifndef CCL_PEER_ACCEPT_H
#define CCL_PEER_ACCEPT_H

#include "communicator.h"

#define PA_SLOTS 64       /* connections in the handshake at once */
#define PA_PER_ADDR 32    /* ... from one address */
#define PA_HS_MS 5000     /* a connection's time to finish the handshake */
#define PA_READY_MAX 1024 /* handshaken connections waiting for their epoch */
#define PA_READY_MS 120000 /* ... and how long one may wait */

/* Starts serving c->listen_fd from the event loop.  CCL_OK or an error. */
int ccl__acceptor_start(ccl_comm *c);
/* Closes every connection it holds (the listen socket is the caller's). */
void ccl__acceptor_free(ccl_comm *c);
/* Hands every waiting connection of the current group's epoch that the
 * mesh expects to the transport, and drops the ones of older epochs or
 * that nobody expects.  Returns how many were adopted, or a negative
 * ccl_result with the reason in err. */
int ccl__acceptor_take(ccl_comm *c, char *err, size_t errlen);
/* Why the last connection claiming to be a member of the current group
 * was refused in its handshake (a setting that differs, a key that
 * fails), or "": for error messages only. */
const char *ccl__acceptor_member_refused(const ccl_comm *c);
/* Counters for tests and logs. */
void ccl__acceptor_counts(ccl_comm *c, int *handshaking, int *ready,
                          uint64_t *evicted);

#endif
