import CLinux
import Foundation
import Glibc
import LinuxSystem

/// The Unix-domain sockets of this network namespace: each one's name and connected peer,
/// from sock_diag(7). (`/proc/net/unix` lists names but not peers, and a backend that QEMU
/// listens for connects from an unnamed socket: only the peer ties it to QEMU.)
public struct UnixSocketTable: Sendable {
    public struct Entry: Sendable, Hashable {
        /// The bound path; for an accepted connection, its listener's path. nil when unnamed.
        public var name: String?
        /// The connected peer's inode.
        public var peer: UInt32?
    }

    public private(set) var entries: [UInt32: Entry]

    public init(entries: [UInt32: Entry]) {
        self.entries = entries
    }

    /// Reads the table from the kernel.
    public static func current() throws(SystemError) -> UnixSocketTable {
        var list: UnsafeMutablePointer<samepage_unix_socket>?
        let count = samepage_unix_sockets(&list)
        guard count >= 0 else { throw SystemError(errno: Errno(rawValue: CInt(-count)), operation: "sock_diag dump of Unix sockets") }
        defer { free(list) }
        var entries: [UInt32: Entry] = [:]
        entries.reserveCapacity(count)
        for i in 0..<count {
            let socket = list![i]
            var entry = Entry(name: nil, peer: socket.peer == 0 ? nil : socket.peer)
            // Abstract names (leading NUL) are not paths; QEMU's vhost-user chardevs use paths.
            if socket.name_length > 0 {
                entry.name = withUnsafeBytes(of: socket.name) { raw in
                    let bytes = raw.prefix(Int(socket.name_length))
                    guard bytes.first != 0 else { return nil }
                    // A path may be NUL-terminated inside the reported length.
                    return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                }
            }
            entries[socket.inode] = entry
        }
        return UnixSocketTable(entries: entries)
    }

    public subscript(inode: UInt32) -> Entry? { entries[inode] }

    /// The socket inodes a process holds open (`/proc/PID/fd/N -> socket:[INODE]`); none for
    /// a process that cannot be read.
    public static func sockets(of pid: pid_t) -> Set<UInt32> {
        var inodes = Set<UInt32>()
        try? OpenDescriptors.forEachTarget(of: pid) { target in
            let prefix = "socket:[".utf8
            guard target.count > prefix.count + 1, target.starts(with: prefix), target.last == UInt8(ascii: "]") else { return }
            if let inode = UInt32(String(decoding: target[prefix.count..<(target.count - 1)], as: UTF8.self)) {
                inodes.insert(inode)
            }
        }
        return inodes
    }
}

/// Tells which processes mapping a guest's RAM are the vhost-user backends its definition
/// names (virtiofsd, a vhost-user-net or -blk backend), and which are something else.
///
/// A vhost-user backend maps guest RAM because QEMU sends it the backend descriptors over the
/// device's socket. So a mapper counts as a backend only if it holds one end of a connection
/// whose other end QEMU holds, on one of the guest's vhost-user socket paths: either the
/// backend listens on the path (QEMU connects; the backend's accepted socket carries the
/// path) or QEMU does (the backend connects; QEMU's accepted socket carries it).
public enum VhostUserBackends {
    /// The path each backend serves, for the mappers that are backends of this QEMU on one
    /// of `socketPaths`; mappers absent from the result are not.
    public static func identify(
        qemu: pid_t, mappers: [pid_t], socketPaths: Set<String>, table: UnixSocketTable,
        socketsOf: (pid_t) -> Set<UInt32> = UnixSocketTable.sockets(of:)
    ) -> [pid_t: String] {
        guard !socketPaths.isEmpty, !mappers.isEmpty else { return [:] }
        let qemuSockets = socketsOf(qemu)
        var backends: [pid_t: String] = [:]
        for mapper in mappers where mapper != qemu {
            for inode in socketsOf(mapper) {
                guard let mine = table[inode], let peer = mine.peer, qemuSockets.contains(peer) else { continue }
                if let path = mine.name ?? table[peer]?.name, socketPaths.contains(path) {
                    backends[mapper] = path
                    break
                }
            }
        }
        return backends
    }
}
