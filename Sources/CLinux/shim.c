#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "CLinux.h"

int samepage_pidfd_open(int pid, unsigned int flags) {
    return (int)syscall(SYS_pidfd_open, (pid_t)pid, flags);
}

int samepage_gettid(void) {
    return gettid();
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

long samepage_process_vm_read(int pid, void *buffer, unsigned long address, unsigned long length) {
    struct iovec local = { .iov_base = buffer, .iov_len = length };
    struct iovec remote = { .iov_base = (void *)address, .iov_len = length };
    return (long)process_vm_readv((pid_t)pid, &local, 1, &remote, 1, 0);
}

int samepage_accept_cloexec(int listener) {
    return accept4(listener, NULL, NULL, SOCK_CLOEXEC);
}

const int samepage_seek_data = SEEK_DATA;
const int samepage_seek_hole = SEEK_HOLE;

long samepage_unix_sockets(struct samepage_unix_socket **sockets) {
    *sockets = NULL;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;

    struct {
        struct nlmsghdr header;
        struct unix_diag_req request;
    } message = {
        .header = {
            .nlmsg_len = sizeof(message),
            .nlmsg_type = SOCK_DIAG_BY_FAMILY,
            .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
        },
        .request = {
            .sdiag_family = AF_UNIX,
            .udiag_states = ~0u,
            .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
        },
    };
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, &message, sizeof(message), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }

    size_t count = 0, capacity = 256;
    struct samepage_unix_socket *list = malloc(capacity * sizeof(*list));
    if (!list) { close(fd); return -ENOMEM; }
    // Large enough for many records per read; the kernel never splits one record.
    static const size_t buffer_size = 32768;
    char *buffer = malloc(buffer_size);
    if (!buffer) { free(list); close(fd); return -ENOMEM; }

    long result = 0;
    for (int done = 0; !done;) {
        ssize_t length = recv(fd, buffer, buffer_size, 0);
        if (length < 0) {
            if (errno == EINTR) continue;
            result = -errno;
            break;
        }
        if (length == 0) break;
        struct nlmsghdr *header = (struct nlmsghdr *)buffer;
        for (; NLMSG_OK(header, (size_t)length); header = NLMSG_NEXT(header, length)) {
            if (header->nlmsg_type == NLMSG_DONE) { done = 1; break; }
            if (header->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *error = NLMSG_DATA(header);
                result = error->error < 0 ? error->error : -EPROTO;
                done = 1;
                break;
            }
            if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
            struct unix_diag_msg *diag = NLMSG_DATA(header);
            if (header->nlmsg_len < NLMSG_LENGTH(sizeof(*diag))) continue;
            if (count == capacity) {
                capacity *= 2;
                struct samepage_unix_socket *grown = realloc(list, capacity * sizeof(*list));
                if (!grown) { result = -ENOMEM; done = 1; break; }
                list = grown;
            }
            struct samepage_unix_socket *entry = &list[count++];
            memset(entry, 0, sizeof(*entry));
            entry->inode = diag->udiag_ino;
            int attributes_length = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof(*diag)));
            for (struct rtattr *attribute = (struct rtattr *)(diag + 1); RTA_OK(attribute, attributes_length);
                 attribute = RTA_NEXT(attribute, attributes_length)) {
                size_t payload = RTA_PAYLOAD(attribute);
                if (attribute->rta_type == UNIX_DIAG_NAME) {
                    if (payload > sizeof(entry->name)) payload = sizeof(entry->name);
                    memcpy(entry->name, RTA_DATA(attribute), payload);
                    entry->name_length = (unsigned short)payload;
                } else if (attribute->rta_type == UNIX_DIAG_PEER && payload >= sizeof(unsigned int)) {
                    memcpy(&entry->peer, RTA_DATA(attribute), sizeof(unsigned int));
                }
            }
        }
    }
    free(buffer);
    close(fd);
    if (result < 0) {
        free(list);
        return result;
    }
    *sockets = list;
    return (long)count;
}
