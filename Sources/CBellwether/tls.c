// TLS client sessions through OpenSSL loaded at run time (see
// CBellwetherTLS.h). The OpenSSL headers are not used: the few functions
// needed are declared here with the ABI that OpenSSL 1.1 and 3 share, and
// looked up with dlsym, so that building bellwether needs no libssl-dev and
// running it without TLS needs no libssl.
#define _GNU_SOURCE
#include "CBellwetherTLS.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The constants of ssl.h, tls1.h and x509_vfy.h that are used, stable since 1.1.0.
enum {
    SSL_VERIFY_NONE = 0, SSL_VERIFY_PEER = 1,
    SSL_ERROR_SSL = 1, SSL_ERROR_WANT_READ = 2, SSL_ERROR_WANT_WRITE = 3, SSL_ERROR_SYSCALL = 5,
    SSL_ERROR_ZERO_RETURN = 6,
    SSL_CTRL_MODE = 33, SSL_CTRL_SET_TLSEXT_HOSTNAME = 55, SSL_CTRL_SET_MIN_PROTO_VERSION = 123,
    SSL_MODE_ENABLE_PARTIAL_WRITE = 1, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER = 2,
    TLSEXT_NAMETYPE_host_name = 0, TLS1_2_VERSION = 0x0303,
    X509_V_OK = 0, X509_V_ERR_HOSTNAME_MISMATCH = 62, X509_V_ERR_IP_ADDRESS_MISMATCH = 64,
};

/// The OpenSSL functions used, by name; every one is required.
static struct {
    const void *(*TLS_client_method)(void);
    void *(*SSL_CTX_new)(const void *method);
    void (*SSL_CTX_free)(void *ctx);
    long (*SSL_CTX_ctrl)(void *ctx, int cmd, long larg, void *parg);
    void (*SSL_CTX_set_verify)(void *ctx, int mode, void *callback);
    int (*SSL_CTX_load_verify_locations)(void *ctx, const char *file, const char *path);
    int (*SSL_CTX_set_default_verify_paths)(void *ctx);
    void *(*SSL_new)(void *ctx);
    void (*SSL_free)(void *ssl);
    int (*SSL_set_fd)(void *ssl, int fd);
    long (*SSL_ctrl)(void *ssl, int cmd, long larg, void *parg);
    int (*SSL_set1_host)(void *ssl, const char *host);
    void *(*SSL_get0_param)(void *ssl);
    int (*X509_VERIFY_PARAM_set1_ip_asc)(void *param, const char *ip);
    int (*SSL_connect)(void *ssl);
    int (*SSL_read)(void *ssl, void *buf, int num);
    int (*SSL_write)(void *ssl, const void *buf, int num);
    int (*SSL_get_error)(const void *ssl, int ret);
    int (*SSL_shutdown)(void *ssl);
    long (*SSL_get_verify_result)(const void *ssl);
    const char *(*X509_verify_cert_error_string)(long n);
    unsigned long (*ERR_get_error)(void);
    void (*ERR_clear_error)(void);
    const char *(*ERR_reason_error_string)(unsigned long e);
    void (*ERR_error_string_n)(unsigned long e, char *buf, size_t len);
} api;

#define SYMBOL(name) { #name, (void **)&api.name }
static const struct { const char *name; void **slot; } symbols[] = {
    SYMBOL(TLS_client_method), SYMBOL(SSL_CTX_new), SYMBOL(SSL_CTX_free), SYMBOL(SSL_CTX_ctrl),
    SYMBOL(SSL_CTX_set_verify), SYMBOL(SSL_CTX_load_verify_locations), SYMBOL(SSL_CTX_set_default_verify_paths),
    SYMBOL(SSL_new), SYMBOL(SSL_free), SYMBOL(SSL_set_fd), SYMBOL(SSL_ctrl), SYMBOL(SSL_set1_host),
    SYMBOL(SSL_get0_param), SYMBOL(X509_VERIFY_PARAM_set1_ip_asc), SYMBOL(SSL_connect), SYMBOL(SSL_read),
    SYMBOL(SSL_write), SYMBOL(SSL_get_error), SYMBOL(SSL_shutdown), SYMBOL(SSL_get_verify_result),
    SYMBOL(X509_verify_cert_error_string), SYMBOL(ERR_get_error), SYMBOL(ERR_clear_error),
    SYMBOL(ERR_reason_error_string), SYMBOL(ERR_error_string_n),
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
/// Empty once loaded; else why not.
static char load_error[256] = "not loaded";

/// libssl.so.3 is the runtime package's name (Debian's libssl3); libssl.so,
/// the development link, finds OpenSSL 1.1 too. libssl pulls in libcrypto,
/// whose functions dlsym finds through libssl's handle. Never unloaded.
static void load(void) {
    const char *names[] = {"libssl.so.3", "libssl.so"};
    void *library = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && library == NULL; i++) {
        library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        // The first name's failure is the one to report: the second is a fallback.
        if (library == NULL && i == 0) snprintf(load_error, sizeof load_error, "%s", dlerror());
    }
    if (library == NULL) return;
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(library, symbols[i].name);
        if (*symbols[i].slot == NULL) {
            snprintf(load_error, sizeof load_error, "the loaded libssl lacks %s (OpenSSL 1.1 or later is needed)",
                     symbols[i].name);
            return;
        }
    }
    load_error[0] = '\0';
}

