// bellwether-exec: the exec shim the master spawns in place of the app.
//
//   bellwether-exec MASTER_PID CREDENTIALS PATH ARGV0 [ARG...]
//
// CREDENTIALS is "-", or "UID:GID:GROUPS:UMASK" (--user, --group, --umask),
// each field "-" to leave it as it is, GROUPS a comma-separated list of gids:
// the shim sets the supplementary groups, then the gid, then the uid (real,
// effective and saved), then the umask. Then — a change of credentials
// clears it, so after them — it asks the kernel to SIGKILL it when the
// master dies (PR_SET_PDEATHSIG survives execve), and checks that the master
// is still its parent — the master may have died between posix_spawn and
// prctl, in which case the death signal would never come. It resets the two
// signals glibc's posix_spawn leaves ignored, sets LISTEN_PID and
// WATCHDOG_PID to its own pid, and execve()s the app in place.
//
// It runs on every worker start, so it must cost next to nothing. On Linux
// x86_64 and aarch64 it has its own entry point and makes raw system calls:
// no dynamic loader, no libc start-up (whose CPU-feature probing is costly
// in a VM), no runtime initialisers. The build links it statically with
// -nostartfiles (Package.swift). Elsewhere it is an ordinary C program.
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))

#if defined(__x86_64__)
enum { SYS_WRITE = 1, SYS_RT_SIGACTION = 13, SYS_GETPID = 39, SYS_GETPPID = 110, SYS_PRCTL = 157,
       SYS_EXECVE = 59, SYS_EXIT_GROUP = 231, SYS_SETGROUPS = 116, SYS_SETRESUID = 117, SYS_SETRESGID = 119,
       SYS_UMASK = 95 };

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
       SYS_EXECVE = 221, SYS_EXIT_GROUP = 94, SYS_SETGROUPS = 159, SYS_SETRESUID = 147, SYS_SETRESGID = 149,
       SYS_UMASK = 166 };

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

enum { PR_SET_PDEATHSIG_ = 1, SIGKILL_ = 9, ENOENT_ = 2, EACCES_ = 13, ENOEXEC_ = 8, EPERM_ = 1 };

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

// A number in `base` at *cursor, which moves past it; -1 if there is none
// or it does not fit in 32 bits.
static long number(const char **cursor, long base) {
    const char *p = *cursor;
    long value = 0;
    for (; *p >= '0' && *p < '0' + base; p++) {
        value = value * base + (*p - '0');
        if (value > 0xffffffffL) return -1;
    }
    if (p == *cursor) return -1;
    *cursor = p;
    return value;
}

// One CREDENTIALS field: -2 for "-", -1 if malformed, else its value.
static long field(const char **cursor, long base) {
    if (**cursor == '-') { (*cursor)++; return -2; }
    return number(cursor, base);
}

static __attribute__((noreturn)) void refuse(const char *what, long error) {
    say("bellwether-exec: ");
    say(what);
    say(error == EPERM_ ? ": Operation not permitted\n" : ": failed\n");
    leave(126);
}

static void apply_credentials(const char *spec) {
    static unsigned int groups[1024];
    if (spec[0] == '-' && spec[1] == '\0') return;
    const char *p = spec;
    long uid = field(&p, 10);
    long gid = (*p++ == ':') ? field(&p, 10) : -1;
    long count = -2;
    if (*p++ != ':') count = -1;
    else if (*p == '-') p++;
    else for (count = 0; count >= 0;) {
        long group = count < 1024 ? number(&p, 10) : -1;
        if (group < 0) { count = -1; break; }
        groups[count++] = (unsigned int)group;
        if (*p != ',') break;
        p++;
    }
    long mask = (count != -1 && *p++ == ':') ? field(&p, 8) : -1;
    if (uid == -1 || gid == -1 || count == -1 || mask == -1 || mask > 0777 || *p != '\0') {
        say("bellwether-exec: malformed credentials\n");
        leave(125);
    }
    long error;
    if (count >= 0 && (error = -raw(SYS_SETGROUPS, count, (long)groups, 0, 0)) != 0) refuse("setgroups", error);
    if (gid >= 0 && (error = -raw(SYS_SETRESGID, gid, gid, gid, 0)) != 0) refuse("setresgid", error);
    if (uid >= 0 && (error = -raw(SYS_SETRESUID, uid, uid, uid, 0)) != 0) refuse("setresuid", error);
    if (mask >= 0) raw(SYS_UMASK, mask, 0, 0, 0);
}

