/*
 * comm.c - a communicator's life: register with the master, learn the
 * group, connect the mesh of connection pools, start the progress thread,
 * and tear it all down.
 *
 * Mesh: every pair of ranks shares K connections.  The higher rank
 * connects to the lower one, so rank r first connects to every rank below
 * it and then accepts from every rank above it.  This cannot deadlock: a
 * connect completes in the kernel's backlog before the other side calls
 * accept, and each rank's accept phase depends only on lower ranks.
 */
#include "comm.h"
#include "sock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

void ccl_comm_config_init(ccl_comm_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->master_host = "127.0.0.1";
    cfg->world_size = 1;
    cfg->rank = -1;
    cfg->conns_per_peer = 1;
    cfg->listen_host = "127.0.0.1";
    cfg->connect_timeout_ms = 60000;
    cfg->op_timeout_ms = 60000;
    cfg->spin_us = -1;
    cfg->star_max_bytes = 65536;
    cfg->chunk_bytes = 1u << 20;
    cfg->peer_timeout_ms = 30000;
    cfg->restore_input = 1;
}

uint32_t ccl__unit_bytes(const ccl_comm *c, size_t esize)
{
    uint32_t u = c->cfg.chunk_bytes;
    if (u > CCL_MAX_DATA_PAYLOAD)
        u = CCL_MAX_DATA_PAYLOAD;
    u -= u % (uint32_t)esize;
    return u ? u : (uint32_t)esize;
}

static void hello_fill(ccl__hello *h, int role, uint32_t epoch, uint32_t rank,
                       uint32_t idx, const uint8_t uuid[16])
{
    memset(h, 0, sizeof *h);
    h->version = CCL_PROTOCOL_VERSION;
    h->role = (uint8_t)role;
    h->epoch = epoch;
    h->rank = rank;
    h->conn_index = idx;
    memcpy(h->uuid, uuid, 16);
}

/* Both ends send their HELLO at once, then read the other's. */
static int exchange_hello(int fd, const ccl__hello *mine, ccl__hello *theirs,
                          uint64_t deadline, const char *who, char *err,
                          size_t errlen)
{
    uint8_t buf[CCL_HELLO_LEN];
    char e[200];
    ccl__hello_encode(buf, mine);
    int rc = ccl__sock_send_all(fd, buf, sizeof buf, deadline, e, sizeof e);
    if (!rc)
        rc = ccl__sock_recv_all(fd, buf, sizeof buf, deadline, e, sizeof e);
    if (rc) {
        ERRF("handshake with %s: %s", who, e);
        return rc;
    }
    rc = ccl__hello_decode(buf, theirs);
    if (rc == CCL_ERR_VERSION) {
        ERRF("handshake with %s: it speaks protocol version %u, we speak %u",
             who, theirs->version, CCL_PROTOCOL_VERSION);
        return rc;
    }
    if (rc) {
        ERRF("handshake with %s: not a pyccl endpoint (bad hello)", who);
        return rc;
    }
    return CCL_OK;
}

static int send_frame(int fd, int type, const uint8_t *payload, uint32_t len,
                      uint64_t deadline, char *err, size_t errlen)
{
    uint8_t hdr[CCL_HDR_LEN];
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.length = len;
    ccl__hdr_encode(hdr, &h);
    int rc = ccl__sock_send_all(fd, hdr, sizeof hdr, deadline, err, errlen);
    if (!rc && len)
        rc = ccl__sock_send_all(fd, payload, len, deadline, err, errlen);
    return rc;
}

