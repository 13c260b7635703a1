// Failover latency benchmark.
//
//   failover BELLWETHER SHIM APP KILLS
//
// Measures, in one run and with the same APP (bellwether-testworker, which
// stamps CLOCK_MONOTONIC as the first thing in main):
//   warm   posix_spawn+execve of APP by this program -> APP's main runs,
//          back to back
//   shim   the same through the guard (bellwether-exec), which forks APP
//          and waits for it, back to back
//   self   posix_spawn+exit of `bellwether --version` (what a self-exec
//          shim would cost at the least: the Swift binary's start-up)
//   death  SIGKILL to a child -> its parent has reaped it (the floor of
//          any failover: the kernel's exit and the parent's wake-up)
//   bare   as warm, but each after 1.1 s of idling, like the kills below
//   fail   SIGKILL to bellwether's scheduler -> its replacement's main runs
//          (each after 1.1 s, so that no restart back-off applies)
// and prints the median and 90th percentile of each, in microseconds.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
static char stamps[4096];
static char scratch[] = "/tmp/bellwether-bench-XXXXXX";
static pid_t supervisor = -1;  // the master under test, once started
static int watch = -1;  // inotify on the stamp file's directory: block, don't spin

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name, long long *values, int count) {
    qsort(values, (size_t)count, sizeof *values, compare);
    printf("%-6s n=%-4d median_us=%.1f p90_us=%.1f min_us=%.1f\n", name, count,
           values[count / 2] / 1000.0, values[count * 9 / 10] / 1000.0, values[0] / 1000.0);
}

static int remove_scratch(void) {
    char command[4200];
    snprintf(command, sizeof command, "rm -rf %s", scratch);
    return system(command) == 0 ? 0 : 1;
}

// Gives up: stops the master under test (and so its workers) first, so that
// nothing is left running, and removes the scratch directory.
static void give_up(const char *why) {
    fprintf(stderr, "failover: %s\n", why);
    if (supervisor > 0 && kill(supervisor, SIGTERM) == 0) waitpid(supervisor, NULL, 0);
    remove_scratch();
    exit(1);
}

