/*
 * sock_limits.c - what a server needs to shed load before the kernel
 * refuses it: the open-file limit, and the network prefix of an address
 * (caps per /24 or /64 hold against a sender with many addresses, where a
 * cap per address does not).
 */
#include "sock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

int ccl__sock_raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) != 0)
        return 1024;
    if (r.rlim_cur < r.rlim_max) {
        struct rlimit want = r;
        want.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            r.rlim_cur = r.rlim_max;
    }
    return r.rlim_cur == RLIM_INFINITY || r.rlim_cur > (1u << 30)
               ? (1 << 30) : (int)r.rlim_cur;
}

uint64_t ccl__sock_prefix_key(const char *addr)
{
    /* addr is "ip:port" as ccl__sock_accept_now writes it (IPv6 without
     * brackets): the IP is everything before the last colon. */
    char ip[64];
    const char *colon = strrchr(addr, ':');
    size_t n = colon ? (size_t)(colon - addr) : strlen(addr);
    if (n >= sizeof ip)
        n = sizeof ip - 1;
    memcpy(ip, addr, n);
    ip[n] = 0;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, ip, &a4) == 1)
        return 0x4000000000000000ull | (ntohl(a4.s_addr) >> 8); /* /24 */
    if (inet_pton(AF_INET6, ip, &a6) == 1) {
        const uint8_t *b = a6.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(b, mapped, 12) == 0) /* an IPv4 address mapped into IPv6 */
            return 0x4000000000000000ull |
                   ((uint64_t)b[12] << 16 | (uint64_t)b[13] << 8 | b[14]);
        uint64_t k = 0;
        for (int i = 0; i < 8; i++) /* /64 */
            k = k << 8 | b[i];
        return k & ~0x4000000000000000ull; /* (apart from the IPv4 keys) */
    }
    return 0;
}
