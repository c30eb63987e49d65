/*
 * sock.c - every syscall of the library lives here (see sock.h).
 *
 * errno is read right after the call that set it; EINTR is retried;
 * partial reads and writes are looped by the blocking helpers.
 */
#include "sock.h"
#include "ccl.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#define ERRF(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); } while (0)

uint64_t ccl__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t ccl__now_ms(void)
{
    return ccl__now_us() / 1000u;
}

void ccl__cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static int remaining_ms(uint64_t deadline_ms)
{
    uint64_t now = ccl__now_ms();
    if (now >= deadline_ms)
        return 0;
    uint64_t left = deadline_ms - now;
    return left > 1000000 ? 1000000 : (int)left;
}

/* The calling thread's cancel flag (see sock.h).  Blocking waits look at
 * it at least every CANCEL_SLICE_MS while it is set. */
#define CANCEL_SLICE_MS 50
static __thread const int *cancel_flag;

void ccl__sock_set_cancel(const int *flag)
{
    cancel_flag = flag;
}

int ccl__sock_cancelled(void)
{
    return cancel_flag && __atomic_load_n(cancel_flag, __ATOMIC_ACQUIRE);
}

/* How long one poll of a blocking wait may sleep: what is left, in slices
 * when someone may cancel the wait. */
static int slice_ms(uint64_t deadline_ms)
{
    int ms = remaining_ms(deadline_ms);
    return cancel_flag && ms > CANCEL_SLICE_MS ? CANCEL_SLICE_MS : ms;
}

/* Resolves host:port to the first IPv4/IPv6 stream address. */
static int resolve(const char *host, int port, int passive,
                   struct sockaddr_storage *ss, socklen_t *sslen,
                   char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char pbuf[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    snprintf(pbuf, sizeof pbuf, "%d", port);
    int rc = getaddrinfo(host, pbuf, &hints, &res);
    if (rc != 0 || !res) {
        ERRF("resolve %s: %s", host, gai_strerror(rc));
        return CCL_ERR_INVALID_ARG;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = res->ai_addrlen;
    freeaddrinfo(res);
    return CCL_OK;
}

int ccl__sock_listen(const char *host, int port, int backlog, int *fd,
                     int *bound_port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve(host, port, 1, &ss, &sslen, err, errlen);
    if (rc)
        return rc;
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        ERRF("socket: %s", strerror(errno));
        return CCL_ERR_IO;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&ss, sslen) != 0) {
        ERRF("bind %s:%d: %s", host, port, strerror(errno));
        close(s);
        return CCL_ERR_IO;
    }
    if (listen(s, backlog) != 0) {
        ERRF("listen %s:%d: %s", host, port, strerror(errno));
        close(s);
        return CCL_ERR_IO;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(s, (struct sockaddr *)&bound, &blen);
    if (bound.ss_family == AF_INET)
        *bound_port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    else
        *bound_port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    ccl__sock_set_nonblock(s);
    *fd = s;
    return CCL_OK;
}

/* Up to this many SYNs in flight for one connect (ccl__sock_connect_eager). */
#define CONNECT_TRIES 3

static void close_all(int *s, int n, int keep)
{
    for (int i = 0; i < n; i++)
        if (i != keep && s[i] >= 0)
            close(s[i]);
}

int ccl__sock_connect_eager(const char *host, int port, uint64_t deadline_ms,
                            int again_ms, int *fd, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve(host, port, 0, &ss, &sslen, err, errlen);
    if (rc)
        return rc;
    int s[CONNECT_TRIES], n = 0;
    struct pollfd p[CONNECT_TRIES];
    uint64_t next_try = 0;
    for (;;) {
        if (n < CONNECT_TRIES && ccl__now_ms() >= next_try &&
            (n == 0 || again_ms > 0)) {
            int t = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (t < 0) {
                ERRF("socket: %s", strerror(errno));
                close_all(s, n, -1);
                return CCL_ERR_IO;
            }
            ccl__sock_set_nodelay(t);
            if (connect(t, (struct sockaddr *)&ss, sslen) == 0) {
                close_all(s, n, -1);
                *fd = t;
                return CCL_OK;
            }
            if (errno != EINPROGRESS) {
                ERRF("connect %s:%d: %s", host, port, strerror(errno));
                close(t);
                close_all(s, n, -1);
                return CCL_ERR_IO;
            }
            s[n] = t;
            p[n].fd = t;
            p[n].events = POLLOUT;
            n++;
            next_try = ccl__now_ms() + (uint64_t)(again_ms > 0 ? again_ms : 0);
        }
        if (ccl__sock_cancelled()) {
            ERRF("connect %s:%d: interrupted", host, port);
            close_all(s, n, -1);
            return CCL_ERR_INTERRUPTED;
        }
        int slice = slice_ms(deadline_ms);
        if (n < CONNECT_TRIES && again_ms > 0) {
            uint64_t now = ccl__now_ms();
            int to_next = next_try > now ? (int)(next_try - now) : 0;
            if (to_next < slice)
                slice = to_next;
        }
        for (int i = 0; i < n; i++)
            p[i].revents = 0;
        int k = poll(p, (nfds_t)n, slice);
        if (k < 0 && errno != EINTR) {
            ERRF("connect %s:%d: %s", host, port, strerror(errno));
            close_all(s, n, -1);
            return CCL_ERR_IO;
        }
        for (int i = 0; k > 0 && i < n; i++) {
            if (!p[i].revents)
                continue;
            int soerr = 0;
            socklen_t l = sizeof soerr;
            getsockopt(s[i], SOL_SOCKET, SO_ERROR, &soerr, &l);
            if (soerr == 0) {
                close_all(s, n, i);
                *fd = s[i];
                return CCL_OK;
            }
            /* Refused or unreachable is the answer for every try. */
            ERRF("connect %s:%d: %s", host, port, strerror(soerr));
            close_all(s, n, -1);
            return CCL_ERR_IO;
        }
        if (remaining_ms(deadline_ms) == 0) {
            ERRF("connect %s:%d: timed out", host, port);
            close_all(s, n, -1);
            return CCL_ERR_TIMEOUT;
        }
    }
}

int ccl__sock_connect_start(const char *host, int port, int *fd, char *err,
                            size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    int rc = resolve(host, port, 0, &ss, &sslen, err, errlen);
    if (rc)
        return rc;
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0) {
        ERRF("socket: %s", strerror(errno));
        return CCL_ERR_IO;
    }
    ccl__sock_set_nodelay(s);
    if (connect(s, (struct sockaddr *)&ss, sslen) != 0 && errno != EINPROGRESS) {
        ERRF("connect %s:%d: %s", host, port, strerror(errno));
        close(s);
        return CCL_ERR_IO;
    }
    *fd = s;
    return CCL_OK;
}

