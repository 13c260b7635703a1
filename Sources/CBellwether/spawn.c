// Spawning workers and the descriptors they may or may not inherit.
#define _GNU_SOURCE
#include "CBellwether.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <unistd.h>

int bw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const int *inherit, int ninherit, const char *directory, int out_fd, int err_fd) {
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
    // The output pipes go in place before the inherited descriptors, whose
    // temporary copies sit above every descriptor they could land on.
    if (out_fd >= 0 && (err = posix_spawn_file_actions_adddup2(&actions, out_fd, 1)) != 0) goto destroy;
    if (err_fd >= 0 && (err = posix_spawn_file_actions_adddup2(&actions, err_fd, 2)) != 0) goto destroy;
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
