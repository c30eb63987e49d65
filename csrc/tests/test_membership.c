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
    ccl_master *m = NULL;
    char err[256];
    PASS_RC(ccl_master_create(NULL, &m, err, sizeof err));
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 3; r++)
        if ((pid[r] = fork()) == 0)
            survivor_main(ccl_master_port(m), r, sh);
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
    ccl_master *m = NULL;
    char err[256];
    PASS_RC(ccl_master_create(NULL, &m, err, sizeof err));
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 2; r++)
        if ((pid[r] = fork()) == 0)
            member_main(ccl_master_port(m), r, sh);
    if ((pid[2] = fork()) == 0)
        joiner_main(ccl_master_port(m), sh);
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

int main(void)
{
    alarm(120); /* nothing here may hang the suite */
    test_survivors();
    test_join();
    return HARNESS_DONE("test_membership");
}
