/*
 * master_peers.c - the membership policy's bookkeeping, below its events:
 * the decision queue, the peers it knows, and what happens to a member's
 * rank when it goes.  Everything here keeps the invariants written at the
 * top of master_policy.c; the rules themselves are in master_policy.h.
 */
#include "master_state.h"

#include "ccl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ccl__mp_free(mp_peer *p)
{
    free(p->lost);
    free(p->lost_ms);
    free(p);
}

/* ---- decisions ---- */

ccl__mpol_action *ccl__mp_act(ccl__mpol *mp, int kind, void *conn)
{
    if (mp->head == mp->nacts)
        mp->head = mp->nacts = 0;
    if (mp->nacts == mp->cap_acts) {
        size_t cap = mp->cap_acts ? 2 * mp->cap_acts : 64;
        ccl__mpol_action *a = realloc(mp->acts, cap * sizeof *a);
        if (!a)
            return NULL;
        mp->acts = a;
        mp->cap_acts = cap;
    }
    ccl__mpol_action *a = &mp->acts[mp->nacts++];
    a->kind = kind;
    a->conn = conn;
    a->epoch = mp->epoch;
    a->rank = 0;
    a->count = 0;
    a->code = 0;
    a->text[0] = 0;
    return a;
}

void ccl__mp_log(ccl__mpol *mp, int level, const char *fmt, ...)
{
    ccl__mpol_action *a = ccl__mp_act(mp, CCL_MPOL_LOG, NULL);
    if (!a)
        return; /* a log line is the one decision that may be lost */
    a->code = level;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->text, sizeof a->text, fmt, ap);
    va_end(ap);
}

/* ---- peers ---- */

const char *ccl__mp_name(const mp_peer *p, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%u", p->reg.host, (unsigned)p->reg.listen_port);
    return buf;
}

mp_peer *ccl__mp_find(const ccl__mpol *mp, const void *conn)
{
    for (int i = 0; i < mp->npeers; i++)
        if (mp->peers[i]->conn == conn)
            return mp->peers[i];
    return NULL;
}

