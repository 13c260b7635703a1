// A worker for bellwether's integration tests. It records what it was given
// (environment, open descriptors, signal mask and dispositions) and, when it
// holds the scheduler role, takes the overlap oracle: flock(LOCK_EX|LOCK_NB)
// on a shared file. Failing to take it means two schedulers overlap; the
// worker then appends a line to ORACLE.failures and exits with status 3.
// Otherwise it appends "start", "tick" (every --tick-ms) and "exit" lines to
// ORACLE.log: "EVENT pid=P fence=F holder=H t=MONOTONIC_NS", so that a test
// can check that fences never go down across schedulers. Its signal
// handlers are in place before it writes its record, so that a test may
// signal it as soon as the record is there.
//
//   bellwether-testworker [--record DIR] [--oracle FILE] [--role-env NAME]
//                         [--ignore-term] [--straggler] [--tree] [--exit-after MS] [--stamp FILE]
//                         [--serve] [--boot-ms MS] [--notify] [--watchdog-once] [--tick-ms MS]
//                         [--say] [--flood N] [--grow-mb N --grow-slot S] [--recycle-after N]
//   bellwether-testworker --client HOST:PORT|unix:PATH --seconds S [--gap-us US]
//
// --tree starts what real servers start: a forked child (as multiprocessing
// does) and a double-forked setsid daemon, both holding the oracle lock when
// this worker is the scheduler (the worker itself lets its own descriptor
// go), both ignoring TERM with --ignore-term, and writes their pids to
// DIR/PID.tree as "child PID" and "daemon PID".
// --serve answers HTTP requests on every LISTEN_FDS socket, one at a time,
// with "pid=… role=… slot=… generation=…", and on TERM finishes the request
// in hand and exits 0. --boot-ms delays serving; --notify sends READY=1 once
// serving; --watchdog-once sends WATCHDOG=1 once and then hangs. With
// TESTWORKER_FAIL_AT_BOOT=1 in its environment it exits 1 at once.
// --say writes "hello out SLOT" to stdout, then "hello err SLOT" and a line
// with invalid UTF-8 ("\xff\xfe bad SLOT") to stderr, and last "partial
// SLOT" to stdout without a newline. --flood N: the worker in slot 0 waits
// for DIR/flood.go, then writes "out I" to stdout and "err I" to stderr for I
// from 1 to N as fast as it can, then "out end" without a newline; every
// other slot writes "trickle I" to stdout every millisecond.
// --grow-mb N with --grow-slot S: the worker of slot S forks a child that
// fills N MiB and sleeps, so that the memory is its tree's, not its own; it
// does so only while DIR/grown is absent, and creates it, so that its
// replacement stays small. --recycle-after N (with --serve): after N answers
// the worker sends X_BELLWETHER_RECYCLE=1 once and serves on.
// --client sends requests one after another (US microseconds apart) for S
// seconds, or until TERM, and then prints
// "requests=N failures=M refused=R slowest_ms=S generations=a,b,… pids=…"
// (refused: the connection itself failed; slowest_ms: the longest wait for
// an answer, connect included). On the way it prints
// "served-by pid=P generation=G" for every worker that answers it first.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char oracle_log[4096];

static void append_line(const char *path, const char *line);

// One oracle event with this scheduler's fence (async-signal-safe enough for
// a test: snprintf of integers and strings, one write).
static void oracle_event(const char *event) {
    if (oracle_log[0] == '\0') return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const char *fence = getenv("WORKER_FENCING_TOKEN"), *holder = getenv("WORKER_LEASE_HOLDER");
    char line[512];
    snprintf(line, sizeof line, "%s pid=%d fence=%s holder=%s t=%lld\n", event, (int)getpid(),
             fence ? fence : "-", holder ? holder : "-", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
    append_line(oracle_log, line);
}

static void write_text(int fd, const char *text) {
    size_t left = strlen(text);
    while (left > 0) {
        ssize_t n = write(fd, text, left);
        if (n < 0) { if (errno == EINTR) continue; return; }
        text += n;
        left -= (size_t)n;
    }
}

static void say(void) {
    const char *slot = getenv("WORKER_ID") ? getenv("WORKER_ID") : "?";
    char line[256];
    snprintf(line, sizeof line, "hello out %s\n", slot);
    write_text(1, line);
    snprintf(line, sizeof line, "hello err %s\n", slot);
    write_text(2, line);
    snprintf(line, sizeof line, "\xff\xfe bad %s\n", slot);
    write_text(2, line);
    snprintf(line, sizeof line, "partial %s", slot);
    write_text(1, line);
}

static void flood(long lines, const char *record_dir) {
    const char *slot = getenv("WORKER_ID");
    if (slot == NULL || strcmp(slot, "0") != 0) {
        for (long i = 1;; i++) {
            char line[64];
            snprintf(line, sizeof line, "trickle %ld\n", i);
            write_text(1, line);
            struct timespec delay = {0, 1000000L};
            nanosleep(&delay, NULL);
        }
    }
    char go[4096];
    snprintf(go, sizeof go, "%s/flood.go", record_dir ? record_dir : ".");
    while (access(go, F_OK) != 0) {
        struct timespec delay = {0, 1000000L};
        nanosleep(&delay, NULL);
    }
    static char out_buffer[1 << 16], err_buffer[1 << 16];
    setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);
    setvbuf(stderr, err_buffer, _IOFBF, sizeof err_buffer);
    for (long i = 1; i <= lines; i++) {
        fprintf(stdout, "out %ld\n", i);
        fprintf(stderr, "err %ld\n", i);
    }
    fputs("out end", stdout);
    fflush(stdout);
    fflush(stderr);
}

