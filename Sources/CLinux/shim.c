#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "CLinux.h"

int samepage_pidfd_open(int pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, (pid_t)pid, flags);
}

int samepage_memfd_create(const char *name, unsigned int flags) {
    return memfd_create(name, flags);
}

int samepage_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}

int samepage_allocate(int fd, long long offset, long long length) {
    return fallocate(fd, 0, (off_t)offset, (off_t)length);
}

int samepage_filesystem(int fd, long *type, long *block_size) {
    struct statfs st;
    int result = fstatfs(fd, &st);
    if (result == 0) {
        *type = (long)st.f_type;
        *block_size = (long)st.f_bsize;
    }
    return result;
}

int samepage_accept_cloexec(int listener) {
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC);
}

const int samepage_seek_data = SEEK_DATA;
const int samepage_seek_hole = SEEK_HOLE;
