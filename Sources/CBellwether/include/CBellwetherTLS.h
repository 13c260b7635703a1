// TLS client sessions over an already connected, non-blocking socket,
// through the system's OpenSSL loaded at run time (dlopen of libssl.so.3,
// else libssl.so): bellwether links no TLS library, and a user who never asks
// for TLS needs none installed. Nothing here knows Redis or PostgreSQL; a
// lease client connects (and, for PostgreSQL, exchanges its SSLRequest) and
// then hands the descriptor over.
//
// Every call that can block on the network instead returns
// BW_TLS_WANT_READ or BW_TLS_WANT_WRITE: poll the descriptor for POLLIN or
// POLLOUT and call it again with the same arguments. OpenSSL writes to the
// socket with write(2), so the caller must ignore SIGPIPE (the master does).
// A session is for one thread at a time.
#ifndef CBELLWETHER_TLS_H
#define CBELLWETHER_TLS_H

#include <stddef.h>

/// One TLS client session; owns its OpenSSL objects, not the descriptor.
typedef struct bw_tls bw_tls;

/// What a step of a session came to.
enum {
    /// Done: the handshake is complete, or bytes were read or written.
    BW_TLS_DONE = 0,
    /// Poll the descriptor for POLLIN, then call again.
    BW_TLS_WANT_READ = 1,
    /// Poll the descriptor for POLLOUT, then call again.
    BW_TLS_WANT_WRITE = 2,
    /// The server ended the session (close_notify): nothing more to read.
    BW_TLS_CLOSED = 3,
    /// Failed; `bw_tls_error` says why. The session is unusable.
    BW_TLS_FAILED = -1,
    /// The handshake failed because the server's certificate did not pass
    /// verification: a configuration problem rather than a network one.
    BW_TLS_UNTRUSTED = -2,
};

/// How much of the server's certificate is checked.
enum {
    /// Nothing: encryption without authentication of the server.
    BW_TLS_VERIFY_NONE = 0,
    /// A chain to a trusted CA, valid now; the name in it is not checked.
    BW_TLS_VERIFY_CA = 1,
    /// verify-ca, and the certificate names the host connected to (a DNS
    /// name, or an IP address literal against its IP addresses).
    BW_TLS_VERIFY_FULL = 2,
};

/// Loads libssl (once per process) and the functions used here: 0, or -1
/// with why not in `err` (e.g. "libssl.so.3: cannot open shared object file:
/// No such file or directory").
int bw_tls_available(char *err, size_t errlen);

/// A client session on connected, non-blocking `fd` for `host` (sent as SNI
/// unless it is an IP literal; checked against the certificate under
/// BW_TLS_VERIFY_FULL). `ca_file` (PEM) is the only CA trusted; NULL trusts
/// the system's store. 0 and `*out`, or -1 with why in `err` (libssl
/// missing, a CA file that cannot be read or holds no certificate).
int bw_tls_new(int fd, const char *host, int verify, const char *ca_file, bw_tls **out,
               char *err, size_t errlen);

/// Advances the handshake: BW_TLS_DONE, WANT_READ, WANT_WRITE, FAILED or UNTRUSTED.
int bw_tls_handshake(bw_tls *tls);

/// Reads up to `len` bytes of plaintext into `buf`; `*count` gets how many.
/// BW_TLS_DONE, WANT_READ, WANT_WRITE, CLOSED or FAILED. Call again until
/// WANT_READ: bytes can wait inside the session while the socket shows none.
int bw_tls_read(bw_tls *tls, void *buf, size_t len, size_t *count);

/// Writes up to `len` bytes (possibly fewer: `*count`). BW_TLS_DONE,
/// WANT_READ, WANT_WRITE or FAILED. After a WANT_*, the same bytes may be
/// offered again from another address.
int bw_tls_write(bw_tls *tls, const void *buf, size_t len, size_t *count);

/// Why the last step failed, one line ("" if none did).
const char *bw_tls_error(const bw_tls *tls);

/// Sends close_notify if the session was established and has not failed
/// (once, without waiting), and frees the session. NULL is allowed. The
/// descriptor stays open: its owner closes it afterwards.
void bw_tls_free(bw_tls *tls);

#endif
