/*
 * master_strangers.c - the index of the master's strangers (see the
 * header): class lists kept oldest first by appending, and per-prefix
 * records in a chained hash table, freed when their last stranger goes.
 */
#include "master_strangers.h"

#include <stdlib.h>
#include <string.h>

typedef struct ccl__sprefix {
    uint64_t key;
    int count;
    ccl__stranger *first;
    struct ccl__sprefix *next; /* in its bucket */
} ccl__sprefix;

static unsigned bucket_of(uint64_t key)
{
    /* Fibonacci hashing: prefixes of one flood differ in a few bits. */
    return (unsigned)((key * 0x9E3779B97F4A7C15ull) >> 54) % CCL_SPREFIX_BUCKETS;
}

static ccl__sprefix *find(const ccl__strangers *s, uint64_t key)
{
    for (ccl__sprefix *p = s->bucket[bucket_of(key)]; p; p = p->next)
        if (p->key == key)
            return p;
    return NULL;
}

void ccl__stranger_init(ccl__stranger *n)
{
    memset(n, 0, sizeof *n);
    n->cls = -1;
}

static void class_append(ccl__strangers *s, ccl__stranger *n)
{
    n->next = NULL;
    n->prev = s->tail[n->cls];
    if (n->prev)
        n->prev->next = n;
    else
        s->head[n->cls] = n;
    s->tail[n->cls] = n;
}

static void class_unlink(ccl__strangers *s, ccl__stranger *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        s->head[n->cls] = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        s->tail[n->cls] = n->prev;
    n->next = n->prev = NULL;
}

int ccl__strangers_add(ccl__strangers *s, ccl__stranger *n, uint64_t prefix,
                       uint64_t now_ms)
{
    ccl__sprefix *p = find(s, prefix);
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p)
            return -1;
        unsigned b = bucket_of(prefix);
        p->key = prefix;
        p->next = s->bucket[b];
        s->bucket[b] = p;
    }
    n->pfx = p;
    n->pprev = NULL;
    n->pnext = p->first;
    if (p->first)
        p->first->pprev = n;
    p->first = n;
    p->count++;
    n->cls = CCL_STRANGER_SILENT;
    n->since_ms = now_ms;
    class_append(s, n);
    s->count++;
    return 0;
}

void ccl__strangers_promote(ccl__strangers *s, ccl__stranger *n, int cls,
                            uint64_t now_ms)
{
    if (n->cls < 0 || cls <= n->cls || cls >= CCL_STRANGER_CLASSES)
        return;
    class_unlink(s, n);
    n->cls = cls;
    n->since_ms = now_ms;
    class_append(s, n);
}

void ccl__strangers_remove(ccl__strangers *s, ccl__stranger *n)
{
    if (n->cls < 0)
        return;
    class_unlink(s, n);
    ccl__sprefix *p = n->pfx;
    if (n->pprev)
        n->pprev->pnext = n->pnext;
    else
        p->first = n->pnext;
    if (n->pnext)
        n->pnext->pprev = n->pprev;
    if (--p->count == 0) {
        ccl__sprefix **pp = &s->bucket[bucket_of(p->key)];
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        free(p);
    }
    s->count--;
    ccl__stranger_init(n);
}

int ccl__strangers_count(const ccl__strangers *s)
{
    return s->count;
}

int ccl__strangers_in_prefix(const ccl__strangers *s, uint64_t prefix)
{
    const ccl__sprefix *p = find(s, prefix);
    return p ? p->count : 0;
}

ccl__stranger *ccl__strangers_victim(const ccl__strangers *s,
                                     const uint64_t *prefix)
{
    if (!prefix) {
        for (int c = 0; c < CCL_STRANGER_CLASSES; c++)
            if (s->head[c])
                return s->head[c];
        return NULL;
    }
    const ccl__sprefix *p = find(s, *prefix);
    ccl__stranger *v = NULL;
    for (ccl__stranger *n = p ? p->first : NULL; n; n = n->pnext)
        if (!v || n->cls < v->cls || (n->cls == v->cls && n->since_ms <= v->since_ms))
            v = n; /* the list is newest first: ties go to the older */
    return v;
}

void ccl__strangers_clear(ccl__strangers *s)
{
    for (int b = 0; b < CCL_SPREFIX_BUCKETS; b++) {
        ccl__sprefix *p = s->bucket[b];
        while (p) {
            ccl__sprefix *next = p->next;
            for (ccl__stranger *n = p->first; n;) {
                ccl__stranger *nn = n->pnext;
                ccl__stranger_init(n);
                n = nn;
            }
            free(p);
            p = next;
        }
    }
    memset(s, 0, sizeof *s);
}
