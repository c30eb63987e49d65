/*
 * master.c - the coordinator.  It accepts control connections from peers,
 * checks their HELLO and REGISTER, and when `world_size` compatible peers
 * are waiting, forms a group: it fixes ranks (wanted ranks first, the rest
 * in arrival order), bumps the epoch and sends each peer the GROUP.  It
 * moves no tensor data.  Several groups can form one after another on the
 * same master; each gets its own epoch.
 *
 * One thread runs an event loop over nonblocking sockets.  Untrusted input
 * is bounded: a connection must finish HELLO and REGISTER within
 * HANDSHAKE_MS, frames are capped by the codec before anything is
 * allocated, and the number of connections is capped.
 */
#include "ccl.h"
#include "sock.h"
#include "wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HANDSHAKE_MS 10000
#define MAX_CONNS 4096
#define SEND_MS 2000

enum mstate { M_HELLO, M_HDR, M_PAYLOAD, M_PENDING, M_GROUPED };

typedef struct mconn {
    struct mconn *next;
    int fd;
    int state;
    char addr[80];
    uint64_t deadline_ms;
    uint8_t in[CCL_HELLO_LEN + 64 + CCL_MAX_HOST];
    size_t have, need;
    ccl__hdr h;
    ccl__register_msg reg;
    uint64_t order;
} mconn;

struct ccl_master {
    int lfd, poller, wakefd, port;
    pthread_t thread;
    int stop;
    uint32_t epoch;
    uint64_t arrivals;
    mconn *conns;
    int nconns;
    char err[256];
};

static int listen_marker;

void ccl_master_config_init(ccl_master_config *cfg)
{
    cfg->host = "127.0.0.1";
    cfg->port = 0;
}

static void mconn_close(ccl_master *m, mconn *k)
{
    mconn **pp = &m->conns;
    while (*pp && *pp != k)
        pp = &(*pp)->next;
    if (*pp)
        *pp = k->next;
    ccl__poller_del(m->poller, k->fd);
    ccl__sock_close(k->fd);
    m->nconns--;
    free(k);
}

static void reject(ccl_master *m, mconn *k, int code, const char *msg)
{
    uint8_t buf[CCL_HDR_LEN + 6 + CCL_MAX_ERRMSG];
    size_t n = ccl__errmsg_encode(buf + CCL_HDR_LEN, sizeof buf - CCL_HDR_LEN,
                                  code, msg);
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_REJECT;
    h.length = (uint32_t)n;
    ccl__hdr_encode(buf, &h);
    ccl__sock_send_all(k->fd, buf, CCL_HDR_LEN + n, ccl__now_ms() + SEND_MS, NULL, 0);
    mconn_close(m, k);
}

