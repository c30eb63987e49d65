/*
 * xport_conn.c - what every part of the transport does to a connection:
 * poller registration, send request recycling, closing, and the two ways
 * a peer leaves the transport (a failed connection, or BYE on all of
 * them).
 */
#include "xport_int.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

long ccl__xp_read_some(xp_conn *k, void *dst, size_t n, char *err, size_t errlen)
{
    if (!k->shm)
        return ccl__sock_read_some(k->fd, dst, n, err, errlen);
    long r = ccl__shm_read_some(k->shm, k->fd, dst, n, err, errlen);
    if (r == 0 && k->shm_eof) {
        snprintf(err, errlen, "connection closed by the peer");
        return -CCL_ERR_PEER_LOST;
    }
    return r;
}

long ccl__xp_writev_some(xp_conn *k, struct iovec *iov, int n, char *err,
                         size_t errlen)
{
    if (!k->shm)
        return ccl__sock_writev_some(k->fd, iov, n, err, errlen);
    if (k->shm_eof) {
        snprintf(err, errlen, "connection closed by the peer");
        return -CCL_ERR_PEER_LOST;
    }
    return ccl__shm_writev_some(k->shm, k->fd, iov, n, err, errlen);
}

void ccl__xp_conn_events(xp_conn *k)
{
    if (k->shm) {
        /* The socket carries doorbells only, for both directions: always
         * read them (a parked connection too: one may say the ring has
         * room for our frames), never wait for it to be writable.  After
         * its end, nothing: the rings are read as parking allows. */
        if (!k->shm_eof)
            ccl__poller_set(k->x->poller, k->fd, &k->ev, CCL_EV_IN, 0);
        return;
    }
    unsigned ev = (k->parked ? 0 : CCL_EV_IN) | (k->out_armed ? CCL_EV_OUT : 0);
    ccl__poller_set(k->x->poller, k->fd, &k->ev, ev, 0);
}

xp_req *ccl__xp_req_alloc(ccl__xport *x)
{
    xp_req *r = x->free_reqs;
    if (r) {
        x->free_reqs = r->next;
    } else {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
    }
    memset(r, 0, sizeof *r);
    return r;
}

void ccl__xp_req_free(ccl__xport *x, xp_req *r)
{
    free(r->owned);
    r->owned = NULL;
    r->next = x->free_reqs;
    x->free_reqs = r;
}

void ccl__xp_mac_free(xp_conn *k)
{
    if (!k->mac)
        return;
    ccl__aead_free(k->mac->tx_aead);
    ccl__aead_free(k->mac->rx_aead);
    if (k->mac->ct) /* the plaintext went out with it: nothing secret left */
        free(k->mac->ct);
    ccl__wipe(k->mac, sizeof *k->mac);
    free(k->mac);
    k->mac = NULL;
}

/* Closes the socket; a half-written frame is dropped with it. */
void ccl__xp_conn_close(xp_conn *k)
{
    if (k->fd < 0)
        return;
    ccl__poller_del(k->x->poller, k->fd);
    ccl__sock_close(k->fd);
    k->fd = -1;
    if (k->shm)
        ccl__stats_shm(&k->x->stats, k->peer, -1);
    ccl__shm_free(k->shm);
    k->shm = NULL;
    k->shm_eof = k->rx_more = 0;
    ccl__stats_conn(&k->x->stats, k->peer, -1);
    k->parked = 0;
    k->out_armed = 0;
    k->sink.kind = CCL_SINK_DISCARD;
    k->sink.owner = NULL;
    free(k->keep);
    k->keep = NULL;
    if (k->cur) {
        ccl__xp_req_free(k->x, k->cur);
        k->cur = NULL;
    }
}

/* One broken connection ends the whole pool: the peer's frames are
 * striped, so what is missing on this stream cannot come on another. */
void ccl__xp_conn_failed(xp_conn *k, int code, const char *why)
{
    ccl__xport *x = k->x;
    if (k->fd < 0)
        return;
    int peer = k->peer;
    xp_peer *p = &x->peers[peer];
    /* Blame (docs/security.md, "Who is blamed"): a failed MAC, a malformed
     * frame or a protocol violation seen on a connection proves only that
     * the *link* is bad: an on-path party can cause each of them.  So it
     * is a link fault like a cut connection (the ops fail everywhere, the
     * next reform goes on without the link), never grounds to expel the
     * sender: p->misbehaved stays 0.  A MAC cannot prove to a third party
     * who sent a frame either, since both ends of a connection hold its
     * keys (and every member holds the run's key). */
    ccl__stats_error(&x->stats, peer);
    char msg[400];
    snprintf(msg, sizeof msg, "peer %d (%s:%u) connection %d: %s", peer, p->host,
             p->port, k->index, why);
    /* One line per lost peer (all its connections close here at once):
     * the first of an epoch as a warning; later ones are often the others
     * closing this epoch's connections as they move on. */
    ccl__log(x->lost_logged++ ? CCL_LOG_INFO : CCL_LOG_WARNING,
             "rank %d, epoch %u: lost %s", x->self, x->epoch, msg);
    for (int i = 0; i < p->nconns; i++)
        ccl__xp_conn_close(&p->conns[i]);
    while (p->qhead) {
        xp_req *r = p->qhead;
        p->qhead = r->next;
        ccl__xp_req_free(x, r);
    }
    p->qtail = NULL;
    x->ops->on_broken(x->ctx, peer, code, msg);
}

/* A peer closed its end in order and said so on this connection: nothing
 * more comes on it.  Once every connection said BYE the layer above hears
 * of it (frames ahead of the BYE were delivered first, in stream order). */
void ccl__xp_conn_bye(xp_conn *k)
{
    ccl__xport *x = k->x;
    xp_peer *p = &x->peers[k->peer];
    uint64_t tag = k->h.tag;
    ccl__xp_conn_close(k);
    k->rstate = RX_HDR;
    for (int i = 0; i < p->nconns; i++)
        if (p->conns[i].fd >= 0)
            return;
    ccl__log(CCL_LOG_INFO, "rank %d, epoch %u: peer %d (%s:%u) left the group "
             "(BYE)", x->self, x->epoch, k->peer, p->host, p->port);
    x->ops->on_bye(x->ctx, k->peer, tag);
}
