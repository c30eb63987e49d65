/*
 * master_conn.c - one connection at the master: closing it (the policy
 * hears of a known one) and driving its handshake nonblocking.  Used by
 * master_accept.c (admission) and master.c (the loop).
 */
#include "master_int.h"
#include "sock.h"

#include <stdlib.h>

int ccl__master_listen_marker;

/* Closes a connection; the policy hears of it when it knew it.  The
 * memory stays until ccl__master_conns_reap, at the end of the loop's
 * turn: events later in the same batch may still name it. */
void ccl__master_conn_close(ccl_master *m, mconn *k)
{
    if (k->closed)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        m->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    ccl__strangers_remove(&m->strangers, &k->node);
    if (k->phase == P_CONTROL)
        ccl__mpol_lost(m->policy, k, ccl__now_ms());
    ccl__mview_forget(m->view, k);
    ccl__poller_del(m->poller, k->fd);
    if (k->gentle)
        ccl__sock_close_after_send(k->fd); /* a REJECT we sent must land */
    else
        ccl__sock_close(k->fd); /* never heard: only our HELLO is lost */
    k->fd = -1;
    ccl__hsm_wipe(&k->hs);
    ccl__link_mac_free(k->mac);
    k->mac = NULL;
    m->nconns--;
    k->closed = 1;
    k->prev = NULL;
    k->next = m->graveyard;
    m->graveyard = k;
}

void ccl__master_conns_reap(ccl_master *m)
{
    while (m->graveyard) {
        mconn *k = m->graveyard;
        m->graveyard = k->next;
        free(k->in);
        free(k);
    }
}


/* ---- the handshake, driven nonblocking ---- */

static void refuse(ccl_master *m, mconn *k, const char *cause)
{
    ccl__log_refusal(&m->refusals, "pyccl master", k->addr, cause);
    ccl__master_conn_close(m, k);
}

/* Writes what the handshake has to say, as far as the socket takes it,
 * and asks for writability while bytes are left.  Returns 0 or a
 * ccl_result. */
static int hs_flush(ccl_master *m, mconn *k)
{
    const uint8_t *p;
    size_t n = ccl__hsm_to_write(&k->hs, &p);
    if (n) {
        struct iovec iov = {(void *)p, n};
        long w = ccl__sock_writev_some(k->fd, &iov, 1, NULL, 0);
        if (w < 0)
            return (int)-w;
        ccl__hsm_wrote(&k->hs, (size_t)w);
        n -= (size_t)w;
    }
    int want = n > 0;
    unsigned ev = CCL_EV_IN | (want ? CCL_EV_OUT : 0);
    if (want != k->want_out && ccl__poller_set(m->poller, k->fd, k, ev, 0))
        return CCL_ERR_IO;
    k->want_out = want;
    return CCL_OK;
}

/* Moves the handshake on after bytes came or went.  Returns 0 if the
 * connection was closed. */
int ccl__master_hs_progress(ccl_master *m, mconn *k)
{
    if (ccl__hsm_failed(&k->hs)) {
        hs_flush(m, k); /* best effort: "your proof was wrong" */
        refuse(m, k, k->hs.err + k->hs.cause_at);
        return 0;
    }
    if (hs_flush(m, k) != CCL_OK) {
        ccl__master_conn_close(m, k);
        return 0;
    }
    if (ccl__hsm_done(&k->hs)) {
        k->in = malloc(IN_CAP + CCL_FRAME_MAC_TAG_LEN);
        if (!k->in) {
            ccl__master_conn_close(m, k);
            return 0;
        }
        if (k->hs.result.authed) {
            k->mac = ccl__link_mac_new(k->hs.result.seed_tx, k->hs.result.seed_rx);
            if (!k->mac) {
                ccl__master_conn_close(m, k);
                return 0;
            }
        }
        ccl__hsm_wipe(&k->hs);
        k->phase = P_REGISTER;
        ccl__strangers_promote(&m->strangers, &k->node, CCL_STRANGER_REGISTER,
                               ccl__now_ms());
        if (!ccl__sock_options_inherited()) /* from the listener elsewhere */
            ccl__sock_set_keepalive(k->fd, CTL_KEEPALIVE_IDLE_S,
                                    CTL_KEEPALIVE_INTVL_S, CTL_KEEPALIVE_COUNT);
        k->have = 0;
        k->need = CCL_HDR_LEN;
    }
    return 1;
}

