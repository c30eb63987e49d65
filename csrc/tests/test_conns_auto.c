/* The automatic number of data connections per peer pair: the pure rule
 * (streams = ceil(rtt x rate / window), 1..max), and a real group on
 * loopback with conns_per_peer 0: 4 connections opened per pair, 1 used
 * (a loopback round trip needs no more). */
#include "ccl.h"
#include "harness.h"

#include "communicator.h"
#include "conns_auto.h"
#include "xport.h"

#include <pthread.h>
#include <string.h>

typedef struct {
    int port, rank, rc, conns, active, ok;
    ccl_comm *c;
} arg_t;

static void *peer(void *p)
{
    arg_t *a = p;
    ccl_comm_config cfg = harness_comm_config(a->port, 3, a->rank);
    cfg.conns_per_peer = 0; /* the default, said out loud */
    char err[256];
    a->rc = ccl_comm_create(&cfg, &a->c, err, sizeof err);
    if (a->rc)
        return NULL;
    float x[3000];
    for (int i = 0; i < 3000; i++)
        x[i] = (float)i;
    a->ok = ccl_allreduce(a->c, x, x, 3000, CCL_F32, CCL_SUM, CCL_ALGO_RING) == 0 &&
            x[10] == 30.0f;
    pthread_mutex_lock(&a->c->mu);
    int other = a->rank == 0 ? 1 : 0;
    a->conns = ccl__xport_conns(a->c->xp, other);
    a->active = ccl__xport_active(a->c->xp, other);
    pthread_mutex_unlock(&a->c->mu);
    return NULL;
}

int main(void)
{
    const uint64_t W = 3u << 20, G10 = 10000000000ull, G1 = 1000000000ull;
    PASS(ccl__conns_auto(0, W, G10, 4) == 1);      /* unknown: 1 */
    PASS(ccl__conns_auto(50, W, G10, 4) == 1);     /* loopback */
    PASS(ccl__conns_auto(1000, W, G10, 4) == 1);   /* 1 ms: 1.25 MB */
    PASS(ccl__conns_auto(5000, W, G10, 4) == 2);   /* 5 ms: 6.25 MB */
    PASS(ccl__conns_auto(50000, W, G10, 4) == 4);  /* 50 ms: capped */
    PASS(ccl__conns_auto(50000, W, G10, 64) == 20);
    PASS(ccl__conns_auto(50000, W, G1, 8) == 2);   /* 6.25 MB at 1 Gbit/s */
    PASS(ccl__conns_auto(50000, 0, G10, 4) == 1);
    PASS(ccl__conns_auto(50000, W, G10, 0) == 1);
    PASS(ccl__conns_auto(0xffffffffu, 1, G10, 4) == 4); /* no overflow */

    ccl_master *m = harness_master_with(NULL, 0);
    if (!m)
        return HARNESS_DONE("test_conns_auto");
    int port = ccl_master_port(m);
    arg_t a[3];
    pthread_t th[3];
    for (int r = 0; r < 3; r++) {
        memset(&a[r], 0, sizeof a[r]);
        a[r].port = port;
        a[r].rank = r;
        pthread_create(&th[r], NULL, peer, &a[r]);
    }
    for (int r = 0; r < 3; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 3; r++) {
        PASS(a[r].rc == 0 && a[r].ok);
        PASS(a[r].conns == CCL_AUTO_CONNS_OPEN);
        PASS(a[r].active == 1);
        ccl_comm_destroy(a[r].c);
    }
    ccl_master_destroy(m);
    return HARNESS_DONE("test_conns_auto");
}
