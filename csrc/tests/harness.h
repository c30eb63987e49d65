/* harness.h - a tiny test harness: PASS(expr) prints the expression and,
 * on failure, where it failed; main() returns the failure count. */
#ifndef CCL_TEST_HARNESS_H
#define CCL_TEST_HARNESS_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int harness_failures = 0;
static int harness_checks = 0;

#define PASS(expr)                                                        \
    do {                                                                  \
        harness_checks++;                                                 \
        if (!(expr)) {                                                    \
            harness_failures++;                                           \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #expr); \
        }                                                                 \
    } while (0)

#define PASS_RC(call)                                                     \
    do {                                                                  \
        int harness_rc_ = (call);                                         \
        harness_checks++;                                                 \
        if (harness_rc_ != 0) {                                           \
            harness_failures++;                                           \
            fprintf(stderr, "FAIL %s:%d: %s -> %d (%s)\n", __FILE__,      \
                    __LINE__, #call, harness_rc_, ccl_strerror(harness_rc_)); \
        }                                                                 \
    } while (0)

/* Seconds on the monotonic clock, for the speed lines some tests print. */
static inline double harness_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* malloc that ends the test on failure; malloc(0) may return NULL, hence
 * at least one byte. */
static inline void *harness_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A heap copy of exactly len bytes, so a decoder that reads one byte too
 * far trips AddressSanitizer. */
static inline uint8_t *harness_exact_copy(const void *src, size_t len)
{
    uint8_t *p = (uint8_t *)harness_xmalloc(len);
    if (len)
        memcpy(p, src, len);
    return p;
}

/* Value of one hex digit, or -1. */
static inline int harness_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

#define HARNESS_DONE(name)                                                \
    (printf("%s: %d checks, %d failed\n", name, harness_checks,           \
            harness_failures),                                            \
     harness_failures ? 1 : 0)
#endif

#ifdef CCL_H
/* Fork-based tests start their ranks before the master: a child forked
 * while another thread holds a lock (the allocator's, under ASan) would
 * inherit it locked.  So: pick a free port, fork the ranks (they retry
 * reaching the master until connect_timeout), then start the master. */
static inline int harness_free_port(void)
{
    ccl_master *m = NULL;
    char err[256];
    if (ccl_master_create(NULL, &m, err, sizeof err) != CCL_OK)
        return -1;
    int port = ccl_master_port(m);
    ccl_master_destroy(m);
    return port;
}

static inline ccl_master *harness_master_on(int port)
{
    ccl_master_config mc;
    ccl_master *m = NULL;
    char err[256];
    ccl_master_config_init(&mc);
    mc.port = port;
    if (ccl_master_create(&mc, &m, err, sizeof err) != CCL_OK)
        fprintf(stderr, "master on port %d: %s\n", port, err);
    return m;
}
#endif
