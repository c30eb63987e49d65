/*
 * sock_shm.c - the shared-memory rings of sock_shm.h.
 *
 * The file: a 4 KiB header page, then ring 0 (connector to acceptor) and
 * ring 1 (acceptor to connector), ring_bytes each.  Each ring has a
 * control block in the header: `tail` (bytes ever written, stored by the
 * writer), `head` (bytes ever read, stored by the reader), and two flags,
 * each on its own cache line.
 *
 * Sleeping and waking, without a lost wake-up: a reader that finds the
 * ring empty sets `sleeping`, then looks at `tail` again; a writer stores
 * `tail`, then takes `sleeping` (exchange with 0) and rings the doorbell
 * if it was set.  With sequentially consistent stores and loads either
 * the reader sees the new tail or the writer sees the flag, so a reader
 * never sleeps on bytes nobody tells it about.  A writer that finds the
 * ring full does the same with `waiting` and `head`.
 *
 * The counters in the file are the other process's to write, so they are
 * checked before use (a ring cannot hold more than ring_bytes, nor can
 * its reader be ahead of its writer): a bad value fails the connection,
 * it never makes us read or write outside the ring.  Each side keeps its
 * own counter in private memory and only stores it to the file.
 */
#include "sock_shm.h"
#include "sock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <unistd.h>

#include "../include/ccl.h"

#define ERRF(...) do { if (err && errlen) snprintf(err, errlen, __VA_ARGS__); } while (0)

#define SHM_MAGIC "PYCCLSHM"
#define SHM_VERSION 1u
#define SHM_HEADER_BYTES 4096u
#define SHM_DIR "/dev/shm"

typedef struct shm_ctl {
    uint64_t tail;
    uint8_t pad0[56];
    uint64_t head;
    uint8_t pad1[56];
    uint32_t sleeping; /* the reader found the ring empty and may sleep */
    uint8_t pad2[60];
    uint32_t waiting;  /* the writer found the ring full and may sleep */
    uint8_t pad3[60];
} shm_ctl;

typedef struct shm_header {
    char magic[8];
    uint32_t version;
    uint32_t ring_bytes;
    uint8_t nonce[CCL_SHM_NONCE_LEN];
    uint8_t pad[32];
    shm_ctl ring[2];
} shm_header;

struct ccl__shm {
    uint8_t *base;
    size_t map_len;
    uint64_t cap, mask;
    shm_ctl *tx, *rx;
    uint8_t *tx_data, *rx_data;
    uint64_t tx_tail; /* ours: the copy in the file is for the reader */
    uint64_t rx_head; /* ours: the copy in the file is for the writer */
};

static size_t file_bytes(uint32_t ring_bytes)
{
    return SHM_HEADER_BYTES + 2 * (size_t)ring_bytes;
}

static int ring_size_ok(uint32_t ring_bytes)
{
    return ring_bytes >= 4096 && ring_bytes <= (64u << 20) &&
           (ring_bytes & (ring_bytes - 1)) == 0;
}

/* Names this process's files carry its pid, so that the names a killed
 * process left behind (it dies between creating a file and the other
 * end's answer) can be removed by the next process that makes one. */
static void sweep_orphans(void)
{
    static int swept;
    if (__atomic_exchange_n(&swept, 1, __ATOMIC_RELAXED))
        return;
    DIR *d = opendir(SHM_DIR);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        char rest[64];
        if (sscanf(e->d_name, "pyccl-%ld-%63s", &pid, rest) != 2 || pid <= 0 ||
            pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive (or not ours to ask about) */
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_uid == geteuid() && S_ISREG(st.st_mode))
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static int random_bytes(uint8_t *p, size_t n)
{
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0 && errno != EINTR) {
            close(fd);
            return -1;
        }
        if (r > 0)
            got += (size_t)r;
    }
    close(fd);
    return 0;
}

static ccl__shm *map_fd(int fd, uint32_t ring_bytes, int creator)
{
    size_t len = file_bytes(ring_bytes);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    ccl__shm *s = calloc(1, sizeof *s);
    if (!s) {
        munmap(p, len);
        return NULL;
    }
    shm_header *h = p;
    s->base = p;
    s->map_len = len;
    s->cap = ring_bytes;
    s->mask = ring_bytes - 1;
    uint8_t *ring0 = s->base + SHM_HEADER_BYTES, *ring1 = ring0 + ring_bytes;
    s->tx = &h->ring[creator ? 0 : 1];
    s->rx = &h->ring[creator ? 1 : 0];
    s->tx_data = creator ? ring0 : ring1;
    s->rx_data = creator ? ring1 : ring0;
    return s;
}

