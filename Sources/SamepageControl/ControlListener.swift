import Glibc
import LinuxSystem

/// The listening end of the control socket, and the socket file it is bound to: the file's
/// directory made, start-up serialised with any other server in it, a stale socket (of a
/// daemon that died) replaced but a live one never, the file owner-only from its creation,
/// then given its `mode` and `group`.
///
/// A ``ControlServer`` owns one; it knows the file's identity so that stopping removes the
/// file only while it is still the one bound here.
struct ControlListener: ~Copyable {
    /// The socket file's path.
    let path: String
    /// The listening socket.
    let socket: UnixSocket
    /// The socket file as bound (device and inode).
    let file: FileIdentity

    /// Binds and listens on `path`; see ``ControlServer/init(path:mode:group:limits:handler:)``.
    init(path: String, mode: mode_t, group: gid_t?) throws(ControlError) {
        let address = try UnixSocketAddress(controlPath: path)
        let directory = Self.parentDirectory(of: path)
        try Self.makeDirectory(directory)

        // Serialise start-up with any other server in the same directory, so that two
        // daemons starting at once cannot both find the socket stale and both bind.
        let lock = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lock >= 0 else { throw ControlError(SystemError("open \(directory)")) }
        defer { close(lock) }
        while flock(lock, LOCK_EX) != 0 {
            guard errno == EINTR else { throw ControlError(SystemError("flock \(directory)")) }
        }

        try Self.removeStaleSocket(at: path, address: address)
        let listener = try UnixSocket.controlStream()
        // The bound file takes the socket inode's mode minus the umask: owner-only from the
        // start, whatever the process's umask (which is process-wide, so not touched here).
        guard fchmod(listener.descriptor.rawValue, 0o600) == 0 else {
            throw ControlError(SystemError("fchmod control socket"))
        }
        guard address.withSockaddr({ bind(listener.descriptor.rawValue, $0, $1) }) == 0 else {
            let error = errno
            if error == EADDRINUSE { throw .alreadyRunning(path: path) }
            throw .system(operation: "bind \(path)", errno: error)
        }
        var status = stat()
        guard lstat(path, &status) == 0 else { throw ControlError(SystemError("stat \(path)")) }
        let identity = FileIdentity(status)
        do throws(ControlError) {
            if let group, chown(path, uid_t.max, group) != 0 {
                throw ControlError(SystemError("chown \(path) to gid \(group)"))
            }
            guard chmod(path, mode) == 0 else {
                throw ControlError(SystemError("chmod \(path) to \(String(mode, radix: 8))"))
            }
            guard listen(listener.descriptor.rawValue, 64) == 0 else { throw ControlError(SystemError("listen \(path)")) }
        } catch {
            identity.unlinkIfSame(path)
            throw error
        }
        self.path = path
        self.file = identity
        self.socket = listener
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `mkdir -p` with mode 0755 for the directories it creates.
    private static func makeDirectory(_ directory: String) throws(ControlError) {
        var status = stat()
        if stat(directory, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else { throw .system(operation: "mkdir \(directory)", errno: ENOTDIR) }
            return
        }
        guard errno == ENOENT else { throw ControlError(SystemError("stat \(directory)")) }
        let parent = parentDirectory(of: directory)
        if parent != directory { try makeDirectory(parent) }
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
            throw ControlError(SystemError("mkdir \(directory)"))
        }
        _ = chmod(directory, 0o755)
    }

    /// Throws if a server answers at `path`; unlinks a stale socket.
    private static func removeStaleSocket(at path: String, address: UnixSocketAddress) throws(ControlError) {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            guard errno == ENOENT else { throw ControlError(SystemError("stat \(path)")) }
            return
        }
        guard status.st_mode & S_IFMT == S_IFSOCK else { throw .notASocket(path: path) }
        let probe = try UnixSocket.controlStream()
        // Non-blocking: a listener with a full backlog answers EAGAIN, and is running.
        _ = fcntl(probe.descriptor.rawValue, F_SETFL, fcntl(probe.descriptor.rawValue, F_GETFL) | O_NONBLOCK)
        switch probe.connect(to: address)?.rawValue {
        case nil, EAGAIN?, EINPROGRESS?, ETIMEDOUT?:
            throw .alreadyRunning(path: path)
        case ECONNREFUSED?:
            guard unlink(path) == 0 || errno == ENOENT else { throw ControlError(SystemError("unlink stale \(path)")) }
        case let error?:
            throw .system(operation: "connect to existing socket \(path)", errno: error)
        }
    }
}

extension FileIdentity {
    /// Unlinks `path` if it is still this file (the socket the server bound).
    func unlinkIfSame(_ path: String) {
        var status = stat()
        guard lstat(path, &status) == 0, FileIdentity(status) == self else { return }
        _ = unlink(path)
    }
}

