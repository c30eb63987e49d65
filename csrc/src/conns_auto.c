/*
 * conns_auto.c - the automatic number of data-carrying connections per
 * peer pair (see conns_auto.h).  One TCP stream moves at most its window
 * per round trip; the window is capped by the socket buffers the kernel
 * lets an unprivileged process have (net.ipv4.tcp_wmem/tcp_rmem), often
 * below a long, fast link's bandwidth-delay product.  Several streams
 * striped together (the transport's queue hands frames to whichever
 * stream can take them) add their windows.
 */
#include "conns_auto.h"

int ccl__conns_auto(uint32_t rtt_us, uint64_t window, uint64_t ref_bps, int max)
{
    if (max < 1)
        return 1;
    if (rtt_us == 0 || window == 0)
        return 1;
    /* bytes in flight needed = rtt * rate / 8; no overflow: rtt < 2^32 us,
     * rate / 8 / 10^6 < 2^32 for rates below 34 Tbit/s. */
    uint64_t bdp = (uint64_t)rtt_us * (ref_bps / 8 / 1000000u);
    uint64_t k = (bdp + window - 1) / window;
    return k < 1 ? 1 : k > (uint64_t)max ? max : (int)k;
}
