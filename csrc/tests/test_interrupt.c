/* test_interrupt.c - blocking calls stop soon after the caller asks them
 * to (what lets Python raise KeyboardInterrupt within 0.2 s): creation
 * waiting for a group that never completes (cfg.cancel), and
 * update_topology waiting for a member that never comes
 * (ccl_comm_interrupt).  Threads in one process, a real master. */
#include "ccl.h"
#include "harness.h"

#include <pthread.h>

typedef struct {
    int *flag;       /* set to 1 after delay_ms ... */
    ccl_comm *comm;  /* ... or interrupt this communicator */
    int delay_ms;
    double at;       /* when it asked */
} asker_t;

static void *asker(void *p)
{
    asker_t *a = p;
    struct timespec ts = {a->delay_ms / 1000, (long)(a->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* the test's input: when to ask, not a wait */
    a->at = harness_now_seconds();
    if (a->flag)
        __atomic_store_n(a->flag, 1, __ATOMIC_RELEASE);
    else
        ccl_comm_interrupt(a->comm);
    return NULL;
}

/* A lone peer of a group of 2 waits at the master until asked to stop. */
static void create_cancelled(int port)
{
    int flag = 0;
    ccl_comm_config cfg = harness_comm_config(port, 2, -1);
    cfg.cancel = &flag;
    asker_t a = {&flag, NULL, 300, 0};
    pthread_t th;
    pthread_create(&th, NULL, asker, &a);
    ccl_comm *c = NULL;
    char err[256];
    int rc = ccl_comm_create(&cfg, &c, err, sizeof err);
    double late = harness_now_seconds() - a.at;
    pthread_join(th, NULL);
    PASS(rc == CCL_ERR_INTERRUPTED);
    PASS(c == NULL);
    PASS(late < 0.2);
    fprintf(stderr, "  create stopped %.0f ms after the flag: %s\n", late * 1e3, err);
}

typedef struct {
    int port, rank, rc;
    ccl_comm *c;
    pthread_barrier_t *bar;
} member_t;

static void *member(void *p)
{
    member_t *m = p;
    ccl_comm_config cfg = harness_comm_config(m->port, 2, m->rank);
    char err[256];
    m->rc = ccl_comm_create(&cfg, &m->c, err, sizeof err);
    if (m->rc)
        fprintf(stderr, "rank %d: %s\n", m->rank, err);
    pthread_barrier_wait(m->bar);
    return NULL;
}

/* Rank 0 enters update_topology, rank 1 never does: the master waits for
 * it, and rank 0 is interrupted. */
static void update_interrupted(int port)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    member_t m[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        m[r] = (member_t){port, r, -1, NULL, &bar};
        pthread_create(&th[r], NULL, member, &m[r]);
    }
    pthread_barrier_wait(&bar);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    PASS(m[0].rc == 0 && m[1].rc == 0);
    if (m[0].rc || m[1].rc)
        return;
    asker_t a = {NULL, m[0].c, 300, 0};
    pthread_t ta;
    pthread_create(&ta, NULL, asker, &a);
    int rc = ccl_comm_update_topology(m[0].c, 20000);
    double late = harness_now_seconds() - a.at;
    pthread_join(ta, NULL);
    PASS(rc == CCL_ERR_INTERRUPTED);
    PASS(late < 0.2);
    fprintf(stderr, "  update_topology stopped %.0f ms after the interrupt: %s\n",
            late * 1e3, ccl_comm_error(m[0].c));
    /* The interrupt does not stick: the handle still works and is
     * destroyed cleanly. */
    PASS(ccl_comm_size(m[0].c) == 2);
    ccl_comm_destroy(m[0].c);
    ccl_comm_destroy(m[1].c);
    pthread_barrier_destroy(&bar);
}

int main(void)
{
    ccl_master *master = harness_master_on(0);
    PASS(master != NULL);
    if (!master)
        return HARNESS_DONE("test_interrupt");
    int port = ccl_master_port(master);
    create_cancelled(port);
    ccl_master_destroy(master);
    master = harness_master_on(0);
    PASS(master != NULL);
    if (master) {
        update_interrupted(ccl_master_port(master));
        ccl_master_destroy(master);
    }
    return HARNESS_DONE("test_interrupt");
}
