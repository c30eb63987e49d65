/*
 * master_link.c - a peer's control link to the master: the HELLO exchange
 * (shared with the mesh), registration and the wait for the GROUP, coming
 * back to a restarted master (REJOIN), and reading the link while the
 * group runs (PENDING counts, REJECT).
 *
 * The control link is read by the event loop (nonblocking, a frame may
 * arrive in pieces) and by update_topology (which waits for the answer);
 * both go through ccl__ctl_step so a half-read frame is never lost
 * between them.
 */
#include "communicator.h"
#include "handshake.h"
#include "link_mac.h"
#include "master_link.h"
#include "conns_auto.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

/* A wait that failed because the caller asked to stop says so, whatever
 * the wait's own code was. */
static int stop_or(int rc, char *err, size_t errlen)
{
    if (rc && ccl__sock_cancelled()) {
        ERRF("interrupted");
        return CCL_ERR_INTERRUPTED;
    }
    return rc;
}

int ccl__ctl_send(ccl_comm *c, int type, uint32_t epoch, const uint8_t *payload,
                  uint32_t len, uint64_t deadline, char *err, size_t errlen)
{
    return ccl__ctl_send_tagged(c, type, epoch, 0, payload, len, deadline, err, errlen);
}

int ccl__ctl_send_tagged(ccl_comm *c, int type, uint32_t epoch, uint64_t tag,
                         const uint8_t *payload, uint32_t len, uint64_t deadline,
                         char *err, size_t errlen)
{
    uint8_t hdr[CCL_HDR_LEN];
    uint8_t mac[CCL_FRAME_MAC_TAG_LEN];
    ccl__ctl_hdr_encode(hdr, type, epoch, tag, len);
    int rc = ccl__sock_send_all(c->master_fd, hdr, sizeof hdr, deadline, err, errlen);
    if (!rc && len)
        rc = ccl__sock_send_all(c->master_fd, payload, len, deadline, err, errlen);
    if (!rc && c->ctl_mac) {
        ccl__link_mac_seal(c->ctl_mac, hdr, sizeof hdr, payload, len, mac);
        rc = ccl__sock_send_all(c->master_fd, mac, sizeof mac, deadline, err, errlen);
    }
    return rc;
}

/* Connects to the master and exchanges HELLO. */
/* Coming back to a master (ccl__master_rejoin, a member of a running
 * mesh), one attempt to reach it (connect and handshake) gets at most
 * this long, or half of peer_timeout if that is longer: the caller holds
 * the loop meanwhile, so a master that half answers (a process being
 * killed, a SYN lost) must not keep this member's heartbeats from its
 * peers for long.  The attempt is then tried again, the loop running in
 * between, until the caller's deadline.  (Once seen in CI: a member
 * silent for 20 s while the others came back to the restarted master at
 * once; where it blocked was not found, and this bound is the guard.)
 * Registration (no mesh yet) keeps the whole deadline. */
#define MASTER_ATTEMPT_MS 1000
/* A fresh SYN to the master this often while none is answered (up to 3:
 * ccl__sock_connect_eager); a round trip to a master is well below it. */
#define MASTER_SYN_AGAIN_MS 300

static uint64_t attempt_deadline(const ccl_comm *c, uint64_t deadline, int bounded)
{
    if (!bounded)
        return deadline;
    uint64_t span = (uint64_t)c->cfg.peer_timeout_ms / 2;
    if (span < MASTER_ATTEMPT_MS)
        span = MASTER_ATTEMPT_MS;
    uint64_t at = ccl__now_ms() + span;
    return at < deadline ? at : deadline;
}

