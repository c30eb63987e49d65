/*
 * log.c - see log.h.
 */
#include "log.h"

#include <stdio.h>
#include <string.h>

#include "ccl.h"

/* The host part of "host:port" or "[v6]:port" (or the whole string). */
static size_t host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon ? (size_t)(colon - addr) : strlen(addr);
}

void ccl__log_refusal(ccl__log_once *l, const char *who, const char *addr,
                      const char *cause)
{
    uint64_t key = ccl_hash64(addr, host_len(addr), 0x9e3779b97f4a7c15ull);
    key = ccl_hash64(cause, strlen(cause), key);
    for (int i = 0; i < l->n; i++)
        if (l->seen[i] == key) {
            l->suppressed++;
            return;
        }
    if (l->n == CCL_LOG_SLOTS) {
        if (l->suppressed++ == 0)
            fprintf(stderr, "%s: refused connection from %s: %s (too many kinds "
                    "of refusal: no more are logged)\n", who, addr, cause);
        return;
    }
    l->seen[l->n++] = key;
    fprintf(stderr, "%s: refused connection from %s: %s (repeats are not "
            "logged)\n", who, addr, cause);
}
