/*
 * master_link.h - what update_topology (comm_reform.c) uses of the
 * master's link (master_link.c).
 */
#ifndef CCL_MASTER_LINK_H
#define CCL_MASTER_LINK_H

#include "communicator.h"
#include "handshake.h"

enum { CTL_NONE = 0, CTL_FRAME = 1 };

int ccl__ctl_send(ccl_comm *c, int type, uint32_t epoch, const uint8_t *payload,
                  uint32_t len, uint64_t deadline, char *err, size_t errlen);
/* The same with a tag in the header (REFORM: CCL_REFORM_UPDATE). */
int ccl__ctl_send_tagged(ccl_comm *c, int type, uint32_t epoch, uint64_t tag,
                         const uint8_t *payload, uint32_t len, uint64_t deadline,
                         char *err, size_t errlen);
int ccl__ctl_step(ccl_comm *c);
void ccl__ctl_reject_text(ccl_comm *c, char text[CCL_MAX_ERRMSG + 1]);
void ccl__master_gone(ccl_comm *c);
/* Reads what the master sent outside update_topology (PENDING counts, a
 * REJECT, the link's end) without waiting. */
void ccl__master_link_read(ccl_comm *c);
/* Sends REJOIN (our epoch, rank and size) on c->master_fd. */
int ccl__master_send_rejoin(ccl_comm *c, uint64_t deadline, char *err, size_t errlen);
/* The control link's frame MAC keys from a finished handshake. */
int ccl__master_link_keys(ccl_comm *c, const ccl__hs *hs);

#endif
