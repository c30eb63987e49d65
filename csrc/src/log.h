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

/* Refusals of strangers (refusal_log.c).  A window of window_ms (10 s
 * unless set): the first refusal of each (host, cause) is logged as a line
 * of its own, at most CCL_LOG_LINES lines a window; every other refusal
 * is counted, with its address, and when the window ends one summary line
 * says "N refusals from M addresses in the last T s were not logged one
 * by one (most recent cause: ...)".  So a flood from many addresses costs
 * a few lines every window and can never silence the log: there is no
 * fixed list of keys to fill. */
#define CCL_LOG_SLOTS 64   /* (host, cause) pairs remembered per window */
#define CCL_LOG_LINES 16   /* lines of their own per window */
#define CCL_LOG_ADDRS 512  /* distinct addresses counted per window */

typedef struct ccl__log_once {
    uint32_t window_ms;     /* 0: 10000 */
    uint64_t window_start;  /* 0: no window yet */
    int lines;              /* lines of their own this window */
    uint64_t seen[CCL_LOG_SLOTS]; /* pairs logged this window */
    int n;
    uint64_t suppressed;    /* refusals only counted this window */
    uint64_t addrs[CCL_LOG_ADDRS]; /* their addresses' hashes */
    int naddrs;
    int addrs_more;         /* more addresses than fit */
    char who[64];
    char cause[160];        /* the most recent counted cause */
    uint64_t total;         /* every refusal ever (for tests) */
} ccl__log_once;

/* Logs or counts a refusal: "<who>: refused connection from <addr>:
 * <cause>".  Not thread-safe: each owner (the master thread, a
 * communicator's acceptor) keeps its own limiter. */
void ccl__log_refusal(ccl__log_once *l, const char *who, const char *addr,
                      const char *cause);
/* Ends the window if its time is up (the summary line, if any): call it
 * from a timer so the summary comes even when the flood stopped. */
void ccl__log_refusal_tick(ccl__log_once *l, uint64_t now_ms);

#endif
