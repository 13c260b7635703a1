// The lease guard: a small process between the master and the scheduler app
// when a network lease is in use.
//
//   bellwether-guard PIPE_FD GRACE_MS SHIM CREDENTIALS APP ARGV0 [ARG...]
//
// It spawns the app through the exec shim (so the app dies with the guard) in
// the guard's own process group, forwards every signal it receives to the app,
// and exits as the app does. Over the pipe the master sends absolute renew
// deadlines (8-byte CLOCK_MONOTONIC nanoseconds). When the latest deadline
// passes, or the pipe closes (the master is gone), the guard sends TERM to its
// process group and KILL GRACE_MS later. A stopped or wedged master cannot
// step down; its guard still does, on time.
#define _GNU_SOURCE
#include "CBellwether.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/signalfd.h>
#endif

extern char **environ;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int parse_number(const char *text, long long *value) {
    char *end = NULL;
    errno = 0;
    *value = strtoll(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *value >= 0;
}

static __attribute__((noreturn)) void exit_like(int status) {
    if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    signal(sig, SIG_DFL);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    raise(sig);
    _exit(128 + sig);
}

#ifdef __linux__
int bw_guard_main(int argc, char **argv) {
    long long pipe_fd, grace_ms;
    if (argc < 7 || !parse_number(argv[1], &pipe_fd) || !parse_number(argv[2], &grace_ms)) {
        fprintf(stderr, "bellwether-guard: usage: bellwether-guard PIPE_FD GRACE_MS SHIM CREDENTIALS APP ARGV0 [ARG...]\n");
        return 125;
    }
    int deadlines = (int)pipe_fd;
    if (fcntl(deadlines, F_SETFD, FD_CLOEXEC) != 0 || fcntl(deadlines, F_SETFL, O_NONBLOCK) != 0) {
        fprintf(stderr, "bellwether-guard: deadline pipe %d: %s\n", deadlines, strerror(errno));
        return 125;
    }
    sigset_t all, empty;
    sigfillset(&all);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &all, NULL);
    int signals = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (signals < 0) {
        fprintf(stderr, "bellwether-guard: signalfd: %s\n", strerror(errno));
        return 125;
    }

    // The app: SHIM GUARD_PID CREDENTIALS APP ARGV0 ARGS..., in our process group.
    char self[24];
    snprintf(self, sizeof self, "%d", (int)getpid());
    char **child_argv = calloc((size_t)argc, sizeof *child_argv);
    if (child_argv == NULL) return 125;
    child_argv[0] = argv[3];
    child_argv[1] = self;
    for (int i = 4; i < argc; i++) child_argv[i - 2] = argv[i];
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    pid_t app;
    int error = posix_spawn(&app, argv[3], NULL, &attr, child_argv, environ);
    posix_spawnattr_destroy(&attr);
    if (error != 0) {
        fprintf(stderr, "bellwether-guard: posix_spawn %s: %s\n", argv[3], strerror(error));
        return 125;
    }

    int64_t deadline = INT64_MAX, kill_at = INT64_MAX;
    int terminating = 0;
    for (;;) {
        int64_t now = now_ns();
        if (!terminating && now >= deadline) {
            fprintf(stderr, "bellwether-guard: %s; stopping the scheduler (pid %d), SIGKILL in %lld ms\n",
                    deadlines < 0 ? "the master is gone" : "renew deadline passed", (int)app, grace_ms);
            terminating = 1;
            kill_at = now + grace_ms * 1000000;
            kill(0, SIGTERM);  // our own TERM stays blocked and is read below
        }
        if (terminating && now >= kill_at) kill(0, SIGKILL);  // the guard goes with its group

        int64_t next = terminating ? kill_at : deadline;
        int timeout = next == INT64_MAX ? -1 : (int)((next - now + 999999) / 1000000);
        struct pollfd fds[2] = {{signals, POLLIN, 0}, {deadlines, POLLIN, 0}};
        if (poll(fds, deadlines >= 0 ? 2 : 1, timeout) < 0 && errno != EINTR) return 125;

        if (deadlines >= 0 && fds[1].revents) {
            int64_t value;
            ssize_t got;
            while ((got = read(deadlines, &value, sizeof value)) == (ssize_t)sizeof value) deadline = value;
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                close(deadlines);
                deadlines = -1;
                deadline = 0;  // acted on at the top of the loop
            }
        }
        struct signalfd_siginfo info;
        while (read(signals, &info, sizeof info) == (ssize_t)sizeof info) {
            int sig = (int)info.ssi_signo;
            if (sig == SIGCHLD) continue;
            if (!(terminating && sig == SIGTERM)) kill(app, sig);
        }
        int status;
        pid_t reaped;
        while ((reaped = waitpid(-1, &status, WNOHANG)) > 0) {
            if (reaped == app) exit_like(status);
        }
    }
}
#else
int bw_guard_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "bellwether-guard: not available on this system\n");
    return 125;
}
#endif
