// Linux calls that Swift's Glibc module does not import: glibc declares them only under
// _GNU_SOURCE, which a header shared with Swift's Glibc module must not define. So they are
// wrapped once, in shim.c (built with _GNU_SOURCE), behind plain prototypes.
#ifndef SAMEPAGE_CLINUX_H
#define SAMEPAGE_CLINUX_H

/// pidfd_open(2): a descriptor for a process, readable once it exits.
int samepage_pidfd_open(int pid, unsigned int flags);

/// gettid(2): the calling thread's id, which setpriority(2) takes for one thread.
int samepage_gettid(void);

/// memfd_create(2).
int samepage_memfd_create(const char *name, unsigned int flags);

/// fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: frees a byte range, which
/// then reads as zeroes; the file keeps its size.
int samepage_punch_hole(int fd, long long offset, long long length);

/// fallocate(2) with no flags: allocates a byte range (holes become zero-filled blocks).
int samepage_allocate(int fd, long long offset, long long length);

/// fstatfs(2), reduced to what the agent needs: the filesystem's magic and block size.
int samepage_filesystem(int fd, long *type, long *block_size);

/// process_vm_readv(2) with one local and one remote iovec: copies `length` bytes at
/// `address` in process `pid` into `buffer`. Returns the bytes copied (fewer when a remote
/// page is not mapped), or -1 with errno set.
long samepage_process_vm_read(int pid, void *buffer, unsigned long address, unsigned long length);

/// accept4(2) with SOCK_CLOEXEC, no address.
int samepage_accept_cloexec(int listener);

/// One Unix-domain socket of this network namespace, as sock_diag(7) reports it.
struct samepage_unix_socket {
    /// The socket's inode: what /proc/PID/fd/N links to as `socket:[INODE]`.
    unsigned int inode;
    /// The connected peer's inode; 0 when not connected.
    unsigned int peer;
    /// Bytes of `name` used; 0 for an unnamed socket. An abstract name starts with a NUL.
    unsigned short name_length;
    /// The bound path (of the listener, for an accepted connection); not NUL-terminated.
    char name[108];
};

/// Lists every Unix-domain socket of the calling process's network namespace, with its name
/// and peer (a NETLINK_SOCK_DIAG dump with UDIAG_SHOW_NAME | UDIAG_SHOW_PEER). On success,
/// `*sockets` is a malloc'd array (free it) and the count is returned; on failure, -errno.
long samepage_unix_sockets(struct samepage_unix_socket **sockets);

/// lseek(2) whences for sparse files.
extern const int samepage_seek_data;
extern const int samepage_seek_hole;

#endif