// Waits until the stamp file has more than `lines` lines whose role matches
// (NULL: any) and returns the newest such stamp (pid and time). Gives up
// after 30 s, or as soon as `child` (when > 0) has exited without stamping.
static int wait_stamp(int lines, const char *role, int *pid, long long *at, pid_t child) {
    long long deadline = now_ns() + 30000000000LL;
    int gone = 0, status = 0;
    while (now_ns() < deadline) {
        FILE *file = fopen(stamps, "re");
        int seen = 0, found = 0;
        char line[256], r[64];
        int p;
        long long t;
        while (file && fgets(line, sizeof line, file)) {
            if (sscanf(line, "%d %63s %lld", &p, r, &t) != 3) continue;
            if (role && strcmp(r, role) != 0) continue;
            if (++seen > lines) { *pid = p; *at = t; found = 1; }
        }
        if (file) fclose(file);
        if (found) return seen;
        if (gone) {  // read again after its exit: no stamp came
            char why[128];
            snprintf(why, sizeof why, "pid %d exited (%s %d) without a stamp", (int)child,
                     WIFEXITED(status) ? "status" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            give_up(why);
        }
        if (child > 0 && waitpid(child, &status, WNOHANG) == child) {
            gone = 1;
            continue;
        }
        // Block until the stamp file changes, but wake now and then to see
        // whether the child has died.
        struct pollfd ready = {.fd = watch, .events = POLLIN};
        char events[4096];
        if (poll(&ready, 1, 100) > 0 && read(watch, events, sizeof events) < 0 && errno != EINTR) usleep(200);
    }
    give_up("no stamp within 30 s");
    return 0;
}

// Spawns argv and returns the time until its stamp; `lines` counts the
// stamps of processes without a role (those this program spawns itself).
static long long spawn_until_stamp(char *const argv[], int *lines) {
    pid_t pid;
    long long start = now_ns(), at;
    int stamped;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) { perror("posix_spawn"); exit(1); }
    *lines = wait_stamp(*lines, "-", &stamped, &at, pid);
    waitpid(pid, NULL, 0);
    return at - start;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: failover BELLWETHER SHIM APP KILLS\n");
        return 2;
    }
    const char *bellwether = argv[1], *shim = argv[2], *app = argv[3];
    int kills = atoi(argv[4]);
    if (!mkdtemp(scratch)) { perror("mkdtemp"); return 1; }
    snprintf(stamps, sizeof stamps, "%s/stamps", scratch);
    watch = inotify_init1(IN_CLOEXEC);
    inotify_add_watch(watch, scratch, IN_MODIFY | IN_CREATE);
    long long *bare = calloc((size_t)kills, sizeof *bare), *viashim = calloc((size_t)kills, sizeof *bare),
              *self = calloc((size_t)kills, sizeof *bare), *fail = calloc((size_t)kills, sizeof *bare),
              *death = calloc((size_t)kills, sizeof *bare);

    int lines = 0;
    char master[32], guard[32];
    snprintf(master, sizeof master, "%d", (int)getpid());
    // The guard's link to its master: the read end of a pipe whose write
    // end only this program holds, at a descriptor the guard is told.
    int link[2];
    if (pipe2(link, O_CLOEXEC) != 0) { perror("pipe2"); return 1; }
    int passed = fcntl(link[0], F_DUPFD, 10);
    snprintf(guard, sizeof guard, "%d:1000:-", passed);
    for (int i = 0; i < kills; i++) {
        char *direct[] = {(char *)app, "--stamp", stamps, "--exit-after", "0", NULL};
        char *shimmed[] = {(char *)shim, master, "-", guard, (char *)app, (char *)app, "--stamp", stamps,
                           "--exit-after", "0", NULL};
        // Alternate the order, so that neither always runs first.
        if (i % 2 == 0) {
            bare[i] = spawn_until_stamp(direct, &lines);
            viashim[i] = spawn_until_stamp(shimmed, &lines);
        } else {
            viashim[i] = spawn_until_stamp(shimmed, &lines);
            bare[i] = spawn_until_stamp(direct, &lines);
        }
        char *version[] = {(char *)bellwether, "--version", NULL};
        pid_t pid;
        int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, devnull, 1);
        long long start = now_ns();
        posix_spawn(&pid, bellwether, &actions, NULL, version, environ);
        waitpid(pid, NULL, 0);
        self[i] = now_ns() - start;
        posix_spawn_file_actions_destroy(&actions);
        close(devnull);
        // The floor every supervisor pays: SIGKILL -> the parent reaps it.
        char *idle[] = {(char *)app, NULL};
        posix_spawn(&pid, app, NULL, NULL, idle, environ);
        usleep(20000);
        start = now_ns();
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        death[i] = now_ns() - start;
    }

    // bellwether -w 2 running the same app; kill its scheduler KILLS times.
    unlink(stamps);
    char token[4200];
    snprintf(token, sizeof token, "file:%s/token", scratch);
    char *run[] = {(char *)bellwether, "-w", "2", "--lease", token, "--", (char *)app, "--stamp", stamps, NULL};
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, devnull, 2);
    if (posix_spawn(&supervisor, bellwether, &actions, NULL, run, environ) != 0) { perror("spawn"); return 1; }
    int schedulers = 0, scheduler;
    long long at;
    schedulers = wait_stamp(0, "scheduler", &scheduler, &at, supervisor);
    long long *cold = calloc((size_t)kills, sizeof *cold);
    int plain = 0;
    for (int i = 0; i < kills; i++) {
        // The bare spawn again, at the same cadence as the kills: after the
        // same idle time, so that both start from equally cold CPUs.
        usleep(1100000);
        char *direct[] = {(char *)app, "--stamp", stamps, "--exit-after", "0", NULL};
        cold[i] = spawn_until_stamp(direct, &plain);
        usleep(1100000);  // past the stable uptime: no back-off
        long long start = now_ns();
        kill(scheduler, SIGKILL);
        schedulers = wait_stamp(schedulers, "scheduler", &scheduler, &at, supervisor);
        fail[i] = at - start;
    }
    kill(supervisor, SIGTERM);
    waitpid(supervisor, NULL, 0);

    report("warm", bare, kills);
    report("shim", viashim, kills);
    report("self", self, kills);
    report("death", death, kills);
    report("bare", cold, kills);
    report("fail", fail, kills);
    return remove_scratch();
}
