/*
 * aead.c - the AEAD of aead.h over OpenSSL's EVP interface, loaded with
 * dlopen.
 *
 * Only these EVP calls are used, all present with these signatures in
 * OpenSSL 1.1.0 and every 3.x: EVP_CIPHER_CTX_new/free, EVP_aes_256_gcm,
 * EVP_chacha20_poly1305, EVP_{Encrypt,Decrypt}{Init_ex,Update,Final_ex}
 * and EVP_CIPHER_CTX_ctrl with the AEAD controls below (their values are
 * part of OpenSSL's stable ABI, evp.h).  A context is keyed once; each
 * frame only sets a new IV, which reuses the key schedule (and, for GCM,
 * the hash key and its tables), so the per-frame cost is small.
 */
#include "aead.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccl.h"
#include "sha256.h"
#include "wire.h"

#define ERRF(...) snprintf(err, errlen, __VA_ARGS__)

/* evp.h: EVP_CTRL_AEAD_SET_IVLEN, _GET_TAG, _SET_TAG. */
#define EVP_CTRL_AEAD_GET_TAG_ 0x10
#define EVP_CTRL_AEAD_SET_TAG_ 0x11

/* OpenSSL_version(OPENSSL_VERSION) */
#define OPENSSL_VERSION_ 0

/* The EVP types are opaque to us: pointers only. */
typedef void *(*ctx_new_fn)(void);
typedef void (*ctx_free_fn)(void *ctx);
typedef const void *(*cipher_fn)(void);
typedef int (*init_fn)(void *ctx, const void *cipher, void *engine,
                       const unsigned char *key, const unsigned char *iv);
typedef int (*update_fn)(void *ctx, unsigned char *out, int *outl,
                         const unsigned char *in, int inl);
typedef int (*final_fn)(void *ctx, unsigned char *out, int *outl);
typedef int (*ctrl_fn)(void *ctx, int type, int arg, void *ptr);
typedef const char *(*version_fn)(int which);

static struct {
    int loaded; /* read with acquire, written with release under mu */
    void *handle;
    ctx_new_fn ctx_new;
    ctx_free_fn ctx_free;
    cipher_fn aes_256_gcm, chacha20_poly1305;
    init_fn enc_init, dec_init;
    update_fn enc_update, dec_update;
    final_fn enc_final, dec_final;
    ctrl_fn ctrl;
    char version[96];
} evp;

static pthread_mutex_t evp_mu = PTHREAD_MUTEX_INITIALIZER;

struct ccl__aead {
    void *ctx;
    int encrypting;
    uint64_t next; /* the counter of the next frame */
};

/* Library names to try, most likely first.  libcrypto.so (without a
 * version) is the development symlink: present only with the headers,
 * tried last. */
static const char *const LIB_NAMES[] = {
    "libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.3.dylib",
    "libcrypto.1.1.dylib", "libcrypto.so",
};

static int test_hook_set(void)
{
    const char *v = getenv("PYCCL_TEST_NO_LIBCRYPTO");
    return v && *v && strcmp(v, "0") != 0;
}

/* dlsym into a function pointer without the object-to-function pointer
 * cast that ISO C leaves undefined (the form POSIX recommends). */
static int sym(void *h, const char *name, void *fnp, int required,
               const char **missing)
{
    void *p = dlsym(h, name);
    memcpy(fnp, &p, sizeof p);
    if (!p && required && !*missing)
        *missing = name;
    return p != NULL;
}

static int bind_all(void *h, const char **missing)
{
    version_fn version = NULL;
    *missing = NULL;
    sym(h, "EVP_CIPHER_CTX_new", &evp.ctx_new, 1, missing);
    sym(h, "EVP_CIPHER_CTX_free", &evp.ctx_free, 1, missing);
    sym(h, "EVP_aes_256_gcm", &evp.aes_256_gcm, 1, missing);
    sym(h, "EVP_chacha20_poly1305", &evp.chacha20_poly1305, 0, missing);
    sym(h, "EVP_EncryptInit_ex", &evp.enc_init, 1, missing);
    sym(h, "EVP_DecryptInit_ex", &evp.dec_init, 1, missing);
    sym(h, "EVP_EncryptUpdate", &evp.enc_update, 1, missing);
    sym(h, "EVP_DecryptUpdate", &evp.dec_update, 1, missing);
    sym(h, "EVP_EncryptFinal_ex", &evp.enc_final, 1, missing);
    sym(h, "EVP_DecryptFinal_ex", &evp.dec_final, 1, missing);
    sym(h, "EVP_CIPHER_CTX_ctrl", &evp.ctrl, 1, missing);
    sym(h, "OpenSSL_version", &version, 0, missing);
    snprintf(evp.version, sizeof evp.version, "%s",
             version ? version(OPENSSL_VERSION_) : "OpenSSL (version unknown)");
    return *missing == NULL;
}

