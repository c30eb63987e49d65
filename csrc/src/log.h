/*
 * log.h - one stderr line per kind of refused connection.
 *
 * A scanner or a misconfigured peer may knock thousands of times; the
 * operator needs to hear about it once, not thousands of times.  A limiter
 * remembers which (host, cause) pairs it has logged (the source port
 * changes on every attempt, so it is left out) and stays quiet about
 * repeats, counting them instead.  Not thread-safe: each owner (the master
 * thread, a communicator's mesh setup) keeps its own.
 */
#ifndef CCL_LOG_H
#define CCL_LOG_H

#include <stdint.h>

#define CCL_LOG_SLOTS 64

typedef struct ccl__log_once {
    uint64_t seen[CCL_LOG_SLOTS];
    int n;
    uint64_t suppressed;
} ccl__log_once;

/* Logs "<who>: refused connection from <addr>: <cause>" unless this host
 * and cause were logged before.  When every slot is used, further new
 * pairs are logged once more with a note and then only counted. */
void ccl__log_refusal(ccl__log_once *l, const char *who, const char *addr,
                      const char *cause);

#endif
