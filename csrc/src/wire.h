/*
 * wire.h - the wire codec: pure functions over bytes, no I/O.
 *
 * Every multi-byte field is little-endian and written through the put/get
 * helpers, never by casting structs.  Decoders treat their input as hostile:
 * they check every length against a cap before the caller allocates, reject
 * unknown types and nonzero reserved bytes, and never read past the end.
 * docs/protocol.md describes every byte.
 *
 * A connection starts with both ends sending a HELLO (64 bytes) at once and
 * reading the other's; with a key, the HELLOs are followed by the proofs of
 * auth.h.  After that every message is a frame: a 40-byte header followed
 * by `length` payload bytes.
 */
#ifndef CCL_WIRE_H
#define CCL_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "tune.h"

/* ---- little-endian helpers ---- */
void ccl__put_u16(uint8_t *p, uint16_t v);
void ccl__put_u32(uint8_t *p, uint32_t v);
void ccl__put_u64(uint8_t *p, uint64_t v);
uint16_t ccl__get_u16(const uint8_t *p);
uint32_t ccl__get_u32(const uint8_t *p);
uint64_t ccl__get_u64(const uint8_t *p);

/* ---- HELLO ---- */
#define CCL_HELLO_LEN 64
/* Magic and version: the part every protocol version keeps, so a reader
 * reads it first and can name a version mismatch without waiting for
 * bytes an older peer never sends (version 1 sent 48). */
#define CCL_HELLO_PREFIX_LEN 10
#define CCL_MAGIC "PYCCL\0\r\n" /* 8 bytes */
#define CCL_NONCE_LEN 16

/* HELLO flags. */
#define CCL_HELLO_AUTH 1u      /* the sender holds a key and will prove it */
#define CCL_HELLO_FRAME_MAC 2u /* the sender wants a MAC on every frame */
#define CCL_HELLO_ENCRYPT 4u   /* the sender encrypts every frame (peer
                                  connections only; needs AUTH) */
#define CCL_HELLO_SHM 8u       /* the sender would move the connection into
                                  shared memory (peer connections, one
                                  host: shm_offer.h) */
#define CCL_HELLO_FLAGS_KNOWN (CCL_HELLO_AUTH | CCL_HELLO_FRAME_MAC | \
                               CCL_HELLO_ENCRYPT | CCL_HELLO_SHM)

enum ccl__role {
    CCL_ROLE_PEER_TO_MASTER = 1, /* a communicator's control link */
    CCL_ROLE_PEER_TO_PEER = 2,   /* one connection of a peer pool */
    CCL_ROLE_MASTER = 3          /* the master's answer on a control link */
};

typedef struct ccl__hello {
    uint16_t version;    /* CCL_PROTOCOL_VERSION */
    uint8_t role;        /* enum ccl__role */
    uint8_t flags;       /* CCL_HELLO_* bits */
    uint32_t epoch;      /* group epoch the connection belongs to (0 on control links) */
    uint32_t rank;       /* sender's rank in that epoch (0xffffffff if none) */
    uint32_t conn_index; /* index in the peer pool, 0..K-1 */
    uint8_t uuid[16];    /* sender's identity, random per communicator */
    uint8_t nonce[CCL_NONCE_LEN]; /* fresh random bytes per connection */
} ccl__hello;

void ccl__hello_encode(uint8_t out[CCL_HELLO_LEN], const ccl__hello *h);
/* Checks the first CCL_HELLO_PREFIX_LEN bytes: 0, CCL_ERR_PROTOCOL for a
 * bad magic, or CCL_ERR_VERSION (and *version says which). */
int ccl__hello_check_prefix(const uint8_t in[CCL_HELLO_PREFIX_LEN],
                            uint16_t *version);
/* Returns 0; CCL_ERR_PROTOCOL for a bad magic, unknown role, unknown flags
 * or nonzero reserved bytes; CCL_ERR_VERSION if the version differs from
 * ours (h->version is still filled so the caller can name it). */
int ccl__hello_decode(const uint8_t in[CCL_HELLO_LEN], ccl__hello *h);

/* ---- frame header ---- */
#define CCL_HDR_LEN 40

enum ccl__frame_type {
    CCL_FT_DATA = 1,      /* collective payload: tag, step, offset, total, length */
    CCL_FT_ABORT = 2,     /* fail op `tag` of `epoch`; payload: error msg */
    CCL_FT_HEARTBEAT = 3, /* liveness only; no payload */
    CCL_FT_BYE = 4,       /* graceful close of the sender; no payload */
    CCL_FT_DONE = 5,      /* the sender completed op `tag` locally; no payload */
    CCL_FT_QUERY = 6,     /* confirm op `tag` (op_confirm.c): `offset` = round;
                             payload: bitmap of the ranks the sender lost */
    CCL_FT_CONFIRM = 7,   /* op `tag` is complete here, the named ranks cut:
                             `offset` = the QUERY's round; no payload */
    CCL_FT_REGISTER = 16, /* peer -> master; payload: register msg */
    CCL_FT_GROUP = 17,    /* master -> peer; payload: group msg */
    CCL_FT_REJECT = 18,   /* master -> peer; payload: error msg */
    CCL_FT_REFORM = 19,   /* peer -> master at update_topology; payload: reform msg */
    CCL_FT_NOCHANGE = 20, /* master -> peer: the group stays as it is; no payload */
    CCL_FT_PENDING = 21,  /* master -> peer: `tag` = number of waiting joiners */
    CCL_FT_REJOIN = 22,   /* member -> a (restarted) master: u32 epoch, then a
                             register msg with the member's rank and world size */
    CCL_FT_STATS = 23     /* member -> master: a stats summary (stats_wire.h) */
};

