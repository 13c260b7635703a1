#define _GNU_SOURCE
#include "CBellwetherSockets.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(int fd) {
    int error = errno;
    if (fd >= 0) close(fd);
    return -error;
}

int bw_listen_inet(int family, const char *host, int port, int backlog) {
    struct sockaddr_storage address;
    socklen_t length;
    memset(&address, 0, sizeof address);
    if (family == 6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&address;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) return -EINVAL;
        length = sizeof *in6;
    } else {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&address;
        in4->sin_family = AF_INET;
        in4->sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, host, &in4->sin_addr) != 1) return -EINVAL;
        length = sizeof *in4;
    }
    int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(-1);
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (family == 6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, (struct sockaddr *)&address, length) != 0) return fail(fd);
    if (listen(fd, backlog) != 0) return fail(fd);
    return fd;
}

// A Unix stream socket (CLOEXEC) and the address of `path`, or -errno.
static int unix_socket(const char *path, struct sockaddr_un *address) {
    memset(address, 0, sizeof *address);
    address->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address->sun_path) return -ENAMETOOLONG;
    strcpy(address->sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd >= 0 ? fd : fail(-1);
}

int bw_listen_unix(const char *path, int mode, int backlog) {
    struct sockaddr_un address;
    int fd = unix_socket(path, &address);
    if (fd < 0) return fd;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        // A socket file nobody listens on any more (a master that was killed)
        // is stale: remove it and bind again. A live one stays in use.
        struct stat info;
        if (errno != EADDRINUSE || lstat(path, &info) != 0 || !S_ISSOCK(info.st_mode)) return fail(fd);
        int listening = bw_unix_listening(path);
        if (listening != 0) { errno = listening < 0 ? -listening : EADDRINUSE; return fail(fd); }
        unlink(path);
        if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) return fail(fd);
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) != 0) {
        int error = errno;
        unlink(path);
        close(fd);
        return -error;
    }
    if (listen(fd, backlog) != 0) {
        int error = errno;
        unlink(path);
        close(fd);
        return -error;
    }
    return fd;
}

int bw_local_port(int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return -errno;
    if (address.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&address)->sin_port);
    if (address.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    return -EAFNOSUPPORT;
}

int bw_is_listening(int fd) {
    int value = 0;
    socklen_t length = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) != 0) return -errno;
    return value ? 1 : 0;
}

int bw_notify_open(char *name, int size) {
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(-1);
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return fail(fd);
    // Autobind: the kernel picks a free abstract name, unique in this network
    // namespace even when masters in several containers have the same pid.
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (bind(fd, (struct sockaddr *)&address, sizeof(sa_family_t)) != 0) return fail(fd);
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return fail(fd);
    int used = (int)(length - offsetof(struct sockaddr_un, sun_path)) - 1;  // after the leading NUL
    if (used <= 0 || used >= size) { close(fd); return -ENAMETOOLONG; }
    memcpy(name, address.sun_path + 1, (size_t)used);
    name[used] = '\0';
    return fd;
}

int bw_notify_receive(int fd, char *buf, int len, pid_t *pid) {
    union {  // aligned for struct cmsghdr
        char buffer[CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } control;
    struct iovec vector = {buf, (size_t)(len - 1)};
    struct msghdr message;
    memset(&message, 0, sizeof message);
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control.buffer;
    message.msg_controllen = sizeof control.buffer;
    ssize_t n;
    do n = recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    buf[n] = '\0';
    *pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&message); c != NULL; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred credentials;
            memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
            *pid = credentials.pid;
        }
        // Descriptors sent along (FDSTORE=1) do not fit the control buffer:
        // the kernel discards them (MSG_CTRUNC), so none can leak here.
    }
    return n == 0 ? -EAGAIN : (int)n;
}

