// Files: POSIX record locks (the pidfile) and ACLs (--user checks).
#define _GNU_SOURCE
#include "CBellwether.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
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
