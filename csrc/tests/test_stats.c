/*
 * test_stats.c - observability: the slow-link verdict (pure), the STATS
 * payload codec (hostile input), and a live group of 3 ranks (threads on
 * 127.0.0.1) whose counters must match what was sent and whose reports
 * must reach the master.
 */
#include "ccl.h"
#include "harness.h"

/* Whether link rates are steady enough here to require that a clean run
 * flags no link as slow: not under ThreadSanitizer or AddressSanitizer,
 * which slow threads unevenly (a healthy link was flagged at z -5 under
 * TSan on a loaded machine).  The clean-run check of a normal build
 * stands, and tests/test_slow_peer.py checks 1000 ops without a flag. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RATES_STEADY 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define RATES_STEADY 0
#endif
#endif
#ifndef RATES_STEADY
#define RATES_STEADY 1
#endif
#include "slow_detect.h"
#include "stats_wire.h"
#include "wire.h"

#include <pthread.h>
#include <unistd.h>

static void test_detect(void)
{
    double z[8], scratch[16];
    uint8_t f[8];
    /* Equal links: nothing flagged, even with the MAD at 0. */
    double eq[4] = {100, 100, 100, 100};
    PASS(ccl__slow_detect(eq, 4, z, f, NULL, scratch) == 0);
    /* One link 4x slower: flagged, the others not. */
    double slow[4] = {100, 102, 25, 98};
    PASS(ccl__slow_detect(slow, 4, z, f, NULL, scratch) == 1);
    PASS(f[2] == 1 && f[0] == 0 && f[1] == 0 && f[3] == 0);
    PASS(z[2] < -CCL__SLOW_Z);
    /* Leave-one-out: the slow link does not hide in the MAD it inflates. */
    double spread[4] = {10, 40, 45, 60};
    PASS(ccl__slow_detect(spread, 4, z, f, NULL, scratch) == 1 && f[0] == 1);
    /* Hysteresis: once flagged, a link at 2.5x below stays flagged; a
     * fresh one at 2.5x is not flagged. */
    double mid[4] = {100, 100, 40, 100};
    uint8_t prev[4] = {0, 0, 1, 0};
    PASS(ccl__slow_detect(mid, 4, z, f, prev, scratch) == 1 && f[2] == 1);
    PASS(ccl__slow_detect(mid, 4, z, f, NULL, scratch) == 0);
    double back[4] = {100, 100, 60, 100};
    PASS(ccl__slow_detect(back, 4, z, f, prev, scratch) == 0);
    /* Above the ceiling every link is as fast as any other. */
    double copy[4] = {15e9, 4.8e9, 12e9, 11e9};
    PASS(ccl__slow_detect(copy, 4, z, f, NULL, scratch) == 0);
    double real[4] = {15e9, 0.2e9, 12e9, 11e9};
    PASS(ccl__slow_detect(real, 4, z, f, NULL, scratch) == 1 && f[1] == 1);
    /* Half speed is a busy box, not a slow link. */
    double half[4] = {100, 50, 100, 100};
    PASS(ccl__slow_detect(half, 4, z, f, NULL, scratch) == 0);
    /* A fast outlier is never flagged. */
    double fast[4] = {100, 100, 400, 100};
    PASS(ccl__slow_detect(fast, 4, z, f, NULL, scratch) == 0);
    /* Too few measured links: no verdict; 0 means "no measurement". */
    double two[4] = {100, 0, 10, 0};
    PASS(ccl__slow_detect(two, 4, z, f, NULL, scratch) == 0);
    PASS(z[2] == 0.0);
    /* Many links: the group's median and MAD. */
    static double big[100], bz[100], bs[200];
    static uint8_t bf[100];
    for (int i = 0; i < 100; i++)
        big[i] = 100 + (i % 7);
    big[42] = 20;
    PASS(ccl__slow_detect(big, 100, bz, bf, NULL, bs) == 1 && bf[42] == 1);
    double m[5] = {5, 1, 4, 2, 3};
    PASS(ccl__median(m, 5) == 3.0);
    double m2[4] = {4, 1, 3, 2};
    PASS(ccl__median(m2, 4) == 2.5);
}

