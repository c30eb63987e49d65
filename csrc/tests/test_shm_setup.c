/* test_shm_setup.c - the SHM_OFFER / SHM_ANSWER exchange (shm_setup.c)
 * over real loopback connections:
 *   direct, keyed            -> both ends get the rings, and bytes cross;
 *   through a relay          -> declined ("relay"): the endpoints each end
 *                               sees do not mirror; the file is removed;
 *   through a relay that flips one byte of a keyed offer
 *                            -> the acceptor refuses it (CCL_ERR_AUTH);
 *   unkeyed, direct          -> rings (no tags on the wire).
 * The handshake's result (ccl__hs) is built by hand: both ends' seeds
 * mirrored, as a real handshake leaves them. */
#include "ccl.h"
#include "harness.h"
#include "shm_offer.h"
#include "shm_setup.h"
#include "sock.h"

#include <glob.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd, rc;
    ccl__hs hs;
    ccl__shm *rings;
    char why[300], err[300];
} side;

static void *accept_side(void *arg)
{
    side *s = arg;
    s->rc = ccl__shm_setup_accept(s->fd, &s->hs, ccl__now_ms() + 3000, &s->rings,
                                  s->why, sizeof s->why, s->err, sizeof s->err);
    return NULL;
}

typedef struct {
    int lfd, target_port, flip_at; /* flip_at: byte of the stream, or -1 */
} relay_args;

/* Forwards bytes both ways between one accepted connection and a new one
 * to target_port, flipping byte flip_at of the forward direction. */
static void *relay(void *arg)
{
    relay_args *r = arg;
    int a = -1, b = -1;
    char e[200];
    if (ccl__sock_accept(r->lfd, ccl__now_ms() + 3000, &a, NULL, 0, e, sizeof e) ||
        ccl__sock_connect("127.0.0.1", r->target_port, ccl__now_ms() + 3000, &b, e,
                          sizeof e))
        return NULL;
    long fwd = 0;
    uint64_t end = ccl__now_ms() + 4000;
    while (ccl__now_ms() < end) {
        struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        if (poll(p, 2, 100) <= 0)
            continue;
        uint8_t buf[4096];
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0)
                goto out;
            if (i == 0 && r->flip_at >= fwd && r->flip_at < fwd + n)
                buf[r->flip_at - fwd] ^= 0x20;
            if (i == 0)
                fwd += n;
            if (write(i ? a : b, buf, (size_t)n) != n)
                goto out;
        }
    }
out:
    close(a);
    close(b);
    return NULL;
}

static int pyccl_files(void)
{
    glob_t g;
    char pat[64];
    snprintf(pat, sizeof pat, "/dev/shm/pyccl-%ld-*", (long)getpid());
    int n = glob(pat, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    globfree(&g);
    return n;
}

/* One exchange: the connector reaches the listener directly (relay_flip
 * -2) or through a relay flipping byte relay_flip (-1: none). */
static void exchange(int keyed, int relay_flip, side *c, side *a)
{
    int lfd, port, rfd = -1, rport = 0;
    char e[200];
    memset(c, 0, sizeof *c);
    memset(a, 0, sizeof *a);
    PASS_RC(ccl__sock_listen("127.0.0.1", 0, 4, &lfd, &port, e, sizeof e));
    pthread_t rt;
    relay_args ra = {-1, port, relay_flip};
    if (relay_flip > -2) {
        PASS_RC(ccl__sock_listen("127.0.0.1", 0, 4, &rfd, &rport, e, sizeof e));
        ra.lfd = rfd;
        pthread_create(&rt, NULL, relay, &ra);
    }
    PASS_RC(ccl__sock_connect("127.0.0.1", relay_flip > -2 ? rport : port,
                              ccl__now_ms() + 3000, &c->fd, e, sizeof e));
    PASS_RC(ccl__sock_accept(lfd, ccl__now_ms() + 3000, &a->fd, NULL, 0, e, sizeof e));
    c->hs.authed = a->hs.authed = keyed;
    c->hs.theirs.flags = a->hs.theirs.flags = CCL_HELLO_SHM;
    for (int i = 0; i < 32; i++) {
        c->hs.seed_tx[i] = a->hs.seed_rx[i] = (uint8_t)(i * 7 + 1);
        c->hs.seed_rx[i] = a->hs.seed_tx[i] = (uint8_t)(i * 5 + 3);
    }
    PASS(ccl__shm_wanted(1, &c->hs, 0) && !ccl__shm_wanted(1, &c->hs, 1) &&
         !ccl__shm_wanted(0, &c->hs, 0));
    pthread_t at;
    pthread_create(&at, NULL, accept_side, a);
    PASS(ccl__shm_ring_for(2) == CCL_SHM_RING_BYTES &&
         ccl__shm_ring_for(4) == CCL_SHM_RING_BYTES &&
         ccl__shm_ring_for(5) == CCL_SHM_RING_BYTES / 2 &&
         ccl__shm_ring_for(16) == CCL_SHM_RING_BYTES / 4 &&
         ccl__shm_ring_for(17) == CCL_SHM_RING_BYTES / 8 &&
         ccl__shm_ring_for(4096) == CCL_SHM_RING_MIN);
    c->rc = ccl__shm_setup_connect(c->fd, &c->hs, ccl__shm_ring_for(3),
                                   ccl__now_ms() + 3000, &c->rings,
                                   c->why, sizeof c->why, c->err, sizeof c->err);
    pthread_join(at, NULL);
    if (relay_flip > -2) {
        shutdown(c->fd, SHUT_RDWR);
        pthread_join(rt, NULL);
        close(rfd);
    }
    close(lfd);
}

static void done(side *c, side *a)
{
    ccl__shm_free(c->rings);
    ccl__shm_free(a->rings);
    close(c->fd);
    close(a->fd);
}

int main(void)
{
    side c, a;
    char err[200];
    for (int keyed = 1; keyed >= 0; keyed--) {
        exchange(keyed, -2, &c, &a);
        if (c.rc == CCL_OK && !c.rings && strstr(c.why, "no shared memory")) {
            printf("SKIP: %s\n", c.why);
            return 0;
        }
        PASS(c.rc == CCL_OK && a.rc == CCL_OK);
        PASS(c.rings && a.rings);
        if (c.rings && a.rings) {
            struct iovec v = {(void *)"ring bytes", 10};
            char got[16] = "";
            PASS(ccl__shm_writev_some(c.rings, c.fd, &v, 1, err, sizeof err) == 10);
            PASS(ccl__shm_read_some(a.rings, a.fd, got, sizeof got, err, sizeof err) == 10);
            PASS(memcmp(got, "ring bytes", 10) == 0);
        }
        PASS(pyccl_files() == 0);
        done(&c, &a);
    }

    exchange(1, -1, &c, &a);
    PASS(c.rc == CCL_OK && a.rc == CCL_OK && !c.rings && !a.rings);
    PASS(strstr(c.why, "relay") != NULL && strstr(a.why, "relay") != NULL);
    PASS(pyccl_files() == 0);
    printf("through a relay: connector \"%s\"\n", c.why);
    done(&c, &a);

    exchange(1, 120, &c, &a); /* a byte of the offer's file name */
    PASS(a.rc == CCL_ERR_AUTH && strstr(a.err, "MAC") != NULL);
    PASS(c.rc != CCL_OK && !c.rings && !a.rings);
    PASS(pyccl_files() == 0);
    done(&c, &a);

    printf("%d checks, %d failures\n", harness_checks, harness_failures);
    return harness_failures != 0;
}