/* Connects to the master and exchanges HELLO. */
static int master_connect(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    char e[300];
    int rc;
    /* The master may start after its peers (schedulers launch everything
     * at once): keep knocking until the deadline. */
    for (;;) {
        rc = ccl__sock_connect(c->master_host, c->master_port, deadline,
                               &c->master_fd, e, sizeof e);
        if (rc != CCL_ERR_IO || ccl__now_ms() + 100 >= deadline)
            break;
        ccl__sleep_ms(100);
    }
    if (rc) {
        ERRF("cannot reach the master at %s:%d: %s", c->master_host,
             c->master_port, e);
        return CCL_ERR_MASTER_UNREACHABLE;
    }
    ccl__hello mine, theirs;
    hello_fill(&mine, CCL_ROLE_PEER_TO_MASTER, 0, 0xffffffffu, 0, c->uuid);
    char who[320];
    snprintf(who, sizeof who, "the master at %s:%d", c->master_host, c->master_port);
    rc = exchange_hello(c->master_fd, &mine, &theirs, deadline, who, err, errlen);
    if (rc)
        return rc == CCL_ERR_VERSION ? rc : CCL_ERR_MASTER_UNREACHABLE;
    if (theirs.role != CCL_ROLE_MASTER) {
        ERRF("%s is not a pyccl master", who);
        return CCL_ERR_PROTOCOL;
    }
    return CCL_OK;
}

/* What this peer tells the master about itself. */
static void fill_register(ccl_comm *c, ccl__register_msg *reg, uint32_t world,
                          int32_t rank)
{
    memset(reg, 0, sizeof *reg);
    reg->world_size = world;
    reg->rank = rank;
    reg->listen_port = (uint16_t)c->listen_port;
    reg->conns_per_peer = (uint16_t)c->cfg.conns_per_peer;
    memcpy(reg->uuid, c->uuid, 16);
    snprintf(reg->host, sizeof reg->host, "%s", c->listen_host);
}

/* Comes back to a (maybe restarted) master as a member of our epoch,
 * retrying until the deadline: a restarting master may not listen yet. */
int ccl__master_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    int rc = CCL_ERR_MASTER_UNREACHABLE;
    while (ccl__now_ms() < deadline) {
        ccl__sock_close(c->master_fd);
        c->master_fd = -1;
        rc = master_connect(c, deadline, err, errlen);
        if (rc == CCL_OK) {
            ccl__register_msg reg;
            fill_register(c, &reg, (uint32_t)c->size, c->rank);
            uint8_t buf[CCL_HDR_LEN + 4 + 64 + CCL_MAX_HOST];
            size_t n = ccl__rejoin_encode(buf + CCL_HDR_LEN, sizeof buf - CCL_HDR_LEN,
                                          c->epoch, &reg);
            ccl__hdr h;
            memset(&h, 0, sizeof h);
            h.type = CCL_FT_REJOIN;
            h.length = (uint32_t)n;
            ccl__hdr_encode(buf, &h);
            rc = n ? ccl__sock_send_all(c->master_fd, buf, CCL_HDR_LEN + n, deadline,
                                        err, errlen)
                   : CCL_ERR_INVALID_ARG;
            if (rc == CCL_OK) {
                ccl__sock_set_nonblock(c->master_fd);
                ccl__poller_set(c->poller, c->master_fd, &c->master_fd, CCL_EV_IN, 1);
                c->master_lost = 0;
                c->ctl_hpos = 0;
                return CCL_OK;
            }
        }
        if (rc == CCL_ERR_VERSION || rc == CCL_ERR_PROTOCOL)
            break;
        ccl__sleep_ms(100);
    }
    ccl__sock_close(c->master_fd);
    c->master_fd = -1;
    return rc == CCL_OK ? CCL_ERR_MASTER_UNREACHABLE : rc;
}

