/*
 * master.c - the coordinator of one run: its event loop and sockets.  It
 * moves no tensor data.
 *
 * Three jobs, three places.  Who is in the group, and when it changes, is
 * decided by the membership policy (master_policy.h: a pure state
 * machine, with the rules written out there); the handshake is the
 * shared step machine of handshake.h; this file moves bytes between them
 * and the sockets.  One thread runs an event loop over nonblocking
 * sockets: it accepts connections, drives each one's handshake, reads
 * frames, decodes them into policy events (REGISTER, REJOIN, REFORM, a
 * closed link, the passing of time) and carries out the decisions that
 * come back (send GROUP / NOCHANGE / PENDING / REJECT, close, log).
 *
 * Untrusted input is bounded: a connection must finish the handshake and
 * REGISTER (or REJOIN) within HANDSHAKE_MS, frames are capped by the codec
 * before anything is read into the fixed per-connection buffer, and
 * connections not registered yet are capped per network prefix and in
 * all, within a budget that follows the open-file limit (master_accept.c).
 * Once keyed, every control frame carries a MAC (link_mac.h), checked
 * before the frame acts.
 */
#include "auth.h"
#include "ccl.h"
#include "handshake.h"
#include "link_mac.h"
#include "result.h"
#include "log.h"
#include "master_int.h"
#include "master_policy.h"
#include "master_view.h"
#include "sock.h"
#include "stats_wire.h"
#include "wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void ccl_master_config_init(ccl_master_config *cfg)
{
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->key = NULL;
    cfg->key_len = 0;
    cfg->allow_insecure = 0;
    cfg->reorder_slow_links = 0;
    cfg->expel_slow_after = 0;
}

/* Whether k is still open: closed ones stay in memory until the end of
 * the loop's turn (ccl__master_conns_reap). */
static int conn_listed(const mconn *k)
{
    return !k->closed;
}

/* Sends a whole frame; a peer that cannot take a small frame within
 * SEND_MS is dropped rather than allowed to stall the master. */
static int send_frame(mconn *k, int type, uint32_t epoch, uint64_t tag,
                      const uint8_t *payload, size_t len)
{
    uint8_t hdr[CCL_HDR_LEN];
    uint8_t mac[CCL_FRAME_MAC_TAG_LEN];
    ccl__ctl_hdr_encode(hdr, type, epoch, tag, (uint32_t)len);
    uint64_t dl = ccl__now_ms() + SEND_MS;
    k->gentle = 1;
    int rc = ccl__sock_send_all(k->fd, hdr, sizeof hdr, dl, NULL, 0);
    if (!rc && len)
        rc = ccl__sock_send_all(k->fd, payload, len, dl, NULL, 0);
    if (!rc && k->mac) {
        ccl__link_mac_seal(k->mac, hdr, sizeof hdr, payload, len, mac);
        rc = ccl__sock_send_all(k->fd, mac, sizeof mac, dl, NULL, 0);
    }
    return rc;
}

static void send_reject(mconn *k, uint32_t epoch, int code, const char *msg)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG];
    size_t n = ccl__errmsg_encode(buf, sizeof buf, code, msg);
    send_frame(k, CCL_FT_REJECT, epoch, 0, buf, n); /* best effort: it goes */
}

/* Refuses a connection the loop itself finds wrong (a malformed frame);
 * a known one is lost to the policy like any closed link. */
static void reject(ccl_master *m, mconn *k, int code, const char *msg)
{
    send_reject(k, ccl__mpol_epoch(m->policy), code, msg);
    ccl__master_conn_close(m, k);
}

/* A frame that cannot be trusted to come from the member (its header
 * broke the codec before its tag was read, or its tag failed) is a link
 * fault: the link closes and the member may come back (REJOIN).  Only a
 * frame whose MAC checked out, or any frame of an unkeyed link, which
 * trusts its path anyway, gets the REJECT that ends the member. */
static void link_fault(ccl_master *m, mconn *k, int code, const char *msg)
{
    if (k->mac)
        ccl__master_conn_close(m, k);
    else
        reject(m, k, code, msg);
}

/* Sends GROUP of the policy's latest epoch to k as `rank`.  *buf is a
 * scratch buffer kept across the GROUPs of one epoch. */
