/*
 * xport_peers.c - the transport's members and connections over an epoch, their
 * readiness events, and liveness: heartbeats keep an idle but healthy
 * peer from looking dead; silence longer than peer_timeout means the
 * peer is stopped, hung or cut off (a stopped process keeps its sockets
 * open, so only a deadline catches it).
 */
#include "xport_int.h"
#include "conns_auto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A doorbell on a same-host connection (sock_shm.h): the peer wrote into
 * our ring, or made room in its own; which one, it does not say. */
static void shm_event(xp_conn *k)
{
    char err[160];
    if (!k->shm_eof && ccl__shm_drain(k->fd, err, sizeof err) < 0) {
        /* Its last frames may still be in the ring: they are read first,
         * and the connection fails when the ring is empty (as a socket's
         * EOF comes after its bytes). */
        k->shm_eof = 1;
        ccl__poller_del(k->x->poller, k->fd);
    }
    if (!k->parked)
        ccl__xp_read(k);
    if (k->fd >= 0 && (k->cur || k->x->peers[k->peer].qhead))
        ccl__xp_flush(k);
}

static void conn_event(ccl__io_handler *h, unsigned events)
{
    xp_conn *k = (xp_conn *)h; /* ev is the first member */
    if (k->fd < 0)
        return;
    if (k->shm) {
        shm_event(k);
        return;
    }
    if (events & CCL_EV_OUT)
        ccl__xp_flush(k);
    if (k->fd >= 0 && (events & (CCL_EV_IN | CCL_EV_ERR)))
        ccl__xp_read(k);
}

int ccl__xport_create(ccl__xport **out, int poller, const ccl__xport_ops *ops,
                      void *ctx)
{
    ccl__xport *x = calloc(1, sizeof *x);
    if (!x)
        return CCL_ERR_NOMEM;
    x->poller = poller;
    x->ops = ops;
    x->ctx = ctx;
    x->self = -1;
    if (ccl__stats_init(&x->stats) != CCL_OK) {
        free(x);
        return CCL_ERR_NOMEM;
    }
    /* A test hook, not a feature: makes this process a slow sender. */
    const char *rate = getenv("CCL_TEST_TX_BYTES_PER_S");
    if (rate && atof(rate) > 0)
        x->tx_rate = atof(rate);
    /* ... towards one peer only (CCL_TEST_TX_SLOW_PEER=rank): one slow
     * link on loopback, for the ring-order tests. */
    const char *slow = getenv("CCL_TEST_TX_SLOW_PEER");
    x->tx_slow_peer = slow && *slow ? atoi(slow) : -1;
    *out = x;
    return CCL_OK;
}

void ccl__xport_clear(ccl__xport *x)
{
    if (!x->peers)
        return;
    x->gen++;
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            xp_conn *k = &pe->conns[i];
            ccl__xp_conn_close(k);
            free(k->staging);
            ccl__xp_mac_free(k);
        }
        while (pe->qhead) {
            xp_req *r = pe->qhead;
            pe->qhead = r->next;
            ccl__xp_req_free(x, r);
        }
        free(pe->conns);
    }
    free(x->peers);
    x->peers = NULL;
    x->size = 0;
}

void ccl__xport_destroy(ccl__xport *x)
{
    if (!x)
        return;
    ccl__xport_clear(x);
    while (x->free_reqs) {
        xp_req *r = x->free_reqs;
        x->free_reqs = r->next;
        free(r);
    }
    ccl__stats_fini(&x->stats);
    free(x);
}

int ccl__xport_reset(ccl__xport *x, int size, int self, int conns_per_peer,
                     uint32_t epoch, const ccl__xport_member *members)
{
    ccl__xport_clear(x);
    x->started = 0;
    x->peers = calloc((size_t)size, sizeof *x->peers);
    if (!x->peers)
        return CCL_ERR_NOMEM;
    x->size = size;
    x->self = self;
    x->epoch = epoch;
    x->lost_logged = 0;
    const char **hosts = calloc((size_t)size, sizeof *hosts);
    int *ports = calloc((size_t)size, sizeof *ports);
    for (int p = 0; hosts && ports && p < size; p++) {
        hosts[p] = members[p].host;
        ports[p] = members[p].port;
    }
    int src = hosts && ports ? ccl__stats_new_epoch(&x->stats, self, size, epoch,
                                                    hosts, ports)
                             : CCL_ERR_NOMEM;
    free(hosts);
    free(ports);
    if (src)
        return src;
    for (int p = 0; p < size; p++) {
        xp_peer *pe = &x->peers[p];
        snprintf(pe->host, sizeof pe->host, "%s", members[p].host);
        pe->port = members[p].port;
        if (p == self)
            continue;
        pe->conns = calloc((size_t)conns_per_peer, sizeof *pe->conns);
        if (!pe->conns)
            return CCL_ERR_NOMEM; /* the table stays walkable for clear */
        pe->nconns = conns_per_peer;
        pe->active = conns_per_peer;
        for (int i = 0; i < pe->nconns; i++) {
            xp_conn *k = &pe->conns[i];
            k->ev.on_event = conn_event;
            k->x = x;
            k->fd = -1;
            k->peer = p;
            k->index = i;
        }
    }
    return CCL_OK;
}