/* Registers with the master and waits for the GROUP message. */
static int join_group(ccl_comm *c, uint64_t deadline, ccl__group_msg *g,
                      char *err, size_t errlen)
{
    char e[300];
    char who[320];
    snprintf(who, sizeof who, "the master at %s:%d", c->master_host, c->master_port);
    int rc = master_connect(c, deadline, err, errlen);
    if (rc)
        return rc;
    ccl__register_msg reg;
    fill_register(c, &reg, (uint32_t)c->cfg.world_size, c->cfg.rank);
    uint8_t buf[64 + CCL_MAX_HOST];
    size_t n = ccl__register_encode(buf, sizeof buf, &reg);
    if (!n) {
        ERRF("cannot encode registration (listen host too long?)");
        return CCL_ERR_INVALID_ARG;
    }
    rc = send_frame(c->master_fd, CCL_FT_REGISTER, buf, (uint32_t)n, deadline, e,
                    sizeof e);
    if (rc) {
        ERRF("register with %s: %s", who, e);
        return CCL_ERR_MASTER_UNREACHABLE;
    }
    uint8_t hb[CCL_HDR_LEN];
    ccl__hdr h;
    rc = ccl__sock_recv_all(c->master_fd, hb, sizeof hb, deadline, e, sizeof e);
    if (rc) {
        ERRF("waiting for the group from %s: %s", who, e);
        return rc == CCL_ERR_TIMEOUT ? CCL_ERR_TIMEOUT : CCL_ERR_MASTER_UNREACHABLE;
    }
    if (ccl__hdr_decode(hb, &h) ||
        (h.type != CCL_FT_GROUP && h.type != CCL_FT_REJECT)) {
        ERRF("%s sent a malformed reply", who);
        return CCL_ERR_PROTOCOL;
    }
    uint8_t *payload = malloc(h.length ? h.length : 1);
    if (!payload)
        return CCL_ERR_NOMEM;
    rc = ccl__sock_recv_all(c->master_fd, payload, h.length, deadline, e, sizeof e);
    if (rc) {
        free(payload);
        ERRF("reading the group from %s: %s", who, e);
        return CCL_ERR_MASTER_UNREACHABLE;
    }
    if (h.type == CCL_FT_REJECT) {
        int code = 0;
        char msg[CCL_MAX_ERRMSG + 1] = "";
        ccl__errmsg_decode(payload, h.length, &code, msg);
        free(payload);
        ERRF("the master rejected this peer: %s", msg);
        return CCL_ERR_REJECTED;
    }
    uint32_t world = 0;
    if (ccl__group_peek(payload, h.length, &world) != 0) {
        free(payload);
        ERRF("%s sent a malformed group", who);
        return CCL_ERR_PROTOCOL;
    }
    g->members = calloc(world, sizeof *g->members);
    if (!g->members) {
        free(payload);
        return CCL_ERR_NOMEM;
    }
    rc = ccl__group_decode(payload, h.length, g);
    free(payload);
    if (rc) {
        ERRF("%s sent a malformed group", who);
        return CCL_ERR_PROTOCOL;
    }
    return CCL_OK;
}

int ccl__mesh_connect(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    char e[300], who[160];
    for (int p = 0; p < c->rank; p++) {
        ccl__peer *pe = &c->peers[p];
        snprintf(who, sizeof who, "peer %d (%s:%u)", p, pe->host, pe->port);
        for (int i = 0; i < pe->nconns; i++) {
            int fd = -1;
            int rc = ccl__sock_connect(pe->host, pe->port, deadline, &fd, e, sizeof e);
            if (rc) {
                ERRF("connect to %s: %s", who, e);
                return rc == CCL_ERR_TIMEOUT ? rc : CCL_ERR_PEER_LOST;
            }
            pe->conns[i].fd = fd;
            ccl__hello mine, theirs;
            hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, c->epoch, (uint32_t)c->rank,
                       (uint32_t)i, c->uuid);
            rc = exchange_hello(fd, &mine, &theirs, deadline, who, err, errlen);
            if (rc)
                return rc;
            if (theirs.role != CCL_ROLE_PEER_TO_PEER || theirs.epoch != c->epoch ||
                theirs.rank != (uint32_t)p || memcmp(theirs.uuid, pe->uuid, 16)) {
                ERRF("%s answered as someone else (epoch %u rank %u)", who,
                     theirs.epoch, theirs.rank);
                return CCL_ERR_PROTOCOL;
            }
        }
    }
    return CCL_OK;
}