int bw_tls_available(char *err, size_t errlen) {
    pthread_once(&load_once, load);
    if (load_error[0] == '\0') return 0;
    if (errlen > 0) snprintf(err, errlen, "%s", load_error);
    return -1;
}

struct bw_tls {
    void *ctx;
    void *ssl;
    /// The handshake completed.
    int established;
    /// A step failed: nothing more is attempted, close_notify included.
    int failed;
    /// BW_TLS_VERIFY_*: under NONE a verification result is never the reason.
    int verify;
    char host[256];
    char error[320];
};

/// The reason of the oldest error on OpenSSL's (per-thread) queue, which is
/// then emptied: "wrong version number", "certificate verify failed".
static void openssl_reason(char *out, size_t len) {
    unsigned long code = api.ERR_get_error();
    const char *reason = code ? api.ERR_reason_error_string(code) : NULL;
    if (reason != NULL) snprintf(out, len, "%s", reason);
    else if (code) api.ERR_error_string_n(code, out, len);
    else snprintf(out, len, "unknown error");
    api.ERR_clear_error();
}

static int ip_literal(const char *host) {
    unsigned char address[16];
    return inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
}

int bw_tls_new(int fd, const char *host, int verify, const char *ca_file, bw_tls **out, char *err, size_t errlen) {
    *out = NULL;
    if (bw_tls_available(err, errlen) != 0) return -1;
    bw_tls *tls = calloc(1, sizeof *tls);
    if (tls == NULL) {
        snprintf(err, errlen, "%s", strerror(ENOMEM));
        return -1;
    }
    snprintf(tls->host, sizeof tls->host, "%s", host);
    tls->verify = verify;
    api.ERR_clear_error();
    char reason[200];
    if ((tls->ctx = api.SSL_CTX_new(api.TLS_client_method())) == NULL) {
        openssl_reason(reason, sizeof reason);
        snprintf(err, errlen, "cannot create a TLS context: %s", reason);
        goto fail;
    }
    api.SSL_CTX_ctrl(tls->ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_2_VERSION, NULL);
    // Partial writes, and a buffer that may move between retries: Swift's arrays do.
    api.SSL_CTX_ctrl(tls->ctx, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER,
                     NULL);
    api.SSL_CTX_set_verify(tls->ctx, verify == BW_TLS_VERIFY_NONE ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if (verify != BW_TLS_VERIFY_NONE) {
        if (ca_file != NULL) {
            if (access(ca_file, R_OK) != 0) {
                snprintf(err, errlen, "CA file %s: %s", ca_file, strerror(errno));
                goto fail;
            }
            if (api.SSL_CTX_load_verify_locations(tls->ctx, ca_file, NULL) != 1) {
                openssl_reason(reason, sizeof reason);
                snprintf(err, errlen, "CA file %s: no certificate could be loaded (%s)", ca_file, reason);
                goto fail;
            }
        } else if (api.SSL_CTX_set_default_verify_paths(tls->ctx) != 1) {
            openssl_reason(reason, sizeof reason);
            snprintf(err, errlen, "cannot use the system's CA certificates: %s", reason);
            goto fail;
        }
    }
    if ((tls->ssl = api.SSL_new(tls->ctx)) == NULL || api.SSL_set_fd(tls->ssl, fd) != 1) {
        openssl_reason(reason, sizeof reason);
        snprintf(err, errlen, "cannot create a TLS session: %s", reason);
        goto fail;
    }
    int literal = ip_literal(host);
    // Server Name Indication carries names only (RFC 6066).
    if (!literal) api.SSL_ctrl(tls->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, (void *)host);
    if (verify == BW_TLS_VERIFY_FULL) {
        int set = literal ? api.X509_VERIFY_PARAM_set1_ip_asc(api.SSL_get0_param(tls->ssl), host)
                          : api.SSL_set1_host(tls->ssl, host);
        if (set != 1) {
            openssl_reason(reason, sizeof reason);
            snprintf(err, errlen, "cannot check the certificate against %s: %s", host, reason);
            goto fail;
        }
    }
    *out = tls;
    return 0;
fail:
    bw_tls_free(tls);
    return -1;
}

/// Turns a step's result into BW_TLS_*, recording why it failed.
static int outcome(bw_tls *tls, int result, const char *what) {
    int saved = errno;
    int code = api.SSL_get_error(tls->ssl, result);
    switch (code) {
    case SSL_ERROR_WANT_READ: api.ERR_clear_error(); return BW_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE: api.ERR_clear_error(); return BW_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN: api.ERR_clear_error(); return BW_TLS_CLOSED;
    default: break;
    }
    int handshake = !tls->established;
    tls->failed = 1;
    long verified = api.SSL_get_verify_result(tls->ssl);
    if (code == SSL_ERROR_SSL && handshake && tls->verify != BW_TLS_VERIFY_NONE && verified != X509_V_OK) {
        api.ERR_clear_error();
        const char *why = api.X509_verify_cert_error_string(verified);
        if (verified == X509_V_ERR_HOSTNAME_MISMATCH || verified == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            snprintf(tls->error, sizeof tls->error, "certificate verify failed: the certificate is not for %s (%s)",
                     tls->host, why);
        } else {
            snprintf(tls->error, sizeof tls->error, "certificate verify failed: %s", why);
        }
        return BW_TLS_UNTRUSTED;
    }
    if (code == SSL_ERROR_SYSCALL) {
        api.ERR_clear_error();
        if (saved != 0) snprintf(tls->error, sizeof tls->error, "%s: %s", what, strerror(saved));
        else snprintf(tls->error, sizeof tls->error, "%s: the connection closed unexpectedly", what);
        return BW_TLS_FAILED;
    }
    char reason[200];
    openssl_reason(reason, sizeof reason);
    snprintf(tls->error, sizeof tls->error, "%s failed: %s%s", what, reason,
             strstr(reason, "wrong version number") ? " (is the server's port a TLS one?)" : "");
    return BW_TLS_FAILED;
}

int bw_tls_handshake(bw_tls *tls) {
    if (tls->failed) return BW_TLS_FAILED;
    if (tls->established) return BW_TLS_DONE;
    api.ERR_clear_error();
    errno = 0;
    int result = api.SSL_connect(tls->ssl);
    if (result == 1) {
        tls->established = 1;
        return BW_TLS_DONE;
    }
    return outcome(tls, result, "handshake");
}

int bw_tls_read(bw_tls *tls, void *buf, size_t len, size_t *count) {
    *count = 0;
    if (tls->failed) return BW_TLS_FAILED;
    if (len == 0) return BW_TLS_DONE;
    api.ERR_clear_error();
    errno = 0;
    int result = api.SSL_read(tls->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (result > 0) {
        *count = (size_t)result;
        return BW_TLS_DONE;
    }
    return outcome(tls, result, "TLS read");
}

int bw_tls_write(bw_tls *tls, const void *buf, size_t len, size_t *count) {
    *count = 0;
    if (tls->failed) return BW_TLS_FAILED;
    if (len == 0) return BW_TLS_DONE;
    api.ERR_clear_error();
    errno = 0;
    int result = api.SSL_write(tls->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (result > 0) {
        *count = (size_t)result;
        return BW_TLS_DONE;
    }
    return outcome(tls, result, "TLS write");
}

const char *bw_tls_error(const bw_tls *tls) { return tls->error; }

void bw_tls_free(bw_tls *tls) {
    if (tls == NULL) return;
    if (tls->ssl != NULL) {
        if (tls->established && !tls->failed) api.SSL_shutdown(tls->ssl);
        api.SSL_free(tls->ssl);
    }
    if (tls->ctx != NULL) api.SSL_CTX_free(tls->ctx);
    api.ERR_clear_error();
    free(tls);
}
