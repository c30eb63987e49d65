/*
 * peer_accept.c - the acceptor of peer_accept.h: the listen socket and the
 * handshakes of the connections it accepted, driven by the event loop.
 *
 * Slots are a fixed array that lives as long as the communicator: an
 * event gathered before a slot was emptied (or given to a newer
 * connection) finds a slot with fd -1 or a live connection, never freed
 * memory; a spurious event on a live connection reads nothing.
 */
#include "peer_accept.h"

#include "handshake.h"
#include "log.h"
#include "sha256.h"
#include "shm_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pa_slot {
    ccl__io_handler ev; /* first: the poller reports to it */
    struct ccl__acceptor *acc;
    int fd;
    int want_out;
    int heard;          /* bytes came from the other end */
    uint64_t started, deadline;
    char addr[80];
    ccl__hsm hs;
} pa_slot;

typedef struct pa_ready {
    int fd;
    uint64_t since;
    char addr[80];
    ccl__hs hs;
} pa_ready;

typedef struct ccl__acceptor {
    ccl__io_handler lev; /* first: the listen socket's handler */
    ccl_comm *c;
    pa_slot slots[PA_SLOTS];
    pa_ready *ready;
    int nready;
    uint64_t evicted;
    /* Why the last connection that claimed to be a member of the group was
     * refused ("" if none): a hint for the mesh's timeout message, never
     * acted on (the claim is unproven when the refusal comes before the
     * proofs). */
    char member_refused[320];
    uint32_t member_refused_epoch; /* the group's epoch at the time */
} ccl__acceptor;

static const char WHO[] = "the connecting end";

static void refused(ccl__acceptor *a, const char *addr, const char *cause)
{
    char me[48];
    snprintf(me, sizeof me, "pyccl rank %u", a->c->group.your_rank);
    ccl__log_refusal(&a->c->refusals, me, addr, cause);
}

static void slot_close(ccl__acceptor *a, pa_slot *s)
{
    if (s->fd < 0)
        return;
    ccl__poller_del(a->c->poller, s->fd);
    ccl__sock_close(s->fd);
    s->fd = -1;
    ccl__hsm_wipe(&s->hs);
}

static void ready_drop(ccl__acceptor *a, int i)
{
    ccl__sock_close(a->ready[i].fd);
    ccl__wipe(&a->ready[i].hs, sizeof a->ready[i].hs);
    a->ready[i] = a->ready[--a->nready];
}

/* The handshake finished: the connection waits for the mesh of its
 * epoch, outside the poller (its next bytes are frames, read by the
 * transport once adopted). */
static void slot_finished(ccl__acceptor *a, pa_slot *s)
{
    if (a->nready == PA_READY_MAX) {
        int old = 0;
        for (int i = 1; i < a->nready; i++)
            if (a->ready[i].since < a->ready[old].since)
                old = i;
        ready_drop(a, old);
    }
    pa_ready *r = &a->ready[a->nready++];
    ccl__poller_del(a->c->poller, s->fd);
    r->fd = s->fd;
    r->since = ccl__now_ms();
    memcpy(r->addr, s->addr, sizeof r->addr);
    r->hs = s->hs.result;
    s->fd = -1;
    ccl__hsm_wipe(&s->hs);
}

/* Writes what the handshake has to say; asks for writability while bytes
 * are left.  0, or a ccl_result. */
static int slot_flush(ccl__acceptor *a, pa_slot *s)
{
    const uint8_t *p;
    size_t n = ccl__hsm_to_write(&s->hs, &p);
    if (n) {
        struct iovec iov = {(void *)p, n};
        long w = ccl__sock_writev_some(s->fd, &iov, 1, NULL, 0);
        if (w < 0)
            return (int)-w;
        ccl__hsm_wrote(&s->hs, (size_t)w);
        n -= (size_t)w;
    }
    int want = n > 0;
    if (want != s->want_out &&
        ccl__poller_set(a->c->poller, s->fd, &s->ev,
                        CCL_EV_IN | (want ? CCL_EV_OUT : 0), 0))
        return CCL_ERR_IO;
    s->want_out = want;
    return CCL_OK;
}

