/*
 * ring_order.h - choosing the order of the ranks around the ring from
 * measured link rates: a pure function of the master's policy layer (no
 * I/O, no clock), tested by tests/test_ring_order.c.
 *
 * The ring all-reduce moves the same bytes over every link of the cycle,
 * and every link waits for the slowest one, so an order is as fast as its
 * slowest link.  The best order maximises the minimum link rate around
 * the directed cycle: a bottleneck travelling-salesman problem.  With up
 * to CCL__RING_EXACT_MAX ranks every cycle is tried; above that a greedy
 * cycle (always the widest next link) and the current order are improved
 * by local moves around the bottleneck, within a fixed budget of work.
 *
 * Orders are compared by their sorted link rates, smallest first
 * (lexicographically): the bottleneck decides, and among orders with the
 * same bottleneck the one whose next-slowest link is faster wins.  The
 * current order is kept unless the new one's bottleneck is at least
 * CCL__RING_MIN_GAIN times better: measured rates wobble, and every new
 * order costs a new epoch (a new mesh).
 */
#ifndef CCL_RING_ORDER_H
#define CCL_RING_ORDER_H

#include <stdint.h>

/* Up to this many ranks the search is exhaustive ((n-1)! cycles). */
#define CCL__RING_EXACT_MAX 8
/* A new order must raise the bottleneck by this factor to replace the
 * current one. */
#define CCL__RING_MIN_GAIN 1.25
/* Rates above this count as equal (as in slow_detect.c: a frame already
 * in the socket buffer "arrives" at memory speed). */
#define CCL__RING_RATE_CAP 1e9

/* The rate of the slowest link of `order` (n ranks, order[i] the rank at
 * ring position i, data flowing from position i to i+1 mod n) under the
 * n*n matrix bw (bw[a*n+b]: bytes/s from rank a to rank b), capped as
 * above; +infinity for n < 2. */
double ccl__ring_bottleneck(int n, const double *bw, const uint32_t *order);

/* Chooses the order of n ranks.  bw as above, with 0 (or less) where a
 * link was not measured: such a link is taken to be as fast as its
 * reverse direction, or failing that as the median measured link.  `cur`
 * is the current order (a permutation of 0..n-1).  Writes the chosen
 * order into out (n entries; it may equal cur).  Returns 1 when out
 * differs from cur (a better ring), 0 when cur is kept (no link measured,
 * not enough gain, n < 3), or CCL_ERR_NOMEM (out = cur then). */
int ccl__ring_order_choose(int n, const double *bw, const uint32_t *cur,
                           uint32_t *out);

/* Whether order is a permutation of 0..n-1. */
int ccl__ring_order_valid(int n, const uint32_t *order);

#endif
