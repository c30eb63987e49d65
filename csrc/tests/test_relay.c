/* test_relay.c - an on-path relay without the key (docs/security.md,
 * "Who is blamed" and the threat model).  Two communicators run in
 * threads of one process with a real master.  After a clean op, the test
 * splices a relay into rank 1's connection to rank 0: the connection's
 * socket is handed to a relay thread, and rank 1 writes into a socket
 * pair whose other end the relay forwards, frame by frame (it parses the
 * stream as docs/protocol.md describes), to rank 0, tampering once.  Each
 * case must end with the op failed on both ranks, the inputs intact, and
 * nobody expelled (a later update_topology settles the broken link like
 * a cut one); never with a wrong result that counts as success.
 *
 *   key + frame_mac, a DATA payload byte flipped     -> MAC failure
 *   key, a DONE frame's header byte flipped           -> MAC failure
 *   key, the stream cut in the middle of a frame      -> peer lost
 *   no key, a DATA length set to 0xffffffff           -> malformed frame
 *   no key, the stream cut in the middle of a frame   -> peer lost
 *   key + encrypt, a ciphertext byte flipped          -> AEAD tag failure
 *   key + encrypt, a DONE header byte flipped         -> AEAD tag failure
 *   key + encrypt, the stream cut in the middle       -> peer lost
 *
 * The relay also reads what it forwards: with encrypt no DATA payload may
 * look like the tensor (consecutive whole floats), without it they do
 * (which shows the detector works).  With encrypt, the member left after
 * update_topology runs one more op, which must be exact.
 */
#include "aead.h"
#include "ccl.h"
#include "communicator.h"
#include "harness.h"
#include "wire.h"
#include "xport_int.h"

#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define N 20000
static const char KEY[] = "relay test key, thirty-two bytes";

enum { FLIP_DATA, FLIP_DONE, CUT, HUGE_LEN };

typedef struct {
    int mode, keyed, frame_mac; /* frame_mac: every frame tagged (or encrypt) */
    int in_fd, out_fd; /* from rank 1 (socket pair end), to rank 0 (TCP) */
    int tampered;
    int data_frames, plain_frames; /* DATA payloads seen, and how many of
                                      them read as the tensor in clear */
} relay_t;

/* Whether a DATA payload reads as this test's tensors in clear: most
 * neighbouring floats are whole numbers 1 or 2 apart (inputs i + rank,
 * sums 2i + 1).  Ciphertext matches with negligible probability. */
static int looks_plain(const uint8_t *p, uint32_t len)
{
    uint32_t n = len / 4, hits = 0;
    for (uint32_t j = 0; j + 1 < n; j++) {
        float a, b;
        memcpy(&a, p + 4 * j, 4);
        memcpy(&b, p + 4 * j + 4, 4);
        hits += a >= 0 && a < 1e6f && a == (float)(int)a &&
                (b - a == 1.0f || b - a == 2.0f);
    }
    return n > 8 && hits > n / 2;
}

