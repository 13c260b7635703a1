// A worker for bellwether's integration tests. It records what it was given
// (environment, open descriptors, signal mask and dispositions) and, when it
// holds the scheduler role, takes the overlap oracle: flock(LOCK_EX|LOCK_NB)
// on a shared file. Failing to take it means two schedulers overlap; the
// worker then appends a line to ORACLE.failures and exits with status 3.
//
//   bellwether-testworker [--record DIR] [--oracle FILE] [--role-env NAME]
//                         [--ignore-term] [--straggler] [--exit-after MS] [--stamp FILE]
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

static char usr1_log[4096];

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
    const char *record_dir = NULL, *oracle = NULL, *role_env = "WORKER_ROLE";
    int ignore_term = 0, straggler = 0;
    long exit_after = -1;
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
        else if (strcmp(argv[i], "--straggler") == 0) straggler = 1;
        else { fprintf(stderr, "testworker: unknown argument %s\n", argv[i]); return 2; }
    }
    const char *role = getenv(role_env);
    int scheduler = role != NULL && strcmp(role, "scheduler") == 0;

    if (scheduler && oracle != NULL) {
        // Deliberately not CLOEXEC-free and not closed: the lock lives as long
        // as this process and any child it forks, like a real app's job state.
        int fd = open(oracle, O_RDWR | O_CREAT, 0644);
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
    if (record_dir != NULL) record(record_dir, role);
    if (record_dir != NULL) {
        snprintf(usr1_log, sizeof usr1_log, "%s/usr1.log", record_dir);
        signal(SIGUSR1, on_usr1);
    }
    if (exit_after >= 0) {
        struct timespec delay = {exit_after / 1000, (exit_after % 1000) * 1000000L};
        nanosleep(&delay, NULL);
        return 1;
    }
    for (;;) pause();
}