static int master_connect(ccl_comm *c, uint64_t deadline, int bounded, char *err,
                          size_t errlen)
{
    char e[300];
    int rc;
    /* The master may start after its peers (schedulers launch everything
     * at once): keep knocking until the deadline. */
    for (;;) {
        /* Another SYN every 300 ms while none is answered: a master
         * under a flood may have dropped ours from its full accept queue,
         * and the kernel would only retry after 1 s. */
        rc = ccl__sock_connect_eager(c->master_host, c->master_port,
                                     attempt_deadline(c, deadline, bounded),
                                     MASTER_SYN_AGAIN_MS, &c->master_fd, e, sizeof e);
        if ((rc != CCL_ERR_IO && rc != CCL_ERR_TIMEOUT) || ccl__now_ms() + 100 >= deadline)
            break;
        /* Wait by running the loop: while a member comes back to a
         * restarting master its heartbeats go on (at creation there is
         * no mesh yet, and the loop only sleeps). */
        ccl__loop_once(c, 100);
        if (ccl__sock_cancelled())
            break;
    }
    if (rc) {
        ERRF("cannot reach the master at %s:%d: %s", c->master_host,
             c->master_port, e);
        return stop_or(CCL_ERR_MASTER_UNREACHABLE, err, errlen);
    }
    ccl__hello mine;
    ccl__hs hs;
    ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_MASTER, 0, 0xffffffffu, 0, c->uuid);
    char who[320];
    snprintf(who, sizeof who, "the master at %s:%d", c->master_host, c->master_port);
    rc = ccl__handshake(c->master_fd, CCL_SIDE_CONNECTOR, &mine, &c->key,
                        c->cfg.allow_insecure, attempt_deadline(c, deadline, bounded),
                        who, &hs,
                        err, errlen);
    if (rc)
        return stop_or(rc == CCL_ERR_VERSION || rc == CCL_ERR_AUTH ||
                               rc == CCL_ERR_MISMATCH
                           ? rc
                           : CCL_ERR_MASTER_UNREACHABLE,
                       err, errlen);
    if (hs.theirs.role != CCL_ROLE_MASTER) {
        ccl__wipe(&hs, sizeof hs);
        ERRF("%s is not a pyccl master", who);
        return CCL_ERR_PROTOCOL;
    }
    rc = ccl__master_link_keys(c, &hs);
    ccl__wipe(&hs, sizeof hs);
    if (rc)
        ERRF("out of memory for the control link's MAC keys");
    return rc;
}

int ccl__master_link_keys(ccl_comm *c, const ccl__hs *hs)
{
    ccl__link_mac_free(c->ctl_mac);
    c->ctl_mac = NULL;
    c->ctl_tpos = 0;
    if (hs->authed) {
        /* Every frame of a keyed link is MACed (protocol 4). */
        c->ctl_mac = ccl__link_mac_new(hs->seed_tx, hs->seed_rx);
        if (!c->ctl_mac)
            return CCL_ERR_NOMEM;
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
    /* Automatic (0): open CCL_AUTO_CONNS_OPEN per pair; the transport
     * uses as many as each pair's round trip needs. */
    reg->conns_per_peer = (uint16_t)(c->cfg.conns_per_peer ? c->cfg.conns_per_peer
                                                           : CCL_AUTO_CONNS_OPEN);
    memcpy(reg->uuid, c->uuid, 16);
    snprintf(reg->host, sizeof reg->host, "%s", c->listen_host);
}

int ccl__master_send_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    ccl__register_msg reg;
    int rank, size;
    uint32_t epoch;
    ccl__engine_group(&c->eng, &rank, &size, &epoch);
    fill_register(c, &reg, (uint32_t)size, rank);
    uint8_t buf[4 + 64 + CCL_MAX_HOST];
    size_t n = ccl__rejoin_encode(buf, sizeof buf, epoch, &reg);
    return n ? ccl__ctl_send(c, CCL_FT_REJOIN, 0, buf, (uint32_t)n, deadline, err,
                             errlen)
             : CCL_ERR_INVALID_ARG;
}

/* Comes back to a (maybe restarted) master as a member of our epoch,
 * retrying until the deadline: a restarting master may not listen yet. */
