/*
 * stats.c - a communicator's counters, op records and local slow-link
 * verdict (see stats.h for what is measured and who holds which lock).
 */
#include "stats.h"

#include "log.h"
#include "slow_detect.h"
#include "stats_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EWMA_ALPHA 0.25

uint64_t ccl__stats_now_ns(void)
{
#ifdef CCL_STATS_OFF
    return 0;
#endif
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

int ccl__stats_init(ccl__stats *s)
{
    memset(s, 0, sizeof *s);
    s->rank = -1;
    return pthread_mutex_init(&s->mu, NULL) ? CCL_ERR_NOMEM : CCL_OK;
}

void ccl__stats_fini(ccl__stats *s)
{
    free(s->links);
    s->links = NULL;
    pthread_mutex_destroy(&s->mu);
}

int ccl__stats_new_epoch(ccl__stats *s, int rank, int size, uint32_t epoch,
                         const char *const *hosts, const int *ports)
{
    ccl__link *links = calloc((size_t)(size > 0 ? size : 1), sizeof *links);
    if (!links)
        return CCL_ERR_NOMEM;
    for (int p = 0; p < size; p++) {
        if (hosts && hosts[p])
            snprintf(links[p].host, sizeof links[p].host, "%s", hosts[p]);
        links[p].port = ports ? ports[p] : 0;
    }
    pthread_mutex_lock(&s->mu);
    free(s->links);
    s->links = links;
    s->rank = rank;
    s->size = size;
    s->epoch = epoch;
    s->slow_links = 0;
    pthread_mutex_unlock(&s->mu);
    return CCL_OK;
}

void ccl__stats_frame_in(ccl__stats *s, int peer, uint64_t bytes, uint64_t ns)
{
#ifdef CCL_STATS_OFF
    return;
#endif
    if (!s->links || peer < 0 || peer >= s->size)
        return;
    ccl__link *l = &s->links[peer];
    /* The last CCL__STATS_FRAMES frames: a ring over the array. */
    l->frames[l->nframes % CCL__STATS_FRAMES] = (double)bytes * 1e9 / (double)(ns ? ns : 1);
    l->nframes++;
}

void ccl__stats_conn(ccl__stats *s, int peer, int delta)
{
    if (!s->links || peer < 0 || peer >= s->size)
        return;
    ccl__link *l = &s->links[peer];
    if (delta > 0)
        __atomic_fetch_add(&l->connects, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&l->conns_open, delta, __ATOMIC_RELAXED);
}

void ccl__stats_shm(ccl__stats *s, int peer, int delta)
{
    if (s->links && peer >= 0 && peer < s->size)
        __atomic_fetch_add(&s->links[peer].shm_open, delta, __ATOMIC_RELAXED);
}

void ccl__stats_error(ccl__stats *s, int peer)
{
    if (s->links && peer >= 0 && peer < s->size)
        __atomic_fetch_add(&s->links[peer].errors, 1, __ATOMIC_RELAXED);
}

void ccl__stats_rtt(ccl__stats *s, int peer, double rtt_us)
{
#ifdef CCL_STATS_OFF
    return;
#endif
    pthread_mutex_lock(&s->mu);
    if (s->links && peer >= 0 && peer < s->size && rtt_us > 0) {
        ccl__link *l = &s->links[peer];
        l->rtt_us = l->rtt_us > 0 ? l->rtt_us + EWMA_ALPHA * (rtt_us - l->rtt_us)
                                  : rtt_us;
    }
    pthread_mutex_unlock(&s->mu);
}

/* Closes a rate sample of every link that delivered at least 2 large
 * frames since its last one; returns how many.  Under mu and s->mu. */
static int take_samples(ccl__stats *s)
{
    int taken = 0;
    for (int p = 0; p < s->size; p++) {
        ccl__link *l = &s->links[p];
        if (l->nframes < 2)
            continue;
        int n = l->nframes < CCL__STATS_FRAMES ? l->nframes : CCL__STATS_FRAMES;
        double rate = ccl__median(l->frames, n);
        l->nframes = 0;
        l->window[l->wpos] = rate;
        l->wpos = (l->wpos + 1) % CCL__STATS_WINDOW;
        if (l->nwin < CCL__STATS_WINDOW)
            l->nwin++;
        l->samples++;
        taken++;
        double w[CCL__STATS_WINDOW];
        memcpy(w, l->window, sizeof w);
        l->rate = ccl__median(w, l->nwin);
        l->rate_ewma = l->samples == 1 ? rate
                                       : l->rate_ewma + EWMA_ALPHA * (rate - l->rate_ewma);
    }
    return taken;
}

/* The member's own verdict over the links it receives on (a ring member
 * sees one; a star hub or an all-to-all sees many).  Under s->mu. */
static void judge(ccl__stats *s)
{
    enum { MAXV = 512 };
    int n = s->size < MAXV ? s->size : MAXV;
    double v[MAXV], z[MAXV], scratch[2 * MAXV];
    uint8_t flag[MAXV];
    if (n <= 0)
        return;
    for (int p = 0; p < n; p++) {
        v[p] = p == s->rank ? 0.0 : s->links[p].rate;
        flag[p] = (uint8_t)s->links[p].slow;
    }
    ccl__slow_detect(v, n, z, flag, flag, scratch);
    int slow = 0;
    for (int p = 0; p < n; p++) {
        ccl__link *l = &s->links[p];
        l->z = z[p];
        if (flag[p] && !l->slow) {
            s->flags_raised++;
            ccl__log(CCL_LOG_WARNING,
                     "slow link: from rank %d (%s:%d) to rank %d: %.1f MB/s, "
                     "robust z %.1f among this member's links (epoch %u)",
                     p, l->host, l->port, s->rank, l->rate / 1e6, z[p], s->epoch);
        } else if (!flag[p] && l->slow) {
            ccl__log(CCL_LOG_INFO, "link from rank %d (%s:%d) to rank %d is no "
                     "longer slow: %.1f MB/s (epoch %u)", p, l->host, l->port,
                     s->rank, l->rate / 1e6, s->epoch);
        }
        l->slow = flag[p];
        slow += flag[p];
    }
    s->slow_links = slow;
}

void ccl__stats_op_end(ccl__stats *s, const ccl_op_record *rec)
{
#ifdef CCL_STATS_OFF
    return;
#endif
    pthread_mutex_lock(&s->mu);
    /* Atomic stores: ccl__stats_unreported reads these without the lock. */
    __atomic_store_n(&s->nops, s->nops + 1, __ATOMIC_RELAXED);
    ccl_op_record *r = &s->ops[(s->nops - 1) % CCL__STATS_OPS];
    *r = *rec;
    r->seq = s->nops;
    if (rec->result == CCL_OK)
        s->ops_ok++;
    else
        s->ops_failed++;
    s->op_bytes += rec->bytes;
    s->op_time_ns += rec->wall_ns;
    if (rec->result == CCL_OK && rec->tx_bytes >= CCL__STATS_PEAK_MIN && rec->wall_ns) {
        double rate = (double)rec->tx_bytes * 1e9 / (double)rec->wall_ns;
        if (rate > s->tx_peak)
            s->tx_peak = rate;
    }
    /* The verdict changes only with a new sample: small ops cost no more
     * than the record. */
    if (s->links && rec->epoch == s->epoch && take_samples(s))
        judge(s);
    pthread_mutex_unlock(&s->mu);
}

void ccl__stats_read(ccl__stats *s, ccl_stats *out, ccl_link_stats *links,
                     int max_links, int *n_links, ccl_op_record *ops,
                     int max_ops, int *n_ops)
{
    pthread_mutex_lock(&s->mu);
    if (out) {
        out->epoch = s->epoch;
        out->rank = s->rank;
        out->size = s->size;
        out->ops_ok = s->ops_ok;
        out->ops_failed = s->ops_failed;
        out->op_bytes = s->op_bytes;
        out->op_time_ns = s->op_time_ns;
        out->reports_sent = s->reports_sent;
        out->slow_links = s->slow_links;
        out->slow_flags_raised = s->flags_raised;
    }
    int nl = 0;
    for (int p = 0; links && s->links && p < s->size && nl < max_links; p++) {
        if (p == s->rank)
            continue;
        const ccl__link *l = &s->links[p];
        ccl_link_stats *o = &links[nl++];
        memset(o, 0, sizeof *o);
        o->rank = p;
        memcpy(o->host, l->host, sizeof o->host);
        o->port = l->port;
        o->tx_bytes = ld(&l->tx_bytes);
        o->rx_bytes = ld(&l->rx_bytes);
        o->rx_rate = l->rate;
        o->rx_rate_ewma = l->rate_ewma;
        o->rtt_us = l->rtt_us;
        o->samples = l->samples;
        o->connects = ld(&l->connects);
        o->errors = ld(&l->errors);
        o->conns_open = __atomic_load_n(&l->conns_open, __ATOMIC_RELAXED);
        o->shm_conns = __atomic_load_n(&l->shm_open, __ATOMIC_RELAXED);
        o->z = l->z;
        o->slow = l->slow;
    }
    if (n_links)
        *n_links = nl;
    int no = 0;
    if (ops && max_ops > 0) {
        uint64_t have = s->nops < CCL__STATS_OPS ? s->nops : CCL__STATS_OPS;
        if (have > (uint64_t)max_ops)
            have = (uint64_t)max_ops;
        for (uint64_t i = s->nops - have; i < s->nops; i++)
            ops[no++] = s->ops[i % CCL__STATS_OPS];
    }
    if (n_ops)
        *n_ops = no;
    pthread_mutex_unlock(&s->mu);
}

size_t ccl__stats_report(ccl__stats *s, uint8_t *buf, size_t cap)
{
    static __thread ccl__stats_msg m; /* 7 KiB: not on the stack */
    size_t len = 0;
    pthread_mutex_lock(&s->mu);
    if (s->nops != s->reported_ops && s->links && s->rank >= 0) {
        memset(&m, 0, sizeof m);
        m.epoch = s->epoch;
        m.rank = (uint32_t)s->rank;
        m.size = (uint32_t)s->size;
        m.ops_ok = s->ops_ok;
        m.ops_failed = s->ops_failed;
        m.op_bytes = s->op_bytes;
        m.op_time_us = s->op_time_ns / 1000;
        m.tx_peak = (uint64_t)s->tx_peak;
        for (int p = 0; p < s->size; p++) {
            const ccl__link *l = &s->links[p];
            m.tx_bytes += ld(&l->tx_bytes);
            m.rx_bytes += ld(&l->rx_bytes);
            /* Only links that carried data frames large enough to measure
             * (a ring member: the one it receives on). */
            if (p == s->rank || m.nlinks >= CCL_STATS_MAX_LINKS ||
                l->samples == 0)
                continue;
            ccl__stats_link_msg *o = &m.links[m.nlinks++];
            o->peer = (uint32_t)p;
            double kbs = l->rate / 1000.0;
            o->rate_kbs = kbs > 4e9 ? 4000000000u : (uint32_t)kbs;
            o->rtt_us = l->rtt_us > 4e9 ? 4000000000u : (uint32_t)l->rtt_us;
            o->samples = l->samples;
            o->rx_bytes = ld(&l->rx_bytes);
            o->flags = l->slow ? CCL_STATS_LINK_SLOW : 0;
        }
        len = ccl__stats_msg_encode(buf, cap, &m);
        if (len) {
            __atomic_store_n(&s->reported_ops, s->nops, __ATOMIC_RELAXED);
            s->reports_sent++;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return len;
}

int ccl__stats_unreported(ccl__stats *s)
{
    return __atomic_load_n(&s->nops, __ATOMIC_RELAXED) !=
           __atomic_load_n(&s->reported_ops, __ATOMIC_RELAXED);
}

int ccl__stats_first_failure(ccl__stats *s, uint32_t epoch)
{
    pthread_mutex_lock(&s->mu);
    int first = s->failure_logged_epoch != epoch;
    s->failure_logged_epoch = epoch;
    pthread_mutex_unlock(&s->mu);
    return first;
}