int ccl__shm_create(uint32_t ring_bytes, ccl__shm **out,
                    char name[CCL_SHM_NAME_LEN],
                    uint8_t nonce[CCL_SHM_NONCE_LEN], char *err, size_t errlen)
{
    *out = NULL;
    if (!ring_size_ok(ring_bytes)) {
        ERRF("shared memory: ring size %u is not a power of two in 4 KiB..64 MiB",
             ring_bytes);
        return CCL_ERR_INVALID_ARG;
    }
    sweep_orphans();
    uint8_t r[8];
    if (random_bytes(r, sizeof r) || random_bytes(nonce, CCL_SHM_NONCE_LEN)) {
        ERRF("shared memory: no random bytes");
        return CCL_ERR_IO;
    }
    snprintf(name, CCL_SHM_NAME_LEN, "/pyccl-%ld-%02x%02x%02x%02x%02x%02x%02x%02x",
             (long)getpid(), r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
    char path[sizeof SHM_DIR + CCL_SHM_NAME_LEN];
    snprintf(path, sizeof path, "%s%s", SHM_DIR, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        ERRF("shared memory: create %s: %s", path, strerror(errno));
        return CCL_ERR_IO;
    }
    /* Reserve every page now: a /dev/shm too small to hold the rings fails
     * here, instead of killing us with SIGBUS at a page's first touch. */
    int rc = posix_fallocate(fd, 0, (off_t)file_bytes(ring_bytes));
    if (rc) {
        ERRF("shared memory: reserve %zu bytes in %s: %s", file_bytes(ring_bytes),
             SHM_DIR, strerror(rc));
        close(fd);
        unlink(path);
        return CCL_ERR_NOMEM;
    }
    ccl__shm *s = map_fd(fd, ring_bytes, 1);
    int e = errno;
    close(fd);
    if (!s) {
        ERRF("shared memory: map %s: %s", path, strerror(e));
        unlink(path);
        return CCL_ERR_NOMEM;
    }
    shm_header *h = (shm_header *)s->base;
    memcpy(h->nonce, nonce, CCL_SHM_NONCE_LEN);
    h->version = SHM_VERSION;
    h->ring_bytes = ring_bytes;
    /* Neither reader has looked at its ring yet: both count as asleep, so
     * the first bytes each way ring the doorbell. */
    h->ring[0].sleeping = h->ring[1].sleeping = 1;
    memcpy(h->magic, SHM_MAGIC, 8);
    *out = s;
    return CCL_OK;
}

int ccl__shm_attach(const char *name, const uint8_t nonce[CCL_SHM_NONCE_LEN],
                    uint32_t ring_bytes, ccl__shm **out, char *err, size_t errlen)
{
    *out = NULL;
    long pid;
    char rest[64], path[sizeof SHM_DIR + CCL_SHM_NAME_LEN];
    if (strlen(name) >= CCL_SHM_NAME_LEN || strchr(name + 1, '/') ||
        sscanf(name, "/pyccl-%ld-%63s", &pid, rest) != 2) {
        ERRF("shared memory: not a pyccl file name");
        return CCL_ERR_PROTOCOL;
    }
    if (!ring_size_ok(ring_bytes)) {
        ERRF("shared memory: ring size %u is not a power of two in 4 KiB..64 MiB",
             ring_bytes);
        return CCL_ERR_PROTOCOL;
    }
    snprintf(path, sizeof path, "%s%s", SHM_DIR, name);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        ERRF("shared memory: open %s: %s", path, strerror(errno));
        return CCL_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 077) || (size_t)st.st_size != file_bytes(ring_bytes)) {
        ERRF("shared memory: %s is not a file of this user, for this user "
             "alone, of %zu bytes", path, file_bytes(ring_bytes));
        close(fd);
        return CCL_ERR_PROTOCOL;
    }
    ccl__shm *s = map_fd(fd, ring_bytes, 0);
    int e = errno;
    close(fd);
    if (!s) {
        ERRF("shared memory: map %s: %s", path, strerror(e));
        return CCL_ERR_NOMEM;
    }
    const shm_header *h = (const shm_header *)s->base;
    if (memcmp(h->magic, SHM_MAGIC, 8) || h->version != SHM_VERSION ||
        h->ring_bytes != ring_bytes ||
        memcmp(h->nonce, nonce, CCL_SHM_NONCE_LEN)) {
        ERRF("shared memory: %s does not hold the connection's rings", path);
        ccl__shm_free(s);
        return CCL_ERR_PROTOCOL;
    }
    unlink(path); /* both ends hold it now: the name is not needed */
    *out = s;
    return CCL_OK;
}

