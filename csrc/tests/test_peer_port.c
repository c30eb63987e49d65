/* test_peer_port.c - strangers on a member's listen port cannot delay a
 * reform (docs/security.md, "Peer listen ports").  A master and members run
 * in threads of one process, with a key.  Each round a joiner arrives;
 * the members see it pending and call update_topology, which builds the
 * mesh of the next epoch.  Before a round the test opens silent
 * connections (from many 127.x source addresses) to rank 0's listen port,
 * which every higher rank connects to: none, then 8, then 500.  The
 * joiner's wait (registration, reform, mesh) must stay within 1 s of the
 * round without strangers, and the grown group must compute. */
#include "ccl.h"
#include "communicator.h"
#include "harness.h"
#include "peer_accept.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXM 8
static const char KEY[] = "peer port flood test key, 32 b!!";

typedef struct {
    int port, stop;
    ccl_comm *c;
    int rc, rounds;
} member_t;

static ccl_comm_config config(int port, int world, int rank)
{
    ccl_comm_config cfg = harness_comm_config(port, world, rank);
    cfg.key = KEY;
    cfg.key_len = 32;
    cfg.connect_timeout_ms = 20000;
    return cfg;
}

/* A member: whenever a joiner is pending, the safe point. */
static void *member(void *p)
{
    member_t *m = p;
    while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
        if (ccl_comm_peers_pending(m->c) > 0) {
            int rc = ccl_comm_update_topology(m->c, 20000);
            if (rc)
                m->rc = rc;
            m->rounds++;
        }
        usleep(2000);
    }
    return NULL;
}

typedef struct {
    int port;
    ccl_comm *c;
} creator_t;

static void *create(void *p)
{
    creator_t *a = p;
    ccl_comm_config cfg = config(a->port, 2, -1);
    char err[256];
    if (ccl_comm_create(&cfg, &a->c, err, sizeof err))
        fprintf(stderr, "create: %s\n", err);
    return NULL;
}

/* n silent connections to port, from sources 127.0.<k>.<j>. */
static int flood(int port, int *fds, int n)
{
    int made = 0;
    for (int i = 0; i < n; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(1 + i % 50) << 8 | 7);
        struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        dst.sin_addr.s_addr = htonl(0x7f000001u);
        if (s < 0 || bind(s, (struct sockaddr *)&src, sizeof src) ||
            connect(s, (struct sockaddr *)&dst, sizeof dst)) {
            if (s >= 0)
                close(s);
            fds[i] = -1;
            continue;
        }
        fds[i] = s;
        made++;
    }
    return made;
}

/* A joiner arrives; returns how long its creation took (s), or -1. */
static double grow(int port, member_t *mem, int *nmem, pthread_t *th)
{
    creator_t a = {port, NULL};
    double t0 = harness_now_seconds();
    pthread_t ct;
    pthread_create(&ct, NULL, create, &a);
    pthread_join(ct, NULL);
    double dt = harness_now_seconds() - t0;
    if (!a.c)
        return -1;
    int i = (*nmem)++;
    memset(&mem[i], 0, sizeof mem[i]);
    mem[i].port = port;
    mem[i].c = a.c;
    pthread_create(&th[i], NULL, member, &mem[i]);
    return dt;
}

int main(void)
{
    ccl_master_config mc;
    ccl_master_config_init(&mc);
    mc.key = KEY;
    mc.key_len = 32;
    ccl_master *m = harness_master_with(&mc, 0);
    PASS(m != NULL);
    if (!m)
        return HARNESS_DONE("test_peer_port");
    int port = ccl_master_port(m);

    /* The first two members form the group together. */
    creator_t c0 = {port, NULL}, c1 = {port, NULL};
    pthread_t t0, t1;
    pthread_create(&t0, NULL, create, &c0);
    pthread_create(&t1, NULL, create, &c1);
    pthread_join(t0, NULL);
    pthread_join(t1, NULL);
    PASS(c0.c && c1.c);
    if (!c0.c || !c1.c)
        return HARNESS_DONE("test_peer_port");
    member_t mem[MAXM];
    pthread_t th[MAXM];
    int nmem = 0;
    for (int i = 0; i < 2; i++) {
        memset(&mem[i], 0, sizeof mem[i]);
        mem[i].port = port;
        mem[i].c = i == 0 ? c0.c : c1.c;
        pthread_create(&th[i], NULL, member, &mem[i]);
        nmem++;
    }
    ccl_comm *low = ccl_comm_rank(c0.c) == 0 ? c0.c : c1.c;
    int lport = low->listen_port;

    static int fds[508];
    int nfds = 0;
    double base = grow(port, mem, &nmem, th);
    PASS(base >= 0);
    fprintf(stderr, "  join without strangers: %.3f s\n", base);
    int sizes[2] = {8, 500};
    for (int r = 0; r < 2; r++) {
        int made = flood(lport, fds + nfds, sizes[r]);
        nfds += sizes[r];
        PASS(made == sizes[r]);
        usleep(100000); /* the acceptor takes them in while idle */
        double dt = grow(port, mem, &nmem, th);
        fprintf(stderr, "  join with %d silent connections on rank 0's port: "
                "%.3f s\n", sizes[r], dt);
        PASS(dt >= 0 && dt <= base + 1.0);
    }
    int hs = 0, ready = 0;
    uint64_t evicted = 0;
    pthread_mutex_lock(&low->mu);
    ccl__acceptor_counts(low, &hs, &ready, &evicted);
    pthread_mutex_unlock(&low->mu);
    fprintf(stderr, "  rank 0's acceptor: %d in the handshake, %d ready, %llu "
            "pushed out\n", hs, ready, (unsigned long long)evicted);
    PASS(hs <= PA_SLOTS);
    PASS(evicted > 0);

    for (int i = 0; i < nmem; i++) {
        __atomic_store_n(&mem[i].stop, 1, __ATOMIC_RELEASE);
        pthread_join(th[i], NULL);
        PASS(mem[i].rc == CCL_OK);
    }
    /* The grown group computes. */
    PASS(ccl_comm_size(mem[0].c) == nmem);
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (int i = 0; i < nmem; i++)
        ccl_comm_destroy(mem[i].c);
    ccl_master_destroy(m);
    return HARNESS_DONE("test_peer_port");
}
