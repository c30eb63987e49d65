/*
 * master_policy.h - the master's membership decisions as a pure state
 * machine: events in, decisions out.  No sockets, no clock (every event
 * carries `now`, in milliseconds on any monotonic clock), no logging of
 * its own: the event loop of master.c feeds it what happened on the
 * control links and carries out what it decided, and the unit tests
 * (tests/test_master_policy.c) feed it events and check the decisions.
 *
 * Connections are named by an opaque handle (`conn`) that the caller
 * chooses; the policy gives it back in its decisions.  A handle is known
 * to the policy from its REGISTER or REJOIN until the policy decides to
 * REJECT or CLOSE it, or the caller reports it lost, whichever is first.
 *
 * The rules (docs/fault-tolerance.md explains them for users):
 *
 * First group.  Peers register and wait; when `world_size` of them wait
 * (the earliest sets the size) the master fixes ranks (wanted ranks
 * first, then arrival order) and forms epoch last+1.  A peer whose
 * world_size differs from that of the peers already waiting is refused,
 * and so are they, each told both sizes: such a run cannot form as
 * configured, and nobody should wait connect_timeout to learn it.
 *
 * Restart.  A master knows nothing of the run it may be replacing.  A
 * member that comes back with REJOIN (epoch, rank, world size) makes a
 * master without a run adopt that epoch, even while new peers wait; the
 * waiting peers become joiners of the adopted run.  Of two REJOINs for
 * different epochs, the higher one is the run's (a member behind it was
 * dropped from the group before the restart).  So that a fresh master
 * does not hand its first epoch to newcomers before the survivors had a
 * chance to come back, it forms no first group during `rejoin_grace_ms`
 * after it started (the caller passes 0 where no run can be waiting for
 * it, e.g. on a port picked by the kernel); adopting a run ends the
 * grace.
 *
 * Reform.  At update_topology every member sends REFORM (the ranks it
 * lost, how long it waits for the answer).  The master waits for every
 * member of the epoch until the earliest reporter's deadline minus a
 * reserve (report time + wait_ms - min(wait_ms / 4, 2 s); the reserve
 * leaves the members time to build the next mesh), so skew between
 * members up to that bound is harmless.  A member reported lost by
 * another one that has not reported itself is waited for only
 * CCL_MPOL_ACCUSED_GRACE_MS (1 s) more: a stopped or cut-off peer,
 * already silent for peer_timeout, would hold everyone up for nothing.
 * Except on the word of a member that names every other member (two or
 * more): that one is more likely cut off itself (master_peers.c).
 * Then:
 *   - members that did not report are dropped, and told why (REJECT);
 *   - where links between members that both reported broke, members go,
 *     the one with the most broken links first (ties: the lower rank),
 *     until no broken link remains: a member that lost a peer may have
 *     completed ops without it that the peer failed, so both may not stay.
 *     Members keep their links alive while they wait in update_topology
 *     (also for a restarted master), so neither a late arrival nor a
 *     master restart breaks links;
 *   - a member reported for breaking the protocol is expelled at once and
 *     may not come back;
 *   - NOCHANGE when nothing changed, else the next epoch: survivors keep
 *     their order, joiners follow in arrival order.
 *
 * Ring order.  Ranks stay as above; the order of the ranks around the
 * ring is a separate permutation that GROUP carries (ring.c uses it).
 * The master keeps the last measured rate of every link its members
 * report in STATS (ccl__mpol_link), by the identities of both ends, so
 * measurements outlive the epoch they were taken in.  The ring order of
 * a new epoch is the old one with the members that left taken out and
 * the joiners appended (the first epoch, and the first after a master
 * restart, take the rank order).  It is re-planned (ring_order.h: the
 * order with the fastest slowest link, kept unless it gains 1.25x) when
 * a member's REFORM asks for it (ccl_comm_optimize_topology), or, with
 * the option reorder_slow_links, when a link of the current ring is
 * flagged slow.  A better order alone makes a new epoch (same ranks, new
 * mesh); otherwise NOCHANGE.  With expel_slow_after N, a member whose
 * sending link was flagged slow in N consecutive reports of its receivers
 * (a report about a link from it that is not flagged starts the count
 * again) is dropped at the next reform, told why; it may register again
 * as a new peer.
 */
