/*
 * sock_poll.c - the event loops' system calls: the poller (epoll) and the
 * wake-up fd (eventfd) of the progress thread and the master.  Part of
 * the socket layer (see sock.h); split from sock.c to keep that file to
 * connections and their bytes.
 */
#include "sock.h"
#include "ccl.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int ccl__poller_create(int *pfd)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return CCL_ERR_IO;
    *pfd = fd;
    return CCL_OK;
}

int ccl__poller_set(int pfd, int fd, void *ptr, unsigned events, int add)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.data.ptr = ptr;
    if (events & CCL_EV_IN)
        ev.events |= EPOLLIN;
    if (events & CCL_EV_OUT)
        ev.events |= EPOLLOUT;
    if (epoll_ctl(pfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) != 0)
        return CCL_ERR_IO;
    return CCL_OK;
}

int ccl__poller_del(int pfd, int fd)
{
    struct epoll_event ev;
    return epoll_ctl(pfd, EPOLL_CTL_DEL, fd, &ev) == 0 ? CCL_OK : CCL_ERR_IO;
}

int ccl__poller_wait(int pfd, ccl__event *evs, int max, int timeout_ms)
{
    struct epoll_event ee[64];
    if (max > 64)
        max = 64;
    int n = epoll_wait(pfd, ee, max, timeout_ms);
    if (n < 0)
        return 0; /* EINTR: the caller's loop re-checks its deadlines. */
    for (int i = 0; i < n; i++) {
        evs[i].ptr = ee[i].data.ptr;
        evs[i].events = 0;
        if (ee[i].events & EPOLLIN)
            evs[i].events |= CCL_EV_IN;
        if (ee[i].events & EPOLLOUT)
            evs[i].events |= CCL_EV_OUT;
        if (ee[i].events & (EPOLLERR | EPOLLHUP))
            evs[i].events |= CCL_EV_ERR | CCL_EV_IN;
    }
    return n;
}

int ccl__wakefd_create(int *fd)
{
    int e = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e < 0)
        return CCL_ERR_IO;
    *fd = e;
    return CCL_OK;
}

void ccl__wakefd_signal(int fd)
{
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
}

void ccl__wakefd_drain(int fd)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(fd, &v, sizeof v);
    } while (n < 0 && errno == EINTR);
}
