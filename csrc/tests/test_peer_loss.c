/* test_peer_loss.c - real processes, real signals: a peer that is killed
 * (SIGKILL) or stopped (SIGSTOP) makes the survivors' pending op fail with
 * CCL_ERR_PEER_LOST within a bounded time, never a hang. */
#include "ccl.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WORLD = 3, VICTIM = 2, COUNT = 1 << 20 };

typedef struct {
    int rc[WORLD];
    double seconds[WORLD];
    char err[WORLD][512];
} shared_result;

static void peer(harness_port_pipe *pp, int rank, int sig, shared_result *res)
{
    ccl_comm_config cfg = harness_comm_config(harness_port_wait(pp, 20000),
                                              WORLD, rank);
    cfg.peer_timeout_ms = 1000;
    cfg.op_timeout_ms = 60000; /* only the liveness check may end the op */
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        snprintf(res->err[rank], sizeof res->err[rank], "create: %s", err);
        res->rc[rank] = -1;
        _exit(1);
    }
    float *x = calloc(COUNT, sizeof *x);
    /* One good op first, so the victim dies in the middle of the run. */
    int rc = ccl_allreduce(c, x, x, COUNT, CCL_F32, CCL_SUM, CCL_ALGO_RING);
    if (rank == VICTIM) {
        if (rc == CCL_OK)
            raise(sig); /* dies, or stops until the parent kills it */
        _exit(2);
    }
    double t0 = harness_now_seconds();
    rc = ccl_allreduce(c, x, x, COUNT, CCL_F32, CCL_SUM, CCL_ALGO_RING);
    res->seconds[rank] = harness_now_seconds() - t0;
    res->rc[rank] = rc;
    snprintf(res->err[rank], sizeof res->err[rank], "%s", ccl_comm_error(c));
    /* The communicator is broken now: the next op fails fast too. */
    rc = ccl_allreduce(c, x, x, 4, CCL_F32, CCL_SUM, CCL_ALGO_AUTO);
    if (rc != CCL_ERR_PEER_LOST)
        res->rc[rank] = 1000 + rc;
    ccl_comm_destroy(c);
    free(x);
    _exit(0);
}

static void run(int sig, const char *name)
{
    harness_port_pipe pp;
    PASS(harness_port_pipe_open(&pp) == 0);
    shared_result *res = harness_shared_zalloc(sizeof *res);
    pid_t pids[WORLD];
    for (int r = 0; r < WORLD; r++) {
        pids[r] = fork();
        if (pids[r] == 0)
            peer(&pp, r, sig, res);
    }
    ccl_master *m = harness_master_for(&pp, WORLD, NULL);
    PASS(m != NULL);
    int reaped[WORLD] = {0};
    for (int r = 0; r < WORLD; r++) {
        if (r == VICTIM)
            continue;
        /* Bounded: the survivors must finish by themselves. */
        reaped[r] = harness_waitpid_within(pids[r], 30.0);
        PASS(reaped[r]);
    }
    for (int r = 0; r < WORLD; r++) {
        if (reaped[r])
            continue;
        kill(pids[r], SIGKILL); /* the stopped victim, or a hung survivor */
        waitpid(pids[r], NULL, 0);
    }
    for (int r = 0; r < WORLD; r++) {
        if (r == VICTIM)
            continue;
        printf("  %s: rank %d: rc %d (%s) after %.3f s: %s\n", name, r, res->rc[r],
               ccl_strerror(res->rc[r]), res->seconds[r], res->err[r]);
        PASS(res->rc[r] == CCL_ERR_PEER_LOST);
        PASS(res->seconds[r] < 10.0);
    }
    munmap(res, sizeof *res);
    ccl_master_destroy(m);
}

int main(void)
{
    run(SIGKILL, "SIGKILL");
    run(SIGSTOP, "SIGSTOP");
    return HARNESS_DONE("test_peer_loss");
}
