/* test_consistency.c - a peer is SIGKILLed at a random moment while the
 * group runs a stream of ring and star all-reduces of varied sizes.  Every
 * survivor must end every op the same way: the same ops succeed (with the
 * exact result) and the first failure is the same op on all of them.  Then
 * the survivors move to the smaller group and compute correctly there.
 * Repeated with random timing.
 *
 * The randomness (the victim and the moment of the kill) comes from one
 * seed, printed at the start; to rerun the same rounds:
 *     CCL_TEST_SEED=<seed> test_consistency     or
 *     test_consistency <rounds> <seed>
 * (the kill still lands wherever the scheduler has the ranks by then, so a
 * seed reproduces the plan, not every interleaving). */
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

enum { MAXWORLD = 8, MAXOPS = 5000 };

typedef struct {
    int first_fail[MAXWORLD];   /* index of the first failed op */
    int wrong[MAXWORLD];        /* successful ops with a wrong result */
    int after_ok[MAXWORLD];     /* the op in the smaller group was right */
    int not_restored[MAXWORLD]; /* the failed op left the input changed */
    char msg[MAXWORLD][600];
} shared;

static uint64_t op_count(int i)
{
    static const uint64_t sizes[] = {1, 7, 1000, 20000, 300001};
    return sizes[i % 5];
}

static void peer_main(harness_port_pipe *pp, int ready_fd, int world, int rank,
                      shared *sh)
{
    int port = harness_port_wait(pp, 20000);
    ccl_comm_config cfg = harness_comm_config(port, world, rank);
    cfg.peer_timeout_ms = 2000;
    cfg.op_timeout_ms = 20000;
    cfg.chunk_bytes = 65536;
    ccl_comm *c = NULL;
    char err[256];
    if (port <= 0 || ccl_comm_create(&cfg, &c, err, sizeof err))
        _exit(1);
    float *x = malloc(300001 * sizeof *x);
    sh->first_fail[rank] = MAXOPS;
    if (harness_signal(ready_fd)) /* the group has formed */
        _exit(1);
    for (int i = 0; i < MAXOPS; i++) {
        uint64_t n = op_count(i);
        for (uint64_t j = 0; j < n; j++)
            x[j] = (float)((j + (uint64_t)i) % 7);
        int rc = ccl_allreduce(c, x, x, n, CCL_F32, CCL_SUM,
                               i % 3 ? CCL_ALGO_RING : CCL_ALGO_STAR);
        if (rc) {
            /* A failed in-place op gives the caller's input back. */
            for (uint64_t j = 0; j < n; j++)
                if (x[j] != (float)((j + (uint64_t)i) % 7)) {
                    sh->not_restored[rank]++;
                    break;
                }
            sh->first_fail[rank] = i;
            snprintf(sh->msg[rank], sizeof sh->msg[rank], "%s: %s",
                     ccl_strerror(rc), ccl_comm_error(c));
            break;
        }
        for (uint64_t j = 0; j < n; j++)
            if (x[j] != (float)((j + (uint64_t)i) % 7) * (float)world) {
                sh->wrong[rank]++;
                break;
            }
    }
    int urc = ccl_comm_update_topology(c, 30000);
    if (urc != CCL_OK || ccl_comm_size(c) != world - 1) {
        size_t used = strlen(sh->msg[rank]);
        snprintf(sh->msg[rank] + used, sizeof sh->msg[rank] - used,
                 " | update: %s size %d: %s", ccl_strerror(urc), ccl_comm_size(c),
                 ccl_comm_error(c));
    } else {
        for (int j = 0; j < 1000; j++)
            x[j] = 1.0f;
        int rc = ccl_allreduce(c, x, x, 1000, CCL_F32, CCL_SUM, CCL_ALGO_RING);
        sh->after_ok[rank] = rc == CCL_OK && x[999] == (float)(world - 1);
    }
    free(x);
    ccl_comm_destroy(c);
    _exit(0);
}

static void one_round(uint64_t seed, int world)
{
    uint64_t rng = seed;
    harness_port_pipe pp;
    int ready[2];
    PASS(harness_port_pipe_open(&pp) == 0);
    PASS(pipe(ready) == 0);
    shared *sh = harness_shared_zalloc(sizeof *sh);
    pid_t pid[MAXWORLD];
    for (int r = 0; r < world; r++)
        if ((pid[r] = fork()) == 0)
            peer_main(&pp, ready[1], world, r, sh);
    ccl_master *m = harness_master_for(&pp, world, NULL);
    PASS(m != NULL);
    int victim = (int)harness_rng_below(&rng, (size_t)world);
    /* Every rank is in the group and running ops; then the kill, at a
     * random moment of the stream: the delay is the test's input, not a
     * wait for anything. */
    PASS(harness_wait_signals(ready[0], world, 30000) == 0);
    usleep(20000 + (useconds_t)harness_rng_below(&rng, 400000));
    kill(pid[victim], SIGKILL);
    for (int r = 0; r < world; r++)
        waitpid(pid[r], NULL, 0);
    int ref = -1, agree = 1, wrong = 0, after = 1;
    for (int r = 0; r < world; r++) {
        if (r == victim)
            continue;
        if (ref < 0)
            ref = sh->first_fail[r];
        agree &= sh->first_fail[r] == ref;
        wrong += sh->wrong[r];
        after &= sh->after_ok[r];
        wrong += sh->not_restored[r];
    }
    printf("  world %d seed %llu victim %d: first failed op %d on every survivor: %s, "
           "wrong or unrestored %d, smaller group ok %d\n", world,
           (unsigned long long)seed, victim, ref,
           agree ? "yes" : "NO", wrong, after);
    if (!agree || !after)
        for (int r = 0; r < world; r++)
            if (r != victim)
                printf("    rank %d: first fail %d (%s)\n", r, sh->first_fail[r],
                       sh->msg[r]);
    PASS(agree);
    PASS(wrong == 0);
    PASS(after);
    close(ready[0]);
    close(ready[1]);
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

/* The seed: argv[2], else $CCL_TEST_SEED, else one from the clock and the
 * process id (so successive runs cover different timings). */
static uint64_t choose_seed(int argc, char **argv)
{
    const char *given = argc > 2 ? argv[2] : getenv("CCL_TEST_SEED");
    if (given && *given)
        return strtoull(given, NULL, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t mix = (uint64_t)ts.tv_sec * 1000000007u + (uint64_t)ts.tv_nsec +
                   ((uint64_t)getpid() << 32);
    return harness_rng_next(&mix);
}

int main(int argc, char **argv)
{
    /* Worlds of 3..8 ranks in turn; the default of 12 rounds covers each
     * twice.  `test_consistency 50` is the longer soak. */
    int rounds = argc > 1 ? atoi(argv[1]) : 12;
    uint64_t seed = choose_seed(argc, argv);
    printf("test_consistency: seed %llu (rerun: CCL_TEST_SEED=%llu)\n",
           (unsigned long long)seed, (unsigned long long)seed);
    fflush(stdout); /* first, before any rank's output */
    alarm((unsigned)(60 + 20 * rounds));
    for (int i = 0; i < rounds; i++)
        one_round(seed + (uint64_t)i, 3 + i % 6);
    return HARNESS_DONE("test_consistency");
}
