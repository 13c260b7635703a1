// bellwether-exec: what the master spawns for every worker — a tiny guard
// that owns the worker's whole process tree.
//
//   bellwether-exec MASTER_PID CREDENTIALS GUARD PATH ARGV0 [ARG...]
//
// CREDENTIALS is "-", or "UID:GID:GROUPS:UMASK" (--user, --group, --umask),
// each field "-" to leave it as it is, GROUPS a comma-separated list of gids:
// the guard sets the supplementary groups, then the gid, then the uid (real,
// effective and saved), then the umask, before anything else.
//
// GUARD is "LINK:GRACE_MS:TOKEN". LINK is the read end of a pipe whose write
// end only the master holds: end of file means the master is gone, however
// it died; a lease scheduler's master also sends 8-byte CLOCK_MONOTONIC renew
// deadlines on it. TOKEN is the scheduler token's locked descriptor, or "-".
// The guard keeps both to itself (the app never sees them), becomes a child
// subreaper, so that every process the app starts — forked, double-forked,
// setsid — stays in its subtree, and forks the app (death signal SIGKILL,
// LISTEN_PID and WATCHDOG_PID set to the app's pid, an empty signal mask),
// tells the master the app's pid (MAINPID= on NOTIFY_SOCKET, if there is
// one). Then it forwards every signal it gets to the app, and:
//   - when the app exits: TERM to whatever is left of the tree, SIGKILL to
//     it GRACE_MS later;
//   - when the master is gone, or a renew deadline passes: TERM to the whole
//     tree, SIGKILL GRACE_MS later;
//   - when the master queues BW_KILL_SIGNAL with BW_KILL_TREE (sigqueue):
//     SIGKILL to the whole tree at once;
// and once no process of the tree is left, it exits as the app did. So the
// token is released only when every process of the scheduler's tree is gone.
// GUARD "-" makes it a plain exec shim: death signal, then execve in place.
//
//   bellwether-exec MASTER_PID - LINK:GRACE_MS:TOKEN:APP_PID
//
// ADOPT mode (the raw-syscall build below only), for a worker forked by the
// fork server (share/forkserver.py): a fourth GUARD field names the app,
// already running as this process's child (the fork server's copy forked
// it, then executed this guard in its place). The guard does all of the above except the fork and the app's
// set-up, which the app did itself; nothing follows GUARD, and CREDENTIALS
// must be "-" (the app already runs with the fork server's). The app may
// have exited before the guard started: its SIGCHLD is then lost, so the
// guard reaps once at the start, and a pid that is not its child is refused.
//
// It runs on every worker start, so it must cost next to nothing. On Linux
// x86_64 and aarch64 it has its own entry point and makes raw system calls:
// no dynamic loader, no libc start-up (whose CPU-feature probing is costly
// in a VM), no runtime initialisers. The build links it statically without
// start files, libc or the Swift runtime (Package.swift). Elsewhere it is an
// ordinary C program.
#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))

#if defined(__x86_64__)
enum { SYS_READ = 0, SYS_WRITE = 1, SYS_CLOSE = 3, SYS_RT_SIGACTION = 13, SYS_RT_SIGPROCMASK = 14,
       SYS_GETPID = 39, SYS_CLONE = 56, SYS_EXECVE = 59, SYS_WAIT4 = 61, SYS_KILL = 62, SYS_FCNTL = 72,
       SYS_UMASK = 95, SYS_GETPPID = 110, SYS_SETGROUPS = 116, SYS_SETRESUID = 117, SYS_SETRESGID = 119,
       SYS_PRCTL = 157, SYS_GETDENTS64 = 217, SYS_CLOCK_GETTIME = 228, SYS_EXIT_GROUP = 231,
       SYS_OPENAT = 257, SYS_PPOLL = 271, SYS_SIGNALFD4 = 289, SYS_PRLIMIT64 = 302, SYS_SOCKET = 41,
       SYS_SENDTO = 44, SYS_PIDFD_OPEN = 434, SYS_PIDFD_SEND_SIGNAL = 424 };

