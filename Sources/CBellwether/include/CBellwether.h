// C shims for what Swift cannot call directly: variadic prctl/fcntl, signalfd,
// the wait-status macros and posix_spawn attribute plumbing; the hashes of
// PostgreSQL login are in CBellwetherCrypto.h, TLS through a libssl loaded at
// run time in CBellwetherTLS.h (which has conventions of its own). Every function
// returns 0 or a positive errno value unless documented otherwise; none of
// them allocates memory that the caller must free.
#ifndef CBELLWETHER_H
#define CBELLWETHER_H

#include <sys/types.h>
#include "CBellwetherSockets.h"
#include "CBellwetherCrypto.h"
#include "CBellwetherGuard.h"
#include "CBellwetherTLS.h"

/// Blocks `signals` in the calling thread and returns a non-blocking, CLOEXEC
/// descriptor from which they can be read with `bw_signal_source_read`
/// (a signalfd on Linux, a self-pipe elsewhere). Returns -errno on failure.
int bw_signal_source_open(const int *signals, int count);

/// Returns the next pending signal number, 0 when none is pending, -errno on error.
int bw_signal_source_read(int fd);

/// Sets the disposition of `sig` to default (ignore != 0: to SIG_IGN).
int bw_signal_disposition(int sig, int ignore);

/// Spawns `path` with `argv`/`envp` in a new process group, with an empty
/// signal mask and default dispositions, stdin on /dev/null, `inherit[i]`
/// placed at descriptor 3+i and every other descriptor above 2 closed.
/// `directory` (may be NULL) becomes the child's working directory.
/// `out_fd` and `err_fd` (-1: the caller's own) become its stdout and stderr.
int bw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const int *inherit, int ninherit, const char *directory, int out_fd, int err_fd);

/// Asks a worker's guard (bellwether-exec) to SIGKILL its whole process
/// tree at once: BW_KILL_SIGNAL queued with BW_KILL_TREE. Linux; elsewhere
/// SIGKILL to the process group `guard` leads. 0 or errno.
int bw_kill_tree(pid_t guard);

/// A pipe with both ends close-on-exec; the write end non-blocking if
/// `nonblocking_write`. Returns 0 or -errno.
int bw_pipe_cloexec(int fds[2], int nonblocking_write);

/// Marks every open descriptor >= `lowest` close-on-exec.
int bw_cloexec_from(int lowest);

/// Sets FD_CLOEXEC on one descriptor.
int bw_set_cloexec(int fd);

int bw_wifexited(int status);
int bw_wexitstatus(int status);
int bw_wifsignaled(int status);
int bw_wtermsig(int status);
int bw_wcoredump(int status);

/// Makes the caller a child subreaper (Linux), so that orphans of its
/// workers' process groups are reparented to it and reaped, not left as zombies.
int bw_set_child_subreaper(void);

/// The calling process's nice value.
int bw_nice(void);
/// setpriority(PRIO_PGRP): 0 or errno.
int bw_set_group_nice(int pgid, int value);
/// 1 if this process may set a nice value as low as `value` on its children
/// (RLIMIT_NICE, or CAP_SYS_NICE on Linux, root elsewhere).
int bw_can_lower_nice_to(int value);
/// Sets or clears ADDR_NO_RANDOMIZE in this process's personality, which the
/// children it spawns inherit (Linux; elsewhere a no-op): 0 or errno.
int bw_set_address_randomization(int on);
/// 0 if this process's personality has ADDR_NO_RANDOMIZE, else 1.
int bw_address_randomization(void);

/// Number of online CPUs (at least 1).
int bw_online_cpus(void);

/// 1 if `path` (its symbolic links followed) has a POSIX access ACL, which
/// can grant what its mode bits do not show; else 0.
int bw_has_access_acl(const char *path);

/// Takes a POSIX write lock on the whole of `fd`'s file (open for writing)
/// without waiting: 0, the pid of the process holding a conflicting lock, or
/// -errno. The lock lasts until the process closes any descriptor of the file.
int bw_file_lock(int fd);

/// The pid of another process holding a lock on `fd`'s file, 0 if none, or -errno.
int bw_file_lock_holder(int fd);

/// An inotify descriptor, non-blocking and close-on-exec, or -errno
/// (-ENOSYS where there is no inotify).
int bw_inotify_open(void);

/// Watches `path` (a directory's entries when `directory`, else the file
/// itself) for writes, creations, deletions, renames and attribute changes:
/// the watch descriptor, or -errno (-ENOSPC: fs.inotify.max_user_watches reached).
int bw_inotify_watch(int fd, const char *path, int directory);

#endif