static int send_group(ccl_master *m, mconn *k, uint32_t epoch, uint32_t rank,
                      uint8_t **buf, size_t *cap)
{
    ccl__group_msg g;
    g.members = (ccl__member *)ccl__mpol_members(m->policy, &g.world_size,
                                                 &g.conns_per_peer);
    g.epoch = epoch;
    g.your_rank = rank;
    g.has_ring = ccl__mpol_ring_sent(m->policy);
    g.has_tune = ccl__mpol_tuning(m->policy, &g.tune);
    /* The largest GROUP of this size: every host at its longest, the ring
     * order and the tuning (docs/protocol.md, "GROUP"). */
    size_t need = 14 + (size_t)g.world_size * (19 + CCL_MAX_HOST + 2) + 3 + 33;
    if (*cap < need) {
        uint8_t *b = realloc(*buf, need);
        if (!b)
            return CCL_ERR_NOMEM;
        *buf = b;
        *cap = need;
    }
    size_t len = ccl__group_encode(*buf, *cap, &g);
    return len ? send_frame(k, CCL_FT_GROUP, epoch, 0, *buf, len) : CCL_ERR_NOMEM;
}

/* Carries out what the policy decided, in order.  A send that fails
 * closes that link, which the policy hears of (and may decide more). */
static void apply_decisions(ccl_master *m)
{
    ccl__mpol_action a;
    uint8_t *buf = NULL;
    size_t cap = 0;
    /* Before the GROUPs go out: a member that has its GROUP must find
     * the master at that epoch already (ccl_master_epoch). */
    __atomic_store_n(&m->epoch, ccl__mpol_epoch(m->policy), __ATOMIC_RELEASE);
    while (ccl__mpol_next(m->policy, &a)) {
        mconn *k = a.conn;
        int rc = CCL_OK;
        switch (a.kind) {
        case CCL_MPOL_LOG:
            ccl__log(a.code, "%s", a.text);
            break;
        case CCL_MPOL_REJECT:
            send_reject(k, a.epoch, a.code, a.text);
            k->phase = P_CLOSING;
            ccl__master_conn_close(m, k);
            break;
        case CCL_MPOL_CLOSE:
            k->phase = P_CLOSING;
            ccl__master_conn_close(m, k);
            break;
        case CCL_MPOL_GROUP:
            rc = send_group(m, k, a.epoch, a.rank, &buf, &cap);
            break;
        case CCL_MPOL_NOCHANGE:
            rc = send_frame(k, CCL_FT_NOCHANGE, a.epoch, 0, NULL, 0);
            break;
        case CCL_MPOL_PENDING:
            rc = send_frame(k, CCL_FT_PENDING, a.epoch, a.count, NULL, 0);
            break;
        default:
            break;
        }
        if (rc != CCL_OK)
            ccl__master_conn_close(m, k);
    }
    free(buf);
    __atomic_store_n(&m->epoch, ccl__mpol_epoch(m->policy), __ATOMIC_RELEASE);
}

/* ---- frames on a control link ---- */

/* The links of the report k just sent, with the master's verdict on
 * each, to the policy (its link table and the slow-link policies). */
static void feed_links(ccl_master *m, mconn *k, uint64_t now)
{
    ccl_master_link_stats *links = malloc(CCL_STATS_MAX_LINKS * sizeof *links);
    if (!links)
        return; /* the next report brings them again */
    int n = ccl__mview_member_links(m->view, k, links, CCL_STATS_MAX_LINKS);
    uint32_t epoch, rank;
    double peak;
    if (ccl__mview_member_tx_peak(m->view, k, &epoch, &rank, &peak))
        ccl__mpol_member_tx_peak(m->policy, epoch, rank, peak);
    for (int i = 0; i < n; i++) {
        ccl__mpol_link(m->policy, links[i].epoch, (uint32_t)links[i].from,
                       (uint32_t)links[i].to, links[i].rx_rate, links[i].slow, now);
        ccl__mpol_link_rtt(m->policy, links[i].epoch, (uint32_t)links[i].from,
                           (uint32_t)links[i].to, links[i].rtt_us);
    }
    free(links);
}

