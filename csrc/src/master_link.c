/*
 * master_link.c - a peer's control link to the master: the HELLO exchange
 * (shared with the mesh), registration and the wait for the GROUP, and
 * coming back to a restarted master (REJOIN).
 */
#include "comm.h"
#include "handshake.h"
#include "sock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

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
    ccl__hello mine;
    ccl__hs hs;
    ccl__hello_fill(&mine, CCL_ROLE_PEER_TO_MASTER, 0, 0xffffffffu, 0, c->uuid);
    char who[320];
    snprintf(who, sizeof who, "the master at %s:%d", c->master_host, c->master_port);
    rc = ccl__handshake(c->master_fd, CCL_SIDE_CONNECTOR, &mine, &c->key,
                        c->cfg.allow_insecure, deadline, who, &hs, err, errlen);
    if (rc)
        return rc == CCL_ERR_VERSION || rc == CCL_ERR_AUTH || rc == CCL_ERR_MISMATCH
                   ? rc
                   : CCL_ERR_MASTER_UNREACHABLE;
    if (hs.theirs.role != CCL_ROLE_MASTER) {
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
        if (rc == CCL_ERR_VERSION || rc == CCL_ERR_PROTOCOL || rc == CCL_ERR_AUTH ||
            rc == CCL_ERR_MISMATCH)
            break;
        ccl__sleep_ms(100);
    }
    ccl__sock_close(c->master_fd);
    c->master_fd = -1;
    return rc == CCL_OK ? CCL_ERR_MASTER_UNREACHABLE : rc;
}

/* Registers with the master and waits for the GROUP message. */
int ccl__join_group(ccl_comm *c, uint64_t deadline, ccl__group_msg *g,
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