/* Forms a group out of the pending peers if there are enough of them. */
static void maybe_form_group(ccl_master *m)
{
    mconn *pend[CCL_MAX_WORLD];
    int n = 0;
    uint32_t world = 0;
    for (mconn *k = m->conns; k; k = k->next)
        if (k->state == M_PENDING) {
            world = k->reg.world_size;
            if (n < CCL_MAX_WORLD)
                pend[n++] = k;
        }
    if (n == 0 || (uint32_t)n < world)
        return;
    /* Arrival order: the list is newest first. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (pend[j]->order < pend[i]->order) {
                mconn *t = pend[i];
                pend[i] = pend[j];
                pend[j] = t;
            }
    mconn **byrank = calloc(world, sizeof *byrank);
    ccl__member *mem = calloc(world, sizeof *mem);
    uint8_t *buf = malloc(CCL_HDR_LEN + 16 + (size_t)world * (20 + CCL_MAX_HOST));
    if (!byrank || !mem || !buf)
        goto out;
    for (int i = 0; i < n; i++)
        if (pend[i]->reg.rank >= 0)
            byrank[pend[i]->reg.rank] = pend[i];
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (pend[i]->reg.rank >= 0)
            continue;
        while (byrank[next])
            next++;
        byrank[next] = pend[i];
    }
    uint32_t epoch = __atomic_add_fetch(&m->epoch, 1, __ATOMIC_RELEASE);
    for (uint32_t r = 0; r < world; r++) {
        mem[r].port = byrank[r]->reg.listen_port;
        memcpy(mem[r].uuid, byrank[r]->reg.uuid, 16);
        memcpy(mem[r].host, byrank[r]->reg.host, sizeof mem[r].host);
    }
    for (uint32_t r = 0; r < world; r++) {
        ccl__group_msg g;
        g.epoch = epoch;
        g.world_size = world;
        g.your_rank = r;
        g.conns_per_peer = byrank[0]->reg.conns_per_peer;
        g.members = mem;
        size_t len = ccl__group_encode(buf + CCL_HDR_LEN,
                                       16 + (size_t)world * (20 + CCL_MAX_HOST), &g);
        ccl__hdr h;
        memset(&h, 0, sizeof h);
        h.type = CCL_FT_GROUP;
        h.length = (uint32_t)len;
        ccl__hdr_encode(buf, &h);
        mconn *k = byrank[r];
        k->state = M_GROUPED;
        if (!len || ccl__sock_send_all(k->fd, buf, CCL_HDR_LEN + len,
                                       ccl__now_ms() + SEND_MS, NULL, 0))
            mconn_close(m, k);
    }
out:
    free(byrank);
    free(mem);
    free(buf);
}

static void on_register(ccl_master *m, mconn *k, const uint8_t *p, size_t len)
{
    if (ccl__register_decode(p, len, &k->reg) != 0) {
        reject(m, k, CCL_ERR_PROTOCOL, "malformed REGISTER");
        return;
    }
    for (mconn *o = m->conns; o; o = o->next) {
        if (o == k || o->state != M_PENDING)
            continue;
        if (o->reg.world_size != k->reg.world_size) {
            char msg[160];
            snprintf(msg, sizeof msg, "world_size %u differs from %u of the peers "
                     "already waiting", k->reg.world_size, o->reg.world_size);
            reject(m, k, CCL_ERR_MISMATCH, msg);
            return;
        }
        if (k->reg.rank >= 0 && o->reg.rank == k->reg.rank) {
            char msg[120];
            snprintf(msg, sizeof msg, "rank %d is already taken", k->reg.rank);
            reject(m, k, CCL_ERR_MISMATCH, msg);
            return;
        }
    }
    k->state = M_PENDING;
    k->order = m->arrivals++;
    maybe_form_group(m);
}

/* Reads what arrived on a control connection and advances its state. */
static void on_readable(ccl_master *m, mconn *k)
{
    for (;;) {
        if (k->state == M_PENDING || k->state == M_GROUPED) {
            /* Nothing is expected after REGISTER yet: EOF means the peer
             * left; anything else is ignored. */
            uint8_t sink[256];
            long n = ccl__sock_read_some(k->fd, sink, sizeof sink, NULL, 0);
            if (n < 0)
                mconn_close(m, k);
            return;
        }
        long n = ccl__sock_read_some(k->fd, k->in + k->have, k->need - k->have,
                                     NULL, 0);
        if (n < 0) {
            mconn_close(m, k);
            return;
        }
        if (n == 0)
            return;
        k->have += (size_t)n;
        if (k->have < k->need)
            continue;
        if (k->state == M_HELLO) {
            ccl__hello h;
            int rc = ccl__hello_decode(k->in, &h);
            if (rc != 0 || h.role != CCL_ROLE_PEER_TO_MASTER) {
                /* The peer already has our HELLO and names the mismatch on
                 * its side; we say it here once and close. */
                if (rc == CCL_ERR_VERSION)
                    fprintf(stderr, "pyccl master: closed connection from %s: it "
                            "speaks protocol version %u, we speak %u\n", k->addr,
                            h.version, CCL_PROTOCOL_VERSION);
                else
                    fprintf(stderr, "pyccl master: closed connection from %s: "
                            "not a pyccl peer (bad hello)\n", k->addr);
                mconn_close(m, k);
                return;
            }
            k->state = M_HDR;
            k->have = 0;
            k->need = CCL_HDR_LEN;
        } else if (k->state == M_HDR) {
            if (ccl__hdr_decode(k->in, &k->h) != 0 || k->h.type != CCL_FT_REGISTER ||
                k->h.length > sizeof k->in) {
                reject(m, k, CCL_ERR_PROTOCOL, "expected a REGISTER frame");
                return;
            }
            k->state = M_PAYLOAD;
            k->have = 0;
            k->need = k->h.length;
            if (k->need == 0) {
                reject(m, k, CCL_ERR_PROTOCOL, "empty REGISTER");
                return;
            }
        } else if (k->state == M_PAYLOAD) {
            on_register(m, k, k->in, k->have);
            return;
        }
    }
}

static void on_accept(ccl_master *m)
{
    for (;;) {
        int fd = -1;
        char addr[80] = "";
        if (ccl__sock_accept_now(m->lfd, &fd, addr, sizeof addr) || fd < 0)
            return;
        if (m->nconns >= MAX_CONNS) {
            ccl__sock_close(fd);
            continue;
        }
        mconn *k = calloc(1, sizeof *k);
        if (!k) {
            ccl__sock_close(fd);
            continue;
        }
        k->fd = fd;
        snprintf(k->addr, sizeof k->addr, "%s", addr);
        k->state = M_HELLO;
        k->need = CCL_HELLO_LEN;
        k->deadline_ms = ccl__now_ms() + HANDSHAKE_MS;
        ccl__hello h;
        memset(&h, 0, sizeof h);
        h.version = CCL_PROTOCOL_VERSION;
        h.role = CCL_ROLE_MASTER;
        h.rank = 0xffffffffu;
        uint8_t hb[CCL_HELLO_LEN];
        ccl__hello_encode(hb, &h);
        if (ccl__sock_send_all(fd, hb, sizeof hb, ccl__now_ms() + SEND_MS, NULL, 0) ||
            ccl__poller_set(m->poller, fd, k, CCL_EV_IN, 1)) {
            ccl__sock_close(fd);
            free(k);
            continue;
        }
        k->next = m->conns;
        m->conns = k;
        m->nconns++;
    }
}

static void expire_handshakes(ccl_master *m)
{
    uint64_t now = ccl__now_ms();
    mconn *k = m->conns;
    while (k) {
        mconn *next = k->next;
        if (k->state < M_PENDING && now > k->deadline_ms)
            mconn_close(m, k);
        k = next;
    }
}

static void *master_main(void *arg)
{
    ccl_master *m = arg;
    ccl__event evs[64];
    while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
        int n = ccl__poller_wait(m->poller, evs, 64, 500);
        for (int i = 0; i < n; i++) {
            if (evs[i].ptr == NULL) {
                ccl__wakefd_drain(m->wakefd);
            } else if (evs[i].ptr == &listen_marker) {
                on_accept(m);
            } else {
                /* The connection may have been closed by an earlier event
                 * of this batch (a group send failure): check it is still
                 * listed. */
                mconn *k = evs[i].ptr, *o = m->conns;
                while (o && o != k)
                    o = o->next;
                if (o)
                    on_readable(m, k);
            }
        }
        expire_handshakes(m);
    }
    return NULL;
}

int ccl_master_create(const ccl_master_config *cfg, ccl_master **out, char *err,
                      size_t errlen)
{
    char dummy[2];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
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
    ccl_master *m = calloc(1, sizeof *m);
    if (!m)
        return CCL_ERR_NOMEM;
    m->lfd = m->poller = m->wakefd = -1;
    int rc = ccl__sock_listen(cfg->host ? cfg->host : "127.0.0.1", cfg->port,
                              1024, &m->lfd, &m->port, err, errlen);
    if (!rc && (ccl__poller_create(&m->poller) || ccl__wakefd_create(&m->wakefd) ||
                ccl__poller_set(m->poller, m->lfd, &listen_marker, CCL_EV_IN, 1) ||
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
    while (m->conns)
        mconn_close(m, m->conns);
    ccl__sock_close(m->lfd);
    ccl__sock_close(m->poller);
    ccl__sock_close(m->wakefd);
    free(m);
}