/* Caps checked by the decoder before anyone allocates. */
#define CCL_MAX_DATA_PAYLOAD (16u << 20)  /* one DATA frame carries <= 16 MiB */
#define CCL_MAX_CTRL_PAYLOAD (1u << 20)   /* GROUP etc. */
#define CCL_MAX_ERRMSG 256
#define CCL_MAX_HOST 64
#define CCL_MAX_WORLD 4096

typedef struct ccl__hdr {
    uint8_t type;     /* enum ccl__frame_type */
    uint8_t coll;     /* DATA/ABORT: collective kind (enum ccl__coll) */
    uint8_t dtype;    /* DATA: ccl_dtype of the op */
    uint8_t redop;    /* DATA: ccl_redop of the op */
    uint32_t epoch;
    uint64_t tag;     /* op sequence number within the epoch */
    uint64_t offset;  /* DATA: byte offset of the payload in the op's buffer */
    uint64_t total;   /* DATA: the sender's op size in bytes, to catch mismatches */
    uint32_t length;  /* payload bytes that follow the header */
    uint16_t step;    /* DATA: algorithm step the payload belongs to */
    uint16_t root;    /* DATA: the op's root rank (< CCL_MAX_WORLD), 0 for ops
                         without one; other types: 0 */
} ccl__hdr;

/* DATA with this step and no payload is a probe: an op that made no
 * progress for a while describes itself to its peers, so ranks that
 * issued different ops find out at once (never given to an algorithm). */
#define CCL_STEP_PROBE 0xffffu

enum ccl__coll {
    CCL_COLL_ALLREDUCE_RING = 1,
    CCL_COLL_ALLREDUCE_STAR = 2,
    CCL_COLL_BROADCAST = 3,
    CCL_COLL_ALLGATHER = 4,
    CCL_COLL_REDUCE_SCATTER = 5,
    CCL_COLL_BARRIER = 6,
    CCL_COLL_P2P = 7,         /* send/recv: tag = user tag << 32 | sequence */
    CCL_COLL_GATHER = 8,      /* gather, scatter, all-to-all(v), all-gather(v): direct.c */
    CCL_COLL_SCATTER = 9,
    CCL_COLL_ALLTOALLV = 10,
    CCL_COLL_ALLGATHERV = 11,
    CCL_COLL_REDUCE_SCATTERV = 12,
    CCL_COLL_REDUCE = 13,
    CCL_COLL_ALLREDUCE_STAR_Q = 14, /* quantized star all-reduce: star_q.c */
    CCL_COLL_ALLREDUCE_RING_Q = 15, /* quantized ring all-reduce: ring_q.c */
    CCL_COLL_ALLREDUCE_DIRECT = 16, /* direct all-reduce: direct_ar.c */
    CCL_COLL_ALLREDUCE_DIRECT_Q = 17 /* quantized direct all-reduce: direct_q.c */
};
#define CCL_COLL_LAST CCL_COLL_ALLREDUCE_DIRECT_Q

/* A frame header with only type, epoch, tag and length set (control
 * frames). */
void ccl__ctl_hdr_encode(uint8_t out[CCL_HDR_LEN], int type, uint32_t epoch,
                         uint64_t tag, uint32_t length);
void ccl__hdr_encode(uint8_t out[CCL_HDR_LEN], const ccl__hdr *h);
/* Names of the enums that travel in frames, for messages ("broadcast",
 * "float32", "sum"); "unknown" for values outside them. */
const char *ccl__coll_name(int coll);
const char *ccl__dtype_name(int dtype);
const char *ccl__redop_name(int redop);

/* Returns 0 or CCL_ERR_PROTOCOL (unknown type, unknown coll/dtype/redop on
 * DATA, length above the type's cap, payload on a type that has none,
 * a nonzero root on a type other than DATA or a root >= CCL_MAX_WORLD,
 * offset + length overflowing or beyond total). */
int ccl__hdr_decode(const uint8_t in[CCL_HDR_LEN], ccl__hdr *h);

/* ---- control payloads ---- */

typedef struct ccl__register_msg {
    uint32_t world_size;      /* size of the first group the peer expects */
    int32_t rank;             /* wanted rank or -1 */
    uint16_t listen_port;
    uint16_t conns_per_peer;  /* K wanted; the master's GROUP decides */
    uint8_t uuid[16];
    char host[CCL_MAX_HOST + 1]; /* NUL-terminated, 1..64 printable ASCII chars */
} ccl__register_msg;

