/*
 * sock_shm.h - a connection's bytes through shared memory, for two peers
 * on one host (docs/design.md, "Same-host connections").
 *
 * A peer connection whose two ends are on the same host, in the same
 * network namespace and joined directly by the kernel (no relay, proxy or
 * NAT between them: the TCP endpoints each end sees must mirror the
 * other's) can move its frames through a file in /dev/shm instead of the
 * TCP stream: two single-producer single-consumer byte rings, one per
 * direction.  The frames are byte for byte what TCP would carry (MACs and
 * encryption unchanged); the TCP socket stays open and carries only
 * doorbells, one byte that wakes a side that went to sleep on an empty
 * (or full) ring.  It also keeps the fault model: a peer that dies closes
 * its socket (EOF on the doorbell), a stopped one stops writing (the
 * transport's silence deadline), exactly as over TCP.
 *
 * Costs: two memcpys per byte (in and out of the ring) instead of the
 * TCP stack's two copies plus its per-segment work, and no system call
 * while both sides are busy.
 *
 * Like sock.c, this is the only code that makes the system calls it
 * needs (open, mmap, the doorbells).
 */
#ifndef CCL_SOCK_SHM_H
#define CCL_SOCK_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The /dev/shm name of a connection's file ("/pyccl-<pid>-<hex>"), with
 * its NUL, fits this. */
#define CCL_SHM_NAME_LEN 64
/* Bytes per direction (a power of two) in a group of up to 4 members, and
 * the least any group gets (shm_setup.h, ccl__shm_ring_for). */
#define CCL_SHM_RING_BYTES (8u << 20)
#define CCL_SHM_RING_MIN (256u << 10)
#define CCL_SHM_NONCE_LEN 16

typedef struct ccl__shm ccl__shm;

/* The connector's side: a fresh file in /dev/shm (mode 0600, its pages
 * reserved up front, so that a full /dev/shm fails here and not later as
 * SIGBUS), mapped, with `nonce` (fresh random bytes, returned) in its
 * header.  The file's name goes in *name; the other end opens it by name
 * (ccl__shm_attach) and the creator removes the name once the other end
 * answered (ccl__shm_unlink).  CCL_OK or an error with a detail. */
int ccl__shm_create(uint32_t ring_bytes, ccl__shm **out,
                    char name[CCL_SHM_NAME_LEN],
                    uint8_t nonce[CCL_SHM_NONCE_LEN], char *err, size_t errlen);
/* The acceptor's side: opens the file by name, checks that this user owns
 * it, that nobody else may open it, its size, ring size and nonce, maps
 * it and removes its name.  CCL_OK or an error with a detail. */
int ccl__shm_attach(const char *name, const uint8_t nonce[CCL_SHM_NONCE_LEN],
                    uint32_t ring_bytes, ccl__shm **out, char *err,
                    size_t errlen);
/* Removes a name made by ccl__shm_create (no error if it is gone). */
void ccl__shm_unlink(const char *name);
/* Unmaps (NULL: nothing). */
void ccl__shm_free(ccl__shm *s);

/* The data path, with the semantics of ccl__sock_read_some and
 * ccl__sock_writev_some: bytes moved, 0 for "would block" (then the other
 * side rings the doorbell on `fd` once it made room or wrote), or
 * -ccl_result with a detail when the ring is corrupt or the doorbell
 * failed.  fd is the connection's socket. */
long ccl__shm_read_some(ccl__shm *s, int fd, void *buf, size_t len, char *err,
                        size_t errlen);
long ccl__shm_writev_some(ccl__shm *s, int fd, const struct iovec *iov,
                          int iovcnt, char *err, size_t errlen);
/* Zero-copy reading: *p points at the bytes waiting at the ring's head
 * that lie in one piece (up to the ring's end); returns how many (0: none,
 * or a corrupt ring, which the next read reports).  The bytes stay ours
 * to read until ccl__shm_release gives n of them back to the writer
 * (waking it if it waits for room; -ccl_result if that failed). */
size_t ccl__shm_peek(ccl__shm *s, const uint8_t **p);
int ccl__shm_release(ccl__shm *s, int fd, size_t n, char *err, size_t errlen);
/* Free bytes in the send ring now. */
size_t ccl__shm_room(const ccl__shm *s);
/* Bytes waiting in the receive ring (for a reader that stopped early). */
size_t ccl__shm_pending(const ccl__shm *s);
/* Reads and drops the doorbell bytes waiting on fd.  0, or -ccl_result
 * (with a detail) when the other end closed or the socket failed: the
 * connection is over.  The end may show only on a later call, after the
 * doorbells ahead of it (the poller then reports the socket again). */
int ccl__shm_drain(int fd, char *err, size_t errlen);

/* Where a connection runs, as one end sees it.  Two ends see the same
 * exactly when they are on one host (boot id), in one network namespace,
 * and each sees the other's endpoint as its own remote one: no relay,
 * proxy or NAT between them. */
typedef struct ccl__shm_path {
    uint8_t boot_id[16];
    uint64_t netns_dev, netns_ino;
    /* address (IPv4 mapped into IPv6), then the port, big-endian */
    uint8_t connector[18], acceptor[18];
} ccl__shm_path;

/* The path of the TCP connection fd; `connector` says which end the
 * caller is.  CCL_OK or an error (no /proc, not an IP socket). */
int ccl__shm_path_of(int fd, int connector, ccl__shm_path *out, char *err,
                     size_t errlen);

#endif