int ccl__sock_connect_result(int fd)
{
    int soerr = 0;
    socklen_t l = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) != 0 || soerr != 0)
        return CCL_ERR_IO;
    return CCL_OK;
}

int ccl__sock_connect(const char *host, int port, uint64_t deadline_ms,
                      int *fd, char *err, size_t errlen)
{
    return ccl__sock_connect_eager(host, port, deadline_ms, 0, fd, err, errlen);
}

static void describe_addr(const struct sockaddr_storage *ss, int known,
                          char *peer, size_t peerlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (!peer || !peerlen)
        return;
    if (known && ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
    } else if (known && ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof ip);
        port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    }
    snprintf(peer, peerlen, "%s:%d", ip, port);
}

static int addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
        return (a >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        /* ::ffff:127.x.y.z, an IPv4 loopback peer on a dual-stack socket. */
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

void ccl__sock_close_after_send(int fd)
{
    if (fd < 0)
        return;
    shutdown(fd, SHUT_WR);
    char sink[4096];
    for (int i = 0; i < 64; i++) { /* at most 256 KiB: a peer cannot keep us */
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && errno == EINTR))
            break;
    }
    close(fd);
}

int ccl__sock_peer_is_loopback(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &l) != 0)
        return 0;
    return addr_is_loopback(&ss);
}

int ccl__host_is_loopback(const char *host)
{
    /* Only literal addresses and "localhost" count: a name that resolves
     * to loopback today may not tomorrow. */
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* accept4 with the peer's address, EINTR retried: 0 with *fd (-1 when
 * nothing is pending), CCL_ERR_NOMEM out of fds or kernel memory (the
 * connection stays queued), CCL_ERR_IO otherwise. */
static int accept_one(int lfd, struct sockaddr_storage *ss, int *fd)
{
    socklen_t l = sizeof *ss;
    int s;
    memset(ss, 0, sizeof *ss);
    do {
        s = accept4(lfd, (struct sockaddr *)ss, &l, SOCK_CLOEXEC | SOCK_NONBLOCK);
    } while (s < 0 && errno == EINTR);
    *fd = s;
    if (s >= 0)
        return CCL_OK;
    *fd = -1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED)
        return CCL_OK;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        return CCL_ERR_NOMEM;
    return CCL_ERR_IO;
}

int ccl__sock_accept_now(int lfd, int *fd, char *peer, size_t peerlen)
{
    struct sockaddr_storage ss;
    int rc = accept_one(lfd, &ss, fd);
    if (rc || *fd < 0)
        return rc;
    ccl__sock_set_nodelay(*fd);
    describe_addr(&ss, 1, peer, peerlen);
    return CCL_OK;
}

int ccl__sock_accept_cheap(int lfd, int *fd, char *peer, size_t peerlen,
                           int *loopback)
{
    struct sockaddr_storage ss;
    int rc = accept_one(lfd, &ss, fd);
    if (rc || *fd < 0)
        return rc;
    if (!ccl__sock_options_inherited())
        ccl__sock_set_nodelay(*fd);
    describe_addr(&ss, 1, peer, peerlen);
    *loopback = addr_is_loopback(&ss);
    return CCL_OK;
}

