/*
 * master_int.h - the master's own structures, shared by master_conn.c
 * (closing a connection, its handshake), master_accept.c (who gets a
 * connection slot while strangers flood the port) and master.c (the
 * event loop, frames, decisions).
 */
#ifndef CCL_MASTER_INT_H
#define CCL_MASTER_INT_H

#include "ccl.h"
#include "handshake.h"
#include "link_mac.h"
#include "log.h"
#include "master_policy.h"
#include "master_strangers.h"
#include "master_view.h"

#include <pthread.h>
#include <stdint.h>

#define HANDSHAKE_MS 10000
#define MAX_CONNS 4096
/* Strangers (connections not yet registered) from one network prefix
 * (/24 for IPv4, /64 for IPv6) that may be held at once: a sender with
 * many addresses usually has them in one prefix, so a cap per address
 * would be nothing to it. */
#define MAX_STRANGERS_PER_PREFIX 64
/* Strangers in all: at most this many, and never so many that the
 * members of a group (known links, and members coming back with REJOIN,
 * who are strangers only for one round trip) would find no fd: a
 * quarter of the budget, at least 16, is kept for links past the
 * handshake. */
#define MAX_STRANGERS 1024
/* Accepting pauses this long when the process is out of fds, instead of
 * retrying in a busy loop (the pending connection stays in the backlog). */
#define ACCEPT_BACKOFF_MS 10
#define SEND_MS 2000
/* Keepalive on control links: a host that vanished is found within
 * 5 + 3 * 5 = 20 s (docs/fault-tolerance.md). */
#define CTL_KEEPALIVE_IDLE_S 5
#define CTL_KEEPALIVE_INTVL_S 3
#define CTL_KEEPALIVE_COUNT 5
#define IN_CAP (12 + 4 * CCL_MAX_WORLD)
/* A master on a fixed port may be a restarted one: it forms no first
 * group this long after it starts, so that members of the run it
 * replaces can come back (REJOIN) before newcomers take the epoch.  It is
 * the members' reconnect bound with a margin (they retry every 100 ms). */
#define REJOIN_GRACE_MS 1500

enum mphase {
    P_HANDSHAKE, /* the step machine in k->hs runs */
    P_REGISTER,  /* authenticated: REGISTER or REJOIN comes next */
    P_CONTROL,   /* known to the policy */
    P_CLOSING    /* the policy let go of it: close without telling it */
};

typedef struct mconn {
    struct mconn *next, *prev; /* m->conns; after closing, m->graveyard */
    int fd;
    int phase;
    int closed;   /* closed in this turn of the loop: freed at its end */
    int want_out; /* registered for writability (handshake bytes left) */
    int heard;    /* bytes came from the other end */
    int gentle;   /* close it gently: it was heard, and what we sent it
                     (a REJECT, the cause of a failed handshake) must land */
    ccl__stranger node; /* in m->strangers until it registers */
    uint64_t started_ms;
    uint64_t prefix; /* ccl__sock_prefix_key of addr */
    char addr[80];
    uint64_t deadline_ms; /* for the handshake and REGISTER */
    ccl__hsm hs;
    /* frame reader: a header, then its payload, then (keyed) its tag */
    int in_payload, in_tag;
    size_t have, need;
    ccl__hdr h;
    uint8_t hbuf[CCL_HDR_LEN]; /* the header's bytes, for the MAC */
    uint8_t tag[CCL_FRAME_MAC_TAG_LEN];
    ccl__link_mac *mac; /* keyed: every frame both ways is MACed */
    /* IN_CAP + CCL_FRAME_MAC_TAG_LEN bytes, from the end of the
     * handshake on: 16 KiB that a flood's connections never need. */
    uint8_t *in;
} mconn;

/* A closed connection is kept until the end of the loop's turn, so that
 * later events of the same batch can tell it is gone (k->closed). */

struct ccl_master {
    ccl__key key; /* len 0: no key, loopback peers only */
    int allow_insecure;
    ccl__log_once refusals;
    int lfd, poller, wakefd, port;
    pthread_t thread;
    int stop;
    uint32_t epoch; /* the policy's, for ccl_master_epoch (atomic) */
    ccl__mpol *policy;
    mconn *conns;
    mconn *graveyard; /* closed this turn: freed at its end */
    ccl__strangers strangers; /* conns not registered yet */
    uint64_t next_deadline_scan;
    int nconns;
    int max_conns;     /* from the open-file limit */
    int max_strangers;
    uint64_t accept_paused_until; /* 0: accepting */
    uint64_t shed;     /* strangers pushed out to make room */
    ccl__mview *view;  /* members' STATS reports (master_view.c) */
};

/* Registered with the listen socket in the poller. */
extern int ccl__master_listen_marker;

/* master.c */
void ccl__master_conn_close(ccl_master *m, mconn *k);
/* Frees the connections closed since the last call. */
void ccl__master_conns_reap(ccl_master *m);
/* Moves a handshake on; 0 if the connection was closed. */
int ccl__master_hs_progress(ccl_master *m, mconn *k);
/* master_accept.c */
void ccl__master_on_accept(ccl_master *m);

#endif