int ccl__mesh_accept(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    int expected = 0;
    for (int p = c->rank + 1; p < c->size; p++)
        expected += c->peers[p].nconns;
    char e[300], addr[80];
    while (expected > 0) {
        int fd = -1;
        int rc = ccl__sock_accept(c->listen_fd, deadline, &fd, addr, sizeof addr,
                                  e, sizeof e);
        if (rc) {
            ERRF("waiting for %d connection(s) from higher ranks: %s", expected, e);
            return rc;
        }
        ccl__hello mine, theirs;
        hello_fill(&mine, CCL_ROLE_PEER_TO_PEER, c->epoch, (uint32_t)c->rank, 0,
                   c->uuid);
        char who[120];
        snprintf(who, sizeof who, "incoming %s", addr);
        /* A stranger gets a short deadline so it cannot hold the mesh up. */
        uint64_t hs_deadline = ccl__now_ms() + 5000;
        if (hs_deadline > deadline)
            hs_deadline = deadline;
        char herr[400];
        rc = exchange_hello(fd, &mine, &theirs, hs_deadline, who, herr, sizeof herr);
        int ok = rc == 0 && theirs.role == CCL_ROLE_PEER_TO_PEER &&
                 theirs.epoch == c->epoch && theirs.rank > (uint32_t)c->rank &&
                 theirs.rank < (uint32_t)c->size;
        if (ok) {
            ccl__peer *pe = &c->peers[theirs.rank];
            ok = memcmp(theirs.uuid, pe->uuid, 16) == 0 &&
                 theirs.conn_index < (uint32_t)pe->nconns &&
                 pe->conns[theirs.conn_index].fd < 0;
            if (ok) {
                pe->conns[theirs.conn_index].fd = fd;
                expected--;
                continue;
            }
        }
        /* Not one of ours: say so once, drop it, keep waiting for the real
         * peers. */
        fprintf(stderr, "pyccl rank %d: dropped connection from %s: %s\n", c->rank,
                addr, rc ? herr : "not a member of this group");
        ccl__sock_close(fd);
    }
    return CCL_OK;
}

int ccl__build_peers(ccl_comm *c, const ccl__group_msg *g)
{
    c->rank = (int)g->your_rank;
    c->size = (int)g->world_size;
    c->epoch = g->epoch;
    c->peers = calloc((size_t)c->size, sizeof *c->peers);
    if (!c->peers)
        return CCL_ERR_NOMEM;
    int local = 0;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        memcpy(pe->host, g->members[p].host, sizeof pe->host);
        pe->port = g->members[p].port;
        memcpy(pe->uuid, g->members[p].uuid, 16);
        if (strcmp(pe->host, c->listen_host) == 0)
            local++;
        if (p == c->rank)
            continue;
        pe->nconns = g->conns_per_peer;
        pe->conns = calloc((size_t)pe->nconns, sizeof *pe->conns);
        if (!pe->conns) {
            pe->nconns = 0; /* keep the table walkable for the teardown */
            return CCL_ERR_NOMEM;
        }
        for (int i = 0; i < pe->nconns; i++) {
            pe->conns[i].fd = -1;
            pe->conns[i].peer = p;
            pe->conns[i].index = i;
        }
    }
    if (c->cfg.spin_us >= 0)
        c->spin_us = c->cfg.spin_us;
    else
        /* Spin only if every local process can have a core to itself:
         * spinning on an oversubscribed machine steals the very CPU the
         * peer we wait for needs. */
        c->spin_us = local <= ccl__ncpus() ? 50 : 0;
    return CCL_OK;
}

/* Puts the mesh's connections into the event loop. */
int ccl__engine_add_conns(ccl_comm *c)
{
    uint64_t now = ccl__now_ms();
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        pe->last_rx_ms = pe->last_tx_ms = now;
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            ccl__sock_set_nonblock(k->fd);
            ccl__sock_set_nodelay(k->fd);
            if (ccl__poller_set(c->poller, k->fd, k, CCL_EV_IN, 1))
                return CCL_ERR_IO;
        }
    }
    return CCL_OK;
}

static int start_engine(ccl_comm *c)
{
    if (ccl__poller_create(&c->poller) || ccl__wakefd_create(&c->wakefd))
        return CCL_ERR_IO;
    if (ccl__poller_set(c->poller, c->wakefd, NULL, CCL_EV_IN, 1))
        return CCL_ERR_IO;
    /* The master's link joins the loop too: it tells us about joiners. */
    ccl__sock_set_nonblock(c->master_fd);
    if (ccl__poller_set(c->poller, c->master_fd, &c->master_fd, CCL_EV_IN, 1))
        return CCL_ERR_IO;
    int rc = ccl__engine_add_conns(c);
    if (rc)
        return rc;
    if (pthread_create(&c->thread, NULL, ccl__progress_main, c) != 0)
        return CCL_ERR_NOMEM;
    c->thread_started = 1;
    return CCL_OK;
}