int ccl__xport_wants(const ccl__xport *x, int peer, int index)
{
    if (peer < 0 || peer >= x->size || index < 0 || index >= x->peers[peer].nconns)
        return 0;
    return x->peers[peer].conns[index].fd < 0;
}

int ccl__xport_conns(const ccl__xport *x, int peer)
{
    return peer >= 0 && peer < x->size ? x->peers[peer].nconns : 0;
}

/* encrypt: the AEAD contexts of both directions, keyed from the
 * handshake's seeds (aead.h). */
static int adopt_aead(xp_mac *m, const ccl__hs *hs, char *err, size_t errlen)
{
    uint8_t key[CCL_AEAD_KEY_LEN];
    ccl__aead_derive_key(hs->seed_tx, key);
    int rc = ccl__aead_new(&m->tx_aead, CCL_AEAD_AES256GCM, 1, key, err, errlen);
    if (rc == CCL_OK) {
        ccl__aead_derive_key(hs->seed_rx, key);
        rc = ccl__aead_new(&m->rx_aead, CCL_AEAD_AES256GCM, 0, key, err, errlen);
    }
    ccl__wipe(key, sizeof key);
    return rc;
}

int ccl__xport_adopt(ccl__xport *x, int peer, int index, int fd, ccl__hs *hs,
                     int frame_mac, int encrypt, ccl__shm *shm, char *err,
                     size_t errlen)
{
    xp_conn *k = &x->peers[peer].conns[index];
    int rc = CCL_OK;
    if ((frame_mac || encrypt) && (!hs || !hs->authed)) {
        /* Cannot happen: both need a key, and the handshake proved it. */
        snprintf(err, errlen, "%s without an authenticated handshake",
                 encrypt ? "encrypt" : "frame_mac");
        return CCL_ERR_AUTH;
    }
    if (hs && hs->authed) {
        /* Keyed: control frames are always MACed (protocol 4); with
         * encrypt every frame is sealed with the AEAD instead. */
        k->mac = calloc(1, sizeof *k->mac);
        if (!k->mac) {
            snprintf(err, errlen, "out of memory for frame MAC keys");
            return CCL_ERR_NOMEM;
        }
        k->mac->data_too = frame_mac || encrypt;
        if (encrypt) {
            rc = adopt_aead(k->mac, hs, err, errlen);
        } else {
            ccl__frame_mac_key_init(&k->mac->tx_key, hs->seed_tx);
            ccl__frame_mac_key_init(&k->mac->rx_key, hs->seed_rx);
        }
    }
    if (hs) {
        ccl__wipe(hs->seed_tx, sizeof hs->seed_tx);
        ccl__wipe(hs->seed_rx, sizeof hs->seed_rx);
    }
    if (rc) {
        ccl__xp_mac_free(k);
        return rc;
    }
    k->fd = fd;
    k->shm = shm;
    ccl__stats_conn(&x->stats, peer, 1);
    if (shm)
        ccl__stats_shm(&x->stats, peer, 1);
    return CCL_OK;
}

/* Automatic mode: how many of each peer's connections carry data, from
 * the kernel's current round-trip estimate on its first connection (it
 * follows the traffic: queueing on a loaded link raises it). */
static void choose_active(ccl__xport *x)
{
    uint64_t window = ccl__sock_stream_window();
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        if (pe->nconns < 1 || pe->conns[0].fd < 0)
            continue;
        /* Shared memory has no window to fill: one connection. */
        pe->active = pe->conns[0].shm ? 1 : ccl__conns_auto(ccl__sock_rtt_us(pe->conns[0].fd), window,
                                     CCL_AUTO_REF_BPS, pe->nconns);
    }
}

void ccl__xport_set_auto(ccl__xport *x, int on)
{
    x->auto_conns = on;
    if (on)
        choose_active(x);
    else
        for (int p = 0; p < x->size; p++)
            x->peers[p].active = x->peers[p].nconns;
}

int ccl__xport_active(const ccl__xport *x, int peer)
{
    return peer >= 0 && peer < x->size ? x->peers[peer].active : 0;
}

