/*
 * refusal_log.c - rate-limited refusal lines with periodic summaries
 * (log.h, ccl__log_once).  The limit is per window of time, not a fixed
 * list of keys: whatever a flood does, each window ends with one line
 * that counts what was not logged, so the log can be made terse but
 * never blind.
 */
#include "log.h"
#include "sock.h"

#include <stdio.h>
#include <string.h>

/* The host part of "host:port" or "[v6]:port" (or the whole string). */
static size_t host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon ? (size_t)(colon - addr) : strlen(addr);
}

static void count_addr(ccl__log_once *l, uint64_t h)
{
    for (int i = 0; i < l->naddrs; i++)
        if (l->addrs[i] == h)
            return;
    if (l->naddrs < CCL_LOG_ADDRS)
        l->addrs[l->naddrs++] = h;
    else
        l->addrs_more = 1;
}

void ccl__log_refusal_tick(ccl__log_once *l, uint64_t now)
{
    uint32_t win = l->window_ms ? l->window_ms : 10000;
    /* (now may be a stamp taken before the window began: not an end) */
    if (l->window_start && (now < l->window_start || now - l->window_start < win))
        return;
    if (l->suppressed) {
        double secs = (double)(now - l->window_start) / 1000.0;
        ccl__log(CCL_LOG_WARNING, "%s: %llu refusals from %s%d addresses in the "
                 "last %.1f s were not logged one by one (most recent cause: %s)",
                 l->who, (unsigned long long)l->suppressed,
                 l->addrs_more ? "more than " : "", l->naddrs,
                 secs, l->cause);
    }
    l->window_start = now;
    l->lines = 0;
    l->n = 0;
    l->suppressed = 0;
    l->naddrs = 0;
    l->addrs_more = 0;
}

void ccl__log_refusal(ccl__log_once *l, const char *who, const char *addr,
                      const char *cause)
{
    uint64_t now = ccl__now_ms();
    ccl__log_refusal_tick(l, now);
    snprintf(l->who, sizeof l->who, "%s", who);
    l->total++;
    uint64_t host = ccl_hash64(addr, host_len(addr), 0x9e3779b97f4a7c15ull);
    uint64_t key = ccl_hash64(cause, strlen(cause), host);
    int seen = 0;
    for (int i = 0; i < l->n && !seen; i++)
        seen = l->seen[i] == key;
    if (!seen && l->lines < CCL_LOG_LINES && l->n < CCL_LOG_SLOTS) {
        l->seen[l->n++] = key;
        l->lines++;
        ccl__log(CCL_LOG_WARNING, "%s: refused connection from %s: %s (repeats "
                 "are counted in a summary line)", who, addr, cause);
        return;
    }
    l->suppressed++;
    count_addr(l, host);
    snprintf(l->cause, sizeof l->cause, "%s", cause);
}
