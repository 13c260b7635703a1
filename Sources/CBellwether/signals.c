// Signals: the signal source the master waits on, dispositions, and the
// order that makes a guard kill its tree.
#define _GNU_SOURCE
#include "CBellwether.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/signalfd.h>
#endif

#ifdef __linux__

int bw_signal_source_open(const int *signals, int count) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) sigaddset(&mask, signals[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) return -errno;
    // An ignored signal is discarded even while blocked: a master started in
    // the background by a shell (INT and QUIT ignored) would never see them.
    for (int i = 0; i < count; i++) bw_signal_disposition(signals[i], 0);
    int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int bw_signal_source_read(int fd) {
    struct signalfd_siginfo info;
    for (;;) {
        ssize_t n = read(fd, &info, sizeof info);
        if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return n < 0 ? -errno : -EIO;
    }
}

#else  // A self-pipe: the handler writes one byte and does nothing else.

static int self_pipe_write = -1;

static void self_pipe_handler(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    (void)!write(self_pipe_write, &byte, 1);
    errno = saved;
}

int bw_signal_source_open(const int *signals, int count) {
    int fds[2];
    if (pipe(fds) != 0) return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    self_pipe_write = fds[1];
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = self_pipe_handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (int i = 0; i < count; i++)
        if (sigaction(signals[i], &action, NULL) != 0) return -errno;
    return fds[0];
}

int bw_signal_source_read(int fd) {
    unsigned char byte;
    for (;;) {
        ssize_t n = read(fd, &byte, 1);
        if (n == 1) return (int)byte;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return n < 0 ? -errno : -EIO;
    }
}

#endif

int bw_signal_disposition(int sig, int ignore) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    sigemptyset(&action.sa_mask);
    return sigaction(sig, &action, NULL) == 0 ? 0 : errno;
}

int bw_kill_tree(pid_t guard) {
#ifdef __linux__
    union sigval value = {.sival_int = BW_KILL_TREE};
    return sigqueue(guard, BW_KILL_SIGNAL, value) == 0 ? 0 : errno;
#else
    return kill(-guard, SIGKILL) == 0 ? 0 : errno;
#endif
}