static void on_term_oracle(int sig) {
    (void)sig;
    oracle_event("exit");
    _exit(0);
}

static void append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    (void)!write(fd, line, strlen(line));
    close(fd);
}

static void status_line(FILE *out, const char *key) {
    FILE *status = fopen("/proc/self/status", "re");
    if (status == NULL) return;
    char line[512];
    size_t len = strlen(key);
    while (fgets(line, sizeof line, status) != NULL)
        if (strncmp(line, key, len) == 0 && line[len] == ':') {
            char *value = line + len + 1;
            while (*value == ' ' || *value == '\t') value++;
            fprintf(out, "%s=%s", key, value);
        }
    fclose(status);
}

static void record(const char *dir, const char *role) {
    char tmp[4096], final[4096];
    snprintf(tmp, sizeof tmp, "%s/.%d.tmp", dir, (int)getpid());
    snprintf(final, sizeof final, "%s/%d.rec", dir, (int)getpid());
    FILE *out = fopen(tmp, "we");
    if (out == NULL) { perror("testworker: record"); exit(4); }
    fprintf(out, "pid=%d\nppid=%d\npgid=%d\nrole=%s\n", (int)getpid(), (int)getppid(),
            (int)getpgrp(), role ? role : "");
    char link[4096];
    ssize_t n = readlink("/proc/self/fd/0", link, sizeof link - 1);
    link[n > 0 ? n : 0] = '\0';
    fprintf(out, "stdin=%s\n", link);
    fprintf(out, "fds=");
    DIR *fds = opendir("/proc/self/fd");
    int own = fds ? dirfd(fds) : -1, first = 1;
    struct dirent *entry;
    while (fds && (entry = readdir(fds)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        int fd = atoi(entry->d_name);
        if (fd == own || fd == fileno(out)) continue;
        fprintf(out, first ? "%d" : ",%d", fd);
        first = 0;
    }
    if (fds) closedir(fds);
    fprintf(out, "\n");
    status_line(out, "SigBlk");
    status_line(out, "SigIgn");
    status_line(out, "SigCgt");
    for (char **env = environ; *env != NULL; env++) fprintf(out, "env.%s\n", *env);
    fclose(out);
    rename(tmp, final);
}

// Forks a process that only waits (the oracle lock, if held, goes with it);
// with `detach`, a double-forked setsid daemon instead. Returns its pid.
static pid_t start_descendant(int detach, int ignore_term) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return -1;
    pid_t child = fork();
    if (child == 0) {
        if (ignore_term) signal(SIGTERM, SIG_IGN);
        if (detach) {
            setsid();
            if (fork() != 0) _exit(0);
        }
        pid_t self = getpid();
        (void)!write(pipefd[1], &self, sizeof self);
        for (;;) pause();
    }
    close(pipefd[1]);
    pid_t found = -1;
    if (child < 0 || read(pipefd[0], &found, sizeof found) != (ssize_t)sizeof found) found = -1;
    close(pipefd[0]);
    if (detach && child > 0) waitpid(child, NULL, 0);
    return found;
}

static char usr1_log[4096];
static volatile sig_atomic_t stopping = 0;

static void on_term(int sig) { (void)sig; stopping = 1; }

static void notify(const char *message) {
    const char *address = getenv("NOTIFY_SOCKET");
    if (address == NULL || *address == '\0') return;
    struct sockaddr_un target;
    memset(&target, 0, sizeof target);
    target.sun_family = AF_UNIX;
    size_t size = strlen(address);
    if (size >= sizeof target.sun_path) return;
    memcpy(target.sun_path, address, size);
    if (address[0] == '@') target.sun_path[0] = '\0';
    socklen_t length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + size + (address[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sendto(fd, message, strlen(message), 0, (struct sockaddr *)&target, length);
    close(fd);
}

static void write_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        data += n;
        size -= (size_t)n;
    }
}

