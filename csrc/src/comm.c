/*
 * comm.c - a communicator's life: configuration, creation (register with
 * the master: master_link.c; connect the mesh: mesh.c; start the progress
 * thread), accessors and teardown.
 */
#include "aead.h"
#include "algos.h"
#include "communicator.h"
#include "handshake.h"
#include "link_mac.h"
#include "peer_accept.h"
#include "result.h"
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
    cfg->conns_per_peer = 0; /* automatic: docs/quantization.md, "Connections" */
    cfg->listen_host = "127.0.0.1";
    cfg->connect_timeout_ms = 60000;
    cfg->op_timeout_ms = 60000;
    cfg->spin_us = -1;
    cfg->star_max_bytes = CCL_STAR_MAX_AUTO;
    cfg->chunk_bytes = 1u << 20;
    cfg->peer_timeout_ms = 30000;
    cfg->restore_input = 1;
    cfg->stats_report_ms = 1000;
    cfg->shm = 1;
}

static int start_loop(ccl_comm *c)
{
    if (ccl__poller_create(&c->poller) || ccl__wakefd_create(&c->wakefd))
        return CCL_ERR_IO;
    if (ccl__poller_set(c->poller, c->wakefd, NULL, CCL_EV_IN, 1))
        return CCL_ERR_IO;
    int rc = ccl__xport_create(&c->xp, c->poller, &ccl__engine_xport_ops, &c->eng);
    c->eng.xp = c->xp;
    return rc;
}

static void comm_free(ccl_comm *c)
{
    ccl__key_wipe(&c->key);
    if (c->xp)
        ccl__xport_destroy(c->xp);
    ccl__engine_fini(&c->eng);
    free(c->group.members);
    free(c->ctl_payload);
    ccl__link_mac_free(c->ctl_mac);
    ccl__master_revive_cancel(c);
    ccl__sock_close(c->master_fd);
    ccl__acceptor_free(c);
    ccl__sock_close(c->listen_fd);
    ccl__sock_close(c->poller);
    ccl__sock_close(c->wakefd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->idle_cv);
    free(c);
}