mp_peer *ccl__mp_add(ccl__mpol *mp, void *conn, const ccl__register_msg *reg)
{
    if (mp->npeers == mp->cap_peers) {
        int cap = mp->cap_peers ? 2 * mp->cap_peers : 16;
        mp_peer **v = realloc(mp->peers, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        mp->peers = v;
        mp->cap_peers = cap;
    }
    mp_peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->conn = conn;
    p->reg = *reg;
    p->order = mp->arrivals++;
    mp->peers[mp->npeers++] = p;
    return p;
}

int ccl__mp_admit(ccl__mpol *mp, void *conn, const ccl__register_msg *reg,
                  mp_peer **out, char *name, size_t namelen)
{
    if (ccl__mp_find(mp, conn))
        return CCL_ERR_INVALID_ARG; /* one REGISTER or REJOIN a connection */
    *out = ccl__mp_add(mp, conn, reg);
    if (!*out)
        return CCL_ERR_NOMEM;
    ccl__mp_name(*out, name, namelen);
    return CCL_OK;
}

void ccl__mp_remove(ccl__mpol *mp, mp_peer *p)
{
    for (int i = 0; i < mp->npeers; i++)
        if (mp->peers[i] == p) {
            mp->peers[i] = mp->peers[--mp->npeers];
            break;
        }
    ccl__mp_free(p);
}

int ccl__mp_waiting(const ccl__mpol *mp)
{
    int n = 0;
    for (int i = 0; i < mp->npeers; i++)
        n += !mp->peers[i]->member;
    return n;
}

int ccl__mp_members(const ccl__mpol *mp)
{
    int n = 0;
    for (uint32_t r = 0; r < mp->world; r++)
        n += mp->slots[r].state == SLOT_HERE;
    return n;
}

void ccl__mp_vacate(ccl__mpol *mp, mp_peer *p, int state)
{
    mp_slot *s = &mp->slots[p->rank];
    s->state = state;
    s->peer = NULL;
    mp->lost_any = 1;
    mp->left_in_epoch++;
    if (p->reported) {
        p->reported = 0; /* its reports no longer count */
        ccl__mp_recount(mp);
    }
}

static int in_epoch(const mp_slot *s)
{
    return s->state == SLOT_HERE || s->state == SLOT_AWAITED;
}

/* Whether member a's report names every other member still in the epoch
 * lost, and at least two of them.  One member that lost everyone is far
 * more likely cut off itself than the only healthy one, and the members
 * it names may be blocked in an op waiting for it, so its word does not
 * shorten their wait: they get until the deadline to report (and name
 * it), and the broken links decide.  Seen in a partition run
 * (docs/stress.md): a delayed rank 0 named its 4 peers, which were still
 * waiting out their op, and the accused grace dropped all four. */
static int names_everyone(const ccl__mpol *mp, uint32_t a, const mp_peer *p)
{
    uint32_t others = 0, named = 0;
    for (uint32_t r = 0; r < mp->world; r++)
        others += r != a && in_epoch(&mp->slots[r]);
    for (uint32_t i = 0; i < p->nlost; i++)
        named += p->lost[i] != a && p->lost[i] < mp->world &&
                 in_epoch(&mp->slots[p->lost[i]]);
    return named >= 2 && named >= others;
}

void ccl__mp_recount(ccl__mpol *mp)
{
    for (uint32_t r = 0; r < mp->world; r++)
        mp->slots[r].accused = 0;
    for (uint32_t a = 0; a < mp->world; a++) {
        const mp_peer *p = mp->slots[a].peer;
        if (mp->slots[a].state != SLOT_HERE || !p->reported)
            continue;
        if (names_everyone(mp, a, p))
            continue;
        for (uint32_t i = 0; i < p->nlost; i++) {
            mp_slot *s = &mp->slots[p->lost[i]];
            if (!s->accused || p->lost_ms[i] < s->accused_ms) {
                s->accused = 1;
                s->accused_ms = p->lost_ms[i];
                s->accuser = a;
            }
        }
    }
}

void ccl__mp_reject(ccl__mpol *mp, mp_peer *p, int code, const char *text)
{
    ccl__mpol_action *a = ccl__mp_act(mp, CCL_MPOL_REJECT, p->conn);
    if (a) {
        a->code = code;
        snprintf(a->text, sizeof a->text, "%s", text);
    } else {
        /* Without room to explain, the link still has to go. */
        a = ccl__mp_act(mp, CCL_MPOL_CLOSE, p->conn);
    }
    if (p->member)
        ccl__mp_vacate(mp, p, SLOT_GONE);
    ccl__mp_remove(mp, p);
}

void ccl__mp_refuse(ccl__mpol *mp, mp_peer *p, int code, const char *fmt, ...)
{
    char text[CCL_MPOL_TEXT], name[CCL_MAX_HOST + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ccl__mp_log(mp, CCL_LOG_WARNING, "master: refused peer %s: %s",
                ccl__mp_name(p, name, sizeof name), text);
    ccl__mp_reject(mp, p, code, text);
}

void ccl__mp_drop(ccl__mpol *mp, mp_peer *p, const char *why)
{
    char text[CCL_MPOL_TEXT], name[CCL_MAX_HOST + 8];
    ccl__mp_log(mp, CCL_LOG_INFO, "master: rank %u (%s) left epoch %u: dropped, %s",
                p->rank, ccl__mp_name(p, name, sizeof name), mp->epoch, why);
    snprintf(text, sizeof text, "this peer was dropped from the group at epoch "
             "%u: %s", mp->epoch, why);
    ccl__mp_reject(mp, p, CCL_ERR_REJECTED, text);
}

void ccl__mp_end_run(ccl__mpol *mp)
{
    for (int i = 0; i < mp->npeers; i++) {
        mp_peer *p = mp->peers[i];
        p->member = 0; /* (none are left when a run ends on its own) */
        p->reported = 0;
    }
    free(mp->slots);
    mp->slots = NULL;
    /* A later run (or an adopted one, whose order this master never
     * knew) starts from the rank order. */
    free(mp->ring);
    mp->ring = NULL;
    mp->world = 0;
    mp->run = RUN_NONE;
    mp->reforming = 0;
    mp->lost_any = 0;
    mp->left_in_epoch = 0;
    mp->last_pending_sent = 0;
}

void ccl__mp_announce(ccl__mpol *mp)
{
    if (mp->run == RUN_NONE || ccl__mp_members(mp) == 0)
        return;
    int n = ccl__mp_waiting(mp);
    if (n == mp->last_pending_sent)
        return;
    mp->last_pending_sent = n;
    for (uint32_t r = 0; r < mp->world; r++)
        if (mp->slots[r].state == SLOT_HERE) {
            ccl__mpol_action *a = ccl__mp_act(mp, CCL_MPOL_PENDING,
                                              mp->slots[r].peer->conn);
            if (a)
                a->count = (uint64_t)n;
        }
}