static void answer(int connection, const char *role) {
    char request[8192];
    size_t used = 0;
    while (used < sizeof request - 1) {
        ssize_t n = read(connection, request + used, sizeof request - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += (size_t)n;
        request[used] = '\0';
        if (strstr(request, "\r\n\r\n")) break;
    }
    char body[256], response[512];
    snprintf(body, sizeof body, "pid=%d role=%s slot=%s generation=%s\n", (int)getpid(), role ? role : "",
             getenv("WORKER_ID") ? getenv("WORKER_ID") : "?",
             getenv("WORKER_GENERATION") ? getenv("WORKER_GENERATION") : "?");
    int size = snprintf(response, sizeof response,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                        strlen(body), body);
    write_all(connection, response, (size_t)size);
    close(connection);
}

static long recycle_after = 0;

/// A forked child holding `megabytes` of touched memory until killed.
static pid_t grow(long megabytes) {
    pid_t child = fork();
    if (child == 0) {
        size_t size = (size_t)megabytes << 20;
        char *block = malloc(size);
        if (block != NULL) memset(block, 0x5a, size);
        for (;;) pause();
    }
    return child;
}

static int serve(const char *role) {
    long answered = 0;
    const char *count_text = getenv("LISTEN_FDS"), *pid_text = getenv("LISTEN_PID");
    if (count_text == NULL || pid_text == NULL || atoi(pid_text) != (int)getpid()) {
        fprintf(stderr, "testworker: LISTEN_FDS/LISTEN_PID not for this process\n");
        return 5;
    }
    int count = atoi(count_text);
    struct pollfd fds[16];
    for (int i = 0; i < count && i < 16; i++) fds[i] = (struct pollfd){.fd = 3 + i, .events = POLLIN};
    while (!stopping) {
        if (poll(fds, (nfds_t)count, -1) < 0) continue;  // EINTR: TERM
        for (int i = 0; i < count && !stopping; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            int connection = accept4(fds[i].fd, NULL, NULL, SOCK_CLOEXEC);
            if (connection < 0) continue;
            answer(connection, role);
            if (++answered == recycle_after) notify("X_BELLWETHER_RECYCLE=1");
        }
    }
    return 0;
}

static int connect_to(const char *target) {
    int fd;
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un address;
        memset(&address, 0, sizeof address);
        address.sun_family = AF_UNIX;
        strncpy(address.sun_path, target + 5, sizeof address.sun_path - 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) { close(fd); return -1; }
        return fd;
    }
    char host[64];
    const char *colon = strrchr(target, ':');
    if (!colon || colon - target >= (long)sizeof host) return -1;
    if (target[0] == '[') {  // [IPV6]:PORT
        struct sockaddr_in6 address6;
        memset(&address6, 0, sizeof address6);
        address6.sin6_family = AF_INET6;
        address6.sin6_port = htons((unsigned short)atoi(colon + 1));
        memcpy(host, target + 1, (size_t)(colon - target - 2));
        host[colon - target - 2] = '\0';
        inet_pton(AF_INET6, host, &address6.sin6_addr);
        fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&address6, sizeof address6) != 0) { close(fd); return -1; }
        return fd;
    }
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = '\0';
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(colon + 1));
    inet_pton(AF_INET, host, &address.sin_addr);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) { close(fd); return -1; }
    return fd;
}

