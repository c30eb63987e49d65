/*
 * conns_auto.h - how many of a peer pair's TCP connections carry data
 * when conns_per_peer is automatic: enough streams that their windows
 * together cover the bandwidth-delay product of a reference link.
 */
#ifndef CCL_CONNS_AUTO_H
#define CCL_CONNS_AUTO_H

#include <stdint.h>

/* Connections opened per peer pair in automatic mode. */
#define CCL_AUTO_CONNS_OPEN 4
/* The link rate the automatic choice aims to fill: the top of the range
 * pyccl is built for (0.1 to 10 Gbit/s).  Extra streams on a slower link
 * cost little; too few on a faster one cost most of it. */
#define CCL_AUTO_REF_BPS 10000000000ull

/* Streams needed so that `window` bytes in flight each cover rtt_us x
 * ref_bps: ceil(rtt * rate / window), between 1 and max.  A zero rtt
 * (unknown) or window gives 1.  Pure. */
int ccl__conns_auto(uint32_t rtt_us, uint64_t window, uint64_t ref_bps, int max);

#endif