/* Forgets what arrived for ops of this epoch that never ran here: early
 * frames, aborts and DONEs. */
void ccl__forget_epoch(ccl_comm *c)
{
    while (c->early_head) {
        ccl__early *e = c->early_head;
        c->early_head = e->next;
        free(e->data);
        free(e);
    }
    c->early_tail = NULL;
    c->early_bytes = 0;
    while (c->aborted) {
        ccl__aborted *a = c->aborted;
        c->aborted = a->next;
        free(a);
    }
    while (c->early_done) {
        ccl__early_done *d = c->early_done;
        c->early_done = d->next;
        free(d);
    }
}

/* Closes the mesh and forgets every peer (sockets, queues, staging). */
void ccl__peers_free(ccl_comm *c)
{
    if (!c->peers)
        return;
    c->mesh_gen++;
    for (int p = 0; p < c->size; p++) {
        ccl__peer *pe = &c->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            ccl__conn *k = &pe->conns[i];
            if (k->fd >= 0 && c->poller >= 0)
                ccl__poller_del(c->poller, k->fd);
            ccl__sock_close(k->fd);
            free(k->staging);
            free(k->keep);
            if (k->cur) {
                free(k->cur->owned);
                free(k->cur);
            }
        }
        while (pe->qhead) {
            ccl__sendreq *r = pe->qhead;
            pe->qhead = r->next;
            free(r->owned);
            free(r);
        }
        free(pe->conns);
    }
    free(c->peers);
    c->peers = NULL;
}

static void comm_free(ccl_comm *c)
{
    ccl__peers_free(c);
    free(c->ctl_payload);
    while (c->free_reqs) {
        ccl__sendreq *r = c->free_reqs;
        c->free_reqs = r->next;
        free(r);
    }
    ccl__forget_epoch(c);
    free(c->spare[0]);
    free(c->spare[1]);
    ccl__sock_close(c->master_fd);
    ccl__sock_close(c->listen_fd);
    ccl__sock_close(c->poller);
    ccl__sock_close(c->wakefd);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->post_mu);
    pthread_mutex_destroy(&c->done_mu);
    pthread_cond_destroy(&c->done_cv);
    pthread_cond_destroy(&c->idle_cv);
    free(c);
}

