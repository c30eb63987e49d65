/*
 * stats_report.c - a member's STATS reports to the master: at most one
 * per stats_report_ms, and only when ops finished since the last one, so
 * an idle group sends nothing.  The report goes out from the event loop
 * (the loop's tick hook, run by whoever drives), on the control link.
 * A report is only a hint, so it never waits: when the link cannot take
 * bytes at once (a stalled master whose buffers filled up), the report is
 * skipped and the next one tries again.  Once a report has started it
 * must be written whole (framing); that gets a short deadline, and a link
 * that cannot take a few KiB within it counts as broken like any other
 * (the member goes on; the next update_topology reconnects).  Reports
 * are skipped while update_topology talks to the master and after the
 * master expelled this member.
 */
#include "communicator.h"
#include "master_link.h"
#include "stats_wire.h"

#include <stdlib.h>

#define REPORT_SEND_MS 100
/* The master takes at most one report per 80 ms from a member
 * (master_view.h); a report forced by optimize_topology waits this long
 * after the last one so that it is not dropped. */
#define REPORT_GAP_MS 100

static void send_report(ccl_comm *c)
{
    static __thread uint8_t buf[CCL_STATS_MAX_LEN];
    ccl__stats *s = ccl__xport_stats_of(c->xp);
    size_t len = ccl__stats_report(s, buf, sizeof buf);
    if (!len)
        return;
    uint32_t epoch;
    ccl__engine_group(&c->eng, NULL, NULL, &epoch);
    char err[128];
    if (ccl__ctl_send(c, CCL_FT_STATS, epoch, buf, (uint32_t)len,
                      ccl__now_ms() + REPORT_SEND_MS, err, sizeof err) != CCL_OK) {
        ccl__log(CCL_LOG_WARNING, "stats report to the master at %s:%d failed: "
                 "%s; the control link is considered lost", c->master_host,
                 c->master_port, err);
        ccl__master_gone(c);
        return;
    }
    c->last_report_ms = ccl__now_ms();
}

static void report_tick(ccl_comm *c, uint64_t now)
{
    ccl__master_revive_tick(c, now); /* the control link, if it ended */
    int every = c->cfg.stats_report_ms;
    if (every <= 0 || now < c->next_report_ms || c->master_fd < 0 ||
        c->master_lost || c->awaiting || c->rejected[0])
        return;
    c->next_report_ms = now + (uint64_t)every;
    if (!ccl__sock_writable_now(c->master_fd))
        return; /* the master is not reading: no report, no wait */
    send_report(c);
}

void ccl__stats_report_now(ccl_comm *c, uint64_t deadline)
{
    for (;;) {
        uint64_t now = ccl__now_ms();
        if (now >= c->last_report_ms + REPORT_GAP_MS || now >= deadline)
            break;
        uint64_t left = c->last_report_ms + REPORT_GAP_MS - now;
        ccl__loop_once(c, (int)(left < 20 ? left : 20));
    }
    if (c->master_fd >= 0 && !c->master_lost && !c->rejected[0])
        send_report(c);
}

void ccl__stats_report_start(ccl_comm *c)
{
    if (c->cfg.stats_report_ms > 0 && c->cfg.stats_report_ms < 100)
        c->cfg.stats_report_ms = 100;
    c->next_report_ms = ccl__now_ms() + (uint64_t)c->cfg.stats_report_ms;
    c->tick_hook = report_tick;
}