static int client(const char *target, double seconds, long gap_us) {
    // TERM ends the run between two requests, never inside one: it stays
    // blocked and pending until the loop looks for it.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long requests = 0, failures = 0, refused = 0;
    double slowest = 0;
    char seen[4096] = "";
    char pids[65536] = "";
    for (;;) {
        if (requests > 0 && gap_us > 0) {
            struct timespec gap = {gap_us / 1000000, (gap_us % 1000000) * 1000L};
            nanosleep(&gap, NULL);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds) break;
        sigset_t pending;
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGTERM)) break;
        requests++;
        struct timespec sent = now, answered;
        int fd = connect_to(target);
        if (fd < 0) { failures++; refused++; continue; }
        struct timeval limit = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        const char *get = "GET / HTTP/1.0\r\nHost: test\r\n\r\n";
        write_all(fd, get, strlen(get));
        char reply[2048];
        size_t used = 0;
        ssize_t n;
        while (used < sizeof reply - 1 && (n = read(fd, reply + used, sizeof reply - 1 - used)) > 0) used += (size_t)n;
        reply[used] = '\0';
        close(fd);
        clock_gettime(CLOCK_MONOTONIC, &answered);
        double waited = (double)(answered.tv_sec - sent.tv_sec) * 1e3 + (answered.tv_nsec - sent.tv_nsec) / 1e6;
        if (waited > slowest) slowest = waited;
        char *generation = strstr(reply, "generation=");
        char *pid = strstr(reply, "pid=");
        if (strncmp(reply, "HTTP/1.0 200", 12) != 0 || generation == NULL || pid == NULL) { failures++; continue; }
        char token[32];
        snprintf(token, sizeof token, ",%d,", atoi(generation + 11));
        if (!strstr(seen, token) && strlen(seen) < sizeof seen - 40) strcat(seen[0] ? seen : strcpy(seen, ","), token + 1);
        snprintf(token, sizeof token, ",%d,", atoi(pid + 4));
        if (!strstr(pids, token) && strlen(pids) < sizeof pids - 40) {
            strcat(pids[0] ? pids : strcpy(pids, ","), token + 1);
            // As it happens, for a test that waits until a worker has served.
            printf("served-by pid=%d generation=%d\n", atoi(pid + 4), atoi(generation + 11));
            fflush(stdout);
        }
    }
    printf("requests=%ld failures=%ld refused=%ld slowest_ms=%.0f generations=%s pids=%s\n", requests, failures,
           refused, slowest, seen, pids);
    return 0;
}

