/*
 * log.h - the core's log lines.
 *
 * Every line the core has to say (membership changes, refusals, warnings)
 * goes through ccl__log.  By default a line is written to stderr at once.
 * A host language that must never be called from the core's threads (the
 * Python bindings) calls ccl_log_capture(1): lines then wait in a bounded
 * queue until ccl_log_read takes them, and lines that do not fit are
 * counted and reported as one "dropped" line instead of blocking the
 * engine.  The queue is process-wide and thread-safe.
 *
 * Refusals of strangers are limited separately (ccl__log_refusal): a
 * scanner may knock thousands of times, and the operator needs to hear of
 * each (host, cause) once.
 */
#ifndef CCL_LOG_H
#define CCL_LOG_H

#include <stdint.h>

#include "ccl.h"

/* Writes one line at `level` (a ccl_log_level) if the level is enabled. */
void ccl__log(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Whether lines at `level` are wanted (to skip building costly ones). */
int ccl__log_enabled(int level);

#define CCL_LOG_SLOTS 64

typedef struct ccl__log_once {
    uint64_t seen[CCL_LOG_SLOTS];
    int n;
    uint64_t suppressed;
} ccl__log_once;

/* Logs "<who>: refused connection from <addr>: <cause>" unless this host
 * and cause were logged before.  When every slot is used, further new
 * pairs are logged once more with a note and then only counted.  Not
 * thread-safe: each owner (the master thread, a communicator's mesh setup)
 * keeps its own limiter. */
void ccl__log_refusal(ccl__log_once *l, const char *who, const char *addr,
                      const char *cause);

#endif
