// Files: POSIX record locks (the pidfile), ACLs (--user checks) and inotify (--watch).
#define _GNU_SOURCE
#include "CBellwether.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/inotify.h>
#include <sys/xattr.h>
#endif

int bw_file_lock_holder(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_GETLK, &lock) != 0) return -errno;
    return lock.l_type == F_UNLCK ? 0 : (int)lock.l_pid;
}

int bw_file_lock(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &lock) == 0) return 0;
    if (errno != EACCES && errno != EAGAIN) return -errno;
    int holder = bw_file_lock_holder(fd);
    return holder > 0 ? holder : -EAGAIN;  // released in between: let the caller say "busy"
}

int bw_has_access_acl(const char *path) {
#ifdef __linux__
    return getxattr(path, "system.posix_acl_access", NULL, 0) > 0;
#else
    (void)path;
    return 0;
#endif
}

int bw_inotify_open(void) {
#ifdef __linux__
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    return fd < 0 ? -errno : fd;
#else
    return -ENOSYS;
#endif
}

int bw_inotify_watch(int fd, const char *path, int directory) {
#ifdef __linux__
    uint32_t mask = IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB;
    if (directory) mask |= IN_ONLYDIR;
    int wd = inotify_add_watch(fd, path, mask);
    return wd < 0 ? -errno : wd;
#else
    (void)fd; (void)path; (void)directory;
    return -ENOSYS;
#endif
}
