/*
 * master_strangers.h - the master's index of strangers: connections that
 * have not registered yet.  Under a flood the master asks three questions
 * on every accept (how many strangers in all, how many from this network
 * prefix, which one to push out), so each is answered without walking
 * the connections: one list per class, oldest first, and a small list
 * per prefix (at most its cap long).  No I/O; the connection embeds its
 * node.
 */
#ifndef CCL_MASTER_STRANGERS_H
#define CCL_MASTER_STRANGERS_H

#include <stdint.h>

/* What a stranger has shown, least first: the one to push out is the
 * oldest of the lowest class that has any. */
enum {
    CCL_STRANGER_SILENT = 0,   /* nothing came from it yet */
    CCL_STRANGER_HEARD = 1,    /* bytes came: its handshake runs */
    CCL_STRANGER_REGISTER = 2, /* authenticated: REGISTER or REJOIN next */
    CCL_STRANGER_CLASSES = 3
};

struct ccl__sprefix;

typedef struct ccl__stranger {
    struct ccl__stranger *next, *prev;   /* its class's list, oldest first */
    struct ccl__stranger *pnext, *pprev; /* its prefix's list */
    struct ccl__sprefix *pfx;
    uint64_t since_ms; /* when it entered its class */
    int cls;           /* -1: not in the index */
} ccl__stranger;

#define CCL_SPREFIX_BUCKETS 1024

typedef struct ccl__strangers {
    ccl__stranger *head[CCL_STRANGER_CLASSES], *tail[CCL_STRANGER_CLASSES];
    int count;
    struct ccl__sprefix *bucket[CCL_SPREFIX_BUCKETS];
} ccl__strangers;

/* A node that is in no index (call before anything else on it). */
void ccl__stranger_init(ccl__stranger *n);
/* Adds n as SILENT from `prefix`.  -1 without memory (n is then not
 * indexed). */
int ccl__strangers_add(ccl__strangers *s, ccl__stranger *n, uint64_t prefix,
                       uint64_t now_ms);
/* Moves n up to class cls (never down); nothing if n is not indexed. */
void ccl__strangers_promote(ccl__strangers *s, ccl__stranger *n, int cls,
                            uint64_t now_ms);
/* Takes n out (nothing if it is not in). */
void ccl__strangers_remove(ccl__strangers *s, ccl__stranger *n);
int ccl__strangers_count(const ccl__strangers *s);
int ccl__strangers_in_prefix(const ccl__strangers *s, uint64_t prefix);
/* The stranger to push out first: the oldest of the lowest class, among
 * those of *prefix when prefix is not NULL.  NULL if there is none. */
ccl__stranger *ccl__strangers_victim(const ccl__strangers *s,
                                     const uint64_t *prefix);
/* Frees the per-prefix records (the nodes belong to their owners). */
void ccl__strangers_clear(ccl__strangers *s);

#endif