/* The example of docs/protocol.md ("STATS"), byte for byte. */
static void test_wire_example(void)
{
    static const uint8_t want[] = {
        0x02, 0x00, 0x01, 0x00, 0x07, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
        0x04, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x39, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x63, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x40, 0x42, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x88, 0x13, 0x00, 0x00,
        0x1e, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    static ccl__stats_msg m;
    uint8_t buf[sizeof want + 4];
    memset(&m, 0, sizeof m);
    m.epoch = 7;
    m.rank = 2;
    m.size = 4;
    m.ops_ok = 10;
    m.ops_failed = 1;
    m.tx_bytes = 1ull << 40;
    m.rx_bytes = 12345;
    m.op_bytes = 99;
    m.op_time_us = 5;
    m.tx_peak = 1000000;
    m.nlinks = 1;
    m.links[0] = (ccl__stats_link_msg){1, 5000, 30, 4, 1 << 20, 0};
    memset(buf, 0xee, sizeof buf);
    PASS(ccl__stats_msg_encode(buf, sizeof buf, &m) == sizeof want);
    PASS(memcmp(buf, want, sizeof want) == 0);
}

static void test_wire(void)
{
    static ccl__stats_msg m, d;
    static uint8_t buf[CCL_STATS_MAX_LEN + 8];
    memset(&m, 0, sizeof m);
    m.epoch = 7;
    m.rank = 2;
    m.size = 4;
    m.ops_ok = 10;
    m.ops_failed = 1;
    m.tx_bytes = 1ull << 40;
    m.rx_bytes = 12345;
    m.op_bytes = 99;
    m.op_time_us = 5;
    m.tx_peak = 123456789;
    m.nlinks = 2;
    m.links[0] = (ccl__stats_link_msg){1, 5000, 30, 4, 1 << 20, 0};
    m.links[1] = (ccl__stats_link_msg){3, 1250, 40, 4, 1 << 19, CCL_STATS_LINK_SLOW};
    size_t len = ccl__stats_msg_encode(buf, sizeof buf, &m);
    PASS(len == CCL_STATS_FIXED_LEN + 2 * CCL_STATS_LINK_LEN);
    PASS(buf[0] == CCL_STATS_MSG_VERSION && buf[1] == 0);
    PASS(ccl__stats_msg_decode(buf, len, &d) == 0);
    PASS(d.epoch == 7 && d.rank == 2 && d.size == 4 && d.ops_ok == 10 &&
         d.ops_failed == 1 && d.tx_bytes == 1ull << 40 && d.rx_bytes == 12345 &&
         d.op_bytes == 99 && d.op_time_us == 5 && d.nlinks == 2 &&
         d.tx_peak == 123456789);
    PASS(d.links[1].peer == 3 && d.links[1].rate_kbs == 1250 &&
         d.links[1].rtt_us == 40 && d.links[1].flags == CCL_STATS_LINK_SLOW &&
         d.links[0].rx_bytes == 1 << 20);
    /* Every shorter or longer length is refused, and so is every change
     * of a reserved byte or an impossible rank. */
    for (size_t l = 0; l < len + 8; l++)
        if (l != len)
            PASS(ccl__stats_msg_decode(buf, l, &d) != 0);
    buf[0] = 1; /* the version before tx_peak */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_VERSION);
    buf[0] = 3;
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_VERSION);
    buf[0] = CCL_STATS_MSG_VERSION;
    buf[1] = 1;
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    buf[1] = 0;
    uint8_t *l1 = buf + CCL_STATS_FIXED_LEN + CCL_STATS_LINK_LEN;
    l1[24] = 2; /* unknown link flag */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    l1[24] = 1;
    l1[27] = 1; /* reserved */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    l1[27] = 0;
    ccl__put_u32(l1, 2); /* a link to itself */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    ccl__put_u32(l1, 4); /* past the group */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    ccl__put_u32(l1, 3);
    ccl__put_u32(buf + 8, 4); /* rank == size */
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    ccl__put_u32(buf + 8, 2);
    ccl__put_u16(buf + 2, CCL_STATS_MAX_LINKS + 1);
    PASS(ccl__stats_msg_decode(buf, len, &d) == CCL_ERR_PROTOCOL);
    m.nlinks = CCL_STATS_MAX_LINKS + 1;
    PASS(ccl__stats_msg_encode(buf, sizeof buf, &m) == 0);
    /* The frame header's cap for STATS is the payload's largest size. */
    ccl__hdr h, hd;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_STATS;
    uint8_t hb[CCL_HDR_LEN];
    h.length = CCL_STATS_MAX_LEN;
    ccl__hdr_encode(hb, &h);
    PASS(ccl__hdr_decode(hb, &hd) == 0);
    h.length = CCL_STATS_MAX_LEN + 1;
    ccl__hdr_encode(hb, &h);
    PASS(ccl__hdr_decode(hb, &hd) == CCL_ERR_PROTOCOL);
}

/* ---- a live group ---- */

#define N 3
#define COUNT (1u << 18) /* 1 MiB of f32: ring, frames of >= 64 KiB */
#define OPS 6

typedef struct {
    int port, rc;
    ccl_stats st;
    ccl_link_stats links[N];
    int nlinks;
    ccl_op_record ops[8];
    int nops;
    uint64_t tx_delta, rx_delta;
} peer_arg;

