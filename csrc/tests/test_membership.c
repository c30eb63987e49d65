/* test_membership.c - membership changes with real processes: survivors of
 * a SIGKILL move to a smaller group at update_topology and compute correct
 * results there; a joiner waits, is announced by peers_pending, and is
 * admitted at the next update_topology; with nothing to change the safe
 * point keeps the epoch. */
#include "ccl.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAXP = 8, COUNT = 100003 };

typedef struct {
    int status[MAXP]; /* 1 = everything as expected */
    int size_after[MAXP];
    unsigned epoch_after[MAXP];
    char msg[MAXP][300];
} shared;

static ccl_comm *join(int port, int world, int rank)
{
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = port;
    cfg.world_size = world;
    cfg.rank = rank;
    cfg.peer_timeout_ms = 1000;
    cfg.connect_timeout_ms = 20000;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err)) {
        fprintf(stderr, "create: %s\n", err);
        return NULL;
    }
    return c;
}

/* All-reduce of rank-independent data: the sum is world * value. */
static int sum_ok(ccl_comm *c, int algo)
{
    int n = ccl_comm_size(c);
    float *x = malloc(COUNT * sizeof *x);
    for (int i = 0; i < COUNT; i++)
        x[i] = (float)(i % 13);
    int rc = ccl_allreduce(c, x, x, COUNT, CCL_F32, CCL_SUM, algo);
    int ok = rc == CCL_OK;
    for (int i = 0; i < COUNT && ok; i++)
        ok = x[i] == (float)(i % 13) * (float)n;
    free(x);
    return ok;
}

static void survivor_main(int port, int rank, shared *sh)
{
    ccl_comm *c = join(port, 3, rank);
    if (!c)
        _exit(1);
    int ok = sum_ok(c, CCL_ALGO_RING);
    /* Rank 2 dies here; the others' next op fails. */
    if (rank == 2)
        raise(SIGKILL);
    float y[4] = {1, 2, 3, 4};
    int rc = ccl_allreduce(c, y, y, 4, CCL_F32, CCL_SUM, CCL_ALGO_STAR);
    int lost_rc = rc;
    ok = ok && rc == CCL_ERR_PEER_LOST;
    rc = ccl_comm_update_topology(c, 10000);
    snprintf(sh->msg[rank], sizeof sh->msg[rank], "op after kill: %s; update: %s %s",
             ccl_strerror(lost_rc), ccl_strerror(rc), ccl_comm_error(c));
    ok = ok && rc == CCL_OK && ccl_comm_size(c) == 2;
    int ring_ok = sum_ok(c, CCL_ALGO_RING);
    int star_ok = sum_ok(c, CCL_ALGO_STAR);
    ok = ok && ring_ok && star_ok;
    size_t used = strlen(sh->msg[rank]);
    snprintf(sh->msg[rank] + used, sizeof sh->msg[rank] - used,
             "; ring %d star %d: %s", ring_ok, star_ok, ccl_comm_error(c));
    sh->size_after[rank] = ccl_comm_size(c);
    sh->epoch_after[rank] = ccl_comm_epoch(c);
    sh->status[rank] = ok;
    ccl_comm_destroy(c);
    _exit(0);
}

static void test_survivors(void)
{
    int port = harness_free_port();
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 3; r++)
        if ((pid[r] = fork()) == 0)
            survivor_main(port, r, sh);
    ccl_master *m = harness_master_on(port);
    PASS(m != NULL);
    for (int r = 0; r < 3; r++)
        waitpid(pid[r], NULL, 0);
    for (int r = 0; r < 2; r++) {
        printf("  survivors: rank %d ok=%d size %d epoch %u (%s)\n", r, sh->status[r],
               sh->size_after[r], sh->epoch_after[r], sh->msg[r]);
        PASS(sh->status[r] == 1);
        PASS(sh->epoch_after[r] == 2);
    }
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

static void member_main(int port, int rank, shared *sh)
{
    ccl_comm *c = join(port, 2, rank);
    if (!c)
        _exit(1);
    int ok = sum_ok(c, CCL_ALGO_AUTO);
    /* Nothing pending yet: the safe point keeps everything. */
    int rc = ccl_comm_update_topology(c, 10000);
    ok = ok && rc == CCL_OK && ccl_comm_epoch(c) == 1;
    /* Wait (bounded) until the master announced the joiner to everyone.
     * The members decide together (an all-reduce of what each was told),
     * so that all of them reach the safe point in the same iteration. */
    int32_t seen = 0;
    for (int i = 0; i < 200 && seen == 0; i++) {
        usleep(20000);
        seen = ccl_comm_peers_pending(c);
        ccl_allreduce(c, &seen, &seen, 1, CCL_I32, CCL_MIN, CCL_ALGO_AUTO);
    }
    ok = ok && seen == 1;
    rc = ccl_comm_update_topology(c, 10000);
    snprintf(sh->msg[rank], sizeof sh->msg[rank], "update: %s %s", ccl_strerror(rc),
             ccl_comm_error(c));
    ok = ok && rc == CCL_OK && ccl_comm_size(c) == 3 && ccl_comm_rank(c) == rank;
    ok = ok && sum_ok(c, CCL_ALGO_RING) && sum_ok(c, CCL_ALGO_STAR);
    sh->size_after[rank] = ccl_comm_size(c);
    sh->epoch_after[rank] = ccl_comm_epoch(c);
    sh->status[rank] = ok;
    ccl_comm_destroy(c);
    _exit(0);
}