__attribute__((noreturn, used)) void shim_main(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    if (argc < 5) {
        say("bellwether-exec: usage: bellwether-exec MASTER_PID CREDENTIALS PATH ARGV0 [ARG...]\n");
        leave(125);
    }
    const char *digits = argv[1];
    long master = number(&digits, 10);
    if (master <= 0 || *digits != '\0') leave(125);
    apply_credentials(argv[2]);
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

    long error = -raw(SYS_EXECVE, (long)argv[3], (long)(argv + 4), (long)envp, 0);
    say("bellwether-exec: ");
    say(argv[3]);
    say(error == ENOENT_ ? ": No such file or directory\n"
        : error == EACCES_ ? ": Permission denied\n"
        : error == ENOEXEC_ ? ": Exec format error\n"
        : ": execve failed\n");
    leave(error == ENOENT_ ? 127 : 126);
}

#else  // A portable version with libc.

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char **environ;

// One CREDENTIALS field: -2 for "-", -1 if malformed, else its value.
static long field(char **cursor, int base) {
    if (**cursor == '-') { (*cursor)++; return -2; }
    char *end = NULL;
    long value = strtol(*cursor, &end, base);
    if (end == *cursor || value < 0 || value > 0xffffffffL) return -1;
    *cursor = end;
    return value;
}

static int apply_credentials(char *spec) {
    static gid_t groups[1024];
    if (strcmp(spec, "-") == 0) return 0;
    char *p = spec;
    long uid = field(&p, 10), gid = -1, mask = -1;
    int count = -2, ok = 0;
    if (*p++ == ':' && (gid = field(&p, 10)) != -1 && *p++ == ':') {
        if (*p == '-') p++;
        else for (count = 0; count < 1024; ) {
            long group = field(&p, 10);
            if (group < 0) { count = -1; break; }
            groups[count++] = (gid_t)group;
            if (*p != ',') break;
            p++;
        }
        ok = count != -1 && *p++ == ':' && (mask = field(&p, 8)) != -1 && mask <= 0777 && *p == '\0';
    }
    if (!ok || uid == -1) {
        fputs("bellwether-exec: malformed credentials\n", stderr);
        return 125;
    }
    const char *failed = count >= 0 && setgroups(count, groups) != 0 ? "setgroups"
        : gid >= 0 && setgid((gid_t)gid) != 0 ? "setgid"
        : uid >= 0 && setuid((uid_t)uid) != 0 ? "setuid" : NULL;
    if (failed) {
        fprintf(stderr, "bellwether-exec: %s: %s\n", failed, strerror(errno));
        return 126;
    }
    if (mask >= 0) umask((mode_t)mask);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fputs("bellwether-exec: usage: bellwether-exec MASTER_PID CREDENTIALS PATH ARGV0 [ARG...]\n", stderr);
        return 125;
    }
    char *end = NULL;
    long master = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || master <= 0) return 125;
    int refused = apply_credentials(argv[2]);
    if (refused) return refused;
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return 125;
#endif
    if (getppid() != (pid_t)master) return 125;
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (getenv("LISTEN_PID")) setenv("LISTEN_PID", pid, 1);
    if (getenv("WATCHDOG_PID")) setenv("WATCHDOG_PID", pid, 1);
    execve(argv[3], argv + 4, environ);
    int error = errno;
    fprintf(stderr, "bellwether-exec: %s: %s\n", argv[3], strerror(error));
    return error == ENOENT ? 127 : 126;
}

#endif
