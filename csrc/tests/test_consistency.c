/* test_consistency.c - a peer is SIGKILLed at a random moment while the
 * group runs a stream of ring and star all-reduces of varied sizes.  Every
 * survivor must end every op the same way: the same ops succeed (with the
 * exact result) and the first failure is the same op on all of them.  Then
 * the survivors move to the smaller group and compute correctly there.
 * Repeated with random timing. */
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
    int ready;                  /* ranks whose group has formed */
} shared;

static uint64_t op_count(int i)
{
    static const uint64_t sizes[] = {1, 7, 1000, 20000, 300001};
    return sizes[i % 5];
}

static void peer_main(int port, int world, int rank, shared *sh)
{
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = port;
    cfg.world_size = world;
    cfg.rank = rank;
    cfg.peer_timeout_ms = 2000;
    cfg.op_timeout_ms = 20000;
    cfg.chunk_bytes = 65536;
    ccl_comm *c = NULL;
    char err[256];
    if (ccl_comm_create(&cfg, &c, err, sizeof err))
        _exit(1);
    float *x = malloc(300001 * sizeof *x);
    sh->first_fail[rank] = MAXOPS;
    __atomic_add_fetch(&sh->ready, 1, __ATOMIC_RELEASE);
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

static void one_round(unsigned seed, int world)
{
    srand(seed);
    int port = harness_free_port();
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[MAXWORLD];
    for (int r = 0; r < world; r++)
        if ((pid[r] = fork()) == 0)
            peer_main(port, world, r, sh);
    ccl_master *m = harness_master_on(port);
    PASS(m != NULL);
    int victim = rand() % world;
    for (int i = 0; i < 3000 && __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < world; i++)
        usleep(10000);
    usleep(20000 + (useconds_t)(rand() % 400000));
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
    printf("  world %d seed %u victim %d: first failed op %d on every survivor: %s, "
           "wrong or unrestored %d, smaller group ok %d\n", world, seed, victim, ref,
           agree ? "yes" : "NO", wrong, after);
    if (!agree || !after)
        for (int r = 0; r < world; r++)
            if (r != victim)
                printf("    rank %d: first fail %d (%s)\n", r, sh->first_fail[r],
                       sh->msg[r]);
    PASS(agree);
    PASS(wrong == 0);
    PASS(after);
    munmap(sh, sizeof *sh);
    ccl_master_destroy(m);
}

int main(int argc, char **argv)
{
    /* Worlds of 3..8 ranks in turn; the default of 12 rounds covers each
     * twice.  `test_consistency 50` is the longer soak. */
    int rounds = argc > 1 ? atoi(argv[1]) : 12;
    alarm((unsigned)(60 + 20 * rounds));
    for (int i = 0; i < rounds; i++)
        one_round((unsigned)time(NULL) * 31u + (unsigned)i, 3 + i % 6);
    return HARNESS_DONE("test_consistency");
}