void ccl__shm_unlink(const char *name)
{
    char path[sizeof SHM_DIR + CCL_SHM_NAME_LEN];
    if (!name || !*name || strlen(name) >= CCL_SHM_NAME_LEN)
        return;
    snprintf(path, sizeof path, "%s%s", SHM_DIR, name);
    unlink(path);
}

void ccl__shm_free(ccl__shm *s)
{
    if (!s)
        return;
    munmap(s->base, s->map_len);
    free(s);
}

/* One byte that wakes the other side.  A full socket buffer means the
 * other side has doorbells it has not read yet: it will wake anyway. */
static int ring_bell(int fd, char *err, size_t errlen)
{
    for (;;) {
        ssize_t n = send(fd, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            continue;
        ERRF("send (doorbell): %s", strerror(errno));
        return -CCL_ERR_PEER_LOST;
    }
}

long ccl__shm_read_some(ccl__shm *s, int fd, void *buf, size_t len, char *err,
                        size_t errlen)
{
    shm_ctl *r = s->rx;
    uint64_t head = s->rx_head;
    uint64_t avail = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) - head;
    if (avail == 0) {
        __atomic_store_n(&r->sleeping, 1, __ATOMIC_SEQ_CST);
        avail = __atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) - head;
        if (avail == 0)
            return 0;
        __atomic_store_n(&r->sleeping, 0, __ATOMIC_RELAXED);
    }
    if (avail > s->cap) {
        ERRF("shared memory ring corrupt (%llu bytes in a ring of %llu)",
             (unsigned long long)avail, (unsigned long long)s->cap);
        return -CCL_ERR_PROTOCOL;
    }
    size_t n = avail < len ? (size_t)avail : len;
    size_t at = (size_t)(head & s->mask), first = (size_t)s->cap - at;
    if (first > n)
        first = n;
    memcpy(buf, s->rx_data + at, first);
    memcpy((uint8_t *)buf + first, s->rx_data, n - first);
    s->rx_head = head + n;
    __atomic_store_n(&r->head, s->rx_head, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&r->waiting, 0, __ATOMIC_SEQ_CST)) {
        int rc = ring_bell(fd, err, errlen);
        if (rc)
            return rc;
    }
    return (long)n;
}

long ccl__shm_writev_some(ccl__shm *s, int fd, const struct iovec *iov,
                          int iovcnt, char *err, size_t errlen)
{
    shm_ctl *w = s->tx;
    uint64_t tail = s->tx_tail;
    uint64_t used = tail - __atomic_load_n(&w->head, __ATOMIC_ACQUIRE);
    if (used == s->cap) {
        __atomic_store_n(&w->waiting, 1, __ATOMIC_SEQ_CST);
        used = tail - __atomic_load_n(&w->head, __ATOMIC_SEQ_CST);
        if (used == s->cap)
            return 0;
        __atomic_store_n(&w->waiting, 0, __ATOMIC_RELAXED);
    }
    if (used > s->cap) {
        ERRF("shared memory ring corrupt (reader ahead of the writer)");
        return -CCL_ERR_PROTOCOL;
    }
    size_t room = (size_t)(s->cap - used), n = 0;
    for (int i = 0; i < iovcnt && n < room; i++) {
        size_t take = iov[i].iov_len < room - n ? iov[i].iov_len : room - n;
        size_t at = (size_t)((tail + n) & s->mask), first = (size_t)s->cap - at;
        if (first > take)
            first = take;
        memcpy(s->tx_data + at, iov[i].iov_base, first);
        memcpy(s->tx_data, (const uint8_t *)iov[i].iov_base + first, take - first);
        n += take;
    }
    if (n == 0)
        return 0;
    s->tx_tail = tail + n;
    __atomic_store_n(&w->tail, s->tx_tail, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&w->sleeping, 0, __ATOMIC_SEQ_CST)) {
        int rc = ring_bell(fd, err, errlen);
        if (rc)
            return rc;
    }
    return (long)n;
}

