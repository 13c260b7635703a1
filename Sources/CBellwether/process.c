// The master's own process: wait statuses, CPUs, subreaping, nice values and
// the address-space layout its workers inherit.
#define _GNU_SOURCE
#include "CBellwether.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/capability.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

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

int bw_set_child_subreaper(void) {
#ifdef __linux__
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
#else
    return 0;
#endif
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