int ccl__master_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    int rc = CCL_ERR_MASTER_UNREACHABLE;
    while (ccl__now_ms() < deadline) {
        ccl__sock_close(c->master_fd);
        c->master_fd = -1;
        rc = master_connect(c, deadline, 1, err, errlen);
        if (rc == CCL_OK) {
            rc = ccl__master_send_rejoin(c, deadline, err, errlen);
            if (rc == CCL_OK) {
                c->master_lost = 0;
                c->revive_next_ms = 0; /* a later loss starts over */
                c->revive_backoff_ms = 0;
                c->ctl_hpos = 0;
                ccl__master_link_watch(c);
                return CCL_OK;
            }
        }
        if (rc == CCL_ERR_VERSION || rc == CCL_ERR_PROTOCOL || rc == CCL_ERR_AUTH ||
            rc == CCL_ERR_MISMATCH || rc == CCL_ERR_INTERRUPTED)
            break;
        /* Wait by running the loop: heartbeats keep the mesh alive while
         * the master is away. */
        ccl__loop_once(c, 100);
        rc = stop_or(rc, err, errlen);
        if (rc == CCL_ERR_INTERRUPTED)
            break;
    }
    ccl__sock_close(c->master_fd);
    c->master_fd = -1;
    return rc == CCL_OK ? CCL_ERR_MASTER_UNREACHABLE : rc;
}

