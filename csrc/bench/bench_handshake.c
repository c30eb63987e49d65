/*
 * bench_handshake.c - what authentication adds to a connection on
 * loopback: connect + HELLOs (+ proofs with a key), median of many.
 *
 *   make -C csrc && cc -O2 -std=c99 -D_GNU_SOURCE -pthread -Icsrc/include \
 *       -Icsrc/src csrc/bench/bench_handshake.c csrc/build/libccl.a -lm \
 *       -o /tmp/bench_handshake && /tmp/bench_handshake
 */
#include "handshake.h"
#include "sock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROUNDS 400

static ccl__key key;
static int lfd, port;

static void *acceptor(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        int fd = -1;
        char err[200];
        if (ccl__sock_accept(lfd, ccl__now_ms() + 5000, &fd, NULL, 0, err, sizeof err))
            return NULL;
        ccl__hello mine;
        ccl__hs hs;
        uint8_t uuid[16] = {2};
        ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, 1, 0, 0, uuid);
        ccl__handshake(fd, CCL_SIDE_ACCEPTOR, &mine, &key, 0, ccl__now_ms() + 5000,
                       "bench", &hs, err, sizeof err);
        ccl__sock_close(fd);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run(int with_key)
{
    char err[200];
    ccl__key_set(&key, with_key ? "bench key, 32 bytes, not secret" : NULL,
                 with_key ? 31 : 0, err, sizeof err);
    if (ccl__sock_listen("127.0.0.1", 0, 128, &lfd, &port, err, sizeof err)) {
        fprintf(stderr, "listen: %s\n", err);
        exit(1);
    }
    pthread_t th;
    pthread_create(&th, NULL, acceptor, NULL);
    static double t[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        uint64_t t0 = ccl__now_us();
        int fd = -1;
        ccl__sock_connect("127.0.0.1", port, ccl__now_ms() + 5000, &fd, err, sizeof err);
        ccl__hello mine;
        ccl__hs hs;
        uint8_t uuid[16] = {1};
        ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, 1, 1, 0, uuid);
        int rc = ccl__handshake(fd, CCL_SIDE_CONNECTOR, &mine, &key, 0,
                                ccl__now_ms() + 5000, "bench", &hs, err, sizeof err);
        t[i] = (double)(ccl__now_us() - t0);
        if (rc) {
            fprintf(stderr, "handshake: %s\n", err);
            exit(1);
        }
        ccl__sock_close(fd);
    }
    pthread_join(th, NULL);
    ccl__sock_close(lfd);
    qsort(t, ROUNDS, sizeof t[0], cmp);
    return t[ROUNDS / 2];
}

int main(void)
{
    double plain = run(0), authed = run(1);
    printf("loopback connect + handshake, median of %d:\n", ROUNDS);
    printf("  no key            %8.1f us\n", plain);
    printf("  key (HMAC-SHA256) %8.1f us\n", authed);
    printf("  authentication adds %.1f us per connection\n", authed - plain);
    return 0;
}
