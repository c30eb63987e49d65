/*
 * master.c - the coordinator of one run.  It moves no tensor data.
 *
 * Forming the first group: peers connect, exchange HELLO, send REGISTER
 * and wait.  When `world_size` compatible peers are waiting, the master
 * fixes ranks (wanted ranks first, the rest in arrival order), sets epoch
 * 1 and sends each its GROUP.  They are now members.
 *
 * Membership changes happen only at safe points.  A peer that registers
 * while a run is going on is a joiner: it waits, and every member is told
 * how many joiners wait (PENDING).  When members call update_topology they
 * send REFORM with the ranks they lost; the master waits until every live
 * member has sent it (or the wait the first one asked for has passed:
 * members that stay silent are dropped), then answers NOCHANGE when nothing
 * changed, or forms the next epoch: survivors keep their order, joiners
 * follow in arrival order.  A member whose control connection ends is
 * gone.  When the last member is gone the run ends, and the next peers
 * form a new first group.
 *
 * A restarted master knows nothing.  Members notice the lost link, keep
 * running ops among themselves, and at their next update_topology
 * reconnect with REJOIN (epoch, rank, world size): the first one makes the
 * master adopt that epoch, the reform then waits for the others (or its
 * deadline) and goes on as usual.
 *
 * One thread runs an event loop over nonblocking sockets.  Untrusted input
 * is bounded: a connection must finish HELLO and REGISTER within
 * HANDSHAKE_MS, frames are capped by the codec before anything is read
 * into the fixed per-connection buffer, and connections are capped.
 */
#include "auth.h"
#include "ccl.h"
#include "handshake.h"
#include "log.h"
#include "sock.h"
#include "wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HANDSHAKE_MS 10000
/* How long an accused member that has not reported yet is waited for: a
 * live one answers within a round trip; a hung one would hold the reform
 * up for nothing. */
#define ACCUSED_GRACE_MS 250
#define MAX_CONNS 4096
/* Connections from one address that may be in the handshake at once: a
 * host flooding the master cannot crowd out peers from other hosts. */
#define MAX_HANDSHAKING_PER_ADDR 64
#define SEND_MS 2000
#define IN_CAP (12 + 4 * CCL_MAX_WORLD)

enum mphase { P_HELLO, P_PROOF, P_REGISTER, P_WAITING, P_MEMBER };

typedef struct mconn {
    struct mconn *next;
    int fd;
    int phase;
    char addr[80];
    uint64_t deadline_ms;
    uint8_t hello_mine[CCL_HELLO_LEN];   /* the handshake transcript */
    uint8_t hello_theirs[CCL_HELLO_LEN];
    /* frame reader: a header, then its payload */
    int in_payload;
    size_t have, need;
    ccl__hdr h;
    uint8_t in[IN_CAP];
    /* registration and membership */
    ccl__register_msg reg;
    uint64_t order;
    uint32_t rank;
    int reported; /* sent REFORM for the current epoch */
    /* Another member reported losing this one during the current reform;
     * it is dropped at the end unless it speaks up and its accuser turns
     * out to be the one at fault (expelled). */
    int accused;
    uint32_t accuser;     /* rank of the (last) member that reported it */
    uint64_t accused_ms;  /* when */
} mconn;

struct ccl_master {
    ccl__key key;         /* len 0: no key, loopback peers only */
    int allow_insecure;
    ccl__log_once refusals;
    int lfd, poller, wakefd, port;
    pthread_t thread;
    int stop;
    uint32_t epoch;
    uint64_t arrivals;
    mconn *conns;
    int nconns;
    int members;          /* peers in the current epoch */
    int reforming;
    uint64_t reform_deadline_ms;
    int lost_any;         /* a member was lost since the last epoch */
    int expected;         /* rebuilding after a restart: members the run had */
    int last_pending_sent;
    /* Identities expelled during this run: refused if they come back. */
    uint8_t expelled[64][16];
    int nexpelled;
};

static int listen_marker;

void ccl_master_config_init(ccl_master_config *cfg)
{
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->key = NULL;
    cfg->key_len = 0;
    cfg->allow_insecure = 0;
}

static void send_frame(ccl_master *m, mconn *k, int type, uint64_t tag,
                       const uint8_t *payload, size_t len);