/* A refused handshake whose HELLO names a member of the current group
 * (its uuid) by a setting that differs or a key that fails: remembered
 * for the mesh's error message, so the accepting end of a misconfigured
 * pair says why its mesh did not form, as the connecting end does. */
static void note_member_refusal(ccl__acceptor *a, const pa_slot *s)
{
    const ccl__group_msg *g = &a->c->group;
    const ccl__hello *t = &s->hs.result.theirs;
    if ((s->hs.rc != CCL_ERR_MISMATCH && s->hs.rc != CCL_ERR_AUTH) ||
        !g->members || t->rank >= g->world_size ||
        memcmp(t->uuid, g->members[t->rank].uuid, 16) != 0)
        return;
    snprintf(a->member_refused, sizeof a->member_refused,
             "a connection from %s claiming to be rank %u was refused: %s",
             s->addr, t->rank, s->hs.err + s->hs.cause_at);
    a->member_refused_epoch = g->epoch;
}

/* Moves a handshake on after bytes came or went. */
static void slot_progress(ccl__acceptor *a, pa_slot *s)
{
    if (ccl__hsm_failed(&s->hs)) {
        slot_flush(a, s); /* best effort: "your proof was wrong" */
        refused(a, s->addr, s->hs.err + s->hs.cause_at);
        note_member_refusal(a, s);
        slot_close(a, s);
        return;
    }
    if (slot_flush(a, s) != CCL_OK) {
        slot_close(a, s);
        return;
    }
    if (ccl__hsm_done(&s->hs))
        slot_finished(a, s);
}

static void slot_event(ccl__io_handler *h, unsigned events)
{
    pa_slot *s = (pa_slot *)h;
    ccl__acceptor *a = s->acc;
    (void)events;
    while (s->fd >= 0) {
        uint8_t *p;
        size_t want = ccl__hsm_to_read(&s->hs, &p);
        if (want == 0) {
            slot_progress(a, s); /* its last bytes may still be going out */
            return;
        }
        long n = ccl__sock_read_some(s->fd, p, want, NULL, 0);
        if (n < 0) {
            slot_close(a, s);
            return;
        }
        if (n == 0)
            return;
        s->heard = 1;
        ccl__hsm_read(&s->hs, (size_t)n);
        slot_progress(a, s);
    }
}

/* Closes handshakes past their deadline and ready connections that
 * waited too long. */
static void sweep(ccl__acceptor *a, uint64_t now)
{
    ccl__log_refusal_tick(&a->c->refusals, now);
    for (int i = 0; i < PA_SLOTS; i++) {
        pa_slot *s = &a->slots[i];
        if (s->fd >= 0 && now > s->deadline) {
            refused(a, s->addr, "the handshake did not finish in time");
            slot_close(a, s);
        }
    }
    for (int i = a->nready - 1; i >= 0; i--)
        if (now > a->ready[i].since && now - a->ready[i].since > PA_READY_MS)
            ready_drop(a, i);
}

/* Whether addr (host:port) comes from host of other (host:port). */
static int same_host(const char *addr, const char *other)
{
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    return strncmp(addr, other, hl) == 0 && (other[hl] == ':' || other[hl] == 0);
}

/* Which slot a newcomer from addr gets: a free one while the caps allow,
 * else the one whose connection has shown the least (silent first, then
 * the oldest), among those of its own address when that cap is full. */
static pa_slot *slot_for(ccl__acceptor *a, const char *addr)
{
    int same = 0;
    pa_slot *free_slot = NULL;
    for (int i = 0; i < PA_SLOTS; i++) {
        pa_slot *s = &a->slots[i];
        if (s->fd < 0) {
            if (!free_slot)
                free_slot = s;
        } else {
            same += same_host(addr, s->addr);
        }
    }
    int mine_only = same >= PA_PER_ADDR;
    if (free_slot && !mine_only)
        return free_slot;
    pa_slot *victim = NULL;
    for (int i = 0; i < PA_SLOTS; i++) {
        pa_slot *s = &a->slots[i];
        if (s->fd < 0 || (mine_only && !same_host(addr, s->addr)))
            continue;
        if (!victim || s->heard < victim->heard ||
            (s->heard == victim->heard && s->started < victim->started))
            victim = s;
    }
    if (victim) {
        refused(a, victim->addr, "pushed out of the handshake by newer "
                "connections (too many at once)");
        slot_close(a, victim);
        a->evicted++;
    }
    return victim;
}

