/* test_shm.c - the shared-memory rings of sock_shm.c between two real
 * processes: a byte stream of 96 MiB each way, written and read in random
 * pieces (a small ring, so that it wraps and fills all the time), with
 * each side sleeping in poll() on its doorbell socket whenever its ring
 * is empty or full: a lost wake-up would hang the test (every poll has a
 * deadline, so it fails instead).  Also: attach refuses a wrong nonce or
 * a name that is not ours, removes the name, and a dead peer shows as EOF
 * on the doorbell.  The throughput is printed, not asserted. */
#include "ccl.h"
#include "harness.h"
#include "sock_shm.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define STREAM (96u << 20)
#define RING (64u << 10)

static uint8_t byte_at(uint64_t i, uint32_t seed)
{
    uint64_t x = (i >> 3) * 0x9e3779b97f4a7c15ull + seed;
    x ^= x >> 29;
    return (uint8_t)(x >> (8 * (i & 7)));
}

/* Waits for a doorbell (or EOF) on fd; 0 on time out. */
static int wait_bell(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 5000);
    if (r <= 0)
        return 0;
    char err[120];
    ccl__shm_drain(fd, err, sizeof err);
    return 1;
}

/* Sends STREAM bytes of the pattern `seed` and receives STREAM bytes of
 * the pattern `rseed`, interleaved: both directions at once, as a
 * connection's two ends do.  0 when all arrived intact. */
static int pump(ccl__shm *s, int fd, uint32_t seed, uint32_t rseed)
{
    uint64_t sent = 0, got = 0;
    uint32_t rnd = seed * 2654435761u + 1;
    uint8_t out[70000], in[70000];
    char err[160];
    while (sent < STREAM || got < STREAM) {
        int moved = 0;
        if (sent < STREAM) {
            rnd = rnd * 1103515245u + 12345u;
            size_t a = 1 + (rnd >> 8) % 30000, b = (rnd >> 3) % 40000;
            if (a + b > STREAM - sent) {
                a = (size_t)(STREAM - sent);
                b = 0;
            }
            for (size_t i = 0; i < a + b; i++)
                out[i] = byte_at(sent + i, seed);
            struct iovec iov[2] = {{out, a}, {out + a, b}};
            long w = ccl__shm_writev_some(s, fd, iov, 2, err, sizeof err);
            if (w < 0) {
                fprintf(stderr, "write: %s\n", err);
                return 1;
            }
            sent += (uint64_t)w;
            moved |= w > 0;
        }
        if (got < STREAM) {
            rnd = rnd * 1103515245u + 12345u;
            size_t want = 1 + (rnd >> 9) % sizeof in;
            long r = ccl__shm_read_some(s, fd, in, want, err, sizeof err);
            if (r < 0) {
                fprintf(stderr, "read: %s\n", err);
                return 1;
            }
            for (long i = 0; i < r; i++)
                if (in[i] != byte_at(got + (uint64_t)i, rseed)) {
                    fprintf(stderr, "byte %llu differs\n",
                            (unsigned long long)(got + (uint64_t)i));
                    return 1;
                }
            got += (uint64_t)r;
            moved |= r > 0;
        }
        if (!moved && !wait_bell(fd)) {
            fprintf(stderr, "no doorbell within 5 s (sent %llu, got %llu)\n",
                    (unsigned long long)sent, (unsigned long long)got);
            return 1;
        }
    }
    return 0;
}

static int file_exists(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm%s", name);
    return stat(path, &st) == 0;
}

int main(void)
{
    char name[CCL_SHM_NAME_LEN], err[200];
    uint8_t nonce[CCL_SHM_NONCE_LEN];
    ccl__shm *s = NULL, *bad = NULL;
    int rc = ccl__shm_create(RING, &s, name, nonce, err, sizeof err);
    if (rc) {
        printf("SKIP: %s\n", err); /* no /dev/shm here */
        return 0;
    }
    PASS(file_exists(name));

    /* Refusals: a wrong nonce, a wrong size, a name that is not ours. */
    uint8_t wrong[CCL_SHM_NONCE_LEN];
    memcpy(wrong, nonce, sizeof wrong);
    wrong[3] ^= 1;
    PASS(ccl__shm_attach(name, wrong, RING, &bad, err, sizeof err) != CCL_OK && !bad);
    PASS(ccl__shm_attach(name, nonce, RING * 2, &bad, err, sizeof err) != CCL_OK && !bad);
    PASS(ccl__shm_attach("/etc-passwd", nonce, RING, &bad, err, sizeof err) != CCL_OK);
    PASS(ccl__shm_attach("/pyccl-1-../../etc/x", nonce, RING, &bad, err, sizeof err) != CCL_OK);
    PASS(file_exists(name)); /* a refused attach leaves the name */

    int sv[2];
    PASS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    double t0 = harness_now_seconds();
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        ccl__shm_free(s);
        ccl__shm *c = NULL;
        if (ccl__shm_attach(name, nonce, RING, &c, err, sizeof err)) {
            fprintf(stderr, "attach: %s\n", err);
            _exit(3);
        }
        /* Tell the parent the name is gone, then stream. */
        char one = 'a';
        if (write(sv[1], &one, 1) != 1)
            _exit(4);
        int bad_stream = pump(c, sv[1], 2, 1);
        ccl__shm_free(c);
        _exit(bad_stream ? 5 : 0);
    }
    close(sv[1]);
    PASS(wait_bell(sv[0]));
    PASS(!file_exists(name)); /* the acceptor removed it */
    PASS(pump(s, sv[0], 1, 2) == 0);
    double dt = harness_now_seconds() - t0;
    int status = 0;
    PASS(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0);
    printf("shm ring (%u KiB): %u MiB each way in %.3f s, %.2f GB/s each way\n",
           RING >> 10, STREAM >> 20, dt, STREAM / dt / 1e9);

    /* The other process is gone: its socket shows EOF, after any doorbells
     * still unread (a drain that read some stops there: the poller says
     * again that the socket is readable). */
    int drained = 0;
    for (int i = 0; i < 100 && drained == 0; i++) {
        struct pollfd p = {sv[0], POLLIN, 0};
        PASS(poll(&p, 1, 5000) == 1);
        drained = ccl__shm_drain(sv[0], err, sizeof err);
    }
    PASS(drained == -CCL_ERR_PEER_LOST);
    close(sv[0]);

    /* A corrupt counter (the other process wrote nonsense) is an error,
     * never a read outside the ring. */
    uint8_t buf[64];
    int pair[2];
    PASS(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    ccl__shm *t = NULL;
    char n2[CCL_SHM_NAME_LEN];
    PASS_RC(ccl__shm_create(RING, &t, n2, nonce, err, sizeof err));
    ccl__shm_unlink(n2);
    PASS(!file_exists(n2));
    /* ring 1 is what the creator reads; its tail is at offset 64 + 256 */
    uint64_t *tail1 = (uint64_t *)((uint8_t *)*(void **)t + 64 + 256);
    *tail1 = (uint64_t)RING * 3;
    PASS(ccl__shm_read_some(t, pair[0], buf, sizeof buf, err, sizeof err) ==
         -CCL_ERR_PROTOCOL);
    *tail1 = 0;
    PASS(ccl__shm_read_some(t, pair[0], buf, sizeof buf, err, sizeof err) == 0);
    ccl__shm_free(t);
    ccl__shm_free(s);
    close(pair[0]);
    close(pair[1]);
    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
