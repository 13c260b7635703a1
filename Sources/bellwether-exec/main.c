// bellwether-exec: the exec shim the master spawns in place of the app.
//
//   bellwether-exec MASTER_PID PATH ARGV0 [ARG...]
//
// It asks the kernel to SIGKILL it when the master dies (PR_SET_PDEATHSIG
// survives execve), then checks that the master is still its parent — the
// master may have died between posix_spawn and prctl, in which case the
// death signal would never come — and execve()s the app in place. It does
// nothing else, so that it costs one exec of a small static-free C binary.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) {
        fputs("bellwether-exec: usage: bellwether-exec MASTER_PID PATH ARGV0 [ARG...]\n", stderr);
        return 125;
    }
    char *end = NULL;
    long master = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || master <= 0) {
        fprintf(stderr, "bellwether-exec: bad master pid \"%s\"\n", argv[1]);
        return 125;
    }
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
        fprintf(stderr, "bellwether-exec: prctl(PR_SET_PDEATHSIG): %s\n", strerror(errno));
        return 125;
    }
#endif
    if (getppid() != (pid_t)master) return 125;  // the master is already gone

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
    // glibc's posix_spawn leaves its two internal signals (32, 33) ignored in
    // the child, and an ignored disposition survives execve. The app gets
    // every disposition default, so reset them with the raw system call
    // (glibc's sigaction refuses to touch them).
    struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = {0};
    for (int sig = 32; sig < SIGRTMIN; sig++)
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
#endif

    execve(argv[2], argv + 3, environ);
    int error = errno;
    fprintf(stderr, "bellwether-exec: %s: %s\n", argv[2], strerror(error));
    return error == ENOENT ? 127 : 126;
}
