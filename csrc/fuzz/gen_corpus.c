/*
 * gen_corpus.c - writes the seed corpus for fuzz_wire into a directory.
 *
 *   cc -std=c99 -D_GNU_SOURCE -Icsrc/include -Icsrc/src \
 *       csrc/fuzz/gen_corpus.c csrc/src/wire.c csrc/src/result.c csrc/src/reduce.c \
 *       -lm -o /tmp/gen_corpus
 *   /tmp/gen_corpus csrc/fuzz/corpus/wire csrc/fuzz/corpus/session
 *
 * Each file holds one valid encoding produced by the real encoders, so the
 * fuzzer starts from inputs every decoder's acceptance path has to parse
 * and mutates outward from there.
 */
#include <stdio.h>
#include <string.h>

#include "ccl.h"
#include "wire.h"

static const char *out_dir;
static int failures;

static void emit(const char *name, const uint8_t *bytes, size_t len)
{
    char path[1024];
    FILE *f;

    if (len == 0) {
        fprintf(stderr, "%s: encoder refused the message\n", name);
        failures++;
        return;
    }
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len) {
        perror(path);
        failures++;
    }
    if (f)
        fclose(f);
}

static void gen_hello(void)
{
    uint8_t buf[CCL_HELLO_LEN];
    ccl__hello h;

    memset(&h, 0, sizeof h);
    h.version = CCL_PROTOCOL_VERSION;
    h.role = CCL_ROLE_PEER_TO_PEER;
    h.epoch = 1;
    h.rank = 2;
    h.conn_index = 3;
    memset(h.uuid, 0xab, sizeof h.uuid);
    ccl__hello_encode(buf, &h);
    emit("hello_p2p", buf, sizeof buf);
    h.role = CCL_ROLE_MASTER;
    h.epoch = 0;
    h.rank = 0xffffffffu;
    h.conn_index = 0;
    ccl__hello_encode(buf, &h);
    emit("hello_master", buf, sizeof buf);
}

static void gen_hdr(void)
{
    uint8_t buf[CCL_HDR_LEN];
    ccl__hdr h;

    memset(&h, 0, sizeof h);
    h.type = CCL_FT_DATA;
    h.coll = CCL_COLL_ALLREDUCE_RING;
    h.dtype = CCL_F32;
    h.redop = CCL_SUM;
    h.epoch = 1;
    h.tag = 7;
    h.offset = 4096;
    h.total = 1 << 20;
    h.length = 4096;
    h.step = 3;
    ccl__hdr_encode(buf, &h);
    emit("hdr_data", buf, sizeof buf);

    memset(&h, 0, sizeof h);
    h.type = CCL_FT_ABORT;
    h.epoch = 1;
    h.tag = 7;
    h.length = 20;
    ccl__hdr_encode(buf, &h);
    emit("hdr_abort", buf, sizeof buf);

    h.type = CCL_FT_HEARTBEAT;
    h.length = 0;
    ccl__hdr_encode(buf, &h);
    emit("hdr_heartbeat", buf, sizeof buf);

    h.type = CCL_FT_GROUP;
    h.length = 55;
    ccl__hdr_encode(buf, &h);
    emit("hdr_group", buf, sizeof buf);
}

static void gen_register(void)
{
    uint8_t buf[128];
    ccl__register_msg m;

    memset(&m, 0, sizeof m);
    m.world_size = 4;
    m.rank = -1;
    m.listen_port = 29500;
    m.conns_per_peer = 2;
    memset(m.uuid, 0x5c, sizeof m.uuid);
    strcpy(m.host, "127.0.0.1");
    emit("register_any", buf, ccl__register_encode(buf, sizeof buf, &m));
    m.rank = 3;
    strcpy(m.host, "worker-3.cluster.local");
    emit("register_rank3", buf, ccl__register_encode(buf, sizeof buf, &m));
}

static void gen_group(void)
{
    uint8_t buf[256];
    ccl__member mb[3];
    ccl__group_msg g;
    int i;

    memset(mb, 0, sizeof mb);
    for (i = 0; i < 3; i++) {
        mb[i].port = (uint16_t)(29500 + i);
        memset(mb[i].uuid, 0x10 * (i + 1), sizeof mb[i].uuid);
        snprintf(mb[i].host, sizeof mb[i].host, "10.0.0.%d", i + 1);
    }
    memset(&g, 0, sizeof g);
    g.epoch = 1;
    g.world_size = 1;
    g.your_rank = 0;
    g.conns_per_peer = 1;
    g.members = mb;
    emit("group_1", buf, ccl__group_encode(buf, sizeof buf, &g));
    g.world_size = 3;
    g.your_rank = 2;
    g.conns_per_peer = 4;
    emit("group_3", buf, ccl__group_encode(buf, sizeof buf, &g));
}