size_t ccl__shm_peek(ccl__shm *s, const uint8_t **p)
{
    uint64_t avail = __atomic_load_n(&s->rx->tail, __ATOMIC_ACQUIRE) - s->rx_head;
    if (avail == 0 || avail > s->cap)
        return 0;
    size_t at = (size_t)(s->rx_head & s->mask), first = (size_t)s->cap - at;
    *p = s->rx_data + at;
    return avail < first ? (size_t)avail : first;
}

int ccl__shm_release(ccl__shm *s, int fd, size_t n, char *err, size_t errlen)
{
    s->rx_head += n;
    __atomic_store_n(&s->rx->head, s->rx_head, __ATOMIC_SEQ_CST);
    if (__atomic_exchange_n(&s->rx->waiting, 0, __ATOMIC_SEQ_CST))
        return ring_bell(fd, err, errlen);
    return 0;
}

size_t ccl__shm_room(const ccl__shm *s)
{
    uint64_t used = s->tx_tail - __atomic_load_n(&s->tx->head, __ATOMIC_ACQUIRE);
    return used > s->cap ? 0 : (size_t)(s->cap - used);
}

size_t ccl__shm_pending(const ccl__shm *s)
{
    uint64_t avail = __atomic_load_n(&s->rx->tail, __ATOMIC_ACQUIRE) - s->rx_head;
    return avail > s->cap ? 1 : (size_t)avail; /* corrupt: let a read say so */
}

int ccl__shm_drain(int fd, char *err, size_t errlen)
{
    uint8_t buf[256];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof buf)
            continue;
        if (n > 0)
            return 0;
        if (n == 0) {
            ERRF("connection closed by the peer");
            return -CCL_ERR_PEER_LOST;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        ERRF("recv (doorbell): %s", strerror(errno));
        return -CCL_ERR_PEER_LOST;
    }
}

/* An endpoint as 16 address bytes (IPv4 mapped into IPv6) and the port,
 * big-endian: a dual-stack socket sees an IPv4 peer as ::ffff:a.b.c.d
 * while the peer itself sees a.b.c.d, and both must encode alike. */
static int endpoint(const struct sockaddr_storage *ss, uint8_t out[18])
{
    memset(out, 0, 18);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a->sin_addr, 4);
        memcpy(out + 16, &a->sin_port, 2);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        memcpy(out, &a->sin6_addr, 16);
        memcpy(out + 16, &a->sin6_port, 2);
        return 0;
    }
    return -1;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The kernel's boot id: 16 bytes that differ between hosts (and boots). */
static int boot_id(uint8_t out[16])
{
    char text[64];
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = 0;
    int have = 0;
    for (ssize_t i = 0; i < n && have < 32; i++) {
        int v = hexval(text[i]);
        if (v < 0)
            continue;
        if (have % 2 == 0)
            out[have / 2] = (uint8_t)(v << 4);
        else
            out[have / 2] |= (uint8_t)v;
        have++;
    }
    return have == 32 ? 0 : -1;
}

int ccl__shm_path_of(int fd, int connector, ccl__shm_path *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat("/proc/self/ns/net", &st) || boot_id(out->boot_id)) {
        ERRF("shared memory: /proc does not say which host and network "
             "namespace this is");
        return CCL_ERR_IO;
    }
    out->netns_dev = (uint64_t)st.st_dev;
    out->netns_ino = (uint64_t)st.st_ino;
    struct sockaddr_storage local, remote;
    socklen_t ll = sizeof local, rl = sizeof remote;
    uint8_t le[18], re[18];
    if (getsockname(fd, (struct sockaddr *)&local, &ll) ||
        getpeername(fd, (struct sockaddr *)&remote, &rl) ||
        endpoint(&local, le) || endpoint(&remote, re)) {
        ERRF("shared memory: the connection's endpoints are unknown");
        return CCL_ERR_IO;
    }
    memcpy(out->connector, connector ? le : re, 18);
    memcpy(out->acceptor, connector ? re : le, 18);
    return CCL_OK;
}