static void *peer_main(void *p)
{
    peer_arg *a = p;
    ccl_comm_config cfg;
    ccl_comm_config_init(&cfg);
    cfg.master_port = a->port;
    cfg.world_size = N;
    cfg.op_timeout_ms = 20000;
    cfg.chunk_bytes = 256u << 10;
    cfg.stats_report_ms = 100;
    cfg.conns_per_peer = 1; /* one connection a pair: counted exactly below */
    ccl_comm *c;
    char err[256];
    a->rc = ccl_comm_create(&cfg, &c, err, sizeof err);
    if (a->rc) {
        fprintf(stderr, "create: %s\n", err);
        return NULL;
    }
    float *x = harness_xmalloc(COUNT * sizeof *x);
    for (uint32_t i = 0; i < COUNT; i++)
        x[i] = 1.0f;
    for (int i = 0; i < OPS && !a->rc; i++)
        a->rc = ccl_allreduce(c, x, x, COUNT, CCL_F32, CCL_SUM, CCL_ALGO_RING);
    if (a->rc)
        fprintf(stderr, "allreduce: %s\n", ccl_comm_error(c));
    a->rc |= ccl_allreduce(c, x, x, 16, CCL_F32, CCL_SUM, CCL_ALGO_STAR);
    /* Let a report go out (every 100 ms, after ops finished). */
    ccl_barrier(c);
    usleep(300 * 1000);
    ccl_barrier(c);
    ccl_comm_get_stats(c, &a->st, a->links, N, &a->nlinks, a->ops, 8, &a->nops);
    ccl_barrier(c);
    usleep(300 * 1000);
    free(x);
    ccl_comm_destroy(c);
    return NULL;
}

static void test_live(void)
{
    ccl_master *m;
    char err[256];
    PASS_RC(ccl_master_create(NULL, &m, err, sizeof err));
    pthread_t th[N];
    peer_arg args[N];
    memset(args, 0, sizeof args);
    for (int i = 0; i < N; i++) {
        args[i].port = ccl_master_port(m);
        pthread_create(&th[i], NULL, peer_main, &args[i]);
    }
    /* Read the master's view while the peers run (a reader on another
     * thread: TSan watches the locking). */
    ccl_master_stats_totals tot;
    ccl_master_member_stats mem[N];
    ccl_master_link_stats lk[2 * N];
    int nm = 0, nl = 0, seen = 0;
    for (int i = 0; i < 200 && seen < N; i++) {
        usleep(10 * 1000);
        PASS_RC(ccl_master_get_stats(m, &tot, mem, N, &nm, lk, 2 * N, &nl));
        seen = nm;
    }
    PASS(seen == N);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    uint64_t nbytes = COUNT * sizeof(float);
    for (int i = 0; i < N; i++) {
        peer_arg *a = &args[i];
        PASS_RC(a->rc);
        PASS(a->st.size == N && a->st.rank >= 0);
        PASS(a->st.ops_ok == OPS + 3 && a->st.ops_failed == 0);
        PASS(a->st.op_bytes == OPS * nbytes + 64);
        PASS(a->nlinks == N - 1);
        PASS(a->nops == 8);
        /* Ring all-reduce: each rank sends and receives 2 (N-1)/N of the
         * buffer (segments differ by at most one element). */
        int ring = 0;
        for (int o = 0; o < a->nops; o++) {
            ccl_op_record *r = &a->ops[o];
            PASS(r->result == CCL_OK && r->wall_ns > 0 && r->size == N);
            if (r->coll == 1) {
                ring++;
                PASS(r->bytes == nbytes);
                uint64_t want = 2 * (N - 1) * (nbytes / N), slack = 2 * N * 4;
                PASS(r->tx_bytes + slack >= want && r->tx_bytes <= want + slack);
                PASS(r->rx_bytes + slack >= want && r->rx_bytes <= want + slack);
            }
        }
        PASS(ring == 5); /* 8 kept: 5 ring ops, the star, 2 barriers */
        PASS(a->ops[a->nops - 1].seq == OPS + 3);
        uint64_t rx = 0, tx = 0;
        int sampled = 0;
        for (int l = 0; l < a->nlinks; l++) {
            rx += a->links[l].rx_bytes;
            tx += a->links[l].tx_bytes;
            PASS(a->links[l].conns_open == 1 && a->links[l].connects == 1 &&
                 a->links[l].errors == 0);
            PASS(a->links[l].port > 0 && a->links[l].host[0]);
            sampled += a->links[l].samples > 0 && a->links[l].rx_rate > 0;
            PASS(!RATES_STEADY || a->links[l].slow == 0);
        }
        PASS(rx == a->st.rx_bytes && tx == a->st.tx_bytes);
        PASS(sampled >= 1); /* the link it receives the ring on */
        PASS(a->st.reports_sent >= 1);
    }
    PASS_RC(ccl_master_get_stats(m, &tot, mem, N, &nm, lk, 2 * N, &nl));
    PASS(tot.reports >= N);
    PASS(!RATES_STEADY || tot.slow_flags_raised == 0);
    ccl_master_destroy(m);
}

int main(void)
{
    test_detect();
    test_wire_example();
    test_wire();
    test_live();
    return HARNESS_DONE("test_stats");
}