static long raw6(long n, long a, long b, long c, long d, long e, long f) {
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(result) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
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
enum { SYS_READ = 63, SYS_WRITE = 64, SYS_CLOSE = 57, SYS_RT_SIGACTION = 134, SYS_RT_SIGPROCMASK = 135,
       SYS_GETPID = 172, SYS_CLONE = 220, SYS_EXECVE = 221, SYS_WAIT4 = 260, SYS_KILL = 129, SYS_FCNTL = 25,
       SYS_UMASK = 166, SYS_GETPPID = 173, SYS_SETGROUPS = 159, SYS_SETRESUID = 147, SYS_SETRESGID = 149,
       SYS_PRCTL = 167, SYS_GETDENTS64 = 61, SYS_CLOCK_GETTIME = 113, SYS_EXIT_GROUP = 94,
       SYS_OPENAT = 56, SYS_PPOLL = 73, SYS_SIGNALFD4 = 74, SYS_PRLIMIT64 = 261, SYS_SOCKET = 198,
       SYS_SENDTO = 206, SYS_PIDFD_OPEN = 434, SYS_PIDFD_SEND_SIGNAL = 424 };

static long raw6(long n, long a, long b, long c, long d, long e, long f) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
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

// Most calls take at most four arguments.
static long raw(long n, long a, long b, long c, long d) { return raw6(n, a, b, c, d, 0, 0); }

enum { PR_SET_PDEATHSIG_ = 1, PR_SET_CHILD_SUBREAPER_ = 36, SIGKILL_ = 9, SIGTERM_ = 15,
       SIGCHLD_ = 17, ENOSYS_ = 38, SIG_UNBLOCK_ = 1, ENOENT_ = 2, EACCES_ = 13, ENOEXEC_ = 8, EPERM_ = 1, EINTR_ = 4, ECHILD_ = 10,
       F_SETFD_ = 2, F_SETFL_ = 4, FD_CLOEXEC_ = 1, EAGAIN_ = 11, O_NONBLOCK_ = 04000, O_CLOEXEC_ = 02000000, AT_FDCWD_ = -100,
       SIG_BLOCK_ = 0, SIG_SETMASK_ = 2, WNOHANG_ = 1, WALL_ = 0x40000000, POLLIN_ = 1, POLLNVAL_ = 0x20, SI_QUEUE_ = -1,
       RLIMIT_CORE_ = 4, CLOCK_MONOTONIC_ = 1 };

// BW_KILL_SIGNAL and BW_KILL_TREE: the master's order to kill the tree.
#include "../CBellwether/include/CBellwetherGuard.h"

// volatile: the compiler must not turn this loop into a call to strlen;
// no libc is linked (and its strlen is an IFUNC that only its start-up
// resolves).
static unsigned long length(const char *text) {
    const volatile char *p = text;
    unsigned long n = 0;
    while (p[n]) n++;
    return n;
}

// `text` followed by `value` in decimal, into `buffer`.
static char *with_number(char *buffer, const char *text, long value) {
    char *out = buffer, digits[24];
    int count = 0;
    while (*text) *out++ = *text++;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value > 0);
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

// One colon-separated field: -2 for "-", -1 if malformed, else its value.
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

static __attribute__((noreturn)) void malformed(const char *what) {
    say("bellwether-exec: malformed ");
    say(what);
    say("\n");
    leave(125);
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
    if (uid == -1 || gid == -1 || count == -1 || mask == -1 || mask > 0777 || *p != '\0') malformed("credentials");
    long error;
    if (count >= 0 && (error = -raw(SYS_SETGROUPS, count, (long)groups, 0, 0)) != 0) refuse("setgroups", error);
    if (gid >= 0 && (error = -raw(SYS_SETRESGID, gid, gid, gid, 0)) != 0) refuse("setresgid", error);
    if (uid >= 0 && (error = -raw(SYS_SETRESUID, uid, uid, uid, 0)) != 0) refuse("setresuid", error);
    if (mask >= 0) raw(SYS_UMASK, mask, 0, 0, 0);
}

// Becomes the app: death signal, default signals, LISTEN_PID and
// WATCHDOG_PID, execve. `parent` must still be our parent after the death
// signal is set, or it would never come.
static __attribute__((noreturn)) void become_app(long parent, char **argv, char **envp) {
    if (raw(SYS_PRCTL, PR_SET_PDEATHSIG_, SIGKILL_, 0, 0) != 0) leave(125);
    if (raw(SYS_GETPPID, 0, 0, 0, 0) != parent) leave(125);  // already gone

    // struct kernel_sigaction {handler, flags, restorer, mask}: all zero = SIG_DFL.
    // glibc's posix_spawn leaves its two internal signals ignored.
    volatile unsigned long dfl[4] = {0, 0, 0, 0};
    for (long sig = 32; sig <= 33; sig++) raw(SYS_RT_SIGACTION, sig, (long)dfl, 0, 8);
    unsigned long empty = 0;
    raw(SYS_RT_SIGPROCMASK, SIG_SETMASK_, (long)&empty, 0, 8);

    // systemd's convention: LISTEN_PID and WATCHDOG_PID name the process the
    // sockets and the watchdog are for, which is this one once it executes
    // the app. The master leaves placeholders; fill in our pid.
    static char listen_pid[40], watchdog_pid[40];
    long self = raw(SYS_GETPID, 0, 0, 0, 0);
    for (char **entry = envp; *entry; entry++) {
        if (starts_with(*entry, "LISTEN_PID=")) *entry = with_number(listen_pid, "LISTEN_PID=", self);
        else if (starts_with(*entry, "WATCHDOG_PID=")) *entry = with_number(watchdog_pid, "WATCHDOG_PID=", self);
    }

    long error = -raw(SYS_EXECVE, (long)argv[0], (long)(argv + 1), (long)envp, 0);
    say("bellwether-exec: ");
    say(argv[0]);
    say(error == ENOENT_ ? ": No such file or directory\n"
        : error == EACCES_ ? ": Permission denied\n"
        : error == ENOEXEC_ ? ": Exec format error\n"
        : ": execve failed\n");
    leave(error == ENOENT_ ? 127 : 126);
}

// --- the guard -----------------------------------------------------------

static long self_pid, master_pid;

static long long now_ns(void) {
    long spec[2] = {0, 0};
    raw(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC_, (long)spec, 0, 0);
    return (long long)spec[0] * 1000000000LL + spec[1];
}

// Every process below the guard, by passes over /proc until one adds
// nothing: a process joins once its parent is the guard or a member (a child
// listed before its parent is caught by the next pass). Only members are
// kept, so the table is bounded by the tree, not by the host. A process
// forked meanwhile is caught by a later sweep: once its parent dies it is ours.
enum { MAX_BELOW = 16384 };
static int below[MAX_BELOW];

static long read_parent(const char *name) {
    char path[64], text[512];
    char *out = path;
    for (const char *in = "/proc/"; *in; in++) *out++ = *in;
    for (const char *in = name; *in && out < path + 40; in++) *out++ = *in;
    for (const char *in = "/stat"; *in; in++) *out++ = *in;
    *out = '\0';
    long fd = raw(SYS_OPENAT, AT_FDCWD_, (long)path, O_CLOEXEC_, 0);
    if (fd < 0) return -1;
    long got = raw(SYS_READ, fd, (long)text, sizeof text - 1, 0);
    raw(SYS_CLOSE, fd, 0, 0, 0);
    if (got <= 0) return -1;
    text[got] = '\0';
    // "pid (comm) S ppid ...": comm may hold ')' and spaces; take the last ')'.
    char *close = 0;
    for (char *p = text; *p; p++) if (*p == ')') close = p;
    if (close == 0 || close[1] != ' ' || close[2] == '\0' || close[3] != ' ') return -1;
    const char *cursor = close + 4;
    return number(&cursor, 10);
}

static int is_member(long pid, int found) {
    if (pid == self_pid) return 1;
    for (int i = 0; i < found; i++) if (below[i] == pid) return 1;
    return 0;
}

static int descendants(void) {
    static char entries[4096];
    int found = 0;
    for (int added = 1; added && found < MAX_BELOW;) {
        added = 0;
        long directory = raw(SYS_OPENAT, AT_FDCWD_, (long)"/proc", O_CLOEXEC_, 0);
        if (directory < 0) return found;
        long got;
        while ((got = raw(SYS_GETDENTS64, directory, (long)entries, sizeof entries, 0)) > 0) {
            for (long offset = 0; offset < got;) {
                // struct linux_dirent64 {u64 ino; s64 off; u16 reclen; u8 type; char name[];}
                const char *entry = entries + offset;
                unsigned short size = *(const unsigned short *)(entry + 16);
                const char *name = entry + 19, *cursor = name;
                long pid = number(&cursor, 10);
                offset += size;
                if (pid <= 0 || *cursor != '\0' || found >= MAX_BELOW || is_member(pid, found)) continue;
                if (is_member(read_parent(name), found)) {
                    below[found++] = (int)pid;
                    added = 1;
                }
            }
        }
        raw(SYS_CLOSE, directory, 0, 0, 0);
    }
    return found;
}

// Signals every process of the tree. Each is pinned with a pidfd and its
// parent checked again before the signal, so a pid that was reaped and
// reused meanwhile is never hit (plain kill() where pidfds are missing).
static void signal_tree(int sig) {
    static int refused_once;
    int found = descendants();
    for (int i = 0; i < found; i++) {
        long result, pidfd = raw(SYS_PIDFD_OPEN, below[i], 0, 0, 0);
        if (pidfd == -ENOSYS_) {
            result = raw(SYS_KILL, below[i], sig, 0, 0);
        } else if (pidfd < 0) {
            continue;  // gone
        } else {
            char name[24];
            with_number(name, "", below[i]);
            result = is_member(read_parent(name), found) ? raw(SYS_PIDFD_SEND_SIGNAL, pidfd, sig, 0, 0) : 0;
            raw(SYS_CLOSE, pidfd, 0, 0, 0);
        }
        if (result == -EPERM_ && !refused_once) {
            char note[96];
            refused_once = 1;
            say(with_number(note, "bellwether-exec: may not signal pid ", below[i]));
            say(" of the worker's tree (Operation not permitted); it may outlive the worker\n");
        }
    }
}

// Exits the way the app did: its exit status, or its signal (without a
// core dump of our own).
static __attribute__((noreturn)) void exit_like(int status) {
    int sig = status & 0x7f;
    if (sig == 0) leave((status >> 8) & 0xff);
    long no_core[2] = {0, 0};
    raw(SYS_PRLIMIT64, 0, RLIMIT_CORE_, (long)no_core, 0);
    volatile unsigned long dfl[4] = {0, 0, 0, 0};
    raw(SYS_RT_SIGACTION, sig, (long)dfl, 0, 8);
    unsigned long only = 1UL << (sig - 1);  // not another one still pending
    raw(SYS_KILL, self_pid, sig, 0, 0);
    raw(SYS_RT_SIGPROCMASK, SIG_UNBLOCK_, (long)&only, 0, 8);
    leave(128 + sig);
}

// One datagram to the master's NOTIFY_SOCKET, if there is one: MAINPID=
// (systemd's name) with the app's pid, for its logs and `bellwether status`;
// X_BELLWETHER_APP_EXITED=1 when the app has exited and the rest of its tree
// is being ended, so that the scheduler's slot gets a stand-in meanwhile.
static void notify_master(char **envp, const char *message) {
    const char *address = 0;
    for (char **entry = envp; *entry; entry++) if (starts_with(*entry, "NOTIFY_SOCKET=")) address = *entry + 14;
    if (address == 0 || *address == '\0') return;
    // struct sockaddr_un: sa_family_t (2 bytes), then the path; '@' is the abstract namespace.
    char target[2 + 108];
    unsigned long size = length(address);
    if (size >= 108) return;
    target[0] = 1;  // AF_UNIX
    target[1] = 0;
    for (unsigned long i = 0; i < size; i++) target[2 + i] = address[i];
    if (address[0] == '@') target[2] = '\0';
    else target[2 + size++] = '\0';
    long fd = raw(SYS_SOCKET, 1 /* AF_UNIX */, 2 /* SOCK_DGRAM */ | O_CLOEXEC_, 0, 0);
    if (fd < 0) return;
    raw6(SYS_SENDTO, fd, (long)message, (long)length(message), 0, (long)target, (long)(2 + size));
    raw(SYS_CLOSE, fd, 0, 0, 0);
}

// RUNNING: the app runs. DRAINING: TERM was sent to the tree (the app is
// gone, the master is gone or a deadline passed); SIGKILL at `kill_at`.
// KILLING: SIGKILL to the tree, again every 100 ms until none is left.
enum Phase { RUNNING, DRAINING, KILLING };

static enum Phase phase = RUNNING;
static long long kill_at = -1, grace;

static void drain(void) {
    if (phase != RUNNING) return;
    phase = DRAINING;
    kill_at = now_ns() + grace;
    signal_tree(SIGTERM_);
}

static long app;
static int app_status = -1;  // the app's wait status, once reaped

// Reaps every child that has exited. Once the app has: TERM to the rest of
// the tree, and the app's exit once nothing of the tree is left.
static void reap(char **envp) {
    long reaped;
    int status = 0;
    while ((reaped = raw(SYS_WAIT4, -1, (long)&status, WNOHANG_ | WALL_, 0)) > 0) {
        if (reaped == app) app_status = status;
    }
    if (app_status < 0) return;
    if (reaped == -ECHILD_) exit_like(app_status);
    if (phase == RUNNING) notify_master(envp, "X_BELLWETHER_APP_EXITED=1");
    drain();
}

// GUARD is "LINK:GRACE_MS:TOKEN", or with ":APP_PID" the app to adopt.
static __attribute__((noreturn)) void guard(const char *spec, char **argv, char **envp) {
    const char *p = spec;
    long link = number(&p, 10);
    long grace_ms = (*p++ == ':') ? number(&p, 10) : -1;
    long token = (grace_ms >= 0 && *p++ == ':') ? field(&p, 10) : -1;
    long adopted = (token != -1 && *p == ':') ? (p++, number(&p, 10)) : 0;
    if (link < 0 || grace_ms < 0 || token == -1 || adopted < 0 || *p != '\0' || (adopted > 0) != (argv[0] == 0)) {
        malformed("guard");
    }
    grace = (long long)grace_ms * 1000000LL;

    self_pid = raw(SYS_GETPID, 0, 0, 0, 0);
    // The app must never hold the master's link or the scheduler token.
    if (raw(SYS_FCNTL, link, F_SETFD_, FD_CLOEXEC_, 0) != 0) malformed("guard: no link descriptor");
    if (token >= 0 && raw(SYS_FCNTL, token, F_SETFD_, FD_CLOEXEC_, 0) != 0) malformed("guard: no token descriptor");
    raw(SYS_FCNTL, link, F_SETFL_, O_NONBLOCK_, 0);
    if (raw(SYS_PRCTL, PR_SET_CHILD_SUBREAPER_, 1, 0, 0) != 0) leave(125);
    unsigned long all = ~0UL;
    raw(SYS_RT_SIGPROCMASK, SIG_BLOCK_, (long)&all, 0, 8);
    long signals = raw(SYS_SIGNALFD4, -1, (long)&all, 8, O_CLOEXEC_ | O_NONBLOCK_);
    if (signals < 0) leave(125);

    char note[96];
    if (adopted > 0) {
        // Still our child until reaped, so its pid cannot be reused meanwhile.
        int status = 0;
        long reaped = raw(SYS_WAIT4, adopted, (long)&status, WNOHANG_ | WALL_, 0);
        if (reaped < 0) {
            say(with_number(note, "bellwether-exec: cannot adopt pid ", adopted));
            say(": not a child of the guard\n");
            leave(125);
        }
        app = adopted;
        if (reaped == app) app_status = status;
    } else {
        app = raw(SYS_CLONE, SIGCHLD_, 0, 0, 0);
        if (app == 0) become_app(self_pid, argv, envp);
        if (app < 0) {
            say("bellwether-exec: cannot fork the app\n");
            leave(125);
        }
    }
    notify_master(envp, with_number(note, "MAINPID=", app));
    // The listening sockets (3 up to the token or the link) are the app's:
    // a guard draining a tree after the master died must not keep a port.
    for (long fd = 3; fd < (token >= 0 ? token : link); fd++) if (fd != signals) raw(SYS_CLOSE, fd, 0, 0, 0);
    // An adopted app's SIGCHLD, or an orphan's, may have come before the
    // signalfd: SIGCHLD is discarded while its disposition is the default.
    if (adopted > 0) reap(envp);

    long long deadline = -1;
    for (;;) {
        long long now = now_ns();
        if (phase == RUNNING && deadline >= 0 && now >= deadline) {
            say(with_number(note, "bellwether-exec: renew deadline passed; stopping the scheduler, pid ", app));
            say("\n");
            drain();
        }
        if (phase == DRAINING && now >= kill_at) phase = KILLING;
        if (phase == KILLING && now >= kill_at) {
            signal_tree(SIGKILL_);
            kill_at = now + 100000000LL;  // what a dying process forked is ours now
        }

        long long next = phase != RUNNING ? kill_at : deadline;
        long wait[2] = {0, 0};
        if (next >= 0 && next > now) {
            wait[0] = (long)((next - now) / 1000000000LL);
            wait[1] = (long)((next - now) % 1000000000LL);
        }
        struct { int fd; short events, revents; } fds[2] = {{(int)signals, POLLIN_, 0}, {(int)link, POLLIN_, 0}};
        long ready = raw(SYS_PPOLL, (long)fds, link >= 0 ? 2 : 1, next >= 0 ? (long)wait : 0, 0);
        if ((ready < 0 && ready != -EINTR_) || (fds[0].revents & POLLNVAL_)) leave(125);  // never spin

        if (link >= 0 && fds[1].revents) {
            long long value;
            long got;
            while ((got = raw(SYS_READ, link, (long)&value, sizeof value, 0)) == (long)sizeof value) deadline = value;
            if (got == 0 || (got < 0 && got != -EAGAIN_ && got != -EINTR_)) {  // the master is gone
                raw(SYS_CLOSE, link, 0, 0, 0);
                link = -1;
                drain();
            }
        }
        // struct signalfd_siginfo: signo @0, code @8, pid @12, int @44; 128 bytes.
        int info[32];
        int children_changed = 0;
        while (raw(SYS_READ, signals, (long)info, sizeof info, 0) == (long)sizeof info) {
            int sig = info[0], code = info[2], sender = info[3], value = info[11];
            if (sig == SIGCHLD_) children_changed = 1;
            else if (sig == BW_KILL_SIGNAL && code == SI_QUEUE_ && sender == master_pid && value == BW_KILL_TREE) {
                if (phase != KILLING) kill_at = now_ns();
                phase = KILLING;
            } else if (sender != self_pid && app_status < 0) {
                raw(SYS_KILL, app, sig, 0, 0);  // not our own (a SIGPIPE from a write to a closed stderr)
            }
        }
        if (children_changed) reap(envp);
    }
}

__attribute__((noreturn, used)) void shim_main(long *stack) {
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    char **envp = argv + argc + 1;
    // ADOPT mode: a GUARD with four fields, and nothing after it.
    int fields = 1;
    for (const char *c = argc > 3 ? argv[3] : ""; *c; c++) fields += *c == ':';
    int adopting = argc == 4 && fields == 4;
    if (argc < 6 && !adopting) {
        say("bellwether-exec: usage: bellwether-exec MASTER_PID CREDENTIALS GUARD PATH ARGV0 [ARG...]\n"
            "   or: bellwether-exec MASTER_PID - LINK:GRACE_MS:TOKEN:APP_PID\n");
        leave(125);
    }
    const char *digits = argv[1];
    master_pid = number(&digits, 10);
    if (master_pid <= 0 || *digits != '\0') leave(125);
    if (adopting && !(argv[2][0] == '-' && argv[2][1] == '\0')) malformed("credentials: an adopted app keeps its own");
    apply_credentials(argv[2]);
    // argv + 4: PATH, ARGV0, ARG...
    if (argv[3][0] == '-' && argv[3][1] == '\0') become_app(master_pid, argv + 4, envp);
    guard(argv[3], argv + 4, envp);
}

#else  // A portable version with libc: a plain exec shim, GUARD ignored.

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
    if (argc < 6) {
        fputs("bellwether-exec: usage: bellwether-exec MASTER_PID CREDENTIALS GUARD PATH ARGV0 [ARG...]\n", stderr);
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
    execve(argv[4], argv + 5, environ);
    int error = errno;
    fprintf(stderr, "bellwether-exec: %s: %s\n", argv[4], strerror(error));
    return error == ENOENT ? 127 : 126;
}

#endif