int ccl__aead_load(char *err, size_t errlen)
{
    char why[300] = "";
    const char *tail = "Install it (Debian/Ubuntu: apt-get install libssl3; "
                       "Fedora/RHEL: openssl-libs), set PYCCL_LIBCRYPTO to "
                       "its path, or turn encrypt off";
    /* The hook is read on every call, so a test can turn it on and off
     * in one process. */
    if (test_hook_set()) {
        ERRF("encrypt needs OpenSSL's libcrypto (libcrypto.so.3 or "
             "libcrypto.so.1.1), which could not be loaded: "
             "PYCCL_TEST_NO_LIBCRYPTO is set (a test hook that hides it). %s",
             tail);
        return CCL_ERR_INVALID_ARG;
    }
    if (__atomic_load_n(&evp.loaded, __ATOMIC_ACQUIRE))
        return CCL_OK;
    pthread_mutex_lock(&evp_mu);
    if (evp.loaded) {
        pthread_mutex_unlock(&evp_mu);
        return CCL_OK;
    }
    const char *names[1 + sizeof LIB_NAMES / sizeof LIB_NAMES[0]];
    size_t n = 0;
    const char *user = getenv("PYCCL_LIBCRYPTO");
    if (user && *user)
        names[n++] = user;
    for (size_t i = 0; i < sizeof LIB_NAMES / sizeof LIB_NAMES[0]; i++)
        names[n++] = LIB_NAMES[i];
    for (size_t i = 0; i < n && !evp.loaded; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            /* The first failure says the most (the library's own name). */
            if (!why[0]) {
                const char *e = dlerror();
                snprintf(why, sizeof why, "%s", e ? e : names[i]);
            }
            continue;
        }
        const char *missing;
        if (!bind_all(h, &missing)) {
            snprintf(why, sizeof why, "%s lacks %s (OpenSSL 1.1 or later is "
                     "needed)", names[i], missing);
            dlclose(h);
            continue;
        }
        evp.handle = h; /* kept open for the life of the process */
        __atomic_store_n(&evp.loaded, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&evp_mu);
    if (evp.loaded)
        return CCL_OK;
    ERRF("encrypt needs OpenSSL's libcrypto (libcrypto.so.3 or "
         "libcrypto.so.1.1), which could not be loaded: %s. %s", why, tail);
    return CCL_ERR_INVALID_ARG;
}

const char *ccl__aead_library(void)
{
    return __atomic_load_n(&evp.loaded, __ATOMIC_ACQUIRE) ? evp.version : "";
}

static const void *cipher_of(int alg)
{
    if (!__atomic_load_n(&evp.loaded, __ATOMIC_ACQUIRE))
        return NULL;
    if (alg == CCL_AEAD_AES256GCM)
        return evp.aes_256_gcm();
    if (alg == CCL_AEAD_CHACHA20POLY1305 && evp.chacha20_poly1305)
        return evp.chacha20_poly1305();
    return NULL;
}

int ccl__aead_has(int alg)
{
    return cipher_of(alg) != NULL;
}

int ccl__aead_new(ccl__aead **out, int alg, int encrypting,
                  const uint8_t key[CCL_AEAD_KEY_LEN], char *err, size_t errlen)
{
    *out = NULL;
    const void *cipher = cipher_of(alg);
    if (!cipher) {
        ERRF("cipher %d is not available (libcrypto not loaded, or too old)",
             alg);
        return CCL_ERR_INVALID_ARG;
    }
    ccl__aead *a = calloc(1, sizeof *a);
    if (!a) {
        ERRF("out of memory for a cipher context");
        return CCL_ERR_NOMEM;
    }
    a->encrypting = encrypting;
    a->ctx = evp.ctx_new();
    if (!a->ctx) {
        free(a);
        ERRF("out of memory for a cipher context (EVP_CIPHER_CTX_new)");
        return CCL_ERR_NOMEM;
    }
    /* The key now, the IV per frame.  Both ciphers default to 12-byte
     * IVs, the nonce length used here. */
    int ok = encrypting ? evp.enc_init(a->ctx, cipher, NULL, key, NULL)
                        : evp.dec_init(a->ctx, cipher, NULL, key, NULL);
    if (ok != 1) {
        ccl__aead_free(a);
        ERRF("libcrypto refused to key the cipher");
        return CCL_ERR_INTERNAL;
    }
    *out = a;
    return CCL_OK;
}

