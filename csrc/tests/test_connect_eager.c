/* test_connect_eager.c - ccl__sock_connect_eager, the master link's
 * connect: against a live listener it connects; against a closed port it
 * fails at once; against a listener whose accept queue is full (the
 * kernel drops SYNs there) and drained a little later it still connects
 * within its deadline, keeps exactly one connection (the other tries are
 * closed: the server reads EOF on them) and leaks no fd.  The time is
 * printed, not asserted: a plain connect waits for the kernel's 1 s SYN
 * retry there, the eager one for its next try (300 ms). */
#include "ccl.h"
#include "harness.h"
#include "sock.h"

#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static int listener(int backlog, int *port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(0x7f000001);
    socklen_t l = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, backlog) ||
        getsockname(s, (struct sockaddr *)&a, &l))
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

typedef struct {
    int lfd;
    int delay_ms;
    int accepted[64];
    int naccepted;
} drain_arg;

/* After delay_ms, accepts whatever arrives for a second. */
static void *drain(void *p)
{
    drain_arg *d = p;
    usleep((useconds_t)d->delay_ms * 1000);
    uint64_t end = ccl__now_ms() + 1500;
    while (ccl__now_ms() < end && d->naccepted < 64) {
        int rc = ccl__sock_wait_readable(d->lfd, ccl__now_ms() + 50, NULL, 0);
        if (rc == CCL_OK) {
            int fd = accept(d->lfd, NULL, NULL);
            if (fd >= 0)
                d->accepted[d->naccepted++] = fd;
        }
    }
    return NULL;
}

int main(void)
{
    char err[200];
    int fds_before = open_fds();

    /* A live listener. */
    int port, lfd = listener(16, &port), fd = -1;
    PASS(lfd >= 0);
    PASS_RC(ccl__sock_connect_eager("127.0.0.1", port, ccl__now_ms() + 2000, 300,
                                    &fd, err, sizeof err));
    PASS(fd >= 0);
    ccl__sock_close(fd);
    close(lfd);

    /* A closed port: refused at once, not after the deadline. */
    uint64_t t0 = ccl__now_ms();
    int rc = ccl__sock_connect_eager("127.0.0.1", port, ccl__now_ms() + 5000, 300,
                                     &fd, err, sizeof err);
    PASS(rc == CCL_ERR_IO);
    PASS(ccl__now_ms() - t0 < 4000);

    /* A full accept queue (backlog 0 holds one; the fillers are never
     * accepted before the drain), drained 100 ms after our first SYN. */
    lfd = listener(0, &port);
    PASS(lfd >= 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(0x7f000001);
        a.sin_port = htons((uint16_t)port);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    drain_arg d;
    memset(&d, 0, sizeof d);
    d.lfd = lfd;
    d.delay_ms = 100;
    pthread_t th;
    pthread_create(&th, NULL, drain, &d);
    double s0 = harness_now_seconds();
    fd = -1;
    PASS_RC(ccl__sock_connect_eager("127.0.0.1", port, ccl__now_ms() + 10000, 300,
                                    &fd, err, sizeof err));
    double took = harness_now_seconds() - s0;
    PASS(fd >= 0);
    /* Our connection works end to end: a byte we send reaches one of the
     * accepted sockets, and every other accepted one that was ours sees
     * EOF (the fillers stay open and silent). */
    pthread_join(th, NULL);
    PASS(send(fd, "x", 1, 0) == 1);
    int got_byte = 0, eofs = 0, silent = 0;
    for (int i = 0; i < d.naccepted; i++) {
        if (ccl__sock_wait_readable(d.accepted[i], ccl__now_ms() + 300, NULL, 0) != CCL_OK) {
            silent++;
            continue;
        }
        char c;
        ssize_t n = recv(d.accepted[i], &c, 1, 0);
        got_byte += n == 1 && c == 'x';
        eofs += n == 0;
    }
    printf("full queue: connected in %.3f s; server accepted %d (%d fillers "
           "silent, %d extra tries closed)\n", took, d.naccepted, silent, eofs);
    PASS(got_byte == 1);
    PASS(silent <= 4);
    for (int i = 0; i < d.naccepted; i++)
        close(d.accepted[i]);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    ccl__sock_close(fd);
    close(lfd);
    PASS(open_fds() == fds_before);
    return HARNESS_DONE("test_connect_eager");
}