static void gen_errmsg(void)
{
    uint8_t buf[6 + CCL_MAX_ERRMSG];

    emit("errmsg_abort", buf,
         ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_PEER_LOST,
                            "rank 1 lost: connection reset"));
    emit("errmsg_reject", buf,
         ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_REJECTED,
                            "world size 4 disagrees with 8"));
    emit("errmsg_empty", buf,
         ccl__errmsg_encode(buf, sizeof buf, CCL_ERR_ABORTED, ""));
}

/* Sessions for fuzz_session: a selector byte, a flags byte (no key,
 * loopback), the other end's HELLO, then frames. */
static size_t put_frame(uint8_t *out, int type, const uint8_t *payload,
                        size_t len)
{
    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = (uint8_t)type;
    h.epoch = 1;
    h.length = (uint32_t)len;
    ccl__hdr_encode(out, &h);
    if (len)
        memcpy(out + CCL_HDR_LEN, payload, len);
    return CCL_HDR_LEN + len;
}

static size_t session_start(uint8_t *out, int who, int role)
{
    ccl__hello h;
    memset(&h, 0, sizeof h);
    h.version = CCL_PROTOCOL_VERSION;
    h.role = (uint8_t)role;
    h.rank = 1;
    memset(h.nonce, 0x77, sizeof h.nonce);
    out[0] = (uint8_t)who;
    out[1] = 2; /* no key, loopback */
    ccl__hello_encode(out + 2, &h);
    return 2 + CCL_HELLO_LEN;
}

static void gen_sessions(void)
{
    static uint8_t buf[8192];
    uint8_t p[512];
    size_t n, len;
    ccl__register_msg m;

    memset(&m, 0, sizeof m);
    m.world_size = 2;
    m.rank = -1;
    m.listen_port = 29500;
    m.conns_per_peer = 1;
    strcpy(m.host, "127.0.0.1");
    n = session_start(buf, 0, CCL_ROLE_PEER_TO_MASTER);
    len = ccl__register_encode(p, sizeof p, &m);
    n += put_frame(buf + n, CCL_FT_REGISTER, p, len);
    n += put_frame(buf + n, CCL_FT_HEARTBEAT, NULL, 0);
    emit("master_register", buf, n);

    ccl__member mb[2];
    ccl__group_msg g;
    memset(mb, 0, sizeof mb);
    strcpy(mb[0].host, "127.0.0.1");
    strcpy(mb[1].host, "127.0.0.1");
    mb[0].port = 1000;
    mb[1].port = 1001;
    memset(&g, 0, sizeof g);
    g.epoch = 1;
    g.world_size = 2;
    g.your_rank = 1;
    g.conns_per_peer = 1;
    g.members = mb;
    n = session_start(buf, 1, CCL_ROLE_MASTER);
    len = ccl__group_encode(p, sizeof p, &g);
    n += put_frame(buf + n, CCL_FT_GROUP, p, len);
    n += put_frame(buf + n, CCL_FT_PENDING, NULL, 0);
    len = ccl__errmsg_encode(p, sizeof p, CCL_ERR_REJECTED, "no");
    n += put_frame(buf + n, CCL_FT_REJECT, p, len);
    emit("peer_from_master", buf, n);

    ccl__hdr h;
    memset(&h, 0, sizeof h);
    h.type = CCL_FT_DATA;
    h.coll = CCL_COLL_ALLREDUCE_RING;
    h.dtype = CCL_F32;
    h.epoch = 1;
    h.total = 64;
    h.length = 16;
    n = session_start(buf, 2, CCL_ROLE_PEER_TO_PEER);
    ccl__hdr_encode(buf + n, &h);
    n += CCL_HDR_LEN;
    memset(buf + n, 0x3f, 16);
    n += 16;
    len = ccl__errmsg_encode(p, sizeof p, CCL_ERR_PEER_LOST, "lost");
    n += put_frame(buf + n, CCL_FT_ABORT, p, len);
    n += put_frame(buf + n, CCL_FT_DONE, NULL, 0);
    n += put_frame(buf + n, CCL_FT_BYE, NULL, 0);
    emit("peer_mesh", buf, n);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s WIRE_DIR SESSION_DIR\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    gen_hello();
    gen_hdr();
    gen_register();
    gen_group();
    gen_errmsg();
    out_dir = argv[2];
    gen_sessions();
    return failures ? 1 : 0;
}