static void mconn_close(ccl_master *m, mconn *k)
{
    mconn **pp = &m->conns;
    while (*pp && *pp != k)
        pp = &(*pp)->next;
    if (*pp)
        *pp = k->next;
    if (k->phase == P_MEMBER) {
        m->members--;
        m->lost_any = 1;
    }
    ccl__poller_del(m->poller, k->fd);
    ccl__sock_close(k->fd);
    m->nconns--;
    free(k);
}

static int conn_listed(ccl_master *m, mconn *k)
{
    for (mconn *o = m->conns; o; o = o->next)
        if (o == k)
            return 1;
    return 0;
}

/* Sends a whole frame; a peer that cannot take a small frame within
 * SEND_MS is dropped rather than allowed to stall the master. */
static void send_frame(ccl_master *m, mconn *k, int type, uint64_t tag,
                       const uint8_t *payload, size_t len)
{
    uint8_t hdr[CCL_HDR_LEN];
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.epoch = m->epoch;
    h.tag = tag;
    h.length = (uint32_t)len;
    ccl__hdr_encode(hdr, &h);
    uint64_t dl = ccl__now_ms() + SEND_MS;
    if (ccl__sock_send_all(k->fd, hdr, sizeof hdr, dl, NULL, 0) ||
        (len && ccl__sock_send_all(k->fd, payload, len, dl, NULL, 0)))
        mconn_close(m, k);
}

static void reject(ccl_master *m, mconn *k, int code, const char *msg)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG];
    size_t n = ccl__errmsg_encode(buf, sizeof buf, code, msg);
    send_frame(m, k, CCL_FT_REJECT, 0, buf, n);
    if (conn_listed(m, k))
        mconn_close(m, k);
}

static int count_phase(ccl_master *m, int phase)
{
    int n = 0;
    for (mconn *k = m->conns; k; k = k->next)
        n += k->phase == phase;
    return n;
}

/* Tells every member how many joiners wait, when that number changed. */
static void announce_pending(ccl_master *m)
{
    if (m->members == 0)
        return;
    int n = count_phase(m, P_WAITING);
    if (n == m->last_pending_sent)
        return;
    m->last_pending_sent = n;
    mconn *k = m->conns;
    while (k) {
        mconn *next = k->next;
        if (k->phase == P_MEMBER)
            send_frame(m, k, CCL_FT_PENDING, (uint64_t)n, NULL, 0);
        k = next;
    }
}

/* Sends GROUP for a new epoch to the peers in byrank[0..world). */
static void send_groups(ccl_master *m, mconn **byrank, uint32_t world)
{
    ccl__member *mem = calloc(world, sizeof *mem);
    size_t cap = 16 + (size_t)world * (20 + CCL_MAX_HOST);
    uint8_t *buf = malloc(cap);
    if (!mem || !buf) {
        free(mem);
        free(buf);
        return;
    }
    __atomic_add_fetch(&m->epoch, 1, __ATOMIC_RELEASE);
    for (uint32_t r = 0; r < world; r++) {
        mem[r].port = byrank[r]->reg.listen_port;
        memcpy(mem[r].uuid, byrank[r]->reg.uuid, 16);
        memcpy(mem[r].host, byrank[r]->reg.host, sizeof mem[r].host);
        if (byrank[r]->phase != P_MEMBER)
            m->members++;
        byrank[r]->phase = P_MEMBER;
        byrank[r]->rank = r;
        byrank[r]->reported = 0;
        byrank[r]->accused = 0;
    }
    for (uint32_t r = 0; r < world; r++) {
        ccl__group_msg g;
        g.epoch = m->epoch;
        g.world_size = world;
        g.your_rank = r;
        g.conns_per_peer = byrank[0]->reg.conns_per_peer;
        g.members = mem;
        size_t len = ccl__group_encode(buf, cap, &g);
        if (len)
            send_frame(m, byrank[r], CCL_FT_GROUP, 0, buf, len);
    }
    m->lost_any = 0;
    m->last_pending_sent = 0;
    free(mem);
    free(buf);
}