int ccl_comm_create(const ccl_comm_config *cfg, ccl_comm **out, char *err,
                    size_t errlen)
{
    char dummy[2];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    if (!out || !cfg) {
        ERRF("NULL argument");
        return CCL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (!cfg->master_host || cfg->master_port <= 0 || cfg->master_port > 65535 ||
        cfg->world_size < 1 || cfg->world_size > CCL_MAX_WORLD ||
        cfg->rank < -1 || cfg->rank >= cfg->world_size ||
        cfg->conns_per_peer < 1 || cfg->conns_per_peer > 64 ||
        cfg->connect_timeout_ms <= 0 || cfg->op_timeout_ms <= 0 ||
        cfg->peer_timeout_ms < 100 ||
        cfg->chunk_bytes == 0) {
        ERRF("invalid configuration (master address, world_size 1..%d, rank "
             "-1..world_size-1, conns_per_peer 1..64, positive timeouts, "
             "peer_timeout_ms >= 100)",
             CCL_MAX_WORLD);
        return CCL_ERR_INVALID_ARG;
    }
    const char *lh = cfg->listen_host ? cfg->listen_host : "127.0.0.1";
    if (strlen(lh) == 0 || strlen(lh) > CCL_MAX_HOST) {
        ERRF("listen_host must be 1..%d characters", CCL_MAX_HOST);
        return CCL_ERR_INVALID_ARG;
    }
    ccl_comm *c = calloc(1, sizeof *c);
    if (!c) {
        ERRF("out of memory");
        return CCL_ERR_NOMEM;
    }
    c->cfg = *cfg;
    snprintf(c->listen_host, sizeof c->listen_host, "%s", lh);
    c->cfg.listen_host = c->listen_host;
    c->cfg.master_host = NULL; /* the caller's string is only borrowed */
    if (strlen(cfg->master_host) >= sizeof c->master_host) {
        ERRF("master host name too long");
        free(c);
        return CCL_ERR_INVALID_ARG;
    }
    snprintf(c->master_host, sizeof c->master_host, "%s", cfg->master_host);
    c->master_port = cfg->master_port;
    c->master_fd = c->listen_fd = c->poller = c->wakefd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->post_mu, NULL);
    pthread_mutex_init(&c->done_mu, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    pthread_cond_init(&c->idle_cv, NULL);
    uint64_t deadline = ccl__now_ms() + (uint64_t)cfg->connect_timeout_ms;
    ccl__group_msg g;
    memset(&g, 0, sizeof g);
    int rc = ccl__random_bytes(c->uuid, sizeof c->uuid);
    if (rc) {
        ERRF("getrandom failed");
        goto fail;
    }
    rc = ccl__sock_listen(c->listen_host, 0, 1024, &c->listen_fd, &c->listen_port,
                          err, errlen);
    if (rc)
        goto fail;
    rc = join_group(c, deadline, &g, err, errlen);
    if (rc)
        goto fail;
    rc = ccl__build_peers(c, &g);
    if (rc) {
        ERRF("out of memory");
        goto fail;
    }
    rc = ccl__mesh_connect(c, deadline, err, errlen);
    if (!rc)
        rc = ccl__mesh_accept(c, deadline, err, errlen);
    if (rc)
        goto fail;
    rc = start_engine(c);
    if (rc) {
        ERRF("cannot start the progress engine");
        goto fail;
    }
    free(g.members);
    *out = c;
    return CCL_OK;
fail:
    free(g.members);
    comm_free(c);
    return rc;
}

int ccl_comm_rank(const ccl_comm *c) { return c ? c->rank : -1; }
int ccl_comm_size(const ccl_comm *c) { return c ? c->size : 0; }
uint32_t ccl_comm_epoch(const ccl_comm *c) { return c ? c->epoch : 0; }

const char *ccl_comm_error(ccl_comm *c)
{
    /* The engine may write the detail from its thread at any time: hand
     * out a copy that belongs to the calling thread. */
    static __thread char snap[sizeof ((ccl_comm *)0)->errbuf];
    if (!c)
        return "";
    pthread_mutex_lock(&c->post_mu);
    memcpy(snap, c->errbuf, sizeof snap);
    pthread_mutex_unlock(&c->post_mu);
    return snap;
}

void ccl_comm_stats(ccl_comm *c, uint64_t *tx, uint64_t *rx)
{
    pthread_mutex_lock(&c->mu);
    if (tx)
        *tx = c->tx_bytes;
    if (rx)
        *rx = c->rx_bytes;
    pthread_mutex_unlock(&c->mu);
}

void ccl_comm_destroy(ccl_comm *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->post_mu);
    c->closed = 1;
    ccl_op *posted = c->post_head;
    c->post_head = c->post_tail = NULL;
    pthread_mutex_unlock(&c->post_mu);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    ccl__wakefd_signal(c->wakefd);
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->idle_cv);
    /* BYE tells the peers the first op we did not finish: they fail that
     * one and every later one, and keep the ones we completed. */
    c->bye_tag = c->activated_upto;
    for (ccl_op *op = c->active; op; op = op->next)
        if (!op->committing && op->tag < c->bye_tag)
            c->bye_tag = op->tag; /* ops complete here may succeed elsewhere */
    if (posted && posted->tag < c->bye_tag)
        c->bye_tag = posted->tag;
    /* Ops posted but never started end as closed too. */
    while (posted) {
        ccl_op *op = posted;
        posted = op->next;
        op->next = c->active;
        c->active = op;
        op->active = 1;
    }
    ccl__fail_all(c, CCL_ERR_CLOSED, 0, "communicator closed");
    ccl__reap(c);
    ccl__say_bye(c);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    /* Wait for callers still inside ccl_op_wait to leave. */
    pthread_mutex_lock(&c->done_mu);
    while (c->waiters > 0) {
        pthread_cond_broadcast(&c->done_cv);
        pthread_cond_wait(&c->done_cv, &c->done_mu);
    }
    pthread_mutex_unlock(&c->done_mu);
    comm_free(c);
}