int bw_notify_send(const char *address, const char *message) {
    struct sockaddr_un target;
    memset(&target, 0, sizeof target);
    target.sun_family = AF_UNIX;
    size_t size = strlen(address);
    if (size == 0 || size >= sizeof target.sun_path) return -EINVAL;
    memcpy(target.sun_path, address, size);
    if (address[0] == '@') target.sun_path[0] = '\0';
    socklen_t length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + size + (address[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(-1);
    ssize_t sent = sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&target, length);
    int error = sent < 0 ? errno : 0;
    close(fd);
    return -error;
}

int bw_tcp_connect(const char *host, int port) {
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &found) != 0 || found == NULL) return -ENOENT;
    int result = -ECONNREFUSED;
    for (struct addrinfo *candidate = found; candidate; candidate = candidate->ai_next) {
        int fd = socket(candidate->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) { result = -errno; continue; }
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        if (connect(fd, candidate->ai_addr, candidate->ai_addrlen) == 0 || errno == EINPROGRESS) {
            result = fd;
            break;
        }
        result = fail(fd);
    }
    freeaddrinfo(found);
    return result;
}

int bw_socket_error(int fd) {
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
    return error;
}

int bw_accept(int fd) {
#if defined(__linux__)
    int connection = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    return connection >= 0 ? connection : -errno;
#else
    int connection = accept(fd, NULL, NULL);
    if (connection < 0) return -errno;
    fcntl(connection, F_SETFD, FD_CLOEXEC);
    fcntl(connection, F_SETFL, fcntl(connection, F_GETFL) | O_NONBLOCK);
    return connection;
#endif
}

long long bw_peer_uid(int fd) {
#if defined(__linux__)
    struct ucred credentials;
    socklen_t length = sizeof credentials;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -errno;
    return (long long)credentials.uid;
#else
    uid_t uid;
    gid_t gid;
    if (getpeereid(fd, &uid, &gid) != 0) return -errno;
    return (long long)uid;
#endif
}

int bw_unix_listening(const char *path) {
    struct sockaddr_un address;
    int fd = unix_socket(path, &address);
    if (fd < 0) return fd;
    // Non-blocking: on Linux a listener whose backlog is full answers EAGAIN
    // at once (and is alive) where a blocking connect would wait for it.
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int error = connect(fd, (struct sockaddr *)&address, sizeof address) == 0 ? 0 : errno;
    close(fd);
    if (error == 0 || error == EAGAIN) return 1;
    return error == ECONNREFUSED || error == ENOENT ? 0 : -error;
}

int bw_unix_connect(const char *path, int timeout_seconds) {
    struct sockaddr_un address;
    int fd = unix_socket(path, &address);
    if (fd < 0) return fd;
    // A listener whose backlog is full makes connect wait; on Linux the
    // send timeout bounds that wait (EAGAIN when it passes).
    struct timeval limit = {.tv_sec = timeout_seconds};
    if (timeout_seconds > 0) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) return fail(fd);
    return fd;
}

int bw_seqpacket_pair(int fds[2]) {
#ifdef SOCK_CLOEXEC
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return -errno;
#else
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, fds) != 0) return -errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
    return 0;
}

long bw_send_with_fds(int fd, const void *bytes, unsigned long length, const int *fds, int count) {
    if (count < 0 || count > 64) return -EINVAL;
    struct iovec part = { .iov_base = (void *)bytes, .iov_len = length };
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(64 * sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr message = { .msg_iov = &part, .msg_iovlen = 1 };
    if (count > 0) {
        message.msg_control = control.space;
        message.msg_controllen = CMSG_SPACE(count * sizeof(int));
        struct cmsghdr *header = CMSG_FIRSTHDR(&message);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(count * sizeof(int));
        memcpy(CMSG_DATA(header), fds, count * sizeof(int));
    }
#ifdef MSG_NOSIGNAL
    int flags = MSG_NOSIGNAL;
#else
    int flags = 0;
#endif
    ssize_t sent;
    do sent = sendmsg(fd, &message, flags); while (sent < 0 && errno == EINTR);
    return sent < 0 ? -errno : (long)sent;
}