static void joiner_main(int port, shared *sh)
{
    usleep(300000); /* after the first group formed */
    ccl_comm *c = join(port, 2, -1);
    if (!c)
        _exit(1);
    int r = ccl_comm_rank(c);
    int ok = r == 2 && ccl_comm_size(c) == 3;
    ok = ok && sum_ok(c, CCL_ALGO_RING) && sum_ok(c, CCL_ALGO_STAR);
    sh->size_after[2] = ccl_comm_size(c);
    sh->epoch_after[2] = ccl_comm_epoch(c);
    sh->status[2] = ok;
    ccl_comm_destroy(c);
    _exit(0);
}

static void test_join(void)
{
    int port = harness_free_port();
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 2; r++)
        if ((pid[r] = fork()) == 0)
            member_main(port, r, sh);
    if ((pid[2] = fork()) == 0)
        joiner_main(port, sh);
    ccl_master *m = harness_master_on(port);
    PASS(m != NULL);
    for (int r = 0; r < 3; r++)
        waitpid(pid[r], NULL, 0);
    for (int r = 0; r < 3; r++) {
        printf("  join: rank %d ok=%d size %d epoch %u (%s)\n", r, sh->status[r],
               sh->size_after[r], sh->epoch_after[r], sh->msg[r]);
        PASS(sh->status[r] == 1);
        PASS(sh->epoch_after[r] == 2);
    }
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

/* The master dies and a new one starts at the same port.  Members keep
 * computing without it, then come back to the new one at update_topology
 * and carry on in the same epoch; a joiner then gets in through it. */
static void restart_member(int port, int rank, int go_fd, int ready_fd, shared *sh)
{
    ccl_comm *c = join(port, 2, rank);
    if (!c)
        _exit(1);
    int ok = sum_ok(c, CCL_ALGO_AUTO);
    char b;
    ok = ok && write(ready_fd, "r", 1) == 1; /* the group stands */
    /* The parent kills the master now, then tells us. */
    ok = ok && read(go_fd, &b, 1) == 1;
    ok = ok && sum_ok(c, CCL_ALGO_RING) && sum_ok(c, CCL_ALGO_STAR); /* no master */
    ok = ok && read(go_fd, &b, 1) == 1; /* the new master listens */
    int rc = ccl_comm_update_topology(c, 10000);
    snprintf(sh->msg[rank], sizeof sh->msg[rank], "update: %s %s", ccl_strerror(rc),
             ccl_comm_error(c));
    ok = ok && rc == CCL_OK && ccl_comm_epoch(c) == 1 && ccl_comm_size(c) == 2;
    ok = ok && sum_ok(c, CCL_ALGO_RING);
    /* A joiner arrives through the new master. */
    int32_t seen = 0;
    for (int i = 0; i < 200 && seen == 0; i++) {
        usleep(20000);
        seen = ccl_comm_peers_pending(c);
        ccl_allreduce(c, &seen, &seen, 1, CCL_I32, CCL_MIN, CCL_ALGO_AUTO);
    }
    rc = ccl_comm_update_topology(c, 10000);
    ok = ok && rc == CCL_OK && ccl_comm_size(c) == 3 && ccl_comm_epoch(c) == 2;
    ok = ok && sum_ok(c, CCL_ALGO_RING);
    sh->status[rank] = ok;
    ccl_comm_destroy(c);
    _exit(0);
}

static void test_master_restart(void)
{
    /* Children must not inherit the master's listening socket either (it
     * would keep the port busy after the master dies). */
    int port = harness_free_port();
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    int pipes[2][2], ready[2];
    pid_t pid[3];
    PASS(pipe(ready) == 0);
    for (int r = 0; r < 2; r++) {
        PASS(pipe(pipes[r]) == 0);
        if ((pid[r] = fork()) == 0)
            restart_member(port, r, pipes[r][0], ready[1], sh);
    }
    ccl_master *m = harness_master_on(port);
    PASS(m != NULL);
    char b[2];
    PASS(read(ready[0], b, 1) == 1 && read(ready[0], b + 1, 1) == 1);
    ccl_master_destroy(m); /* the master dies */
    for (int r = 0; r < 2; r++)
        PASS(write(pipes[r][1], "x", 1) == 1);
    usleep(200000);
    /* The joiner is forked before the new master exists, for the same
     * reason. */
    if ((pid[2] = fork()) == 0) {
        usleep(600000);
        ccl_comm *c = join(port, 2, -1);
        int ok = c && ccl_comm_size(c) == 3 && sum_ok(c, CCL_ALGO_RING);
        sh->status[2] = ok;
        if (c)
            ccl_comm_destroy(c);
        _exit(0);
    }
    m = harness_master_on(port);
    PASS(m != NULL);
    for (int r = 0; r < 2; r++)
        PASS(write(pipes[r][1], "x", 1) == 1);
    for (int r = 0; r < 3; r++)
        waitpid(pid[r], NULL, 0);
    for (int r = 0; r < 3; r++) {
        printf("  master restart: rank %d ok=%d %s\n", r, sh->status[r], sh->msg[r]);
        PASS(sh->status[r] == 1);
    }
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

int main(void)
{
    alarm(120); /* nothing here may hang the suite */
    test_survivors();
    test_join();
    test_master_restart();
    return HARNESS_DONE("test_membership");
}