int ccl__xport_start(ccl__xport *x, int peer_timeout_ms)
{
    uint64_t now = ccl__now_ms();
    x->peer_timeout_ms = peer_timeout_ms;
    x->started = 1;
    x->last_tick_ms = now;
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        pe->last_rx_ms = pe->last_tx_ms = now;
        for (int i = 0; i < pe->nconns; i++) {
            xp_conn *k = &pe->conns[i];
            ccl__sock_set_nonblock(k->fd);
            ccl__sock_set_nodelay(k->fd);
            if (ccl__poller_set(x->poller, k->fd, &k->ev, CCL_EV_IN, 1))
                return CCL_ERR_IO;
        }
    }
    return CCL_OK;
}

uint64_t ccl__xport_generation(const ccl__xport *x)
{
    return x->gen;
}

void ccl__xport_break(ccl__xport *x, int peer, int code, const char *why)
{
    xp_peer *p = &x->peers[peer];
    for (int i = 0; i < p->nconns; i++)
        if (p->conns[i].fd >= 0) {
            ccl__xp_conn_failed(&p->conns[i], code, why);
            return;
        }
}

void ccl__xport_detach(ccl__xport *x, void *owner)
{
    for (int p = 0; p < x->size; p++)
        for (int i = 0; i < x->peers[p].nconns; i++) {
            xp_conn *k = &x->peers[p].conns[i];
            if (k->sink.owner == owner && k->sink.kind != CCL_SINK_KEEP) {
                k->sink.kind = CCL_SINK_DISCARD;
                k->sink.owner = NULL;
            }
        }
}

void ccl__xport_unpark_all(ccl__xport *x)
{
    for (int p = 0; p < x->size; p++)
        for (int i = 0; i < x->peers[p].nconns; i++) {
            xp_conn *k = &x->peers[p].conns[i];
            if (k->fd >= 0 && k->parked)
                ccl__xp_unpark(k);
        }
}

static int peer_parked(const xp_peer *pe)
{
    for (int i = 0; i < pe->nconns; i++)
        if (pe->conns[i].fd >= 0 && pe->conns[i].parked)
            return 1;
    return 0;
}

/* Kernel RTT of each open connection, once a second: cheap (one
 * getsockopt per connection) and fine enough for a moving average. */
static void sample_rtt(ccl__xport *x, uint64_t now)
{
    if (now < x->next_rtt_ms)
        return;
    x->next_rtt_ms = now + 1000;
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        double sum = 0;
        int n = 0;
        for (int i = 0; i < pe->nconns; i++) {
            uint32_t rtt = pe->conns[i].fd >= 0 ? ccl__sock_rtt_us(pe->conns[i].fd) : 0;
            if (rtt) {
                sum += rtt;
                n++;
            }
        }
        if (n)
            ccl__stats_rtt(&x->stats, p, sum / n);
    }
}

/* Test hook: connections held for the send rate write again. */
void ccl__xport_resume(ccl__xport *x)
{
    if (x->rx_more) { /* rings left unread at a read budget */
        x->rx_more = 0;
        for (int p = 0; p < x->size; p++)
            for (int i = 0; i < x->peers[p].nconns; i++) {
                xp_conn *k = &x->peers[p].conns[i];
                if (k->rx_more) {
                    k->rx_more = 0;
                    if (k->fd >= 0 && !k->parked)
                        ccl__xp_read(k);
                }
            }
    }
    if (!x->tx_waiting)
        return;
    x->tx_waiting = 0;
    for (int p = 0; p < x->size; p++)
        for (int i = 0; i < x->peers[p].nconns; i++) {
            xp_conn *k = &x->peers[p].conns[i];
            if (k->fd >= 0 && (k->cur || x->peers[p].qhead))
                ccl__xp_flush(k);
        }
}

