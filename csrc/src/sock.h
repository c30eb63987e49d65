/*
 * sock.h - the socket layer: the only place that makes syscalls.
 *
 * Blocking helpers (connect, accept, send_all, recv_all) take an absolute
 * deadline on the monotonic clock and never wait past it.  Nonblocking
 * helpers (read_some, writev_some) report "would block" as 0 bytes.
 * Errors return a ccl_result and write a detail naming the syscall.
 */
#ifndef CCL_SOCK_H
#define CCL_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <pthread.h>
#include <sys/uio.h>

/* Milliseconds and microseconds on the monotonic clock. */
uint64_t ccl__now_ms(void);
/* now - then, or 0 when `then` is later: a stamp taken after `now` was
 * read (progress made while a tick ran) must not wrap around into an
 * age of 2^64 ms. */
static inline uint64_t ccl__since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}
uint64_t ccl__now_us(void);
/* pthread_cond_timedwait for at most ms milliseconds from now (the
 * condition variable on the default, real-time clock). */
void ccl__cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms);

int ccl__sock_listen(const char *host, int port, int backlog, int *fd,
                     int *bound_port, char *err, size_t errlen);
int ccl__sock_connect(const char *host, int port, uint64_t deadline_ms,
                      int *fd, char *err, size_t errlen);
/* The same, with another SYN every again_ms (up to 3 at once) while none
 * has an answer; the first connection up wins and the others are closed.
 * For a server whose accept queue a flood keeps full: the kernel drops a
 * SYN there and retries it only after 1 s, but a fresh one may get in at
 * once.  again_ms 0: one try. */
int ccl__sock_connect_eager(const char *host, int port, uint64_t deadline_ms,
                            int again_ms, int *fd, char *err, size_t errlen);
/* A connect that does not wait: *fd is connecting (or connected); the
 * poller reports it writable when the attempt ended, and
 * ccl__sock_connect_result then says whether it worked (0) or not. */
int ccl__sock_connect_start(const char *host, int port, int *fd, char *err,
                            size_t errlen);
int ccl__sock_connect_result(int fd);
/* Accepts one connection; CCL_ERR_TIMEOUT past the deadline. */
int ccl__sock_accept(int lfd, uint64_t deadline_ms, int *fd, char *peer,
                     size_t peerlen, char *err, size_t errlen);
/* Accepts without waiting: *fd = -1 when nothing is pending.  Out of
 * file descriptors (EMFILE, ENFILE) or kernel memory: CCL_ERR_NOMEM, and
 * the pending connection stays queued, so the caller must back off rather
 * than retry at once. */
int ccl__sock_accept_now(int lfd, int *fd, char *peer, size_t peerlen);
/* The same in one system call, for a listener under a flood: the peer's
 * address and whether it is a loopback one come from accept itself, and
 * socket options are inherited from the listener where the system does
 * that (ccl__sock_options_inherited; elsewhere TCP_NODELAY is set here). */
int ccl__sock_accept_cheap(int lfd, int *fd, char *peer, size_t peerlen,
                           int *loopback);
/* 1 where accepted sockets take the listener's TCP options. */
int ccl__sock_options_inherited(void);
/* sock_limits.c: raises the soft open-file limit to the hard one and
 * returns the soft limit now in force. */
int ccl__sock_raise_nofile(void);
/* A key for the network prefix of "ip:port": the /24 of an IPv4 address
 * (also mapped into IPv6), the /64 of an IPv6 one; 0 if unparsable. */
uint64_t ccl__sock_prefix_key(const char *addr);
int ccl__sock_send_all(int fd, const void *buf, size_t len,
                       uint64_t deadline_ms, char *err, size_t errlen);
int ccl__sock_recv_all(int fd, void *buf, size_t len, uint64_t deadline_ms,
                       char *err, size_t errlen);
/* 1 if fd can take bytes now (POLLOUT without waiting): for TCP, a good
 * part of its send buffer is free.  Inline here: sock.c is at its size
 * limit. */