static void on_usr1(int sig) {
    (void)sig;
    char line[32];
    int len = 0, pid = (int)getpid();
    char digits[16];
    int count = 0;
    do { digits[count++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0);
    while (count > 0) line[len++] = digits[--count];
    line[len++] = '\n';
    int fd = open(usr1_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) { (void)!write(fd, line, (size_t)len); close(fd); }
}

int main(int argc, char **argv) {
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    const char *record_dir = NULL, *oracle = NULL, *role_env = "WORKER_ROLE", *client_target = NULL;
    int ignore_term = 0, straggler = 0, tree = 0, serving = 0, ready_notify = 0, watchdog_once = 0;
    long boot_ms = 0, tick_ms = 0;
    double client_seconds = 1;
    long client_gap_us = 0;
    long exit_after = -1, flood_lines = 0, grow_mb = 0, grow_slot = -1;
    int saying = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--record") == 0 && i + 1 < argc) record_dir = argv[++i];
        else if (strcmp(argv[i], "--oracle") == 0 && i + 1 < argc) oracle = argv[++i];
        else if (strcmp(argv[i], "--role-env") == 0 && i + 1 < argc) role_env = argv[++i];
        else if (strcmp(argv[i], "--exit-after") == 0 && i + 1 < argc) exit_after = atol(argv[++i]);
        else if (strcmp(argv[i], "--stamp") == 0 && i + 1 < argc) {
            // For the failover benchmark: when this process began running main.
            char line[128];
            const char *r = getenv("WORKER_ROLE");
            snprintf(line, sizeof line, "%d %s %lld\n", (int)getpid(), r ? r : "-",
                     (long long)started.tv_sec * 1000000000LL + started.tv_nsec);
            append_line(argv[++i], line);
        }
        else if (strcmp(argv[i], "--ignore-term") == 0) ignore_term = 1;
        else if (strcmp(argv[i], "--serve") == 0) serving = 1;
        else if (strcmp(argv[i], "--notify") == 0) ready_notify = 1;
        else if (strcmp(argv[i], "--watchdog-once") == 0) watchdog_once = 1;
        else if (strcmp(argv[i], "--boot-ms") == 0 && i + 1 < argc) boot_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--tick-ms") == 0 && i + 1 < argc) tick_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--client") == 0 && i + 1 < argc) client_target = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) client_seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--gap-us") == 0 && i + 1 < argc) client_gap_us = atol(argv[++i]);
        else if (strcmp(argv[i], "--straggler") == 0) straggler = 1;
        else if (strcmp(argv[i], "--tree") == 0) tree = 1;
        else if (strcmp(argv[i], "--say") == 0) saying = 1;
        else if (strcmp(argv[i], "--flood") == 0 && i + 1 < argc) flood_lines = atol(argv[++i]);
        else if (strcmp(argv[i], "--grow-mb") == 0 && i + 1 < argc) grow_mb = atol(argv[++i]);
        else if (strcmp(argv[i], "--grow-slot") == 0 && i + 1 < argc) grow_slot = atol(argv[++i]);
        else if (strcmp(argv[i], "--recycle-after") == 0 && i + 1 < argc) recycle_after = atol(argv[++i]);
        else { fprintf(stderr, "testworker: unknown argument %s\n", argv[i]); return 2; }
    }
    if (client_target != NULL) return client(client_target, client_seconds, client_gap_us);
    const char *fail = getenv("TESTWORKER_FAIL_AT_BOOT");
    if (fail != NULL && strcmp(fail, "1") == 0) {
        fprintf(stderr, "testworker: failing at boot as asked\n");
        return 1;
    }
    const char *role = getenv(role_env);
    int scheduler = role != NULL && strcmp(role, "scheduler") == 0;

    int oracle_fd = -1;
    if (scheduler && oracle != NULL) {
        // Deliberately not CLOEXEC-free and not closed: the lock lives as long
        // as this process and any child it forks, like a real app's job state.
        int fd = oracle_fd = open(oracle, O_RDWR | O_CREAT, 0644);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
            char line[256], failures[4096];
            snprintf(line, sizeof line, "OVERLAP pid=%d id=%s generation=%s\n", (int)getpid(),
                     getenv("WORKER_ID") ? getenv("WORKER_ID") : "?",
                     getenv("WORKER_GENERATION") ? getenv("WORKER_GENERATION") : "?");
            snprintf(failures, sizeof failures, "%s.failures", oracle);
            append_line(failures, line);
            fprintf(stderr, "testworker: %s", line);
            return 3;
        }
        snprintf(oracle_log, sizeof oracle_log, "%s.log", oracle);
        oracle_event("start");
        if (!ignore_term && !serving) signal(SIGTERM, on_term_oracle);
    }
    if (ignore_term) signal(SIGTERM, SIG_IGN);
    if (straggler && scheduler) {
        pid_t child = fork();
        if (child == 0) {
            for (;;) pause();
        }
        if (record_dir != NULL) {
            char path[4096], line[64];
            snprintf(path, sizeof path, "%s/%d.straggler", record_dir, (int)getpid());
            snprintf(line, sizeof line, "%d\n", (int)child);
            append_line(path, line);
        }
    }
    if (tree) {
        pid_t child = start_descendant(0, ignore_term), daemon = start_descendant(1, ignore_term);
        if (oracle_fd >= 0) close(oracle_fd);  // held by the descendants only
        if (record_dir != NULL) {
            char path[4096], line[64];
            snprintf(path, sizeof path, "%s/%d.tree", record_dir, (int)getpid());
            snprintf(line, sizeof line, "child %d\ndaemon %d\n", (int)child, (int)daemon);
            append_line(path, line);
        }
    }
    if (grow_mb > 0 && record_dir != NULL && getenv("WORKER_ID") && atol(getenv("WORKER_ID")) == grow_slot) {
        char path[4096];
        snprintf(path, sizeof path, "%s/grown", record_dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char line[64];
            int size = snprintf(line, sizeof line, "%d\n", (int)grow(grow_mb));
            write_all(fd, line, (size_t)size);
            close(fd);
        }
    }
    // Every handler is in place before the record is written (see the top).
    if (record_dir != NULL) {
        snprintf(usr1_log, sizeof usr1_log, "%s/usr1.log", record_dir);
        signal(SIGUSR1, on_usr1);
    }
    if (serving) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_term;  // no SA_RESTART: a blocked accept returns EINTR
        sigaction(SIGTERM, &action, NULL);
        if (ignore_term) signal(SIGTERM, SIG_IGN);
    }
    if (record_dir != NULL) record(record_dir, role);
    if (boot_ms > 0) {
        // A TERM while booting ends the boot: serving, the worker then exits 0.
        struct timespec delay = {boot_ms / 1000, (boot_ms % 1000) * 1000000L};
        while (nanosleep(&delay, &delay) != 0 && errno == EINTR && !stopping) {}
    }
    if (watchdog_once) {
        notify("WATCHDOG=1");
        for (;;) pause();  // hung: no more pings
    }
    if (serving) {
        if (ready_notify && !stopping) notify("READY=1\nSTATUS=serving");
        return serve(role);
    }
    if (ready_notify) notify("READY=1");
    if (saying) say();
    if (flood_lines > 0) flood(flood_lines, record_dir);
    if (tick_ms > 0 && oracle_log[0] != '\0') {
        for (;;) {
            struct timespec delay = {tick_ms / 1000, (tick_ms % 1000) * 1000000L};
            while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {}
            oracle_event("tick");
        }
    }
    if (exit_after >= 0) {
        struct timespec delay = {exit_after / 1000, (exit_after % 1000) * 1000000L};
        nanosleep(&delay, NULL);
        return 1;
    }
    for (;;) pause();
}