void ccl__xport_tick(ccl__xport *x, uint64_t now)
{
    if (x->peers)
        sample_rtt(x, now);
    /* Every 10 ms at most: liveness needs no finer grain, and the loop
     * passes far more often than that while small ops run. */
    if (now < x->next_tick_ms || !x->started)
        return; /* (the mesh being built runs the loop too: see mesh.c) */
    x->next_tick_ms = now + 10;
    uint64_t limit = (uint64_t)x->peer_timeout_ms, hb = limit / 4;
    /* The loop passes here at least every peer_timeout / 8 (its timer).
     * A much longer gap means this process did not run (stopped,
     * descheduled): the silence it would measure now is its own, while
     * the peers' bytes wait unread in its sockets.  Judge them from now
     * on, rather than take live peers for silent ones on waking up. */
    if (x->last_tick_ms && ccl__since(now, x->last_tick_ms) > limit / 2)
        for (int p = 0; p < x->size; p++)
            x->peers[p].last_rx_ms = now;
    x->last_tick_ms = now;
    if (x->auto_conns && now >= x->next_auto_ms) {
        x->next_auto_ms = now + 500;
        choose_active(x);
    }
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        if (!ccl__xport_peer_open(x, p))
            continue;
        if (peer_parked(pe)) /* we stopped reading it ourselves */
            pe->last_rx_ms = now;
        if (ccl__since(now, pe->last_rx_ms) > limit) {
            char why[160];
            snprintf(why, sizeof why, "silent for %llu ms (stopped, hung or cut off)",
                     (unsigned long long)(now - pe->last_rx_ms));
            ccl__xport_break(x, p, CCL_ERR_PEER_LOST, why);
            continue;
        }
        if (ccl__since(now, pe->last_tx_ms) >= hb && !pe->qhead) {
            ccl__hdr h;
            memset(&h, 0, sizeof h);
            h.type = CCL_FT_HEARTBEAT;
            ccl__xport_send(x, p, &h, NULL, 0, NULL);
        }
    }
}

int ccl__xport_timer_ms(const ccl__xport *x, int busy)
{
    int t = x->peer_timeout_ms / 8;
    if (busy && t > 50)
        t = 50;
    if (x->tx_waiting)
        t = 1;
    if (x->rx_more)
        return 0;
    return t > 1000 ? 1000 : t < 1 ? 1 : t;
}

void ccl__xport_say_bye(ccl__xport *x, uint64_t tag)
{
    uint8_t buf[CCL_HDR_LEN + CCL_FRAME_MAC_TAG_LEN];
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_BYE;
    h.epoch = x->epoch;
    h.tag = tag;
    ccl__hdr_encode(buf, &h);
    for (int p = 0; p < x->size; p++) {
        xp_peer *pe = &x->peers[p];
        for (int i = 0; i < pe->nconns; i++) {
            xp_conn *k = &pe->conns[i];
            /* A frame cut in the middle cannot be followed by BYE: the peer
             * then sees the connection end, which is the truth. */
            if (k->fd < 0 || k->cur)
                continue;
            size_t len = CCL_HDR_LEN;
            if (k->mac && k->mac->tx_aead) {
                /* Sealed like every frame of an encrypted connection (a
                 * spent counter: no BYE, the peer sees the close). */
                if (ccl__aead_start(k->mac->tx_aead, buf, CCL_HDR_LEN) ||
                    ccl__aead_seal(k->mac->tx_aead, buf + CCL_HDR_LEN))
                    continue;
                len += CCL_AEAD_TAG_LEN;
            } else if (k->mac) {
                ccl__frame_mac(&k->mac->tx_key, k->mac->tx_seq++, buf, CCL_HDR_LEN,
                               buf + CCL_HDR_LEN);
                len += CCL_FRAME_MAC_TAG_LEN;
            }
            if (k->shm) {
                /* Whole or not at all: half a BYE would read as a
                 * broken stream. */
                struct iovec v = {buf, len};
                if (!k->shm_eof && ccl__shm_room(k->shm) >= len)
                    ccl__shm_writev_some(k->shm, k->fd, &v, 1, NULL, 0);
                continue;
            }
            ccl__sock_send_all(k->fd, buf, len, ccl__now_ms() + 200, NULL, 0);
        }
    }
}

int ccl__xport_peer_open(const ccl__xport *x, int peer)
{
    const xp_peer *pe = &x->peers[peer];
    for (int i = 0; i < pe->nconns; i++)
        if (pe->conns[i].fd >= 0)
            return 1;
    return 0;
}

int ccl__xport_shm_conns(const ccl__xport *x, int peer)
{
    const xp_peer *pe = &x->peers[peer];
    int n = 0;
    for (int i = 0; i < pe->nconns; i++)
        n += pe->conns[i].fd >= 0 && pe->conns[i].shm != NULL;
    return n;
}

int ccl__xport_peer_misbehaved(const ccl__xport *x, int peer)
{
    return x->peers[peer].misbehaved;
}

void ccl__xport_stats(const ccl__xport *x, uint64_t *tx, uint64_t *rx)
{
    /* Counted with atomic adds by the driver: readable from any thread
     * without the drive lock. */
    if (tx)
        *tx = __atomic_load_n(&x->tx_bytes, __ATOMIC_RELAXED);
    if (rx)
        *rx = __atomic_load_n(&x->rx_bytes, __ATOMIC_RELAXED);
}

ccl__stats *ccl__xport_stats_of(ccl__xport *x)
{
    return &x->stats;
}
