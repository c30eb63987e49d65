/* test_frame_mac.c - frame MACs against bytes injected into a live
 * stream.  A master and two communicators run in threads of one process
 * over real sockets on 127.0.0.1, with a key and frame_mac on.  The test
 * writes a well-formed DATA frame for the next op straight onto rank 1's
 * socket to rank 0, as a man in the middle would.  Rank 0 must refuse it
 * (CCL_ERR_AUTH, "MAC"), both ranks' op must fail with the input intact.
 * Blame (docs/security.md): a failed MAC proves only that the link is
 * bad, so it is a link fault like a cut connection, and nobody is
 * expelled: at the next update_topology the master settles the broken
 * link as it settles any (one of the two goes, told it was dropped, not
 * expelled, and free to join again), and the other goes on alone. */
#include "ccl.h"
#include "communicator.h"
#include "xport_int.h"
#include "harness.h"
#include "wire.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define N 4096
static const char KEY[] = "frame mac test key, 32 bytes ok!";

typedef struct {
    int port, rank;
    ccl_comm *c;
    pthread_barrier_t *bar;
    int rc_op, rc_topo, size_after, restored, alone_ok;
    char err[512];
    char topo_err[512];
} arg_t;

static void *peer(void *p)
{
    arg_t *a = p;
    ccl_comm_config cfg = harness_comm_config(a->port, 2, a->rank);
    cfg.key = KEY;
    cfg.key_len = 32;
    cfg.frame_mac = 1;
    /* The injected bytes go onto the TCP stream: keep the frames there
     * (with shared memory the socket would carry only doorbells). */
    cfg.shm = 0;
    cfg.op_timeout_ms = 10000;
    char err[256];
    if (ccl_comm_create(&cfg, &a->c, err, sizeof err)) {
        fprintf(stderr, "rank %d: %s\n", a->rank, err);
        pthread_barrier_wait(a->bar);
        pthread_barrier_wait(a->bar);
        return NULL;
    }
    static float buf[2][N];
    float *x = buf[a->rank];
    for (int i = 0; i < N; i++)
        x[i] = (float)(i + a->rank);
    /* A clean op first: MACs on both ways. */
    int rc = ccl_allreduce(a->c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING);
    int ok = rc == 0 && x[5] == 11.0f;
    for (int i = 0; i < N; i++)
        x[i] = (float)(i + a->rank);
    pthread_barrier_wait(a->bar); /* the test injects now */
    pthread_barrier_wait(a->bar);
    ccl_op *op = NULL;
    rc = ccl_allreduce_async(a->c, x, x, N, CCL_F32, CCL_SUM, CCL_ALGO_RING, &op);
    if (rc == 0) {
        rc = ccl_op_wait(op, -1);
        snprintf(a->err, sizeof a->err, "%s", ccl_op_error(op));
        ccl_op_free(op);
    }
    a->rc_op = ok ? rc : -1;
    a->restored = 1;
    for (int i = 0; i < N; i++)
        a->restored &= x[i] == (float)(i + a->rank);
    a->rc_topo = ccl_comm_update_topology(a->c, 10000);
    snprintf(a->topo_err, sizeof a->topo_err, "%s", ccl_comm_error(a->c));
    a->size_after = ccl_comm_size(a->c);
    if (a->rc_topo == 0 && a->size_after == 1) {
        x[0] = 3.0f;
        a->alone_ok = ccl_allreduce(a->c, x, x, 1, CCL_F32, CCL_SUM,
                                    CCL_ALGO_AUTO) == 0 && x[0] == 3.0f;
    }
    return NULL;
}

int main(void)
{
    ccl_master_config mc;
    ccl_master_config_init(&mc);
    mc.port = 0; /* any free port: the ranks are threads, told it below */
    mc.key = KEY;
    mc.key_len = 32;
    ccl_master *m = NULL;
    char err[256];
    PASS_RC(ccl_master_create(&mc, &m, err, sizeof err));
    if (!m)
        return HARNESS_DONE("test_frame_mac");
    int port = ccl_master_port(m);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    arg_t a[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        memset(&a[r], 0, sizeof a[r]);
        a[r].port = port;
        a[r].rank = r;
        a[r].bar = &bar;
        pthread_create(&th[r], NULL, peer, &a[r]);
    }
    pthread_barrier_wait(&bar);
    if (a[1].c) {
        /* Forge the first frame of the next op (tag 1 after op 0), as a
         * machine between the two hosts could: a valid header, a payload
         * and a made-up tag.  Both ranks are idle, so the bytes land
         * between two whole frames of the real stream. */
        ccl_comm *c1 = a[1].c;
        pthread_mutex_lock(&c1->mu);
        int fd = c1->xp->peers[0].conns[0].fd;
        uint8_t frame[CCL_HDR_LEN + 16 + 16];
        ccl__hdr h = {.type = CCL_FT_DATA, .coll = CCL_COLL_ALLREDUCE_RING,
                      .dtype = CCL_F32, .redop = CCL_SUM, .epoch = c1->eng.epoch,
                      .tag = 1, .total = N * 4, .length = 16};
        ccl__hdr_encode(frame, &h);
        memset(frame + CCL_HDR_LEN, 0x7f, 32);
        PASS(write(fd, frame, sizeof frame) == (ssize_t)sizeof frame);
        pthread_mutex_unlock(&c1->mu);
    }
    pthread_barrier_wait(&bar);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);

    PASS(a[0].rc_op == CCL_ERR_AUTH);
    PASS(strstr(a[0].err, "MAC") != NULL);
    PASS(a[1].rc_op != CCL_OK && a[1].rc_op != -1);
    PASS(a[0].restored && a[1].restored);
    /* A link fault: one goes on alone, the other is dropped, and neither
     * is expelled for what the forger did. */
    int stay = a[0].rc_topo == CCL_OK ? 0 : 1;
    PASS(a[stay].rc_topo == CCL_OK && a[stay].size_after == 1 && a[stay].alone_ok);
    PASS(a[1 - stay].rc_topo == CCL_ERR_REJECTED);
    PASS(strstr(a[1 - stay].topo_err, "expel") == NULL);
    PASS(strstr(a[1 - stay].topo_err, "broke") != NULL);
    fprintf(stderr, "  rank 0: %s: %s\n", ccl_strerror(a[0].rc_op), a[0].err);
    fprintf(stderr, "  rank 1: %s: %s; update_topology: %s (%s)\n",
            ccl_strerror(a[1].rc_op), a[1].err, ccl_strerror(a[1].rc_topo),
            a[1].topo_err);
    for (int r = 0; r < 2; r++)
        ccl_comm_destroy(a[r].c);
    ccl_master_destroy(m);
    return HARNESS_DONE("test_frame_mac");
}