static void on_frame(ccl_master *m, mconn *k)
{
    uint64_t now = ccl__now_ms();
    int t = k->h.type, rc = CCL_OK;
    if (t == CCL_FT_HEARTBEAT)
        return;
    if (k->phase == P_REGISTER && (t == CCL_FT_REGISTER || t == CCL_FT_REJOIN)) {
        ccl__register_msg reg;
        uint32_t epoch = 0;
        int bad = t == CCL_FT_REGISTER
                      ? ccl__register_decode(k->in, k->h.length, &reg)
                      : ccl__rejoin_decode(k->in, k->h.length, &epoch, &reg);
        if (bad) {
            reject(m, k, CCL_ERR_PROTOCOL, t == CCL_FT_REGISTER
                   ? "malformed REGISTER" : "malformed REJOIN");
            return;
        }
        k->phase = P_CONTROL;
        ccl__strangers_remove(&m->strangers, &k->node); /* a member now */
        if (t == CCL_FT_REGISTER)
            rc = ccl__mpol_register(m->policy, k, &reg, now);
        else
            rc = ccl__mpol_rejoin(m->policy, k, epoch, &reg, now);
        if (rc != CCL_OK) /* not taken in: the peer retries */
            ccl__master_conn_close(m, k);
    } else if (k->phase == P_CONTROL && t == CCL_FT_REFORM) {
        ccl__reform_msg *msg = malloc(sizeof *msg); /* 20 KiB: not on the stack */
        if (!msg)
            return; /* the member times out and retries */
        if (ccl__reform_decode(k->in, k->h.length, msg) != 0 ||
            (k->h.tag & ~(uint64_t)CCL_REFORM_TAG_BITS)) {
            reject(m, k, CCL_ERR_PROTOCOL, "malformed REFORM");
        } else {
            /* Blame (docs/security.md): one member's word that another
             * broke the protocol is no proof (a MAC between two members
             * proves nothing to a third party), so an expel mark counts
             * as a lost link only.  Members of protocol 4 never set it. */
            memset(msg->expel, 0, sizeof msg->expel);
            msg->update = (k->h.tag & CCL_REFORM_UPDATE) != 0;
            msg->optimize = (k->h.tag & CCL_REFORM_OPTIMIZE) != 0;
            msg->idle = (k->h.tag & CCL_REFORM_IDLE) != 0;
            ccl__mpol_reform(m->policy, k, msg, now); /* NOMEM: as above */
        }
        free(msg);
    } else if (k->phase == P_CONTROL && t == CCL_FT_STATS) {
        /* A report decides nothing by itself (unless malformed): its links
         * go to the policy, which uses them at the next reform. */
        int taken = 0;
        if (!ccl__mview_report(m->view, k, k->addr, k->in, k->h.length, now,
                               &taken)) {
            if (taken)
                feed_links(m, k, now);
            return;
        }
        reject(m, k, CCL_ERR_PROTOCOL, "malformed STATS");
    } else {
        reject(m, k, CCL_ERR_PROTOCOL, "unexpected frame on the control link");
    }
    apply_decisions(m);
}

/* Reads the frames that arrived; returns when no more bytes wait or the
 * connection is closed. */
static void read_frames(ccl_master *m, mconn *k)
{
    for (int frames = 0; frames < 64; frames++) {
        long n = ccl__sock_read_some(k->fd, k->in + k->have, k->need - k->have,
                                     NULL, 0);
        if (n < 0) {
            ccl__master_conn_close(m, k);
            return;
        }
        k->have += (size_t)n;
        if (k->have < k->need)
            return;
        if (k->in_tag) {
            memcpy(k->tag, k->in + k->h.length, sizeof k->tag);
            if (!ccl__link_mac_check(k->mac, k->hbuf, CCL_HDR_LEN, k->in,
                                     k->h.length, k->tag)) {
                ccl__log_refusal(&m->refusals, "pyccl master", k->addr,
                                 "a control frame failed its MAC check (link "
                                 "fault: the link is closed)");
                ccl__master_conn_close(m, k);
                return;
            }
        } else if (!k->in_payload) {
            if (ccl__hdr_decode(k->in, &k->h) != 0 || k->h.length > IN_CAP) {
                link_fault(m, k, CCL_ERR_PROTOCOL,
                           "malformed frame on the control link");
                return;
            }
            memcpy(k->hbuf, k->in, CCL_HDR_LEN);
            if (k->h.length > 0 || k->mac) {
                /* The payload and the tag are read together: the buffer
                 * has room for both after the largest payload. */
                k->in_payload = 1;
                k->in_tag = k->mac != NULL;
                k->have = 0;
                k->need = k->h.length + (k->mac ? CCL_FRAME_MAC_TAG_LEN : 0);
                continue;
            }
        }
        on_frame(m, k);
        if (!conn_listed(k))
            return;
        k->in_payload = 0;
        k->in_tag = 0;
        k->have = 0;
        k->need = CCL_HDR_LEN;
    }
}

