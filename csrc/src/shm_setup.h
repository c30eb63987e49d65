/*
 * shm_setup.h - after the handshake of a peer pair's connection 0, the
 * exchange that moves it into shared memory when both ends are on one
 * host (shm_offer.h has the messages, sock_shm.h the rings).  Blocking,
 * with a deadline, on a connection that has just finished its handshake
 * (its next bytes are these messages).
 */
#ifndef CCL_SHM_SETUP_H
#define CCL_SHM_SETUP_H

#include <stddef.h>
#include <stdint.h>

#include "handshake.h"
#include "sock_shm.h"

/* Whether the exchange follows the handshake: both HELLOs carry SHM
 * (we_want: ours does) and it is the pair's connection 0. */
int ccl__shm_wanted(int we_want, const ccl__hs *hs, uint32_t conn_index);

/* The connector's side: makes the rings, offers them, reads the answer.
 * CCL_OK with *out the rings (accepted), or with *out NULL and the reason
 * in why (declined, or no rings could be made here: TCP carries the
 * connection); or an error in err, and the connection must close. */
int ccl__shm_setup_connect(int fd, const ccl__hs *hs, uint32_t ring_bytes,
                           uint64_t deadline, ccl__shm **out, char *why,
                           size_t whylen, char *err, size_t errlen);
/* The ring size for a group of `world` members: CCL_SHM_RING_BYTES up to
 * 4 members, then halved as the group doubles (a host's /dev/shm holds a
 * file per pair), down to CCL_SHM_RING_MIN.  The connector halves it
 * again while /dev/shm refuses the file. */
uint32_t ccl__shm_ring_for(uint32_t world);
/* The acceptor's side: reads the offer, checks the path from its end,
 * attaches, answers.  Results as for ccl__shm_setup_connect. */
int ccl__shm_setup_accept(int fd, const ccl__hs *hs, uint64_t deadline,
                          ccl__shm **out, char *why, size_t whylen, char *err,
                          size_t errlen);

#endif
