/* harness.h - a tiny test harness: PASS(expr) prints the expression and,
 * on failure, where it failed; main() returns the failure count.  Also the
 * tests' one random generator (seeded, so failures reproduce) and, for the
 * tests with real ranks, readiness signals over pipes (every wait with a
 * deadline, never a sleep) and masters on port 0. */
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

/* splitmix64: a tiny deterministic generator, so a failure reproduces
 * from its seed.  Each test keeps its own state (the seed to begin with),
 * so adding draws to one test never changes another's inputs. */
static inline uint64_t harness_rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A draw in [0, n); 0 when n is 0. */
static inline size_t harness_rng_below(uint64_t *state, size_t n)
{
    return n ? (size_t)(harness_rng_next(state) % n) : 0;
}

static inline void harness_rng_fill(uint64_t *state, uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)harness_rng_next(state);
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
#include <errno.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads exactly n bytes from fd, waiting at most timeout_ms in all: the
 * readiness signal of the fork-based tests (a rank writes a byte when it
 * reaches a point, the waiter reads it).  0 on success; -1 on a deadline,
 * an error, or end of file (every writer gone). */
static inline int harness_read_within(int fd, void *buf, size_t n, int timeout_ms)
{
    double deadline = harness_now_seconds() + timeout_ms / 1000.0;
    size_t got = 0;
    while (got < n) {
        int left_ms = (int)((deadline - harness_now_seconds()) * 1000.0);
        struct pollfd p = {fd, POLLIN, 0};
        if (left_ms <= 0)
            return -1;
        int rc = poll(&p, 1, left_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One byte to a pipe: "I reached the point you wait for".  Nonzero when it
 * could not be written. */
static inline int harness_signal(int fd)
{
    return write(fd, "!", 1) != 1;
}

/* Waits (at most timeout_ms) for n readiness bytes on fd.  0 when all came. */
static inline int harness_wait_signals(int fd, int n, int timeout_ms)
{
    char b[64];
    if (n < 0 || (size_t)n > sizeof b)
        return -1;
    return harness_read_within(fd, b, (size_t)n, timeout_ms);
}

/* Waits (at most seconds) for a child to exit.  1 when it did. */
static inline int harness_waitpid_within(pid_t pid, double seconds)
{
    double deadline = harness_now_seconds() + seconds;
    do {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return 1;
        usleep(10000); /* a child has no exit signal to block on here */
    } while (harness_now_seconds() < deadline);
    return 0;
}

/* Zeroed memory that forked ranks share with the parent (for their
 * results); ends the test when there is none.  Free with munmap. */
static inline void *harness_shared_zalloc(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memset(p, 0, n);
    return p;
}

/* Fork-based tests start their ranks before the master: a child forked
 * while another thread holds a lock (the allocator's, under ASan) would
 * inherit it locked.  So the ranks are forked first and wait on a pipe; the
 * master then starts on port 0 (the kernel picks a free port: nothing is
 * picked, closed and reused, so no other process can take it in between)
 * and hands its port down the pipe, one copy per waiting rank. */
typedef struct {
    int rd, wr;
} harness_port_pipe;

static inline int harness_port_pipe_open(harness_port_pipe *pp)
{
    int fd[2];
    pp->rd = pp->wr = -1;
    if (pipe(fd) != 0)
        return -1;
    pp->rd = fd[0];
    pp->wr = fd[1];
    return 0;
}

/* In a forked rank: the port of the parent's master, or -1 when none came
 * within timeout_ms or the parent gave up (its master failed to start). */
static inline int harness_port_wait(harness_port_pipe *pp, int timeout_ms)
{
    int32_t port;
    close(pp->wr); /* else the pipe never reports the parent giving up */
    int rc = harness_read_within(pp->rd, &port, sizeof port, timeout_ms);
    close(pp->rd);
    return rc == 0 ? port : -1;
}

/* A master with mc's settings (the defaults when mc is NULL) on `port`, or
 * NULL after printing why. */
static inline ccl_master *harness_master_with(const ccl_master_config *mc, int port)
{
    ccl_master_config c;
    ccl_master *m = NULL;
    char err[256];
    if (mc)
        c = *mc;
    else
        ccl_master_config_init(&c);
    c.port = port;
    if (ccl_master_create(&c, &m, err, sizeof err) != CCL_OK)
        fprintf(stderr, "master on port %d: %s\n", port, err);
    return m;
}

/* A master with default settings on a given port: for a master restarted
 * where its predecessor listened. */
static inline ccl_master *harness_master_on(int port)
{
    return harness_master_with(NULL, port);
}

/* In the parent, after forking the ranks: starts the master on port 0 and
 * sends its port to the `ranks` children waiting in harness_port_wait.  On
 * failure the pipe is closed with nothing in it, so they give up at once. */
static inline ccl_master *harness_master_for(harness_port_pipe *pp, int ranks,
                                             const ccl_master_config *mc)
{
    ccl_master *m = harness_master_with(mc, 0);
    if (m) {
        /* Written while our read end is still open, so that ranks that
         * already died cannot turn the write into a SIGPIPE. */
        int32_t port = ccl_master_port(m);
        for (int i = 0; i < ranks; i++)
            if (write(pp->wr, &port, sizeof port) != (ssize_t)sizeof port)
                fprintf(stderr, "port pipe: %s\n", strerror(errno));
    }
    close(pp->rd);
    close(pp->wr);
    return m;
}

/* A communicator config for `rank` of `world` (-1: a joiner), whose master
 * is on `port`; the rest as ccl_comm_config_init leaves it. */
static inline ccl_comm_config harness_comm_config(int port, int world, int rank)
{
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = port;
    cfg.world_size = world;
    cfg.rank = rank;
    return cfg;
}
#endif