void ccl__aead_free(ccl__aead *a)
{
    if (!a)
        return;
    if (a->ctx)
        evp.ctx_free(a->ctx); /* cleanses the key schedule */
    free(a);
}

uint64_t ccl__aead_counter(const ccl__aead *a)
{
    return a->next;
}

void ccl__aead_set_counter(ccl__aead *a, uint64_t next)
{
    a->next = next;
}

/* EVP takes int lengths: longer inputs go in pieces. */
#define EVP_MAX_PIECE (1u << 30)

static int evp_update(ccl__aead *a, uint8_t *out, const uint8_t *in, size_t n)
{
    while (n) {
        int piece = (int)(n < EVP_MAX_PIECE ? n : EVP_MAX_PIECE), got = 0;
        int ok = a->encrypting ? evp.enc_update(a->ctx, out, &got, in, piece)
                               : evp.dec_update(a->ctx, out, &got, in, piece);
        /* Both ciphers are stream modes: every byte in gives one out
         * (for the associated data, out is NULL and got may be anything). */
        if (ok != 1 || (out && got != piece))
            return CCL_ERR_INTERNAL;
        in += piece;
        if (out)
            out += piece;
        n -= (size_t)piece;
    }
    return CCL_OK;
}

int ccl__aead_start_iv(ccl__aead *a, const uint8_t iv[CCL_AEAD_NONCE_LEN],
                       const uint8_t *aad, size_t aad_len)
{
    int ok = a->encrypting ? evp.enc_init(a->ctx, NULL, NULL, NULL, iv)
                           : evp.dec_init(a->ctx, NULL, NULL, NULL, iv);
    if (ok != 1)
        return CCL_ERR_INTERNAL;
    return aad_len ? evp_update(a, NULL, aad, aad_len) : CCL_OK;
}

int ccl__aead_start(ccl__aead *a, const uint8_t *aad, size_t aad_len)
{
    /* The last counter value is never used, so the check is one compare
     * and the counter never wraps to a value used before. */
    if (a->next == UINT64_MAX)
        return CCL_ERR_PROTOCOL;
    uint8_t iv[CCL_AEAD_NONCE_LEN] = {0};
    ccl__put_u64(iv, a->next++);
    return ccl__aead_start_iv(a, iv, aad, aad_len);
}

int ccl__aead_update(ccl__aead *a, uint8_t *out, const uint8_t *in, size_t n)
{
    return n ? evp_update(a, out, in, n) : CCL_OK;
}

int ccl__aead_seal(ccl__aead *a, uint8_t tag[CCL_AEAD_TAG_LEN])
{
    uint8_t none[32];
    int got = 0;
    if (!a->encrypting || evp.enc_final(a->ctx, none, &got) != 1 || got != 0 ||
        evp.ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG_, CCL_AEAD_TAG_LEN, tag) != 1)
        return CCL_ERR_INTERNAL;
    return CCL_OK;
}

int ccl__aead_open(ccl__aead *a, const uint8_t tag[CCL_AEAD_TAG_LEN])
{
    uint8_t t[CCL_AEAD_TAG_LEN], none[32];
    int got = 0;
    if (a->encrypting)
        return CCL_ERR_INTERNAL;
    memcpy(t, tag, sizeof t); /* the control takes a non-const pointer */
    if (evp.ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG_, CCL_AEAD_TAG_LEN, t) != 1)
        return CCL_ERR_INTERNAL;
    /* The library compares the tags in constant time. */
    return evp.dec_final(a->ctx, none, &got) == 1 ? CCL_OK : CCL_ERR_AUTH;
}

#define KDF_LABEL "pyccl frame aead v1"

void ccl__aead_derive_key(const uint8_t seed[32], uint8_t key[CCL_AEAD_KEY_LEN])
{
    ccl__hmac_ctx h;
    uint8_t ctr[4];
    ccl__put_u32(ctr, 0);
    ccl__hmac_init(&h, seed, 32);
    ccl__hmac_update(&h, KDF_LABEL, sizeof KDF_LABEL - 1);
    ccl__hmac_update(&h, ctr, sizeof ctr);
    ccl__hmac_final(&h, key);
    ccl__wipe(&h, sizeof h);
}
