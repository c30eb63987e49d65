/*
 * comm.c - a communicator's life: configuration, creation (register with
 * the master: master_link.c; connect the mesh: mesh.c; start the progress
 * thread), accessors and teardown.
 */
#include "comm.h"
#include "handshake.h"
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

static void comm_free(ccl_comm *c)
{
    ccl__key_wipe(&c->key);
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
    if (cfg->frame_mac && (!cfg->key || !cfg->key_len)) {
        ERRF("frame_mac needs a key: a MAC without a secret proves nothing");
        return CCL_ERR_INVALID_ARG;
    }
    int rc = ccl__insecure_check(cfg->key && cfg->key_len, cfg->allow_insecure,
                                 cfg->master_host, lh, err, errlen);
    if (rc)
        return rc;
    ccl_comm *c = calloc(1, sizeof *c);
    if (!c) {
        ERRF("out of memory");
        return CCL_ERR_NOMEM;
    }
    rc = ccl__key_set(&c->key, cfg->key, cfg->key_len, err, errlen);
    if (rc) {
        free(c);
        return rc;
    }
    c->cfg = *cfg;
    c->cfg.key = NULL; /* the copy in c->key is the one used */
    c->cfg.key_len = 0;
    snprintf(c->listen_host, sizeof c->listen_host, "%s", lh);
    c->cfg.listen_host = c->listen_host;
    c->cfg.master_host = NULL; /* the caller's string is only borrowed */
    if (strlen(cfg->master_host) >= sizeof c->master_host) {
        ERRF("master host name too long");
        ccl__key_wipe(&c->key);
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
    rc = ccl__random_bytes(c->uuid, sizeof c->uuid);
    if (rc) {
        ERRF("getrandom failed");
        goto fail;
    }
    rc = ccl__sock_listen(c->listen_host, 0, 1024, &c->listen_fd, &c->listen_port,
                          err, errlen);
    if (rc)
        goto fail;
    rc = ccl__join_group(c, deadline, &g, err, errlen);
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
