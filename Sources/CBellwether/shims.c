#define _GNU_SOURCE
#include "CBellwether.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/capability.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/xattr.h>
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

int bw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const int *inherit, int ninherit, const char *directory) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    int temps[ninherit > 0 ? ninherit : 1];
    int made = 0, err;

    // Move every inherited descriptor above the target range first, so that
    // placing one at 3+i never overwrites another that is still to be placed.
    for (; made < ninherit; made++) {
        temps[made] = fcntl(inherit[made], F_DUPFD_CLOEXEC, 3 + ninherit);
        if (temps[made] < 0) { err = errno; goto close_temps; }
    }

    if ((err = posix_spawnattr_init(&attr)) != 0) goto close_temps;
    if ((err = posix_spawn_file_actions_init(&actions)) != 0) goto destroy_attr;

    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP;
    if ((err = posix_spawnattr_setflags(&attr, flags)) != 0) goto destroy;
    if ((err = posix_spawnattr_setsigmask(&attr, &empty)) != 0) goto destroy;
    if ((err = posix_spawnattr_setsigdefault(&attr, &all)) != 0) goto destroy;
    if ((err = posix_spawnattr_setpgroup(&attr, 0)) != 0) goto destroy;

    if ((err = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)) != 0)
        goto destroy;
    for (int i = 0; i < ninherit; i++)
        if ((err = posix_spawn_file_actions_adddup2(&actions, temps[i], 3 + i)) != 0)
            goto destroy;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    if ((err = posix_spawn_file_actions_addclosefrom_np(&actions, 3 + ninherit)) != 0)
        goto destroy;
#endif
    if (directory != NULL) {
#if defined(__GLIBC__) || defined(__APPLE__)
        if ((err = posix_spawn_file_actions_addchdir_np(&actions, directory)) != 0)
            goto destroy;
#else
        err = ENOSYS;
        goto destroy;
#endif
    }

    err = posix_spawn(pid, path, &actions, &attr, argv, envp);

destroy:
    posix_spawn_file_actions_destroy(&actions);
destroy_attr:
    posix_spawnattr_destroy(&attr);
close_temps:
    for (int i = 0; i < made; i++) close(temps[i]);
    return err;
}

int bw_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) return errno;
    if (flags & FD_CLOEXEC) return 0;
    return fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0 ? 0 : errno;
}

int bw_cloexec_from(int lowest) {
#ifdef __linux__
    DIR *dir = opendir("/proc/self/fd");
    if (dir != NULL) {
        int own = dirfd(dir);
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
            int fd = atoi(entry->d_name);
            if (fd >= lowest && fd != own) bw_set_cloexec(fd);
        }
        closedir(dir);
        return 0;
    }
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = lowest; fd < max; fd++) bw_set_cloexec(fd);
    return 0;
}

int bw_wifexited(int status) { return WIFEXITED(status); }
int bw_wexitstatus(int status) { return WEXITSTATUS(status); }
int bw_wifsignaled(int status) { return WIFSIGNALED(status); }
int bw_wtermsig(int status) { return WTERMSIG(status); }
int bw_wcoredump(int status) {
#ifdef WCOREDUMP
    return WCOREDUMP(status);
#else
    return 0;
#endif
}

int bw_online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

int bw_file_lock_holder(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_GETLK, &lock) != 0) return -errno;
    return lock.l_type == F_UNLCK ? 0 : (int)lock.l_pid;
}

int bw_file_lock(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &lock) == 0) return 0;
    if (errno != EACCES && errno != EAGAIN) return -errno;
    int holder = bw_file_lock_holder(fd);
    return holder > 0 ? holder : -EAGAIN;  // released in between: let the caller say "busy"
}

int bw_kill_tree(pid_t guard) {
#ifdef __linux__
    union sigval value = {.sival_int = BW_KILL_TREE};
    return sigqueue(guard, BW_KILL_SIGNAL, value) == 0 ? 0 : errno;
#else
    return kill(-guard, SIGKILL) == 0 ? 0 : errno;
#endif
}

int bw_set_child_subreaper(void) {
#ifdef __linux__
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
#else
    return 0;
#endif
}

int bw_pipe_cloexec(int fds[2], int nonblocking_write) {
#ifdef __linux__
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
#else
    if (pipe(fds) != 0) return -errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
    if (nonblocking_write) fcntl(fds[1], F_SETFL, O_NONBLOCK);
    return 0;
}

int bw_nice(void) {
    errno = 0;
    int value = getpriority(PRIO_PROCESS, 0);
    return errno == 0 ? value : 0;
}

int bw_set_group_nice(int pgid, int value) {
    return setpriority(PRIO_PGRP, (id_t)pgid, value) == 0 ? 0 : errno;
}

int bw_can_lower_nice_to(int value) {
#ifdef RLIMIT_NICE
    struct rlimit limit;
    // RLIMIT_NICE allows a nice value down to 20 - rlim_cur without privilege.
    if (getrlimit(RLIMIT_NICE, &limit) == 0 && (limit.rlim_cur == RLIM_INFINITY || 20 - (long)limit.rlim_cur <= value))
        return 1;
#endif
#ifdef __linux__
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &header, data) != 0) return 0;
    return (data[0].effective >> CAP_SYS_NICE) & 1;
#else
    return geteuid() == 0;
#endif
}

int bw_set_address_randomization(int on) {
#ifdef __linux__
    int current = personality(0xffffffff);
    if (current == -1) return errno;
    int wanted = on ? (current & ~ADDR_NO_RANDOMIZE) : (current | ADDR_NO_RANDOMIZE);
    if (wanted != current && personality((unsigned long)wanted) == -1) return errno;
    return 0;
#else
    (void)on;
    return 0;
#endif
}

int bw_address_randomization(void) {
#ifdef __linux__
    int current = personality(0xffffffff);
    return current == -1 || !(current & ADDR_NO_RANDOMIZE);
#else
    return 1;
#endif
}

int bw_has_access_acl(const char *path) {
#ifdef __linux__
    return getxattr(path, "system.posix_acl_access", NULL, 0) > 0;
#else
    (void)path;
    return 0;
#endif
}