static void on_readable(ccl_master *m, mconn *k)
{
    while (k->phase == P_HANDSHAKE) {
        uint8_t *p;
        size_t want = ccl__hsm_to_read(&k->hs, &p);
        if (want == 0)
            return; /* its last bytes are still being written */
        long n = ccl__sock_read_some(k->fd, p, want, NULL, 0);
        if (n < 0) {
            ccl__master_conn_close(m, k);
            return;
        }
        if (n == 0)
            return;
        if (!k->heard)
            ccl__strangers_promote(&m->strangers, &k->node, CCL_STRANGER_HEARD,
                                   ccl__now_ms());
        k->heard = 1;
        k->gentle = 1;
        ccl__hsm_read(&k->hs, (size_t)n);
        if (!ccl__master_hs_progress(m, k))
            return;
    }
    read_frames(m, k);
}

static void on_writable(ccl_master *m, mconn *k)
{
    if (k->phase == P_HANDSHAKE)
        ccl__master_hs_progress(m, k);
}

static void on_timer(ccl_master *m)
{
    uint64_t now = ccl__now_ms();
    /* Deadlines are seconds long: a look every 100 ms is enough, and a
     * flood, which wakes the loop often, does not make it walk every
     * connection each time. */
    if (now >= m->next_deadline_scan) {
        m->next_deadline_scan = now + 100;
        mconn *k = m->conns;
        while (k) {
            mconn *next = k->next;
            if (k->phase < P_CONTROL && now > k->deadline_ms)
                ccl__master_conn_close(m, k);
            k = next;
        }
    }
    if (m->accept_paused_until && now >= m->accept_paused_until) {
        m->accept_paused_until = 0;
        ccl__poller_set(m->poller, m->lfd, &ccl__master_listen_marker, CCL_EV_IN, 0);
    }
    ccl__log_refusal_tick(&m->refusals, now);
    ccl__mpol_tick(m->policy, now);
    apply_decisions(m);
}

static void *master_main(void *arg)
{
    ccl_master *m = arg;
    ccl__event evs[64];
    while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
        uint64_t now = ccl__now_ms();
        int wait = ccl__mpol_timer_ms(m->policy, now, 500);
        if (m->accept_paused_until) {
            uint64_t left = m->accept_paused_until > now ? m->accept_paused_until - now : 0;
            if ((uint64_t)wait > left)
                wait = (int)left + 1;
        }
        int n = ccl__poller_wait(m->poller, evs, 64, wait);
        for (int i = 0; i < n; i++) {
            mconn *k = evs[i].ptr;
            if (k == NULL) {
                ccl__wakefd_drain(m->wakefd);
            } else if (evs[i].ptr == &ccl__master_listen_marker) {
                ccl__master_on_accept(m);
            } else if (conn_listed(k)) {
                /* (an earlier event of this batch may have closed it) */
                if (evs[i].events & CCL_EV_OUT)
                    on_writable(m, k);
                if (conn_listed(k))
                    on_readable(m, k);
            }
        }
        on_timer(m);
        ccl__master_conns_reap(m);
    }
    return NULL;
}