#ifndef CCL_MASTER_POLICY_H
#define CCL_MASTER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "master_decision.h"
#include "wire.h"

/* A policy for a master that started at `now`.  CCL_OK or CCL_ERR_NOMEM. */
int ccl__mpol_create(uint64_t now, uint32_t rejoin_grace_ms, ccl__mpol **out);
void ccl__mpol_destroy(ccl__mpol *mp);

/* Events.  Each returns CCL_OK, or CCL_ERR_NOMEM when the policy could not
 * take the event in (the caller then closes that connection: the peer
 * retries).  `conn` must not be known yet for register and rejoin; it
 * must be known for reform (an unknown one is an error: CCL_ERR_INVALID_ARG). */
int ccl__mpol_register(ccl__mpol *mp, void *conn, const ccl__register_msg *reg,
                       uint64_t now);
int ccl__mpol_rejoin(ccl__mpol *mp, void *conn, uint32_t epoch,
                     const ccl__register_msg *reg, uint64_t now);
int ccl__mpol_reform(ccl__mpol *mp, void *conn, const ccl__reform_msg *msg,
                     uint64_t now);
/* The caller closed a known connection (end of file, an error, a send
 * that failed).  Decisions still queued for it are dropped. */
void ccl__mpol_lost(ccl__mpol *mp, void *conn, uint64_t now);
/* Time passed: deadlines and graces end here. */
void ccl__mpol_tick(ccl__mpol *mp, uint64_t now);
/* A link measurement from a member's STATS report: in `epoch`, the link
 * from rank src to rank dst delivers `rate` bytes/s, and the master's
 * verdict flags it slow or not.  Ignored unless epoch is the current one
 * and both ranks are members.  Never decides anything by itself: the
 * policies act at the next reform. */
void ccl__mpol_link(ccl__mpol *mp, uint32_t epoch, uint32_t src, uint32_t dst,
                    double rate, int slow, uint64_t now);
/* The smoothed round trip (us) that the receiver dst of epoch measured
 * to src, for the cost model (tune.h); ignored like ccl__mpol_link. */
void ccl__mpol_link_rtt(ccl__mpol *mp, uint32_t epoch, uint32_t src, uint32_t dst,
                        double rtt_us);
/* The send rate (bytes/s) of the fastest op of the member at rank of
 * epoch (its report's tx_peak): a lower bound of its uplink for the cost
 * model; ignored like ccl__mpol_link. */
void ccl__mpol_member_tx_peak(ccl__mpol *mp, uint32_t epoch, uint32_t rank,
                              double tx_peak);
/* The optional policies (all off after create). */
void ccl__mpol_set_options(ccl__mpol *mp, const ccl__mpol_options *o);

/* Takes the next decision into *a; 0 when there is none.  Callers drain
 * the queue after every event, in order. */
int ccl__mpol_next(ccl__mpol *mp, ccl__mpol_action *a);

/* Milliseconds until the policy needs a tick (at most `cap`). */
int ccl__mpol_timer_ms(const ccl__mpol *mp, uint64_t now, int cap);
/* The current epoch (0 before the first group). */
uint32_t ccl__mpol_epoch(const ccl__mpol *mp);
/* The members of the epoch the last GROUP decisions announced, in rank
 * order, and the connections per peer pair it asks for; valid until the
 * next event. */
const ccl__member *ccl__mpol_members(const ccl__mpol *mp, uint32_t *world,
                                     uint16_t *conns_per_peer);
/* Whether the last GROUP decisions carry a ring order (members'
 * ring_pos); 0: the rank order, and GROUP carries none. */
int ccl__mpol_ring_sent(const ccl__mpol *mp);
/* Whether the last GROUP decisions carry a tuning, and which (*t). */
int ccl__mpol_tuning(const ccl__mpol *mp, ccl__tuning *t);
/* Peers in the current epoch, and peers waiting to join. */
int ccl__mpol_members_count(const ccl__mpol *mp);
int ccl__mpol_waiting_count(const ccl__mpol *mp);

#endif
