// Socket helpers: listening sockets, the sd_notify datagram socket, and
// credentials-carrying receive. Descriptors are CLOEXEC. Functions return a
// descriptor or 0 on success, -errno on failure.
#ifndef CBELLWETHER_SOCKETS_H
#define CBELLWETHER_SOCKETS_H

#include <sys/types.h>

/// A TCP listening socket on an IPv4 (family 4) or IPv6 (family 6) literal.
int bw_listen_inet(int family, const char *host, int port, int backlog);

/// A stream listening socket on a Unix path; `mode` < 0 leaves the umask's.
int bw_listen_unix(const char *path, int mode, int backlog);

/// The port a bound inet socket listens on, or -errno.
int bw_local_port(int fd);

/// 1 if `fd` is a listening stream socket, 0 if not, -errno if not a socket.
int bw_is_listening(int fd);

/// A datagram socket with SO_PASSCRED, non-blocking, bound to an abstract
/// Unix address the kernel picks; its name (without the leading NUL) is
/// written to `name`.
int bw_notify_open(char *name, int size);

/// Receives one datagram into buf (NUL-terminated, truncated to len-1) and
/// the sender's pid. Returns the length, 0 when nothing is pending, -errno.
int bw_notify_receive(int fd, char *buf, int len, pid_t *pid);

/// Sends `message` to the sd_notify address (a path, or "@name" for abstract).
int bw_notify_send(const char *address, const char *message);

/// Starts a non-blocking TCP connection (CLOEXEC, TCP_NODELAY) to `host`
/// (an address literal or a name, resolved with getaddrinfo) and `port`.
/// Returns the descriptor, connected or still connecting (poll it for
/// POLLOUT, then read bw_socket_error); -errno, or -EHOSTUNREACH-style
/// codes; a name that does not resolve gives -ENOENT.
int bw_tcp_connect(const char *host, int port);

/// The pending error of a socket (SO_ERROR): 0 once connected.
int bw_socket_error(int fd);

/// Accepts one connection, non-blocking and CLOEXEC; -EAGAIN when none waits.
int bw_accept(int fd);

/// The uid of the process at the other end of a connected Unix socket, or -errno.
long long bw_peer_uid(int fd);

/// Whether something listens on the Unix stream socket at path: 1 when a
/// connection is accepted or (on Linux) the backlog is full, 0 when refused
/// (a stale socket file) or gone, -errno when it cannot tell (no permission
/// to connect, no descriptor left). Never waits.
int bw_unix_listening(const char *path);

/// Connects a blocking, CLOEXEC stream socket to a Unix path, waiting at
/// most timeout_seconds (when > 0) for a listener with a full backlog.
int bw_unix_connect(const char *path, int timeout_seconds);

/// A pair of connected SOCK_SEQPACKET Unix sockets, both close-on-exec: 0 or -errno.
int bw_seqpacket_pair(int fds[2]);

/// One datagram with `count` descriptors attached (SCM_RIGHTS), without
/// SIGPIPE: the bytes sent, or -errno.
long bw_send_with_fds(int fd, const void *bytes, unsigned long length, const int *fds, int count);

#endif