/* Whether a frame of this type carries a tag (protocol 4). */
static int tagged(const relay_t *r, int type)
{
    return r->keyed && (r->frame_mac || type != CCL_FT_DATA);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Rank 1 -> rank 0, one frame at a time; the other direction is the
 * original socket, which rank 0 still reads and writes directly (the
 * relay owns only what rank 1 writes). */
static void *relay(void *p)
{
    relay_t *r = p;
    enum { CAP = (16 << 20) + 64 };
    uint8_t *buf = harness_xmalloc(CAP);
    for (;;) {
        uint8_t *h = buf;
        if (read_all(r->in_fd, h, CCL_HDR_LEN))
            break;
        int type = h[0];
        uint32_t len = (uint32_t)h[32] | (uint32_t)h[33] << 8 |
                       (uint32_t)h[34] << 16 | (uint32_t)h[35] << 24;
        size_t rest = len + (tagged(r, type) ? CCL_FRAME_MAC_TAG_LEN : 0);
        if (rest > CAP - CCL_HDR_LEN || read_all(r->in_fd, buf + CCL_HDR_LEN, rest))
            break;
        size_t total = CCL_HDR_LEN + rest;
        if (type == CCL_FT_DATA && len > 0) {
            r->data_frames++;
            r->plain_frames += looks_plain(buf + CCL_HDR_LEN, len);
        }
        if (!r->tampered) {
            if (r->mode == FLIP_DATA && type == CCL_FT_DATA && len > 8) {
                buf[CCL_HDR_LEN + 5] ^= 0x40;
                r->tampered = 1;
            } else if (r->mode == FLIP_DONE && type == CCL_FT_DONE) {
                buf[8] ^= 1; /* the op tag it claims done */
                r->tampered = 1;
            } else if (r->mode == HUGE_LEN && type == CCL_FT_DATA) {
                memset(buf + 32, 0xff, 4);
                write_all(r->out_fd, buf, CCL_HDR_LEN);
                r->tampered = 1;
                continue; /* the rest of the stream goes on as it was */
            } else if (r->mode == CUT && type == CCL_FT_DATA && len > 8) {
                write_all(r->out_fd, buf, CCL_HDR_LEN + len / 2);
                r->tampered = 1;
                break;
            }
        }
        if (write_all(r->out_fd, buf, total))
            break;
    }
    shutdown(r->out_fd, SHUT_RDWR);
    shutdown(r->in_fd, SHUT_RDWR);
    free(buf);
    return NULL;
}

typedef struct {
    int port, rank, keyed, frame_mac, encrypt;
    ccl_comm *c;
    pthread_barrier_t *bar;
    int rc_clean, rc_op, restored, correct, rc_topo, rc_after, correct_after;
    float got5;
    char err[400], topo_err[400];
} arg_t;

static void *peer(void *p)
{
    arg_t *a = p;
    ccl_comm_config cfg = harness_comm_config(a->port, 2, a->rank);
    if (a->keyed) {
        cfg.key = KEY;
        cfg.key_len = 32;
        cfg.frame_mac = a->frame_mac;
        cfg.encrypt = a->encrypt;
    }
    cfg.op_timeout_ms = 5000;
    cfg.peer_timeout_ms = 3000;
    /* The relay is spliced into the TCP stream of a mesh formed without
     * it: keep the frames on that stream (a relay in the path from the
     * start would keep them there anyway, tests/test_shm.py). */
    cfg.shm = 0;
    char err[256];
    if (ccl_comm_create(&cfg, &a->c, err, sizeof err))
        fprintf(stderr, "rank %d: %s\n", a->rank, err);
    static float buf[2][N];
    float *x = buf[a->rank];
    for (int i = 0; i < N; i++)
        x[i] = (float)(i + a->rank);
    a->rc_clean = a->c ? ccl_allreduce(a->c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING)
                       : -1;
    for (int i = 0; i < N; i++)
        x[i] = (float)(i + a->rank);
    pthread_barrier_wait(a->bar); /* the relay goes in */
    pthread_barrier_wait(a->bar);
    if (!a->c)
        return NULL;
    a->rc_op = ccl_allreduce(a->c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING);
    snprintf(a->err, sizeof a->err, "%s", ccl_comm_error(a->c));
    a->got5 = x[5];
    a->restored = a->correct = 1;
    for (int i = 0; i < N; i++) {
        a->restored &= x[i] == (float)(i + a->rank);
        a->correct &= x[i] == (float)(2 * i + 1);
    }
    a->rc_topo = ccl_comm_update_topology(a->c, 10000);
    snprintf(a->topo_err, sizeof a->topo_err, "%s", ccl_comm_error(a->c));
    a->rc_after = -1;
    if (a->rc_topo == CCL_OK) {
        /* Whoever is still in goes on (alone or with the other). */
        int r = ccl_comm_rank(a->c), n = ccl_comm_size(a->c);
        for (int i = 0; i < N; i++)
            x[i] = (float)(i + r);
        a->rc_after = ccl_allreduce(a->c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING);
        a->correct_after = 1;
        for (int i = 0; i < N; i++)
            a->correct_after &= x[i] == (float)(n * i + n * (n - 1) / 2);
    }
    return NULL;
}

static void run_case(const char *name, int mode, int keyed, int frame_mac,
                     int encrypt)
{
    ccl_master_config mc;
    ccl_master_config_init(&mc);
    if (keyed) {
        mc.key = KEY;
        mc.key_len = 32;
    }
    ccl_master *m = harness_master_with(&mc, 0);
    PASS(m != NULL);
    if (!m)
        return;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    arg_t a[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        memset(&a[r], 0, sizeof a[r]);
        a[r] = (arg_t){.port = ccl_master_port(m), .rank = r, .keyed = keyed,
                       .frame_mac = frame_mac, .encrypt = encrypt, .bar = &bar};
        pthread_create(&th[r], NULL, peer, &a[r]);
    }
    pthread_barrier_wait(&bar);
    relay_t rl = {.mode = mode, .keyed = keyed, .frame_mac = frame_mac || encrypt};
    pthread_t rt;
    int spliced = 0;
    ccl_comm *c1 = a[0].c && ccl_comm_rank(a[0].c) == 1 ? a[0].c : a[1].c;
    if (a[0].c && a[1].c) {
        /* Rank 1 now writes into a socket pair; the relay owns a dup of
         * the TCP socket for that direction. */
        pthread_mutex_lock(&c1->mu);
        xp_conn *k = &c1->xp->peers[0].conns[0];
        int sp[2];
        if (k->fd >= 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0) {
            rl.out_fd = dup(k->fd);
            /* The relay blocks (the flag is shared with rank 1's old fd,
             * which nobody uses any more). */
            fcntl(rl.out_fd, F_SETFL, fcntl(rl.out_fd, F_GETFL) & ~O_NONBLOCK);
            rl.in_fd = sp[1];
            ccl__poller_del(c1->poller, k->fd);
            /* Keep reading rank 0's frames from the TCP socket: swap only
             * the write side by making the pair end the connection's fd
             * and forwarding what rank 0 sends back into the pair. */
            k->fd = sp[0];
            ccl__sock_set_nonblock(sp[0]);
            ccl__poller_set(c1->poller, sp[0], &k->ev, CCL_EV_IN, 1);
            spliced = 1;
        }
        pthread_mutex_unlock(&c1->mu);
    }
    /* Rank 0 -> rank 1 bytes: from the TCP socket into the pair,
     * untouched. */
    pthread_t back;
    relay_t rb = {.mode = -1, .keyed = keyed, .frame_mac = frame_mac || encrypt,
                  .tampered = 1, .in_fd = rl.out_fd, .out_fd = rl.in_fd};
    if (spliced) {
        pthread_create(&rt, NULL, relay, &rl);
        pthread_create(&back, NULL, relay, &rb);
    }
    pthread_barrier_wait(&bar);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    if (spliced) {
        shutdown(rl.out_fd, SHUT_RDWR);
        shutdown(rl.in_fd, SHUT_RDWR);
        pthread_join(rt, NULL);
        pthread_join(back, NULL);
        close(rl.out_fd);
        close(rl.in_fd);
    }
    fprintf(stderr, "  %s: rank 0 %s (%s); rank 1 %s (%s)\n", name,
            ccl_strerror(a[0].rc_op), a[0].err, ccl_strerror(a[1].rc_op), a[1].err);
    PASS(spliced && rl.tampered);
    for (int r = 0; r < 2; r++) {
        PASS(a[r].rc_clean == CCL_OK);
        /* Never a success with tampered bytes, never a wrong result: the
         * op fails with the input put back, or (when only agreement
         * frames were hit after every byte of data was in, see
         * docs/fault-tolerance.md) succeeds with the exact result. */
        PASS(a[r].rc_op == CCL_OK ? a[r].correct : a[r].restored);
        if (mode == FLIP_DATA || mode == HUGE_LEN)
            PASS(a[r].rc_op != CCL_OK);
        /* Nobody is expelled for the relay's doing. */
        PASS(strstr(a[r].topo_err, "expel") == NULL);
        if (encrypt && a[r].rc_topo == CCL_OK)
            PASS(a[r].rc_after == CCL_OK && a[r].correct_after);
    }
    /* What went over the wire: DATA frames were seen (the CUT case
     * stops at the first), and only without encrypt do they read as the
     * tensor. */
    PASS(rl.data_frames > 0);
    if (encrypt)
        PASS(rl.plain_frames == 0 && rb.plain_frames == 0);
    else if (mode == FLIP_DATA)
        PASS(rl.plain_frames > 0);
    if (encrypt) {
        /* The link broke, so update_topology settled it: at least one
         * member is still in and computed exactly. */
        PASS(a[0].rc_topo == CCL_OK || a[1].rc_topo == CCL_OK);
    }
    for (int r = 0; r < 2; r++)
        ccl_comm_destroy(a[r].c);
    ccl_master_destroy(m);
}

int main(void)
{
    run_case("key + frame_mac, DATA byte flipped", FLIP_DATA, 1, 1, 0);
    run_case("key, DONE header byte flipped", FLIP_DONE, 1, 0, 0);
    run_case("key, stream cut mid-frame", CUT, 1, 0, 0);
    run_case("no key, DATA length 0xffffffff", HUGE_LEN, 0, 0, 0);
    run_case("no key, stream cut mid-frame", CUT, 0, 0, 0);
    char err[600];
    if (ccl__aead_load(err, sizeof err) == CCL_OK) {
        run_case("key + encrypt, ciphertext byte flipped", FLIP_DATA, 1, 0, 1);
        run_case("key + encrypt, DONE header byte flipped", FLIP_DONE, 1, 0, 1);
        run_case("key + encrypt, stream cut mid-frame", CUT, 1, 0, 1);
    } else {
        fprintf(stderr, "  encrypt cases skipped: %s\n", err);
    }
    return HARNESS_DONE("test_relay");
}