int ccl_master_create(const ccl_master_config *cfg, ccl_master **out, char *err,
                      size_t errlen)
{
    char scratch[2];
    err = ccl__err_out(err, &errlen, scratch);
    if (!out)
        return CCL_ERR_INVALID_ARG;
    *out = NULL;
    ccl_master_config def;
    ccl_master_config_init(&def);
    if (!cfg)
        cfg = &def;
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "port out of range");
        return CCL_ERR_INVALID_ARG;
    }
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    int have_key = cfg->key && cfg->key_len;
    int rc = ccl__insecure_check(have_key, cfg->allow_insecure, host, NULL, err,
                                 errlen);
    if (rc)
        return rc;
    ccl_master *m = calloc(1, sizeof *m);
    if (!m)
        return CCL_ERR_NOMEM;
    /* Only a master on a fixed port can be a restarted one that members
     * come back to: nobody knew a kernel-picked port beforehand. */
    rc = ccl__mpol_create(ccl__now_ms(), cfg->port ? REJOIN_GRACE_MS : 0,
                          &m->policy);
    if (!rc) {
        ccl__mpol_options opt;
        opt.reorder_slow_links = cfg->reorder_slow_links != 0;
        opt.expel_slow_after = cfg->expel_slow_after > 0 ? (uint32_t)cfg->expel_slow_after
                                                         : 0;
        ccl__mpol_set_options(m->policy, &opt);
        rc = ccl__key_set(&m->key, cfg->key, cfg->key_len, err, errlen);
    }
    if (!rc)
        rc = ccl__mview_create(&m->view);
    if (rc) {
        ccl__mview_destroy(m->view);
        ccl__mpol_destroy(m->policy);
        free(m);
        return rc;
    }
    m->allow_insecure = cfg->allow_insecure;
    m->lfd = m->poller = m->wakefd = -1;
    /* Shed load before the fds run out: the budget follows the open-file
     * limit (raised to the hard limit first), keeping some for the
     * process's other files. */
    int nofile = ccl__sock_raise_nofile();
    m->max_conns = nofile - 64 < MAX_CONNS ? nofile - 64 : MAX_CONNS;
    if (m->max_conns < 32)
        m->max_conns = 32;
    int keep = m->max_conns / 4 > 16 ? m->max_conns / 4 : 16;
    m->max_strangers = m->max_conns - keep < MAX_STRANGERS ? m->max_conns - keep
                                                            : MAX_STRANGERS;
    if (m->max_strangers < 8)
        m->max_strangers = 8;
    /* A deep backlog (the kernel caps it at somaxconn): while a flood
     * fills the accept queue, a legitimate SYN would be dropped and
     * retried only after 1 s. */
    rc = ccl__sock_listen(host, cfg->port,
                              4096, &m->lfd, &m->port, err, errlen);
    /* Accepted sockets inherit these where the system copies a
     * listener's options (ccl__sock_options_inherited): no system calls
     * per connection for them, which counts under a flood.  Keepalive:
     * a member whose host vanished leaves its link open, and without
     * probes the master would wait for it forever. */
    if (!rc && ccl__sock_options_inherited() &&
        (ccl__sock_set_nodelay(m->lfd) ||
         ccl__sock_set_keepalive(m->lfd, CTL_KEEPALIVE_IDLE_S,
                                 CTL_KEEPALIVE_INTVL_S, CTL_KEEPALIVE_COUNT))) {
        snprintf(err, errlen, "cannot set the master's socket options");
        ccl__sock_close(m->lfd);
        m->lfd = -1;
        rc = CCL_ERR_IO;
    }
    if (!rc && (ccl__poller_create(&m->poller) || ccl__wakefd_create(&m->wakefd) ||
                ccl__poller_set(m->poller, m->lfd, &ccl__master_listen_marker, CCL_EV_IN, 1) ||
                ccl__poller_set(m->poller, m->wakefd, NULL, CCL_EV_IN, 1))) {
        snprintf(err, errlen, "cannot set up the master's event loop");
        rc = CCL_ERR_IO;
    }
    if (!rc && pthread_create(&m->thread, NULL, master_main, m) != 0) {
        snprintf(err, errlen, "cannot start the master thread");
        rc = CCL_ERR_NOMEM;
    }
    if (rc) {
        ccl__sock_close(m->lfd);
        ccl__sock_close(m->poller);
        ccl__sock_close(m->wakefd);
        ccl__key_wipe(&m->key);
        ccl__mpol_destroy(m->policy);
        ccl__mview_destroy(m->view);
        free(m);
        return rc;
    }
    *out = m;
    return CCL_OK;
}

int ccl_master_port(const ccl_master *m)
{
    return m ? m->port : 0;
}

uint32_t ccl_master_epoch(ccl_master *m)
{
    return m ? __atomic_load_n(&m->epoch, __ATOMIC_ACQUIRE) : 0;
}

void ccl_master_destroy(ccl_master *m)
{
    if (!m)
        return;
    __atomic_store_n(&m->stop, 1, __ATOMIC_RELEASE);
    ccl__wakefd_signal(m->wakefd);
    pthread_join(m->thread, NULL);
    while (m->conns) {
        m->conns->phase = P_CLOSING; /* the policy goes with the master */
        ccl__master_conn_close(m, m->conns);
    }
    ccl__master_conns_reap(m);
    ccl__strangers_clear(&m->strangers);
    ccl__mpol_destroy(m->policy);
    ccl__mview_destroy(m->view);
    ccl__sock_close(m->lfd);
    ccl__sock_close(m->poller);
    ccl__sock_close(m->wakefd);
    ccl__key_wipe(&m->key);
    free(m);
}

int ccl_master_get_stats(ccl_master *m, ccl_master_stats_totals *totals,
                         ccl_master_member_stats *members, int max_members,
                         int *n_members, ccl_master_link_stats *links,
                         int max_links, int *n_links)
{
    if (!m)
        return CCL_ERR_INVALID_ARG;
    return ccl__mview_read(m->view, totals, members, max_members, n_members,
                           links, max_links, n_links);
}