/* Encodes into out (capacity cap); returns bytes written or 0 if too small. */
size_t ccl__register_encode(uint8_t *out, size_t cap, const ccl__register_msg *m);
int ccl__register_decode(const uint8_t *in, size_t len, ccl__register_msg *m);

typedef struct ccl__member {
    uint16_t port;
    uint8_t uuid[16];
    char host[CCL_MAX_HOST + 1];
    uint32_t ring_pos;        /* the member's position on the ring */
} ccl__member;

typedef struct ccl__group_msg {
    uint32_t epoch;
    uint32_t world_size;      /* 1..CCL_MAX_WORLD */
    uint32_t your_rank;       /* < world_size */
    uint16_t conns_per_peer;  /* 1..64 */
    ccl__member *members;     /* world_size entries, rank order */
    /* 1: the payload carries the ring order (members' ring_pos, a
     * permutation of 0..world_size-1); 0: it does not, and the ring is
     * the rank order (decode sets ring_pos = rank). */
    int has_ring;
    /* 1: the payload carries the epoch's tuning (the master's cost model,
     * tune.h); 0: it does not, and members use the defaults. */
    int has_tune;
    ccl__tuning tune;
} ccl__group_msg;

size_t ccl__group_encode(uint8_t *out, size_t cap, const ccl__group_msg *m);
/* Two steps so the caller allocates only a checked count: peek returns
 * 0 and sets *world_size (validated against CCL_MAX_WORLD and len), or
 * CCL_ERR_PROTOCOL; decode fills m, whose members array the caller
 * allocated with that many entries. */
int ccl__group_peek(const uint8_t *in, size_t len, uint32_t *world_size);
int ccl__group_decode(const uint8_t *in, size_t len, ccl__group_msg *m);

/* REJOIN payload: u32 epoch (>= 1) followed by a REGISTER payload. */
size_t ccl__rejoin_encode(uint8_t *out, size_t cap, uint32_t epoch,
                          const ccl__register_msg *m);
int ccl__rejoin_decode(const uint8_t *in, size_t len, uint32_t *epoch,
                       ccl__register_msg *m);

/* REFORM payload: u32 epoch, u32 wait_ms, u32 n, n x u32 entry: the ranks
 * of `epoch` this peer lost.  An entry is a rank (< CCL_MAX_WORLD), plus
 * CCL_REFORM_EXPEL (bit 31) if that peer broke the protocol (a malformed
 * frame, a failed frame MAC) rather than just going silent or away.
 * Entries are sorted by rank, ranks distinct. */
#define CCL_REFORM_EXPEL 0x80000000u
/* The tag of a REFORM's header: 0 for the report that starts this member's
 * part in a reform, CCL_REFORM_UPDATE for a later one sent while it waits
 * for the answer, listing the peers it has lost meanwhile too (a peer that
 * died while everyone waited).  A master with no reform waiting for that
 * member ignores an update rather than refuse it: the reform may have ended
 * while the update was on its way. */
#define CCL_REFORM_UPDATE 1u
/* Tag bit 1 of a REFORM (the first report or an update): the member asks
 * for a better ring order now (ccl_comm_optimize_topology).  Other bits
 * must be 0. */
#define CCL_REFORM_OPTIMIZE 2u
/* Tag bit 2 (protocol 8): no op succeeded on this member in this epoch.
 * Two such members may both stay though their link broke: neither can
 * hold an outcome the other lacks (master_epoch.c, settle_links). */
#define CCL_REFORM_IDLE 4u
#define CCL_REFORM_TAG_BITS (CCL_REFORM_UPDATE | CCL_REFORM_OPTIMIZE | CCL_REFORM_IDLE)
typedef struct ccl__reform_msg {
    int update;        /* not on the wire: from the header's tag */
    int optimize;      /* not on the wire: from the header's tag */
    int idle;          /* not on the wire: from the header's tag */
    uint32_t epoch;
    uint32_t wait_ms;  /* how long the master may wait for the others */
    uint32_t nlost;
    uint32_t lost[CCL_MAX_WORLD];  /* ranks */
    uint8_t expel[CCL_MAX_WORLD];  /* 1: lost[i] broke the protocol */
} ccl__reform_msg;

size_t ccl__reform_encode(uint8_t *out, size_t cap, const ccl__reform_msg *m);
int ccl__reform_decode(const uint8_t *in, size_t len, ccl__reform_msg *m);

/* ABORT and REJECT payload: u32 code (a ccl_result), u16 n, n bytes text. */
size_t ccl__errmsg_encode(uint8_t *out, size_t cap, int code, const char *msg);
/* msg receives at most CCL_MAX_ERRMSG chars plus NUL; non-printable bytes
 * are replaced by '?'. */
int ccl__errmsg_decode(const uint8_t *in, size_t len, int *code,
                       char msg[CCL_MAX_ERRMSG + 1]);

#endif
