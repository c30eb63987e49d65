/*
 * ccl_cdef.h - the declarations of csrc/include/ccl.h that Python uses,
 * kept by hand for cffi (API mode).
 *
 * cffi parses this file, not ccl.h, so it must stay a subset of ccl.h.
 * Every constant is written as `...` so its value comes from the real
 * header when the extension is compiled; a renumbered or missing constant
 * is a compile error, never a silent mismatch.  Struct configs end with
 * `...;` so cffi takes their layout from the compiler too.
 */

#define CCL_VERSION_MAJOR ...
#define CCL_VERSION_MINOR ...
#define CCL_VERSION_PATCH ...
#define CCL_PROTOCOL_VERSION ...

typedef enum ccl_result {
    CCL_OK,
    CCL_ERR_INVALID_ARG,
    CCL_ERR_NOMEM,
    CCL_ERR_IO,
    CCL_ERR_TIMEOUT,
    CCL_ERR_PEER_LOST,
    CCL_ERR_PROTOCOL,
    CCL_ERR_VERSION,
    CCL_ERR_MISMATCH,
    CCL_ERR_ABORTED,
    CCL_ERR_MASTER_UNREACHABLE,
    CCL_ERR_TOO_FEW_PEERS,
    CCL_ERR_CLOSED,
    CCL_ERR_INVALID_USAGE,
    CCL_ERR_AUTH,
    CCL_ERR_REJECTED,
    CCL_ERR_INTERNAL,
    CCL_ERR_PENDING,
    CCL_ERR_INTERRUPTED,
    ...
} ccl_result;

uint64_t ccl_hash64(const void *data, size_t len, uint64_t seed);
const char *ccl_strerror(int rc);
typedef enum ccl_log_level {
    CCL_LOG_ERROR, CCL_LOG_WARNING, CCL_LOG_INFO, CCL_LOG_DEBUG,
    ...
} ccl_log_level;
void ccl_log_set_level(int level);
void ccl_log_capture(int on);
int ccl_log_read(int *level, char *buf, size_t cap, int timeout_ms);
const char *ccl_version(void);

typedef enum ccl_dtype {
    CCL_F32, CCL_F64, CCL_F16, CCL_BF16,
    CCL_I8, CCL_I16, CCL_I32, CCL_I64,
    CCL_U8, CCL_U16, CCL_U32, CCL_U64,
    ...
} ccl_dtype;
#define CCL_DTYPE_COUNT ...
size_t ccl_dtype_size(int dtype);

typedef enum ccl_redop {
    CCL_SUM, CCL_AVG, CCL_MIN, CCL_MAX, CCL_PROD, CCL_BAND, CCL_BOR, CCL_BXOR,
    ...
} ccl_redop;
#define CCL_REDOP_COUNT ...

typedef enum ccl_algo {
    CCL_ALGO_AUTO, CCL_ALGO_RING, CCL_ALGO_STAR, CCL_ALGO_DIRECT,
    ...
} ccl_algo;

/* Master */
typedef struct ccl_master ccl_master;

typedef struct ccl_master_config {
    const char *host;
    int port;
    const void *key;
    size_t key_len;
    int allow_insecure;
    int reorder_slow_links;
    int expel_slow_after;
    ...;
} ccl_master_config;

void ccl_master_config_init(ccl_master_config *cfg);
int ccl_master_create(const ccl_master_config *cfg, ccl_master **out,
                      char *err, size_t errlen);
int ccl_master_port(const ccl_master *m);
uint32_t ccl_master_epoch(ccl_master *m);
void ccl_master_destroy(ccl_master *m);

typedef struct ccl_master_member_stats {
    uint32_t epoch;
    int rank, size;
    char addr[80];
    uint64_t ops_ok, ops_failed, tx_bytes, rx_bytes, op_bytes, op_time_us;
    uint64_t age_ms;
    uint64_t reports;
    ...;
} ccl_master_member_stats;

typedef struct ccl_master_link_stats {
    uint32_t epoch;
    int from, to;
    double rx_rate;
    double rtt_us;
    uint64_t rx_bytes;
    uint32_t samples;
    double z;
    int slow;
    int slow_local;
    uint64_t flagged_at_ops;
    ...;
} ccl_master_link_stats;

typedef struct ccl_master_stats_totals {
    uint64_t reports, reports_dropped, reports_unknown_version;
    uint64_t slow_flags_raised;
    ...;
} ccl_master_stats_totals;

int ccl_master_get_stats(ccl_master *m, ccl_master_stats_totals *totals,
                         ccl_master_member_stats *members, int max_members,
                         int *n_members, ccl_master_link_stats *links,
                         int max_links, int *n_links);

/* Communicator */
typedef struct ccl_comm ccl_comm;

typedef struct ccl_comm_config {
    const char *master_host;
    int master_port;
    int world_size;
    int rank;
    int conns_per_peer;
    const char *listen_host;
    int connect_timeout_ms;
    int op_timeout_ms;
    int spin_us;
    uint64_t star_max_bytes;
    uint32_t chunk_bytes;
    int peer_timeout_ms;
    int restore_input;
    const void *key;
    size_t key_len;
    int allow_insecure;
    int frame_mac;
    const int *cancel;
    int stats_report_ms;
    int encrypt;
    int shm;
    ...;
} ccl_comm_config;

void ccl_comm_config_init(ccl_comm_config *cfg);
int ccl_comm_create(const ccl_comm_config *cfg, ccl_comm **out,
                    char *err, size_t errlen);
