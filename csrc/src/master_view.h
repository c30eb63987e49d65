/*
 * master_view.h - the master's view of its members' STATS reports and its
 * verdict on slow links across the whole group.
 *
 * Written by the master's thread (a report arrives, a link closes), read
 * by ccl_master_get_stats from any thread: one mutex, held for copying
 * and for the verdict (at most every 50 ms while reports arrive, and on
 * a read that follows new reports).  Reports are rate-limited per member (one per
 * CCL__MVIEW_MIN_GAP_MS; more are dropped and counted), so a member
 * cannot make the master judge the group in a loop.
 */
#ifndef CCL_MASTER_VIEW_H
#define CCL_MASTER_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "ccl.h"

#define CCL__MVIEW_MIN_GAP_MS 80

typedef struct ccl__mview ccl__mview;

int ccl__mview_create(ccl__mview **out);
void ccl__mview_destroy(ccl__mview *v);
/* A STATS payload from the member on control link `who`.  Returns 0,
 * or CCL_ERR_PROTOCOL for a malformed payload (the caller rejects the
 * member as for any malformed frame).  Unknown payload versions and
 * reports over the rate are skipped and counted; *taken says whether
 * this one was taken in (it may be NULL). */
int ccl__mview_report(ccl__mview *v, const void *who, const char *addr,
                      const uint8_t *payload, size_t len, uint64_t now_ms,
                      int *taken);
/* The links of the last report of the member on `who` (at most max),
 * with the group verdict: how many were copied. */
int ccl__mview_member_links(ccl__mview *v, const void *who,
                            ccl_master_link_stats *out, int max);
/* The epoch, rank and tx_peak (bytes/s) of the last report of the member
 * on `who`: 1, or 0 if it has none. */
int ccl__mview_member_tx_peak(ccl__mview *v, const void *who, uint32_t *epoch,
                              uint32_t *rank, double *tx_peak);
/* The member on `who` is gone. */
void ccl__mview_forget(ccl__mview *v, const void *who);
int ccl__mview_read(ccl__mview *v, ccl_master_stats_totals *totals,
                    ccl_master_member_stats *members, int max_members,
                    int *n_members, ccl_master_link_stats *links, int max_links,
                    int *n_links);

#endif
