import Glibc
import LinuxSystem

/// Whether the QMP socket a QEMU's command line names may be connected to, decided from what
/// the kernel says about the socket file, the directories above it and, once connected, the
/// process that listens on it (`SO_PEERCRED`): never from the path alone.
///
/// A trusted QEMU names its own QMP socket, but the path is only words: a socket under a
/// directory another user can write may be replaced between QEMU's `bind` and samepaged's
/// `connect`, and root's samepaged would then send `stop`, `cont` and queries to whoever put a
/// socket there (and believe its answers about the guest). So a socket is used only when:
/// - the socket itself (`lstat`: a symbolic link is refused, never followed) is a socket owned
///   by root or by the QEMU's uid;
/// - every directory from `/` down to the socket, as written and as the kernel resolves it
///   (`/var/run` is a link to `/run` on Debian and Proxmox VE), is owned by root or that uid
///   and writable by no one else (no group or other write bit). One exception: a directory
///   owned by root with the sticky bit (`/tmp`, `/dev/shm`) may be written by others above
///   the socket's own directory, because the sticky bit keeps them from renaming or removing
///   entries they do not own; the socket's own directory never may (anyone could then take
///   the socket's name before QEMU binds it). A symbolic link on the way must be owned by root
///   or that uid (its parent, checked too, keeps others from replacing it);
/// - after `connect`, the listening process (`SO_PEERCRED`, the credentials of whoever called
///   `listen`) is the QEMU's pid, or runs as the QEMU's uid. A QEMU that daemonizes
///   (Proxmox VE's `-daemonize`) may have bound its socket in the parent it forked from: its
///   pid is not the one found, its uid is.
///
/// Decisions are pure functions of ``Facts`` (tests give fake ones); ``facts(path:)`` reads
/// them from the kernel.
public enum QMPSocketTrust {
    /// What `lstat` says about one file on the socket's path.
    public struct Entry: Sendable, Equatable {
        /// The file's path, as looked at.
        public var path: String
        /// Its owner (`st_uid`).
        public var owner: uid_t
        /// Its type and permission bits (`st_mode`).
        public var mode: mode_t

        /// The facts of one file (tests give them; ``QMPSocketTrust/facts(path:)`` reads them).
        public init(path: String, owner: uid_t, mode: mode_t) {
            self.path = path
            self.owner = owner
            self.mode = mode
        }
    }

    /// The socket file and everything above it.
    public struct Facts: Sendable, Equatable {
        /// The socket file itself, not followed if it is a link.
        public var socket: Entry
        /// Every file on the way to it, from `/` down, as written and as resolved: directories
        /// and the symbolic links among them.
        public var directories: [Entry]
        /// The socket's own directory, as written and as resolved: never writable by others.
        public var parents: [String]

        /// The facts of a socket; `parents` defaults to the socket's directory as written.
        public init(socket: Entry, directories: [Entry], parents: [String]? = nil) {
            self.socket = socket
            self.directories = directories
            self.parents = parents ?? [QMPSocketTrust.parentPath(socket.path)]
        }
    }

    /// Why the socket with these facts must not be used for a QEMU running as `uid`; nil when
    /// it may be.
    public static func untrustedReason(_ facts: Facts, qemuUID uid: uid_t) -> String? {
        func owned(_ entry: Entry) -> Bool { entry.owner == 0 || entry.owner == uid }
        let socket = facts.socket
        switch socket.mode & S_IFMT {
        case S_IFSOCK: break
        case S_IFLNK: return "its QMP socket \(socket.path) is a symbolic link"
        default: return "its QMP socket \(socket.path) is not a socket"
        }
        if !owned(socket) { return "its QMP socket \(socket.path) is owned by uid \(socket.owner), not root or its QEMU's uid \(uid)" }
        for entry in facts.directories {
            if !owned(entry) {
                return "\(entry.path), above its QMP socket, is owned by uid \(entry.owner), not root or its QEMU's uid \(uid)"
            }
            let type = entry.mode & S_IFMT
            if type == S_IFLNK { continue }
            guard type == S_IFDIR else { return "\(entry.path), above its QMP socket, is not a directory" }
            guard entry.mode & 0o022 != 0 else { continue }
            let sticky = entry.mode & S_ISVTX != 0 && entry.owner == 0
            if !sticky || facts.parents.contains(entry.path) {
                return "\(entry.path), above its QMP socket, is writable by others (mode \(String(entry.mode & 0o7777, radix: 8)))"
            }
        }
        return nil
    }

    /// Why a socket whose listener has these credentials does not serve the QEMU `pid` running
    /// as `uid`; nil when it does.
    public static func peerMismatch(_ peer: PeerCredentials, qemuPID pid: pid_t, qemuUID uid: uid_t, path: String) -> String? {
        if peer.pid == pid || peer.uid == uid { return nil }
        return "its QMP socket \(path) is served by pid \(peer.pid) (uid \(peer.uid)), not its QEMU \(pid) or its uid \(uid)"
    }

    /// Reads the facts of the socket at `path` (absolute): `lstat` of it and of every
    /// directory on its path as written, and of every directory of the path the kernel
    /// resolves its parent to (`realpath`).
    ///
    /// The corresponding C functions are `lstat` and `realpath`.
    public static func facts(path: String) throws(SystemError) -> Facts {
        guard path.hasPrefix("/") else { throw SystemError(errno: .invalidArgument, operation: "check the QMP socket \(path) (not an absolute path)") }
        let socket = try entry(path)
        var directories: [Entry] = []
        var seen = Set<String>()
        let parent = parentPath(path)
        guard let resolved = realpath(parent, nil) else { throw SystemError("realpath \(parent)") }
        let resolvedParent = String(cString: resolved)
        free(resolved)
        for prefix in prefixesOf(parent) + prefixesOf(resolvedParent) where seen.insert(prefix).inserted {
            directories.append(try entry(prefix))
        }
        return Facts(socket: socket, directories: directories, parents: [parent, resolvedParent])
    }

    private static func entry(_ path: String) throws(SystemError) -> Entry {
        var status = stat()
        guard lstat(path, &status) == 0 else { throw SystemError("lstat \(path)") }
        return Entry(path: path, owner: status.st_uid, mode: status.st_mode)
    }

    /// The directory holding `path` (`/` for a file at the root).
    static func parentPath(_ path: String) -> String {
        let components = path.split(separator: "/")
        return "/" + components.dropLast().joined(separator: "/")
    }

    /// `/`, `/a`, `/a/b` for `/a/b`.
    static func prefixesOf(_ directory: String) -> [String] {
        var result = ["/"]
        var path = ""
        for component in directory.split(separator: "/") {
            path += "/" + component
            result.append(path)
        }
        return result
    }
}
