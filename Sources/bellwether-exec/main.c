// bellwether-exec: the exec shim the master spawns in place of the app.
//
//   bellwether-exec MASTER_PID PATH ARGV0 [ARG...]
//
// It asks the kernel to SIGKILL it when the master dies (PR_SET_PDEATHSIG
// survives execve), then checks that the master is still its parent — the
// master may have died between posix_spawn and prctl, in which case the
// death signal would never come — resets the two signals glibc's
// posix_spawn leaves ignored, sets LISTEN_PID and WATCHDOG_PID to its own
// pid, and execve()s the app in place.
//
// It runs on every worker start, so it must cost next to nothing. On Linux
// x86_64 and aarch64 it has its own entry point and makes raw system calls:
// no dynamic loader, no libc start-up (whose CPU-feature probing is costly
// in a VM), no runtime initialisers. The build links it statically with
// -nostartfiles (Package.swift). Elsewhere it is an ordinary C program.
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))

#if defined(__x86_64__)
enum { SYS_WRITE = 1, SYS_RT_SIGACTION = 13, SYS_GETPID = 39, SYS_GETPPID = 110, SYS_PRCTL = 157,
       SYS_EXECVE = 59, SYS_EXIT_GROUP = 231 };

static long raw(long n, long a, long b, long c, long d) {
    long result;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(result) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                     : "rcx", "r11", "memory");
    return result;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call shim_main\n"
        "  hlt\n");
#else
enum { SYS_WRITE = 64, SYS_RT_SIGACTION = 134, SYS_GETPID = 172, SYS_GETPPID = 173, SYS_PRCTL = 167,
       SYS_EXECVE = 221, SYS_EXIT_GROUP = 94 };

static long raw(long n, long a, long b, long c, long d) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  bl shim_main\n"
        "  brk #0\n");
#endif

enum { PR_SET_PDEATHSIG_ = 1, SIGKILL_ = 9, ENOENT_ = 2, EACCES_ = 13, ENOEXEC_ = 8 };

// volatile: the compiler must not turn this loop into a call to libc's
// strlen, which is an IFUNC that only libc's (skipped) start-up resolves.
static unsigned long length(const char *text) {
    const volatile char *p = text;
    unsigned long n = 0;
    while (p[n]) n++;
    return n;
}

// "NAME=" followed by `pid` in decimal, into `buffer`.
static char *with_pid(char *buffer, const char *name, long pid) {
    char *out = buffer, digits[24];
    int count = 0;
    while (*name) *out++ = *name++;
    do { digits[count++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0);
    while (count > 0) *out++ = digits[--count];
    *out = '\0';
    return buffer;
}

static int starts_with(const char *text, const char *prefix) {
    while (*prefix) if (*text++ != *prefix++) return 0;
    return 1;
}

static void say(const char *text) { raw(SYS_WRITE, 2, (long)text, (long)length(text), 0); }

static __attribute__((noreturn)) void leave(int status) {
    for (;;) raw(SYS_EXIT_GROUP, status, 0, 0, 0);
}

__attribute__((noreturn, used)) void shim_main(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    if (argc < 4) {
        say("bellwether-exec: usage: bellwether-exec MASTER_PID PATH ARGV0 [ARG...]\n");
        leave(125);
    }
    long master = 0;
    for (const char *digit = argv[1]; *digit; digit++) {
        if (*digit < '0' || *digit > '9' || master > 1000000000L) leave(125);
        master = master * 10 + (*digit - '0');
    }
    if (raw(SYS_PRCTL, PR_SET_PDEATHSIG_, SIGKILL_, 0, 0) != 0) leave(125);
    if (raw(SYS_GETPPID, 0, 0, 0, 0) != master) leave(125);  // the master is already gone

    // struct kernel_sigaction {handler, flags, restorer, mask}: all zero = SIG_DFL.
    volatile unsigned long dfl[4] = {0, 0, 0, 0};
    for (long sig = 32; sig <= 33; sig++) raw(SYS_RT_SIGACTION, sig, (long)dfl, 0, 8);

    // systemd's convention: LISTEN_PID and WATCHDOG_PID name the process the
    // sockets and the watchdog are for, which is this one once it executes
    // the app. The master leaves placeholders; fill in our pid.
    static char listen_pid[40], watchdog_pid[40];
    long self = raw(SYS_GETPID, 0, 0, 0, 0);
    for (char **entry = envp; *entry; entry++) {
        if (starts_with(*entry, "LISTEN_PID=")) *entry = with_pid(listen_pid, "LISTEN_PID=", self);
        else if (starts_with(*entry, "WATCHDOG_PID=")) *entry = with_pid(watchdog_pid, "WATCHDOG_PID=", self);
    }

    long error = -raw(SYS_EXECVE, (long)argv[2], (long)(argv + 3), (long)envp, 0);
    say("bellwether-exec: ");
    say(argv[2]);
    say(error == ENOENT_ ? ": No such file or directory\n"
        : error == EACCES_ ? ": Permission denied\n"
        : error == ENOEXEC_ ? ": Exec format error\n"
        : ": execve failed\n");
    leave(error == ENOENT_ ? 127 : 126);
}

#else  // A portable version with libc.

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) {
        fputs("bellwether-exec: usage: bellwether-exec MASTER_PID PATH ARGV0 [ARG...]\n", stderr);
        return 125;
    }
    char *end = NULL;
    long master = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || master <= 0) return 125;
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return 125;
#endif
    if (getppid() != (pid_t)master) return 125;
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (getenv("LISTEN_PID")) setenv("LISTEN_PID", pid, 1);
    if (getenv("WATCHDOG_PID")) setenv("WATCHDOG_PID", pid, 1);
    execve(argv[2], argv + 3, environ);
    int error = errno;
    fprintf(stderr, "bellwether-exec: %s: %s\n", argv[2], strerror(error));
    return error == ENOENT ? 127 : 126;
}

#endif