int ccl__sock_options_inherited(void)
{
    /* Linux copies a listening TCP socket's options (TCP_NODELAY,
     * keepalive, TCP_USER_TIMEOUT) into every socket accepted from it;
     * other systems do not promise it. */
#ifdef __linux__
    return 1;
#else
    return 0;
#endif
}

int ccl__sock_accept(int lfd, uint64_t deadline_ms, int *fd, char *peer,
                     size_t peerlen, char *err, size_t errlen)
{
    for (;;) {
        int rc = ccl__sock_accept_now(lfd, fd, peer, peerlen);
        if (rc) {
            ERRF("accept: %s", strerror(errno));
            return rc;
        }
        if (*fd >= 0)
            return CCL_OK;
        if (remaining_ms(deadline_ms) == 0) {
            ERRF("accept: timed out waiting for peers to connect");
            return CCL_ERR_TIMEOUT;
        }
        if (ccl__sock_cancelled()) {
            ERRF("accept: interrupted");
            return CCL_ERR_INTERRUPTED;
        }
        struct pollfd p = {lfd, POLLIN, 0};
        if (poll(&p, 1, slice_ms(deadline_ms)) < 0 && errno != EINTR) {
            ERRF("poll: %s", strerror(errno));
            return CCL_ERR_IO;
        }
    }
}

/* Moves exactly len bytes (send when `out`, else recv) before the
 * deadline, waiting for readiness (in slices when a cancel flag is set). */
static int move_all(int fd, char *p, size_t len, int out, uint64_t deadline_ms,
                    char *err, size_t errlen)
{
    const char *what = out ? "send" : "recv";
    while (len > 0) {
        ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
            ERRF("%s: %s", what, n == 0 ? "connection closed by the other end"
                                        : strerror(errno));
            return CCL_ERR_PEER_LOST;
        }
        if (errno == EINTR)
            continue;
        if (remaining_ms(deadline_ms) == 0) {
            ERRF("%s: timed out", what);
            return CCL_ERR_TIMEOUT;
        }
        if (ccl__sock_cancelled()) {
            ERRF("%s: interrupted", what);
            return CCL_ERR_INTERRUPTED;
        }
        struct pollfd pf = {fd, (short)(out ? POLLOUT : POLLIN), 0};
        poll(&pf, 1, slice_ms(deadline_ms));
    }
    return CCL_OK;
}

int ccl__sock_send_all(int fd, const void *buf, size_t len,
                       uint64_t deadline_ms, char *err, size_t errlen)
{
    return move_all(fd, (char *)buf, len, 1, deadline_ms, err, errlen);
}

int ccl__sock_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ms,
                       char *err, size_t errlen)
{
    return move_all(fd, buf, len, 0, deadline_ms, err, errlen);
}

int ccl__sock_wait_readable(int fd, uint64_t deadline_ms, char *err, size_t errlen)
{
    for (;;) {
        if (remaining_ms(deadline_ms) == 0) {
            ERRF("timed out");
            return CCL_ERR_TIMEOUT;
        }
        if (ccl__sock_cancelled()) {
            ERRF("interrupted");
            return CCL_ERR_INTERRUPTED;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, slice_ms(deadline_ms));
        if (n > 0)
            return CCL_OK;
        if (n < 0 && errno != EINTR) {
            ERRF("poll: %s", strerror(errno));
            return CCL_ERR_IO;
        }
    }
}

int ccl__sock_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return CCL_ERR_IO;
    return CCL_OK;
}

int ccl__sock_set_nodelay(int fd)
{
    int one = 1;
    /* Small control frames must never wait for Nagle's algorithm and the
     * peer's delayed ACK; we coalesce writes ourselves with writev. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        return CCL_ERR_IO;
    return CCL_OK;
}

long ccl__sock_read_some(int fd, void *buf, size_t len, char *err, size_t errlen)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n > 0)
            return (long)n;
        if (n == 0) {
            ERRF("connection closed by the peer");
            return -CCL_ERR_PEER_LOST;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        ERRF("recv: %s", strerror(errno));
        return -CCL_ERR_PEER_LOST;
    }
}

long ccl__sock_writev_some(int fd, struct iovec *iov, int iovcnt, char *err,
                           size_t errlen)
{
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)iovcnt;
    for (;;) {
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n >= 0)
            return (long)n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        ERRF("send: %s", strerror(errno));
        return -CCL_ERR_PEER_LOST;
    }
}

void ccl__sock_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int ccl__random_bytes(void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return CCL_ERR_IO;
        }
        p += n;
        len -= (size_t)n;
    }
    return CCL_OK;
}

int ccl__ncpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void ccl__sleep_ms(int ms)
{
    uint64_t until = ccl__now_ms() + (uint64_t)(ms > 0 ? ms : 0);
    while (!ccl__sock_cancelled()) {
        int left = remaining_ms(until);
        if (left == 0)
            return;
        poll(NULL, 0, cancel_flag && left > CANCEL_SLICE_MS ? CANCEL_SLICE_MS : left);
    }
}
