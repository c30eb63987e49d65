/* harness.h - a tiny test harness: PASS(expr) prints the expression and,
 * on failure, where it failed; main() returns the failure count. */
#ifndef CCL_TEST_HARNESS_H
#define CCL_TEST_HARNESS_H
#include <stdio.h>

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

#define HARNESS_DONE(name)                                                \
    (printf("%s: %d checks, %d failed\n", name, harness_checks,           \
            harness_failures),                                            \
     harness_failures ? 1 : 0)
#endif
