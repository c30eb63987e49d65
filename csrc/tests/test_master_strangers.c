/* test_master_strangers.c - the master's index of strangers: counts in
 * all and per prefix, the victim (lowest class first, then the longest
 * there, within a prefix when asked), promotion only upwards, removal
 * from any position, prefix records freed with their last stranger; and,
 * against a brute-force walk of the same nodes, thousands of random
 * operations agree on every answer. */
#include "harness.h"
#include "master_strangers.h"

#define N 3000

static ccl__stranger nodes[N];
static uint64_t pfx_of[N];
static int in_index[N];

/* The victim by walking every node, as the master did before the index. */
static ccl__stranger *brute_victim(const uint64_t *prefix)
{
    ccl__stranger *v = NULL;
    for (int i = 0; i < N; i++) {
        ccl__stranger *n = &nodes[i];
        if (!in_index[i] || (prefix && pfx_of[i] != *prefix))
            continue;
        if (!v || n->cls < v->cls || (n->cls == v->cls && n->since_ms < v->since_ms))
            v = n;
    }
    return v;
}

int main(void)
{
    ccl__strangers s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < N; i++)
        ccl__stranger_init(&nodes[i]);

    /* The basics, by hand. */
    PASS(ccl__strangers_victim(&s, NULL) == NULL);
    PASS(ccl__strangers_add(&s, &nodes[0], 7, 100) == 0);
    PASS(ccl__strangers_add(&s, &nodes[1], 7, 101) == 0);
    PASS(ccl__strangers_add(&s, &nodes[2], 9, 102) == 0);
    PASS(ccl__strangers_count(&s) == 3);
    PASS(ccl__strangers_in_prefix(&s, 7) == 2);
    PASS(ccl__strangers_in_prefix(&s, 9) == 1);
    PASS(ccl__strangers_in_prefix(&s, 8) == 0);
    PASS(ccl__strangers_victim(&s, NULL) == &nodes[0]); /* oldest silent */
    ccl__strangers_promote(&s, &nodes[0], CCL_STRANGER_HEARD, 103);
    PASS(ccl__strangers_victim(&s, NULL) == &nodes[1]); /* silent first */
    uint64_t seven = 7, nine = 9, eight = 8;
    PASS(ccl__strangers_victim(&s, &seven) == &nodes[1]);
    PASS(ccl__strangers_victim(&s, &nine) == &nodes[2]);
    PASS(ccl__strangers_victim(&s, &eight) == NULL);
    ccl__strangers_promote(&s, &nodes[0], CCL_STRANGER_SILENT, 104); /* never down */
    PASS(nodes[0].cls == CCL_STRANGER_HEARD);
    ccl__strangers_remove(&s, &nodes[1]);
    ccl__strangers_remove(&s, &nodes[1]); /* twice: nothing */
    PASS(ccl__strangers_count(&s) == 2);
    PASS(nodes[1].cls == -1);
    PASS(ccl__strangers_victim(&s, NULL) == &nodes[2]);
    ccl__strangers_promote(&s, &nodes[1], CCL_STRANGER_HEARD, 105); /* not in */
    PASS(nodes[1].cls == -1 && ccl__strangers_count(&s) == 2);
    ccl__strangers_remove(&s, &nodes[2]);
    PASS(ccl__strangers_in_prefix(&s, 9) == 0); /* its record went */
    PASS(ccl__strangers_victim(&s, &nine) == NULL);
    PASS(ccl__strangers_victim(&s, NULL) == &nodes[0]);
    ccl__strangers_promote(&s, &nodes[0], CCL_STRANGER_REGISTER, 106);
    PASS(ccl__strangers_victim(&s, &seven) == &nodes[0]);
    ccl__strangers_clear(&s);
    PASS(ccl__strangers_count(&s) == 0 && nodes[0].cls == -1);

    /* Random operations against the brute-force walk: 300 prefixes (some
     * sharing hash buckets), adds, promotions, removals, victims. */
    memset(&s, 0, sizeof s);
    uint32_t seed = 12345;
    uint64_t now = 1000;
    int mismatches = 0, checks = 0;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 8) % N);
        int op = (int)((seed >> 4) % 4);
        now += (seed >> 20) % 3; /* several in one millisecond too */
        if (!in_index[i] && op != 3) {
            pfx_of[i] = ((seed >> 12) % 300) * 1024 * 1024; /* bucket clashes */
            if (ccl__strangers_add(&s, &nodes[i], pfx_of[i], now) == 0)
                in_index[i] = 1;
        } else if (op == 0 && in_index[i]) {
            ccl__strangers_remove(&s, &nodes[i]);
            in_index[i] = 0;
        } else if (op == 1 && in_index[i]) {
            ccl__strangers_promote(&s, &nodes[i], nodes[i].cls + 1, now);
        } else {
            uint64_t p = pfx_of[i];
            ccl__stranger *a = ccl__strangers_victim(&s, NULL);
            ccl__stranger *b = brute_victim(NULL);
            /* Ties in (class, time) may pick either: compare the keys. */
            checks++;
            if ((a == NULL) != (b == NULL) ||
                (a && (a->cls != b->cls || a->since_ms != b->since_ms)))
                mismatches++;
            a = ccl__strangers_victim(&s, &p);
            b = brute_victim(&p);
            if ((a == NULL) != (b == NULL) ||
                (a && (a->cls != b->cls || a->since_ms != b->since_ms)))
                mismatches++;
            int count = 0, same = 0;
            for (int j = 0; j < N; j++) {
                count += in_index[j];
                same += in_index[j] && pfx_of[j] == p;
            }
            if (count != ccl__strangers_count(&s) ||
                same != ccl__strangers_in_prefix(&s, p))
                mismatches++;
        }
    }
    printf("random operations: %d checks, %d mismatches\n", checks, mismatches);
    PASS(checks > 10000);
    PASS(mismatches == 0);
    ccl__strangers_clear(&s);
    return HARNESS_DONE("test_master_strangers");
}
