/*
 * slow_detect.h - which links are slow compared with the group: a pure
 * function over one number per link (its recent receive rate), used by a
 * member over the links it receives on and by the master over every link
 * its members report.
 *
 * The robust z-score of value v among values V is
 *     z = 0.6745 * (v - median(V)) / MAD(V),   MAD = median(|V - median(V)|)
 * (Iglewicz and Hoaglin), where V are the other links (leave-one-out, up
 * to 32 links; all of them beyond).  Links of a healthy group are near equal, so
 * the MAD is often close to 0 and any wobble would look huge; the MAD is
 * therefore floored at CCL__SLOW_MAD_FLOOR times the median.  A link is
 * flagged only when both hold: z < -CCL__SLOW_Z and v < median /
 * CCL__SLOW_RATIO.  The second test keeps a box that is merely busy (a
 * link at half speed for a while) from being flagged; a link 4x slower
 * than the rest passes both.  Fewer than CCL__SLOW_MIN_LINKS values: no
 * verdict (nothing is flagged).
 */
#ifndef CCL_SLOW_DETECT_H
#define CCL_SLOW_DETECT_H

#include <stdint.h>

#define CCL__SLOW_Z 3.5
#define CCL__SLOW_RATIO 3.0
/* A flagged link stays flagged until it is clearly back: z >= -2 or
 * within 2x of the median (hysteresis: no flapping near the line). */
#define CCL__SLOW_Z_CLEAR 2.0
#define CCL__SLOW_RATIO_CLEAR 2.0
#define CCL__SLOW_MAD_FLOOR 0.05
#define CCL__SLOW_MIN_LINKS 3
/* Rates above this (bytes/s) count as this: a frame that is already in
 * the socket buffer when its header is read "arrives" at the speed of a
 * memory copy (5-15 GB/s on loopback, varying with caches and load), so
 * above about 1 GB/s (8 Gbit/s) the measure says more about the reader
 * than about the link.  Links faster than this are all equally fast. */
#define CCL__SLOW_RATE_CEIL 1e9

/* Fills z[i] (0 when there is no verdict) and flag[i] for n values (each
 * > 0; a value <= 0 means "no measurement" and is left out).  Returns the
 * number of links flagged.  scratch holds 2*n doubles.  O(n^2 log n) up
 * to 32 measured links, O(n log n) beyond.  prev (may be NULL): the last
 * verdict, for the hysteresis; it may be the same array as flag. */
int ccl__slow_detect(const double *v, int n, double *z, uint8_t *flag,
                     const uint8_t *prev, double *scratch);

/* The median of the n values in a (reordered in place); 0 for n == 0. */
double ccl__median(double *a, int n);

#endif