/* Registers with the master and waits for the GROUP message. */
int ccl__join_group(ccl_comm *c, uint64_t deadline, char *err, size_t errlen)
{
    ccl__group_msg *g = &c->group;
    char e[300];
    char who[320];
    snprintf(who, sizeof who, "the master at %s:%d", c->master_host, c->master_port);
    int rc = master_connect(c, deadline, 0, err, errlen);
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
    rc = ccl__ctl_send(c, CCL_FT_REGISTER, 0, buf, (uint32_t)n, deadline, e, sizeof e);
    if (rc) {
        ERRF("register with %s: %s", who, e);
        return CCL_ERR_MASTER_UNREACHABLE;
    }
    uint8_t hb[CCL_HDR_LEN];
    ccl__hdr h;
    rc = ccl__sock_recv_all(c->master_fd, hb, sizeof hb, deadline, e, sizeof e);
    if (rc) {
        ERRF("waiting for the group from %s: %s", who, e);
        return stop_or(rc == CCL_ERR_TIMEOUT ? CCL_ERR_TIMEOUT
                                             : CCL_ERR_MASTER_UNREACHABLE,
                       err, errlen);
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
        return stop_or(CCL_ERR_MASTER_UNREACHABLE, err, errlen);
    }
    if (c->ctl_mac) {
        uint8_t tag[CCL_FRAME_MAC_TAG_LEN];
        rc = ccl__sock_recv_all(c->master_fd, tag, sizeof tag, deadline, e, sizeof e);
        if (rc == CCL_OK &&
            !ccl__link_mac_check(c->ctl_mac, hb, sizeof hb, payload, h.length, tag))
            rc = CCL_ERR_AUTH;
        if (rc) {
            free(payload);
            if (rc == CCL_ERR_AUTH)
                ERRF("the reply of %s failed its MAC check: the bytes were "
                     "changed on the way (a link fault; retry)", who);
            else
                ERRF("reading the group from %s: %s", who, e);
            return stop_or(rc == CCL_ERR_AUTH ? rc : CCL_ERR_MASTER_UNREACHABLE,
                           err, errlen);
        }
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
    free(g->members);
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

/* Reads what is available; returns CTL_FRAME with a whole frame in
 * c->ctl_h / c->ctl_payload, CTL_NONE if more bytes are needed, or a
 * negative ccl_result when the link failed. */
int ccl__ctl_step(ccl_comm *c)
{
    char err[128];
    if (c->master_fd < 0)
        return -CCL_ERR_MASTER_UNREACHABLE;
    if (c->ctl_hpos < CCL_HDR_LEN) {
        long n = ccl__sock_read_some(c->master_fd, c->ctl_hbuf + c->ctl_hpos,
                                     CCL_HDR_LEN - c->ctl_hpos, err, sizeof err);
        if (n < 0)
            return (int)n;
        c->ctl_hpos += (size_t)n;
        if (c->ctl_hpos < CCL_HDR_LEN)
            return CTL_NONE;
        if (ccl__hdr_decode(c->ctl_hbuf, &c->ctl_h) != 0)
            return -CCL_ERR_PROTOCOL;
        free(c->ctl_payload);
        c->ctl_payload = malloc(c->ctl_h.length ? c->ctl_h.length : 1);
        c->ctl_ppos = 0;
        c->ctl_tpos = 0;
        if (!c->ctl_payload)
            return -CCL_ERR_NOMEM;
    }
    if (c->ctl_ppos < c->ctl_h.length) {
        long n = ccl__sock_read_some(c->master_fd, c->ctl_payload + c->ctl_ppos,
                                     c->ctl_h.length - c->ctl_ppos, err, sizeof err);
        if (n < 0)
            return (int)n;
        c->ctl_ppos += (size_t)n;
        if (c->ctl_ppos < c->ctl_h.length)
            return CTL_NONE;
        c->ctl_tpos = 0;
    }
    if (c->ctl_mac) {
        /* Nothing of a frame acts before its tag checked out. */
        if (c->ctl_tpos < sizeof c->ctl_tag) {
            long n = ccl__sock_read_some(c->master_fd, c->ctl_tag + c->ctl_tpos,
                                         sizeof c->ctl_tag - c->ctl_tpos, err,
                                         sizeof err);
            if (n < 0)
                return (int)n;
            c->ctl_tpos += (size_t)n;
            if (c->ctl_tpos < sizeof c->ctl_tag)
                return CTL_NONE;
        }
        if (!ccl__link_mac_check(c->ctl_mac, c->ctl_hbuf, CCL_HDR_LEN,
                                 c->ctl_payload, c->ctl_h.length, c->ctl_tag))
            return -CCL_ERR_AUTH; /* a link fault: the link is closed */
    }
    c->ctl_hpos = 0; /* the next call starts a new frame */
    c->ctl_tpos = 0;
    return CTL_FRAME;
}

void ccl__master_gone(ccl_comm *c)
{
    if (c->master_fd >= 0) {
        ccl__poller_del(c->poller, c->master_fd);
        ccl__sock_close(c->master_fd);
        c->master_fd = -1;
    }
    /* Ops between peers do not need the master: only the next membership
     * change will. */
    c->master_lost = 1;
}

/* The decoded text of the REJECT frame in c->ctl_payload. */
void ccl__ctl_reject_text(ccl_comm *c, char text[CCL_MAX_ERRMSG + 1])
{
    int code = 0;
    text[0] = 0;
    ccl__errmsg_decode(c->ctl_payload, c->ctl_h.length, &code, text);
}

void ccl__master_link_read(ccl_comm *c)
{
    while (c->master_fd >= 0) {
        int rc = ccl__ctl_step(c);
        if (rc < 0) {
            ccl__master_gone(c);
            return;
        }
        if (rc == CTL_NONE)
            return;
        if (c->ctl_h.type == CCL_FT_REJECT) {
            /* Expelled: remembered, so this and the next update_topology
             * say so instead of trying to come back. */
            char text[CCL_MAX_ERRMSG + 1];
            ccl__ctl_reject_text(c, text);
            snprintf(c->rejected, sizeof c->rejected, "%s",
                     text[0] ? text : "removed from the group");
        }
        if (c->awaiting && c->ctl_h.type != CCL_FT_PENDING) {
            /* The answer to REFORM: left for update_topology, unread
             * bytes after it too. */
            c->answered = 1;
            return;
        }
        if (c->ctl_h.type == CCL_FT_PENDING)
            __atomic_store_n(&c->pending, (int)(c->ctl_h.tag > 1000000 ? 1000000
                                                : c->ctl_h.tag), __ATOMIC_RELEASE);
        /* Anything else outside update_topology is ignored. */
    }
}

/* The event loop saw the control link readable (the caller drives). */
static void ctl_event(ccl__io_handler *h, unsigned events)
{
    ccl__master_link_read((ccl_comm *)((char *)h - offsetof(ccl_comm, master_ev)));
}

void ccl__master_link_watch(ccl_comm *c)
{
    c->master_ev.on_event = ctl_event;
    ccl__sock_set_nonblock(c->master_fd);
    ccl__poller_set(c->poller, c->master_fd, &c->master_ev, CCL_EV_IN, 1);
}

int ccl_comm_peers_pending(ccl_comm *c)
{
    return c ? __atomic_load_n(&c->pending, __ATOMIC_ACQUIRE) : 0;
}
