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

enum { WORLD = 4, MAXOPS = 5000 };

typedef struct {
    int first_fail[WORLD];   /* index of the first failed op */
    int wrong[WORLD];        /* successful ops with a wrong result */
    int after_ok[WORLD];     /* the op in the smaller group was right */
    int not_restored[WORLD]; /* the failed op left the input changed */
    char msg[WORLD][200];
} shared;

static uint64_t op_count(int i)
{
    static const uint64_t sizes[] = {1, 7, 1000, 20000, 300001};
    return sizes[i % 5];
}

static void peer_main(int port, int rank, shared *sh)
{
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = port;
    cfg.world_size = WORLD;
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
            if (x[j] != (float)((j + (uint64_t)i) % 7) * WORLD) {
                sh->wrong[rank]++;
                break;
            }
    }
    if (ccl_comm_update_topology(c, 10000) == CCL_OK && ccl_comm_size(c) == WORLD - 1) {
        for (int j = 0; j < 1000; j++)
            x[j] = 1.0f;
        int rc = ccl_allreduce(c, x, x, 1000, CCL_F32, CCL_SUM, CCL_ALGO_RING);
        sh->after_ok[rank] = rc == CCL_OK && x[999] == (float)(WORLD - 1);
    }
    free(x);
    ccl_comm_destroy(c);
    _exit(0);
}

static void one_round(unsigned seed)
{
    srand(seed);
    int port = harness_free_port();
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(sh, 0, sizeof *sh);
    pid_t pid[WORLD];
    for (int r = 0; r < WORLD; r++)
        if ((pid[r] = fork()) == 0)
            peer_main(port, r, sh);
    ccl_master *m = harness_master_on(port);
    PASS(m != NULL);
    int victim = 1 + rand() % (WORLD - 1);
    usleep(150000 + (useconds_t)(rand() % 400000));
    kill(pid[victim], SIGKILL);
    for (int r = 0; r < WORLD; r++)
        waitpid(pid[r], NULL, 0);
    int ref = -1, agree = 1, wrong = 0, after = 1;
    for (int r = 0; r < WORLD; r++) {
        if (r == victim)
            continue;
        if (ref < 0)
            ref = sh->first_fail[r];
        agree &= sh->first_fail[r] == ref;
        wrong += sh->wrong[r];
        after &= sh->after_ok[r];
        wrong += sh->not_restored[r];
    }
    printf("  seed %u victim %d: first failed op %d on every survivor: %s, "
           "wrong or unrestored %d, smaller group ok %d\n", seed, victim, ref,
           agree ? "yes" : "NO", wrong, after);
    if (!agree)
        for (int r = 0; r < WORLD; r++)
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
    int rounds = argc > 1 ? atoi(argv[1]) : 8;
    alarm(300);
    for (int i = 0; i < rounds; i++)
        one_round((unsigned)time(NULL) * 31u + (unsigned)i);
    return HARNESS_DONE("test_consistency");
}
