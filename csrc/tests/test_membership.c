/* test_membership.c - membership changes with real processes: survivors of
 * a SIGKILL move to a smaller group at update_topology and compute correct
 * results there; a joiner waits, is announced by peers_pending, and is
 * admitted at the next update_topology; with nothing to change the safe
 * point keeps the epoch.  No step waits on a sleep: each process says on a
 * pipe when it has reached the point another waits for, and every wait has
 * a deadline. */
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
enum { WAIT_MS = 20000 }; /* the bound on every wait for another process */

typedef struct {
    int status[MAXP]; /* 1 = everything as expected */
    int size_after[MAXP];
    unsigned epoch_after[MAXP];
    char msg[MAXP][300];
} shared;

static ccl_comm *join(int port, int world, int rank)
{
    ccl_comm_config cfg = harness_comm_config(port, world, rank);
    cfg.peer_timeout_ms = 1000;
    cfg.connect_timeout_ms = WAIT_MS;
    ccl_comm *c = NULL;
    char err[256];
    if (port <= 0) {
        fprintf(stderr, "rank %d: no master port\n", rank);
        return NULL;
    }
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

/* Polls until every member has been told of a pending joiner, and returns
 * how many are pending (the least any member was told); 0 when the 10 s
 * deadline passed or an op failed.  The members decide together (an
 * all-reduce of what each was told, and of whether its own deadline
 * passed), so all of them leave the loop in the same iteration and reach
 * the safe point together. */
static int32_t joiners_announced(ccl_comm *c)
{
    double deadline = harness_now_seconds() + 10.0;
    for (;;) {
        /* {joiners pending, still within the deadline}: MIN over ranks. */
        int32_t v[2] = {(int32_t)ccl_comm_peers_pending(c),
                        harness_now_seconds() < deadline};
        if (ccl_allreduce(c, v, v, 2, CCL_I32, CCL_MIN, CCL_ALGO_AUTO) != CCL_OK)
            return 0;
        if (v[0] > 0)
            return v[0];
        if (!v[1])
            return 0;
        usleep(10000); /* the announcement has no event to block on */
    }
}

static void survivor_main(harness_port_pipe *pp, int rank, shared *sh)
{
    ccl_comm *c = join(harness_port_wait(pp, WAIT_MS), 3, rank);
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

/* Waits for the n ranks, checks that ranks 0..checked-1 did all they
 * should and ended in epoch 2, and frees what the test used. */
static void finish(const char *test, pid_t *pid, int n, int checked, shared *sh,
                   ccl_master *m)
{
    for (int r = 0; r < n; r++)
        waitpid(pid[r], NULL, 0);
    for (int r = 0; r < checked; r++) {
        printf("  %s: rank %d ok=%d size %d epoch %u (%s)\n", test, r, sh->status[r],
               sh->size_after[r], sh->epoch_after[r], sh->msg[r]);
        PASS(sh->status[r] == 1);
        PASS(sh->epoch_after[r] == 2);
    }
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

static void test_survivors(void)
{
    harness_port_pipe pp;
    PASS(harness_port_pipe_open(&pp) == 0);
    shared *sh = harness_shared_zalloc(sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 3; r++)
        if ((pid[r] = fork()) == 0)
            survivor_main(&pp, r, sh);
    ccl_master *m = harness_master_for(&pp, 3, NULL);
    PASS(m != NULL);
    finish("survivors", pid, 3, 2, sh, m); /* rank 2 was killed */
}

static void member_main(harness_port_pipe *pp, int formed_fd, int rank, shared *sh)
{
    ccl_comm *c = join(harness_port_wait(pp, WAIT_MS), 2, rank);
    if (!c)
        _exit(1);
    int ok = sum_ok(c, CCL_ALGO_AUTO);
    /* Nothing pending yet (the joiner waits for our signal below): the
     * safe point keeps everything. */
    int rc = ccl_comm_update_topology(c, 10000);
    ok = ok && rc == CCL_OK && ccl_comm_epoch(c) == 1;
    ok = !harness_signal(formed_fd) && ok; /* the joiner may come now */
    /* Wait (bounded) until the master announced the joiner to everyone. */
    ok = joiners_announced(c) == 1 && ok;
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

static void joiner_main(harness_port_pipe *pp, int formed_fd, shared *sh)
{
    int port = harness_port_wait(pp, WAIT_MS);
    /* Only once both members have passed their first, empty safe point. */
    if (harness_wait_signals(formed_fd, 2, WAIT_MS) != 0)
        _exit(1);
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
    harness_port_pipe pp;
    int formed[2];
    PASS(harness_port_pipe_open(&pp) == 0);
    PASS(pipe(formed) == 0);
    shared *sh = harness_shared_zalloc(sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 2; r++)
        if ((pid[r] = fork()) == 0)
            member_main(&pp, formed[1], r, sh);
    if ((pid[2] = fork()) == 0)
        joiner_main(&pp, formed[0], sh);
    close(formed[0]);
    close(formed[1]);
    ccl_master *m = harness_master_for(&pp, 3, NULL);
    PASS(m != NULL);
    finish("join", pid, 3, 3, sh, m);
}

/* The master dies and a new one starts at the same port.  Members keep
 * computing without it, then come back to the new one at update_topology
 * and carry on in the same epoch; a joiner then gets in through it.
 *
 * The steps, each a signal on a pipe: the members' group stands (ready);
 * the parent kills the master (go); the members compute without one
 * (ready); the parent starts the new master (go); the members are back
 * with it (back), and only then does the joiner come. */
typedef struct {
    int go[2][2]; /* parent -> member r */
    int ready[2]; /* members -> parent */
    int back[2];  /* members -> joiner */
} restart_pipes;

static void restart_member(harness_port_pipe *pp, int rank, restart_pipes *p,
                           shared *sh)
{
    ccl_comm *c = join(harness_port_wait(pp, WAIT_MS), 2, rank);
    if (!c)
        _exit(1);
    int go = p->go[rank][0];
    int ok = sum_ok(c, CCL_ALGO_AUTO);
    ok = !harness_signal(p->ready[1]) && ok; /* the group stands */
    /* The parent kills the master now, then tells us. */
    ok = ok && harness_wait_signals(go, 1, WAIT_MS) == 0;
    ok = ok && sum_ok(c, CCL_ALGO_RING) && sum_ok(c, CCL_ALGO_STAR); /* no master */
    ok = !harness_signal(p->ready[1]) && ok;
    ok = ok && harness_wait_signals(go, 1, WAIT_MS) == 0; /* the new master listens */
    int rc = ccl_comm_update_topology(c, 10000);
    snprintf(sh->msg[rank], sizeof sh->msg[rank], "update: %s %s", ccl_strerror(rc),
             ccl_comm_error(c));
    ok = ok && rc == CCL_OK && ccl_comm_epoch(c) == 1 && ccl_comm_size(c) == 2;
    ok = !harness_signal(p->back[1]) && ok;
    ok = ok && sum_ok(c, CCL_ALGO_RING);
    /* A joiner arrives through the new master. */
    ok = joiners_announced(c) == 1 && ok;
    rc = ccl_comm_update_topology(c, 10000);
    ok = ok && rc == CCL_OK && ccl_comm_size(c) == 3 && ccl_comm_epoch(c) == 2;
    ok = ok && sum_ok(c, CCL_ALGO_RING);
    sh->size_after[rank] = ccl_comm_size(c);
    sh->epoch_after[rank] = ccl_comm_epoch(c);
    sh->status[rank] = ok;
    ccl_comm_destroy(c);
    _exit(0);
}

static void test_master_restart(void)
{
    /* Children must not inherit the master's listening socket either (it
     * would keep the port busy after the master dies). */
    harness_port_pipe pp;
    restart_pipes p;
    PASS(harness_port_pipe_open(&pp) == 0);
    PASS(pipe(p.ready) == 0 && pipe(p.back) == 0);
    PASS(pipe(p.go[0]) == 0 && pipe(p.go[1]) == 0);
    shared *sh = harness_shared_zalloc(sizeof *sh);
    pid_t pid[3];
    for (int r = 0; r < 2; r++)
        if ((pid[r] = fork()) == 0)
            restart_member(&pp, r, &p, sh);
    ccl_master *m = harness_master_for(&pp, 2, NULL);
    PASS(m != NULL);
    int port = m ? ccl_master_port(m) : -1;
    PASS(harness_wait_signals(p.ready[0], 2, WAIT_MS) == 0);
    ccl_master_destroy(m); /* the master dies */
    for (int r = 0; r < 2; r++)
        PASS(!harness_signal(p.go[r][1]));
    /* Both members computed without a master. */
    PASS(harness_wait_signals(p.ready[0], 2, WAIT_MS) == 0);
    /* The joiner is forked before the new master exists, for the same
     * reason. */
    if ((pid[2] = fork()) == 0) {
        /* Only once both members are back with the new master. */
        if (harness_wait_signals(p.back[0], 2, WAIT_MS) != 0)
            _exit(1);
        ccl_comm *c = join(port, 2, -1);
        if (!c)
            _exit(1);
        sh->status[2] = ccl_comm_size(c) == 3 && sum_ok(c, CCL_ALGO_RING);
        sh->size_after[2] = ccl_comm_size(c);
        sh->epoch_after[2] = ccl_comm_epoch(c);
        ccl_comm_destroy(c);
        _exit(0);
    }
    m = harness_master_on(port);
    PASS(m != NULL);
    for (int r = 0; r < 2; r++)
        PASS(!harness_signal(p.go[r][1]));
    finish("master restart", pid, 3, 3, sh, m);
    int *pairs[] = {p.go[0], p.go[1], p.ready, p.back};
    for (int i = 0; i < 4; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
}

int main(void)
{
    alarm(120); /* nothing here may hang the suite */
    test_survivors();
    test_join();
    test_master_restart();
    return HARNESS_DONE("test_membership");
}