static inline int ccl__sock_writable_now(int fd)
{
    struct pollfd p = {fd, POLLOUT, 0};
    return poll(&p, 1, 0) == 1 && p.revents == POLLOUT;
}
/* Waits until fd is readable or the deadline passes (CCL_ERR_TIMEOUT). */
int ccl__sock_wait_readable(int fd, uint64_t deadline_ms, char *err, size_t errlen);
int ccl__sock_set_nonblock(int fd);
int ccl__sock_set_nodelay(int fd);
/* TCP keepalive: probes after idle_s idle seconds, every intvl_s, reset
 * after `count` unanswered (and TCP_USER_TIMEOUT of the same total). */
int ccl__sock_set_keepalive(int fd, int idle_s, int intvl_s, int count);
/* The kernel's smoothed round-trip time of a TCP connection in
 * microseconds (TCP_INFO), 0 when unknown. */
uint32_t ccl__sock_rtt_us(int fd);
/* Bytes one TCP stream can keep in flight at most: the smaller of the
 * largest send and receive buffers the kernel grants an unprivileged
 * socket (tcp_wmem/tcp_rmem maxima), less the receiver's overhead
 * share; read once. */
uint64_t ccl__sock_stream_window(void);
/* Nonblocking I/O.  Returns bytes moved (0 = would block) or a negative
 * ccl_result; EOF on read is CCL_ERR_PEER_LOST. */
long ccl__sock_read_some(int fd, void *buf, size_t len, char *err, size_t errlen);
long ccl__sock_writev_some(int fd, struct iovec *iov, int iovcnt, char *err,
                           size_t errlen);
void ccl__sock_close(int fd);
/* Closes after a last message: ends our side (FIN), reads and drops what
 * the other end already sent, then closes.  A plain close with unread
 * bytes would send a reset, which can make the other end lose our last
 * message before it reads it. */
void ccl__sock_close_after_send(int fd);
/* 1 if the other end of fd has a loopback address (127/8, ::1, or an IPv4
 * loopback mapped into IPv6), else 0. */
int ccl__sock_peer_is_loopback(int fd);
/* 1 if host is "localhost" or a literal loopback address. */
int ccl__host_is_loopback(const char *host);

/* The poller: epoll on Linux.  Events are reported with the pointer given
 * at registration. */
#define CCL_EV_IN 1u
#define CCL_EV_OUT 2u
#define CCL_EV_ERR 4u
typedef struct ccl__event {
    void *ptr;
    unsigned events;
} ccl__event;
/* What an event is reported to.  Every owner of a registered descriptor
 * (a transport connection, the master link) embeds one and registers its
 * address, so the loop dispatches through this one-entry table and knows
 * nothing about what the descriptor is. */
typedef struct ccl__io_handler ccl__io_handler;
struct ccl__io_handler {
    void (*on_event)(ccl__io_handler *h, unsigned events);
};
int ccl__poller_create(int *pfd);
int ccl__poller_set(int pfd, int fd, void *ptr, unsigned events, int add);
int ccl__poller_del(int pfd, int fd);
/* Waits up to timeout_ms (0 = poll); returns the number of events. */
int ccl__poller_wait(int pfd, ccl__event *evs, int max, int timeout_ms);

/* A wake-up fd (eventfd) that another thread signals. */
int ccl__wakefd_create(int *fd);
void ccl__wakefd_signal(int fd);
void ccl__wakefd_drain(int fd);

/* A thread's blocking helpers (connect, accept, send_all, recv_all,
 * wait_readable, sleep_ms) return CCL_ERR_INTERRUPTED within 50 ms once
 * *flag becomes nonzero; NULL (the default) turns this off.  The flag is
 * the caller's, set from any thread. */
void ccl__sock_set_cancel(const int *flag);
int ccl__sock_cancelled(void);

/* Fresh random bytes (getrandom). */
int ccl__random_bytes(void *buf, size_t len);
int ccl__ncpus(void);
void ccl__sleep_ms(int ms);

#endif