int ccl_comm_rank(const ccl_comm *c);
int ccl_comm_size(const ccl_comm *c);
uint32_t ccl_comm_epoch(const ccl_comm *c);
const char *ccl_comm_error(ccl_comm *c);
void ccl_comm_stats(ccl_comm *c, uint64_t *tx_bytes, uint64_t *rx_bytes);

typedef struct ccl_stats {
    uint32_t epoch;
    int rank, size;
    uint64_t tx_bytes, rx_bytes;
    uint64_t ops_ok, ops_failed;
    uint64_t op_bytes;
    uint64_t op_time_ns;
    uint64_t reports_sent;
    int slow_links;
    uint64_t slow_flags_raised;
    ...;
} ccl_stats;

typedef struct ccl_link_stats {
    int rank;
    char host[65];
    int port;
    uint64_t tx_bytes, rx_bytes;
    double rx_rate;
    double rx_rate_ewma;
    double rtt_us;
    uint32_t samples;
    int conns_open;
    uint64_t connects, errors;
    double z;
    int slow;
    ...;
    int shm_conns;
} ccl_link_stats;

typedef struct ccl_op_record {
    uint64_t seq;
    uint32_t epoch;
    uint64_t tag;
    int coll;
    int dtype, redop, size;
    int result;
    uint64_t bytes;
    uint64_t tx_bytes, rx_bytes;
    uint64_t wall_ns;
    ...;
} ccl_op_record;

int ccl_comm_get_stats(ccl_comm *c, ccl_stats *out, ccl_link_stats *links,
                       int max_links, int *n_links, ccl_op_record *ops,
                       int max_ops, int *n_ops);
void ccl_comm_destroy(ccl_comm *c);
int ccl_comm_update_topology(ccl_comm *c, int timeout_ms);
int ccl_comm_optimize_topology(ccl_comm *c, int timeout_ms);
int ccl_comm_ring_order(ccl_comm *c, int *order, int max);
typedef struct ccl_tuning {
    uint64_t allreduce_star_max;
    uint64_t allreduce_direct_max;
    uint64_t bcast_direct_max;
    uint32_t latency_us;
    uint32_t rate_kbs;
    int source;
} ccl_tuning;
enum { CCL_TUNING_DEFAULT = 0, CCL_TUNING_MODEL = 1, CCL_TUNING_FIXED = 2 };
int ccl_comm_get_tuning(ccl_comm *c, ccl_tuning *out);
void ccl_comm_interrupt(ccl_comm *c);
int ccl_comm_peers_pending(ccl_comm *c);

/* Ops.  Python uses only the async forms plus wait/test/free, so one path
 * serves blocking and async calls and every op's error detail is its own. */
typedef struct ccl_op ccl_op;

int ccl_allreduce_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, int redop, int algo,
                        ccl_op **out);
int ccl_broadcast_async(ccl_comm *c, void *buf, uint64_t count, int dtype,
                        int root, ccl_op **out);
int ccl_allgather_async(ccl_comm *c, const void *send, void *recv,
                        uint64_t count, int dtype, ccl_op **out);
int ccl_reduce_scatter_async(ccl_comm *c, const void *send, void *recv,
                             uint64_t count, int dtype, int redop,
                             ccl_op **out);
int ccl_barrier_async(ccl_comm *c, ccl_op **out);
#define CCL_ANY_SOURCE ...
int ccl_send_async(ccl_comm *c, const void *buf, uint64_t count, int dtype,
                   int peer, uint32_t tag, ccl_op **out);
int ccl_recv_async(ccl_comm *c, void *buf, uint64_t count, int dtype, int peer,
                   uint32_t tag, ccl_op **out);
int ccl_op_source(ccl_op *op);
typedef enum ccl_quant {
    CCL_QUANT_U8, CCL_QUANT_U4, CCL_QUANT_E3M0, CCL_QUANT_F16, CCL_QUANT_BF16,
    ...
} ccl_quant;
int ccl_allreduce_quant_async(ccl_comm *c, const void *send, void *recv,
                              uint64_t count, int redop, int format, uint32_t block,
                              uint64_t seed, ccl_op **out);
int ccl_allreduce_quant_algo_async(ccl_comm *c, const void *send, void *recv,
                                   uint64_t count, int redop, int algorithm, int format,
                                   uint32_t block, uint64_t seed, ccl_op **out);
int ccl_reduce_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int redop, int root, ccl_op **out);
int ccl_gather_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                     int dtype, int root, ccl_op **out);
int ccl_scatter_async(ccl_comm *c, const void *send, void *recv, uint64_t count,
                      int dtype, int root, ccl_op **out);
int ccl_alltoallv_async(ccl_comm *c, const void *send, const uint64_t *send_counts,
                        void *recv, const uint64_t *recv_counts, int dtype,
                        ccl_op **out);
int ccl_allgatherv_async(ccl_comm *c, const void *send, uint64_t count, void *recv,
                         const uint64_t *counts, int dtype, ccl_op **out);
int ccl_reduce_scatterv_async(ccl_comm *c, const void *send, void *recv,
                              const uint64_t *counts, int dtype, int redop,
                              ccl_op **out);

int ccl_op_wait(ccl_op *op, int timeout_ms);
int ccl_op_test(ccl_op *op, int *done);
const char *ccl_op_error(ccl_op *op);
void ccl_op_free(ccl_op *op);