static void hello_mine(ccl_comm *c, ccl__hello *mine)
{
    /* Our epoch and rank as they are now: a connection may come for the
     * next epoch before we know it, and the connector checks only who we
     * are (the uuid); whether its epoch is the mesh's is checked when the
     * mesh takes it. */
    ccl__hello_fill(mine, CCL_ROLE_PEER_TO_PEER, c->group.epoch,
                    c->group.members ? c->group.your_rank : 0xffffffffu, 0,
                    c->uuid);
    if (c->cfg.frame_mac)
        mine->flags |= CCL_HELLO_FRAME_MAC;
    if (c->cfg.encrypt)
        mine->flags |= CCL_HELLO_ENCRYPT;
    if (c->cfg.shm)
        mine->flags |= CCL_HELLO_SHM;
}

static void on_listen(ccl__io_handler *h, unsigned events)
{
    ccl__acceptor *a = (ccl__acceptor *)h;
    ccl_comm *c = a->c;
    (void)events;
    uint64_t now = ccl__now_ms();
    sweep(a, now);
    /* A small batch per event (a quarter of the slots), so that the loop
     * reads the connections it has between batches: a member's HELLO
     * must be seen before the flood behind it could push it out. */
    for (int n = 0; n < PA_SLOTS / 4; n++) {
        int fd = -1;
        char addr[80] = "";
        if (ccl__sock_accept_now(c->listen_fd, &fd, addr, sizeof addr) || fd < 0)
            return; /* EMFILE and friends: the next event tries again */
        pa_slot *s = slot_for(a, addr);
        if (!s) { /* cannot happen: a full table always has a victim */
            ccl__sock_close(fd);
            continue;
        }
        ccl__hello mine;
        hello_mine(c, &mine);
        memset(&s->hs, 0, sizeof s->hs);
        s->fd = fd;
        s->want_out = 0;
        s->heard = 0;
        s->started = now;
        s->deadline = now + PA_HS_MS;
        snprintf(s->addr, sizeof s->addr, "%s", addr);
        if (ccl__hsm_start(&s->hs, CCL_SIDE_ACCEPTOR, &mine, &c->key,
                           c->cfg.allow_insecure, ccl__sock_peer_is_loopback(fd),
                           CCL_ROLE_PEER_TO_PEER, WHO) ||
            ccl__poller_set(c->poller, fd, &s->ev, CCL_EV_IN, 1)) {
            ccl__sock_close(fd);
            s->fd = -1;
            ccl__hsm_wipe(&s->hs);
            continue;
        }
        slot_progress(a, s); /* our HELLO goes out at once */
        if (s->fd >= 0)
            slot_event(&s->ev, CCL_EV_IN); /* its HELLO may be here already */
    }
}

int ccl__acceptor_start(ccl_comm *c)
{
    ccl__acceptor *a = calloc(1, sizeof *a);
    if (!a)
        return CCL_ERR_NOMEM;
    a->ready = calloc(PA_READY_MAX, sizeof *a->ready);
    if (!a->ready) {
        free(a);
        return CCL_ERR_NOMEM;
    }
    a->c = c;
    a->lev.on_event = on_listen;
    for (int i = 0; i < PA_SLOTS; i++) {
        a->slots[i].ev.on_event = slot_event;
        a->slots[i].acc = a;
        a->slots[i].fd = -1;
    }
    if (ccl__sock_set_nonblock(c->listen_fd) ||
        ccl__poller_set(c->poller, c->listen_fd, &a->lev, CCL_EV_IN, 1)) {
        free(a->ready);
        free(a);
        return CCL_ERR_IO;
    }
    c->acceptor = a;
    return CCL_OK;
}