static void sort_by_order(mconn **v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j]->order < v[j - 1]->order; j--) {
            mconn *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

/* The first group of a run: `world_size` waiting peers.  Peers that
 * waited through a run may disagree (they registered while another run
 * was on, unchecked): the earliest sets the world size, and a later one
 * that conflicts with it (other world size, a rank already wanted) is
 * refused rather than allowed to corrupt the group. */
static void maybe_form_first(ccl_master *m)
{
    if (m->members > 0)
        return;
    mconn *pend[CCL_MAX_WORLD];
    int n = 0;
    for (mconn *k = m->conns; k; k = k->next)
        if (k->phase == P_WAITING && n < CCL_MAX_WORLD)
            pend[n++] = k;
    if (n == 0)
        return;
    sort_by_order(pend, n);
    uint32_t world = pend[0]->reg.world_size;
    if ((uint32_t)n < world)
        return;
    mconn **byrank = calloc(world, sizeof *byrank);
    mconn **any = calloc((size_t)n, sizeof *any);
    if (!byrank || !any) {
        free(byrank);
        free(any);
        return;
    }
    uint32_t placed = 0;
    int nany = 0;
    for (int i = 0; i < n; i++) {
        mconn *k = pend[i];
        if (k->reg.world_size != world) {
            reject(m, k, CCL_ERR_MISMATCH, "world_size differs from the peers "
                   "that waited before it");
        } else if (k->reg.rank >= 0 && byrank[k->reg.rank]) {
            reject(m, k, CCL_ERR_MISMATCH, "that rank is already wanted by "
                   "another waiting peer");
        } else if (k->reg.rank >= 0) {
            byrank[k->reg.rank] = k;
            placed++;
        } else {
            any[nany++] = k;
        }
    }
    if (placed + (uint32_t)nany >= world) {
        uint32_t next = 0;
        for (int i = 0; i < nany && placed < world; i++) {
            while (byrank[next])
                next++;
            byrank[next] = any[i];
            placed++;
        }
        send_groups(m, byrank, world);
    }
    free(byrank);
    free(any);
}

/* Ends a reform when every live member reported, or at its deadline. */
static void maybe_finish_reform(ccl_master *m)
{
    if (!m->reforming)
        return;
    int missing = 0;
    uint64_t now = ccl__now_ms();
    for (mconn *k = m->conns; k; k = k->next)
        missing += k->phase == P_MEMBER && !k->reported &&
                   (!k->accused || now < k->accused_ms + ACCUSED_GRACE_MS);
    /* After a restart, members that have not come back yet count too. */
    if (m->expected > m->members)
        missing += m->expected - m->members;
    if (missing && ccl__now_ms() < m->reform_deadline_ms)
        return;
    /* Silent members are dropped: they are stopped, hung or cut off. */
    mconn *k = m->conns;
    while (k) {
        mconn *next = k->next;
        if (k->phase == P_MEMBER && !k->reported)
            mconn_close(m, k);
        k = next;
    }
    /* So are members another member lost, unless that accuser is gone
     * itself (expelled, or lost): then the accusation is void.  Walking
     * in rank order makes mutual accusations (a cut link between two
     * live members) end the same way every time: the lower rank goes. */
    mconn **ranked = calloc(CCL_MAX_WORLD, sizeof *ranked);
    for (k = m->conns; ranked && k; k = k->next)
        if (k->phase == P_MEMBER && k->rank < CCL_MAX_WORLD)
            ranked[k->rank] = k;
    for (uint32_t r = 0; ranked && r < CCL_MAX_WORLD; r++) {
        mconn *o = ranked[r];
        if (o && o->accused && o->accuser < CCL_MAX_WORLD && ranked[o->accuser]) {
            ranked[r] = NULL;
            mconn_close(m, o);
        }
    }
    /* Without memory for the table, every accusation stands. */
    for (k = m->conns; !ranked && k;) {
        mconn *next = k->next;
        if (k->phase == P_MEMBER && k->accused)
            mconn_close(m, k);
        k = next;
    }
    free(ranked);
    m->reforming = 0;
    if (m->expected > m->members)
        m->lost_any = 1; /* some never came back */
    m->expected = 0;
    int joiners = count_phase(m, P_WAITING);
    if (m->members == 0)
        return;
    if (!m->lost_any && joiners == 0) {
        k = m->conns;
        while (k) {
            mconn *next = k->next;
            if (k->phase == P_MEMBER) {
                k->reported = 0;
                k->accused = 0;
                send_frame(m, k, CCL_FT_NOCHANGE, 0, NULL, 0);
            }
            k = next;
        }
        return;
    }
    int world = m->members + joiners;
    if (world > CCL_MAX_WORLD)
        world = CCL_MAX_WORLD;
    mconn **byrank = calloc((size_t)world, sizeof *byrank);
    mconn **join = calloc((size_t)joiners + 1, sizeof *join);
    if (!byrank || !join) {
        free(byrank);
        free(join);
        return;
    }
    int n = 0, nj = 0;
    /* Survivors keep their relative order: old rank order. */
    for (uint32_t r = 0; r < CCL_MAX_WORLD && n < m->members; r++)
        for (k = m->conns; k; k = k->next)
            if (k->phase == P_MEMBER && k->rank == r)
                byrank[n++] = k;
    for (k = m->conns; k; k = k->next)
        if (k->phase == P_WAITING)
            join[nj++] = k;
    sort_by_order(join, nj);
    for (int i = 0; i < nj && n < world; i++)
        byrank[n++] = join[i];
    send_groups(m, byrank, (uint32_t)n);
    free(byrank);
    free(join);
}

static void on_reform(ccl_master *m, mconn *k)
{
    ccl__reform_msg *msg = malloc(sizeof *msg); /* 16 KiB: not on the stack */
    if (!msg)
        return; /* the member times out and retries */
    if (ccl__reform_decode(k->in, k->h.length, msg) != 0) {
        free(msg);
        reject(m, k, CCL_ERR_PROTOCOL, "malformed REFORM");
        return;
    }
    if (msg->epoch != m->epoch) {
        free(msg);
        reject(m, k, CCL_ERR_REJECTED, "REFORM for an epoch that is over: this "
               "peer was removed from the group");
        return;
    }
    k->reported = 1;
    if (!m->reforming) {
        m->reforming = 1;
        uint32_t wait = msg->wait_ms ? msg->wait_ms : 1;
        m->reform_deadline_ms = ccl__now_ms() + wait;
    }
    /* The ranks this member lost are gone for everyone: at once if it says
     * they broke the protocol, else at the end of the reform unless they
     * clear themselves (see maybe_finish_reform). */
    for (uint32_t i = 0; i < msg->nlost; i++) {
        mconn *o = m->conns;
        while (o) {
            mconn *next = o->next;
            if (o != k && o->phase == P_MEMBER && o->rank == msg->lost[i]) {
                if (msg->expel[i]) {
                    char why[200];
                    snprintf(why, sizeof why, "expelled member rank %u: rank %u "
                             "reports that it broke the protocol", o->rank,
                             k->rank);
                    ccl__log_refusal(&m->refusals, "pyccl master", o->addr, why);
                    if (m->nexpelled < 64)
                        memcpy(m->expelled[m->nexpelled++], o->reg.uuid, 16);
                    /* It learns why at its next update_topology. */
                    snprintf(why, sizeof why, "this peer was expelled: rank %u "
                             "reports that it broke the protocol (malformed "
                             "frames or failed frame MACs)", k->rank);
                    reject(m, o, CCL_ERR_REJECTED, why);
                } else {
                    o->accused = 1;
                    o->accuser = k->rank;
                    o->accused_ms = ccl__now_ms();
                }
            }
            o = next;
        }
    }
    free(msg);
    maybe_finish_reform(m);
}

static void on_register(ccl_master *m, mconn *k)
{
    if (ccl__register_decode(k->in, k->h.length, &k->reg) != 0) {
        reject(m, k, CCL_ERR_PROTOCOL, "malformed REGISTER");
        return;
    }
    if (m->members == 0 && m->expected == 0) {
        for (mconn *o = m->conns; o; o = o->next) {
            if (o == k || o->phase != P_WAITING)
                continue;
            if (o->reg.world_size != k->reg.world_size) {
                char msg[160];
                snprintf(msg, sizeof msg, "world_size %u differs from %u of the "
                         "peers already waiting", k->reg.world_size,
                         o->reg.world_size);
                reject(m, k, CCL_ERR_MISMATCH, msg);
                return;
            }
            if (k->reg.rank >= 0 && o->reg.rank == k->reg.rank) {
                char msg[120];
                snprintf(msg, sizeof msg, "rank %d is already taken", k->reg.rank);
                reject(m, k, CCL_ERR_MISMATCH, msg);
                return;
            }
        }
    }
    k->phase = P_WAITING;
    k->order = m->arrivals++;
    if (m->members == 0 && m->expected == 0)
        maybe_form_first(m);
    else
        announce_pending(m); /* a joiner: admitted at the next safe point */
}

/* A member of a running group comes back: this master was restarted (it
 * knows nothing and rebuilds its view from the members), or the member's
 * control link broke.  Either way it continues with its rank. */
static void on_rejoin(ccl_master *m, mconn *k)
{
    uint32_t epoch = 0;
    if (ccl__rejoin_decode(k->in, k->h.length, &epoch, &k->reg) != 0) {
        reject(m, k, CCL_ERR_PROTOCOL, "malformed REJOIN");
        return;
    }
    if (m->members == 0 && !m->reforming && count_phase(m, P_WAITING) == 0 &&
        epoch >= m->epoch) {
        /* A fresh master: adopt the run this member belongs to. */
        __atomic_store_n(&m->epoch, epoch, __ATOMIC_RELEASE);
        m->expected = (int)k->reg.world_size;
    }
    if (epoch != m->epoch) {
        reject(m, k, CCL_ERR_REJECTED, "REJOIN for an epoch that is over: this "
               "peer was removed from the group");
        return;
    }
    for (int i = 0; i < m->nexpelled; i++)
        if (memcmp(m->expelled[i], k->reg.uuid, 16) == 0) {
            reject(m, k, CCL_ERR_REJECTED, "this peer was expelled for breaking "
                   "the protocol");
            return;
        }
    for (mconn *o = m->conns; o; o = o->next)
        if (o != k && o->phase == P_MEMBER && o->rank == (uint32_t)k->reg.rank) {
            reject(m, k, CCL_ERR_REJECTED, "that rank is held by another member");
            return;
        }
    k->phase = P_MEMBER;
    k->rank = (uint32_t)k->reg.rank;
    k->reported = 0;
    k->order = m->arrivals++;
    m->members++;
}

static void on_frame(ccl_master *m, mconn *k)
{
    int t = k->h.type;
    if (t == CCL_FT_REGISTER && k->phase == P_REGISTER)
        on_register(m, k);
    else if (t == CCL_FT_REJOIN && k->phase == P_REGISTER)
        on_rejoin(m, k);
    else if (t == CCL_FT_REFORM && k->phase == P_MEMBER)
        on_reform(m, k);
    else if (t == CCL_FT_HEARTBEAT)
        ;
    else
        reject(m, k, CCL_ERR_PROTOCOL, "unexpected frame on the control link");
}

static void refuse(ccl_master *m, mconn *k, const char *cause)
{
    ccl__log_refusal(&m->refusals, "pyccl master", k->addr, cause);
    mconn_close(m, k);
}

/* One step of the handshake, when k->need bytes are in: the HELLO's
 * version prefix, the rest of the HELLO, then (with a key) the peer's
 * proof.  Returns 0 if the connection was closed. */
static int handshake_step(ccl_master *m, mconn *k)
{
    char why[400];
    if (k->phase == P_HELLO && k->need == CCL_HELLO_PREFIX_LEN) {
        uint16_t version = 0;
        int rc = ccl__hello_check_prefix(k->in, &version);
        if (rc == CCL_ERR_VERSION) {
            /* The peer already has our HELLO and names the mismatch on its
             * side. */
            snprintf(why, sizeof why, "it speaks protocol version %u, we speak %u",
                     version, CCL_PROTOCOL_VERSION);
            refuse(m, k, why);
            return 0;
        }
        if (rc) {
            refuse(m, k, "not a pyccl peer (bad hello)");
            return 0;
        }
        k->need = CCL_HELLO_LEN;
        return 1;
    }
    if (k->phase == P_HELLO) {
        ccl__hello mine, theirs;
        memcpy(k->hello_theirs, k->in, CCL_HELLO_LEN);
        if (ccl__hello_decode(k->hello_theirs, &theirs) ||
            theirs.role != CCL_ROLE_PEER_TO_MASTER) {
            refuse(m, k, "not a pyccl peer (bad hello)");
            return 0;
        }
        ccl__hello_decode(k->hello_mine, &mine);
        int rc = ccl__auth_policy(m->key.len > 0, &mine, &theirs,
                                  ccl__sock_peer_is_loopback(k->fd),
                                  m->allow_insecure, "the peer", why, sizeof why);
        if (rc) {
            refuse(m, k, why);
            return 0;
        }
        k->have = 0;
        if (m->key.len) {
            k->phase = P_PROOF;
            k->need = CCL_PROOF_LEN;
        } else {
            k->phase = P_REGISTER;
            k->need = CCL_HDR_LEN;
        }
        return 1;
    }
    /* P_PROOF: the peer is the connector, we the acceptor. */
    uint8_t answer[CCL_PROOF_LEN];
    int good = ccl__auth_verify(&m->key, CCL_SIDE_CONNECTOR, k->hello_theirs,
                                k->hello_mine, k->in);
    if (good)
        ccl__auth_proof(&m->key, CCL_SIDE_ACCEPTOR, k->hello_theirs, k->hello_mine,
                        answer);
    else
        memset(answer, 0, sizeof answer); /* "your proof was wrong" */
    int sent = ccl__sock_send_all(k->fd, answer, sizeof answer,
                                  ccl__now_ms() + SEND_MS, NULL, 0) == 0;
    if (!good) {
        refuse(m, k, "authentication failed: wrong key, or a replayed handshake");
        return 0;
    }
    if (!sent) {
        mconn_close(m, k);
        return 0;
    }
    k->phase = P_REGISTER;
    k->have = 0;
    k->need = CCL_HDR_LEN;
    return 1;
}

/* Reads what arrived on a control connection and advances its state. */
static void on_readable(ccl_master *m, mconn *k)
{
    for (int frames = 0; frames < 64; frames++) {
        long n = ccl__sock_read_some(k->fd, k->in + k->have, k->need - k->have,
                                     NULL, 0);
        if (n < 0) {
            mconn_close(m, k);
            return;
        }
        if (n == 0 && k->need > k->have)
            return;
        k->have += (size_t)n;
        if (k->have < k->need)
            continue;
        if (k->phase == P_HELLO || k->phase == P_PROOF) {
            if (!handshake_step(m, k))
                return;
            continue;
        } else if (!k->in_payload) {
            if (ccl__hdr_decode(k->in, &k->h) != 0 || k->h.length > IN_CAP) {
                reject(m, k, CCL_ERR_PROTOCOL, "malformed frame on the control link");
                return;
            }
            if (k->h.length > 0) {
                k->in_payload = 1;
                k->have = 0;
                k->need = k->h.length;
                continue;
            }
            on_frame(m, k);
        } else {
            on_frame(m, k);
        }
        if (!conn_listed(m, k))
            return;
        k->in_payload = 0;
        k->have = 0;
        k->need = CCL_HDR_LEN;
    }
}

static void on_accept(ccl_master *m)
{
    for (;;) {
        int fd = -1;
        char addr[80] = "";
        if (ccl__sock_accept_now(m->lfd, &fd, addr, sizeof addr) || fd < 0)
            return;
        if (m->nconns >= MAX_CONNS) {
            ccl__log_refusal(&m->refusals, "pyccl master", addr,
                             "too many connections");
            ccl__sock_close(fd);
            continue;
        }
        const char *colon = strrchr(addr, ':');
        size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
        int same = 0;
        for (mconn *o = m->conns; o; o = o->next)
            same += o->phase < P_WAITING && strncmp(o->addr, addr, hl) == 0 &&
                    (o->addr[hl] == ':' || o->addr[hl] == 0);
        if (same >= MAX_HANDSHAKING_PER_ADDR) {
            ccl__log_refusal(&m->refusals, "pyccl master", addr,
                             "too many connections in the handshake from this "
                             "address");
            ccl__sock_close(fd);
            continue;
        }
        mconn *k = calloc(1, sizeof *k);
        if (!k) {
            ccl__sock_close(fd);
            continue;
        }
        k->fd = fd;
        snprintf(k->addr, sizeof k->addr, "%s", addr);
        k->phase = P_HELLO;
        k->need = CCL_HELLO_PREFIX_LEN;
        k->deadline_ms = ccl__now_ms() + HANDSHAKE_MS;
        ccl__hello h;
        memset(&h, 0, sizeof h);
        h.version = CCL_PROTOCOL_VERSION;
        h.role = CCL_ROLE_MASTER;
        h.rank = 0xffffffffu;
        h.flags = m->key.len ? CCL_HELLO_AUTH : 0;
        if (ccl__random_bytes(h.nonce, sizeof h.nonce)) {
            ccl__sock_close(fd);
            free(k);
            continue;
        }
        ccl__hello_encode(k->hello_mine, &h);
        if (ccl__sock_send_all(fd, k->hello_mine, CCL_HELLO_LEN,
                               ccl__now_ms() + SEND_MS, NULL, 0) ||
            ccl__poller_set(m->poller, fd, k, CCL_EV_IN, 1)) {
            ccl__sock_close(fd);
            free(k);
            continue;
        }
        k->next = m->conns;
        m->conns = k;
        m->nconns++;
    }
}

static void on_timer(ccl_master *m)
{
    uint64_t now = ccl__now_ms();
    mconn *k = m->conns;
    while (k) {
        mconn *next = k->next;
        if (k->phase < P_WAITING && now > k->deadline_ms)
            mconn_close(m, k);
        k = next;
    }
    maybe_finish_reform(m);
    if (m->members == 0 && m->expected == 0)
        maybe_form_first(m); /* the run ended: waiting peers start anew */
    announce_pending(m);
}

static void *master_main(void *arg)
{
    ccl_master *m = arg;
    ccl__event evs[64];
    while (!__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE)) {
        int n = ccl__poller_wait(m->poller, evs, 64, m->reforming ? 20 : 500);
        for (int i = 0; i < n; i++) {
            if (evs[i].ptr == NULL)
                ccl__wakefd_drain(m->wakefd);
            else if (evs[i].ptr == &listen_marker)
                on_accept(m);
            else if (conn_listed(m, evs[i].ptr))
                /* (an earlier event of this batch may have closed it) */
                on_readable(m, evs[i].ptr);
        }
        on_timer(m);
    }
    return NULL;
}

