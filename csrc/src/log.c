/*
 * log.c - see log.h.  The capture queue is a ring of fixed-size lines
 * under one mutex; a reader waits on a condition variable with a
 * deadline, so a host-language thread can poll it without spinning.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_QUEUE 256
#define LOG_LINE 512

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cv = PTHREAD_COND_INITIALIZER;
static int log_level = CCL_LOG_INFO; /* under log_mu (read atomically) */
static int log_captured;             /* under log_mu */
static char log_lines[LOG_QUEUE][LOG_LINE];
static int log_levels[LOG_QUEUE];
static unsigned log_head, log_count; /* under log_mu */
static uint64_t log_dropped;         /* lines lost to a full queue */

/* fork(): a reader blocked in ccl_log_read at that moment stays registered
 * in log_cv's state, and in the child, where that thread does not exist,
 * the next pthread_cond_signal waits for it forever.  So the child starts
 * with a fresh mutex and condition variable (the forking thread holds
 * log_mu across the fork, so the queue is consistent). */
static void log_fork_prepare(void) { pthread_mutex_lock(&log_mu); }
static void log_fork_parent(void) { pthread_mutex_unlock(&log_mu); }
static void log_fork_child(void)
{
    pthread_mutex_init(&log_mu, NULL);
    pthread_cond_init(&log_cv, NULL);
}

static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init(void)
{
    pthread_atfork(log_fork_prepare, log_fork_parent, log_fork_child);
}

void ccl_log_set_level(int level)
{
    if (level < CCL_LOG_ERROR)
        level = CCL_LOG_ERROR;
    if (level > CCL_LOG_DEBUG)
        level = CCL_LOG_DEBUG;
    __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int ccl__log_enabled(int level)
{
    return level <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

void ccl_log_capture(int on)
{
    pthread_once(&log_once, log_init);
    pthread_mutex_lock(&log_mu);
    log_captured = on != 0;
    pthread_cond_broadcast(&log_cv);
    pthread_mutex_unlock(&log_mu);
}

void ccl__log(int level, const char *fmt, ...)
{
    if (!ccl__log_enabled(level))
        return;
    char line[LOG_LINE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_mu);
    if (!log_captured) {
        pthread_mutex_unlock(&log_mu);
        fprintf(stderr, "pyccl: %s\n", line);
        return;
    }
    if (log_count == LOG_QUEUE) {
        log_dropped++;
    } else {
        unsigned slot = (log_head + log_count) % LOG_QUEUE;
        memcpy(log_lines[slot], line, sizeof line);
        log_levels[slot] = level;
        log_count++;
        pthread_cond_signal(&log_cv);
    }
    pthread_mutex_unlock(&log_mu);
}

/* Takes the oldest line, or reports the dropped ones first once the
 * queue has room to say so. */
static int take_line(int *level, char *buf, size_t cap)
{
    if (log_dropped && log_count < LOG_QUEUE) {
        snprintf(buf, cap, "%llu log lines were dropped (the queue was full)",
                 (unsigned long long)log_dropped);
        *level = CCL_LOG_WARNING;
        log_dropped = 0;
        return 1;
    }
    if (log_count == 0)
        return 0;
    snprintf(buf, cap, "%s", log_lines[log_head]);
    *level = log_levels[log_head];
    log_head = (log_head + 1) % LOG_QUEUE;
    log_count--;
    return 1;
}

int ccl_log_read(int *level, char *buf, size_t cap, int timeout_ms)
{
    if (!level || !buf || cap == 0)
        return 0;
    pthread_once(&log_once, log_init);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (timeout_ms > 0) {
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&log_mu);
    int got = take_line(level, buf, cap);
    while (!got && timeout_ms > 0 &&
           pthread_cond_timedwait(&log_cv, &log_mu, &ts) == 0)
        got = take_line(level, buf, cap);
    pthread_mutex_unlock(&log_mu);
    return got;
}