int ccl_comm_create(const ccl_comm_config *cfg, ccl_comm **out, char *err,
                    size_t errlen)
{
    char scratch[2];
    err = ccl__err_out(err, &errlen, scratch);
    if (!out || !cfg) {
        ERRF("NULL argument");
        return CCL_ERR_INVALID_ARG;
    }
    *out = NULL;
    if (!cfg->master_host || cfg->master_port <= 0 || cfg->master_port > 65535 ||
        cfg->world_size < 1 || cfg->world_size > CCL_MAX_WORLD ||
        cfg->rank < -1 || cfg->rank >= cfg->world_size ||
        cfg->conns_per_peer < 0 || cfg->conns_per_peer > 64 ||
        cfg->connect_timeout_ms <= 0 || cfg->op_timeout_ms <= 0 ||
        cfg->peer_timeout_ms < 100 ||
        cfg->chunk_bytes == 0) {
        ERRF("invalid configuration (master address, world_size 1..%d, rank "
             "-1..world_size-1, conns_per_peer 0 (automatic) or 1..64, positive "
             "timeouts, "
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
    if (cfg->encrypt && (!cfg->key || !cfg->key_len)) {
        ERRF("encrypt needs a key: the cipher keys are derived from the "
             "run's key in each connection's handshake (set PYCCL_KEY or "
             "PYCCL_KEY_FILE, or pass key=...)");
        return CCL_ERR_INVALID_ARG;
    }
    if (cfg->encrypt) {
        int lrc = ccl__aead_load(err, errlen);
        if (lrc)
            return lrc;
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
    c->master_fd = c->listen_fd = c->poller = c->wakefd = c->revive_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->idle_cv, NULL);
    ccl__engine_init(&c->eng, cfg->op_timeout_ms, cfg->restore_input);
    c->eng.pick = ccl__algo_pick;
    uint64_t deadline = ccl__now_ms() + (uint64_t)cfg->connect_timeout_ms;
    rc = ccl__random_bytes(c->uuid, sizeof c->uuid);
    if (rc) {
        ERRF("getrandom failed");
        goto fail;
    }
    rc = ccl__sock_listen(c->listen_host, 0, 1024, &c->listen_fd, &c->listen_port,
                          err, errlen);
    if (rc)
        goto fail;
    rc = start_loop(c);
    if (!rc)
        rc = ccl__acceptor_start(c);
    if (rc) {
        ERRF("cannot start the event loop");
        goto fail;
    }
    /* Every blocking wait of the join (the master, the mesh) stops within
     * 50 ms of *cfg->cancel. */
    ccl__sock_set_cancel(cfg->cancel);
    rc = ccl__join_group(c, deadline, err, errlen);
    if (!rc)
        rc = ccl__mesh_build(c, deadline, err, errlen);
    ccl__sock_set_cancel(NULL);
    if (rc)
        goto fail;
    ccl__master_link_watch(c);
    ccl__stats_report_start(c);
    if (pthread_create(&c->thread, NULL, ccl__progress_main, c) != 0) {
        ERRF("cannot start the progress thread");
        rc = CCL_ERR_NOMEM;
        goto fail;
    }
    c->thread_started = 1;
    *out = c;
    return CCL_OK;
fail:
    comm_free(c);
    return rc;
}

int ccl_comm_rank(const ccl_comm *c)
{
    int rank = -1;
    if (c)
        /* The group lock is mutable state inside a logically const
         * handle. */
        ccl__engine_group((ccl__engine *)&c->eng, &rank, NULL, NULL);
    return rank;
}

int ccl_comm_size(const ccl_comm *c)
{
    int size = 0;
    if (c)
        ccl__engine_group((ccl__engine *)&c->eng, NULL, &size, NULL);
    return size;
}

uint32_t ccl_comm_epoch(const ccl_comm *c)
{
    uint32_t epoch = 0;
    if (c)
        ccl__engine_group((ccl__engine *)&c->eng, NULL, NULL, &epoch);
    return epoch;
}

const char *ccl_comm_error(ccl_comm *c)
{
    /* The engine may write the detail from its thread at any time: hand
     * out a copy that belongs to the calling thread. */
    static __thread char snap[512];
    if (!c)
        return "";
    ccl__engine_error(&c->eng, snap, sizeof snap);
    return snap;
}

void ccl_comm_stats(ccl_comm *c, uint64_t *tx, uint64_t *rx)
{
    if (tx)
        *tx = 0;
    if (rx)
        *rx = 0;
    if (c)
        ccl__xport_stats(c->xp, tx, rx);
}

int ccl_comm_get_stats(ccl_comm *c, ccl_stats *out, ccl_link_stats *links,
                       int max_links, int *n_links, ccl_op_record *ops,
                       int max_ops, int *n_ops)
{
    if (n_links)
        *n_links = 0;
    if (n_ops)
        *n_ops = 0;
    if (!c || max_links < 0 || max_ops < 0)
        return CCL_ERR_INVALID_ARG;
    if (out) {
        memset(out, 0, sizeof *out);
        ccl__xport_stats(c->xp, &out->tx_bytes, &out->rx_bytes);
    }
    ccl__stats_read(ccl__xport_stats_of(c->xp), out, links, max_links, n_links,
                    ops, max_ops, n_ops);
    return CCL_OK;
}

void ccl_comm_destroy(ccl_comm *c)
{
    if (!c)
        return;
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELEASE);
    ccl__wakefd_signal(c->wakefd);
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->idle_cv);
    uint64_t bye = ccl__engine_close(&c->eng);
    ccl__xport_say_bye(c->xp, bye);
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started)
        pthread_join(c->thread, NULL);
    /* Wait for callers still inside ccl_op_wait to leave. */
    ccl__engine *e = &c->eng;
    pthread_mutex_lock(&e->done_mu);
    while (e->waiters > 0) {
        pthread_cond_broadcast(&e->done_cv);
        pthread_cond_wait(&e->done_cv, &e->done_mu);
    }
    pthread_mutex_unlock(&e->done_mu);
    comm_free(c);
}