int ccl_master_create(const ccl_master_config *cfg, ccl_master **out, char *err,
                      size_t errlen)
{
    char dummy[2];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    if (!out)
        return CCL_ERR_INVALID_ARG;
    *out = NULL;
    ccl_master_config def;
    ccl_master_config_init(&def);
    if (!cfg)
        cfg = &def;
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "port out of range");
        return CCL_ERR_INVALID_ARG;
    }
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    int have_key = cfg->key && cfg->key_len;
    int rc = ccl__insecure_check(have_key, cfg->allow_insecure, host, NULL, err,
                                 errlen);
    if (rc)
        return rc;
    ccl_master *m = calloc(1, sizeof *m);
    if (!m)
        return CCL_ERR_NOMEM;
    rc = ccl__key_set(&m->key, cfg->key, cfg->key_len, err, errlen);
    if (rc) {
        free(m);
        return rc;
    }
    m->allow_insecure = cfg->allow_insecure;
    m->lfd = m->poller = m->wakefd = -1;
    rc = ccl__sock_listen(host, cfg->port,
                              1024, &m->lfd, &m->port, err, errlen);
    if (!rc && (ccl__poller_create(&m->poller) || ccl__wakefd_create(&m->wakefd) ||
                ccl__poller_set(m->poller, m->lfd, &listen_marker, CCL_EV_IN, 1) ||
                ccl__poller_set(m->poller, m->wakefd, NULL, CCL_EV_IN, 1))) {
        snprintf(err, errlen, "cannot set up the master's event loop");
        rc = CCL_ERR_IO;
    }
    if (!rc && pthread_create(&m->thread, NULL, master_main, m) != 0) {
        snprintf(err, errlen, "cannot start the master thread");
        rc = CCL_ERR_NOMEM;
    }
    if (rc) {
        ccl__sock_close(m->lfd);
        ccl__sock_close(m->poller);
        ccl__sock_close(m->wakefd);
        ccl__key_wipe(&m->key);
        free(m);
        return rc;
    }
    *out = m;
    return CCL_OK;
}

int ccl_master_port(const ccl_master *m)
{
    return m ? m->port : 0;
}

uint32_t ccl_master_epoch(ccl_master *m)
{
    return m ? __atomic_load_n(&m->epoch, __ATOMIC_ACQUIRE) : 0;
}

void ccl_master_destroy(ccl_master *m)
{
    if (!m)
        return;
    __atomic_store_n(&m->stop, 1, __ATOMIC_RELEASE);
    ccl__wakefd_signal(m->wakefd);
    pthread_join(m->thread, NULL);
    while (m->conns)
        mconn_close(m, m->conns);
    ccl__sock_close(m->lfd);
    ccl__sock_close(m->poller);
    ccl__sock_close(m->wakefd);
    ccl__key_wipe(&m->key);
    free(m);
}