void ccl__acceptor_free(ccl_comm *c)
{
    ccl__acceptor *a = c->acceptor;
    if (!a)
        return;
    for (int i = 0; i < PA_SLOTS; i++)
        slot_close(a, &a->slots[i]);
    while (a->nready)
        ready_drop(a, a->nready - 1);
    free(a->ready);
    free(a);
    c->acceptor = NULL;
}

/* Whether a handshaken connection's HELLO is one the mesh expects. */
static int expected(ccl_comm *c, const ccl__hello *t)
{
    const ccl__group_msg *g = &c->group;
    return t->role == CCL_ROLE_PEER_TO_PEER && t->epoch == g->epoch &&
           t->rank > g->your_rank && t->rank < g->world_size &&
           memcmp(t->uuid, g->members[t->rank].uuid, 16) == 0 &&
           ccl__xport_wants(c->xp, (int)t->rank, (int)t->conn_index);
}

const char *ccl__acceptor_member_refused(const ccl_comm *c)
{
    const ccl__acceptor *a = c->acceptor;
    return a && a->member_refused_epoch == c->group.epoch ? a->member_refused
                                                          : "";
}

int ccl__acceptor_take(ccl_comm *c, char *err, size_t errlen)
{
    ccl__acceptor *a = c->acceptor;
    int adopted = 0;
    sweep(a, ccl__now_ms());
    for (int i = a->nready - 1; i >= 0; i--) {
        pa_ready *r = &a->ready[i];
        const ccl__hello *t = &r->hs.theirs;
        if (t->epoch > c->group.epoch)
            continue; /* for a later epoch: keep it */
        if (!expected(c, t)) {
            char me[48];
            snprintf(me, sizeof me, "pyccl rank %u", c->group.your_rank);
            ccl__log_refusal(&c->refusals, me, r->addr, "not a member of this "
                             "group (or of an old epoch)");
            ready_drop(a, i);
            continue;
        }
        ccl__shm *shm = NULL;
        if (ccl__shm_wanted(c->cfg.shm, &r->hs, t->conn_index)) {
            /* The connector sent its offer right after the handshake:
             * it is here already, or a round trip away. */
            char why[300] = "", e[300];
            int src = ccl__shm_setup_accept(r->fd, &r->hs, ccl__now_ms() + PA_HS_MS,
                                            &shm, why, sizeof why, e, sizeof e);
            if (src) {
                ccl__log(CCL_LOG_WARNING, "rank %u, epoch %u: connection from "
                         "rank %u dropped: %s", c->group.your_rank,
                         c->group.epoch, t->rank, e);
                ready_drop(a, i);
                continue;
            }
            if (!shm)
                ccl__log(CCL_LOG_INFO, "rank %u, epoch %u: connection from rank "
                         "%u stays on TCP (shared memory %s)", c->group.your_rank,
                         c->group.epoch, t->rank, why);
        }
        int rc = ccl__xport_adopt(c->xp, (int)t->rank, (int)t->conn_index, r->fd,
                                  &r->hs, c->cfg.frame_mac, c->cfg.encrypt, shm,
                                  err, errlen);
        if (rc) {
            ccl__shm_free(shm);
            return -rc;
        }
        ccl__wipe(&r->hs, sizeof r->hs);
        a->ready[i] = a->ready[--a->nready];
        adopted++;
    }
    return adopted;
}

void ccl__acceptor_counts(ccl_comm *c, int *handshaking, int *ready,
                          uint64_t *evicted)
{
    ccl__acceptor *a = c->acceptor;
    int n = 0;
    for (int i = 0; a && i < PA_SLOTS; i++)
        n += a->slots[i].fd >= 0;
    if (handshaking)
        *handshaking = n;
    if (ready)
        *ready = a ? a->nready : 0;
    if (evicted)
        *evicted = a ? a->evicted : 0;
}
