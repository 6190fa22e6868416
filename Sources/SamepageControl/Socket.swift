import Glibc
import LinuxSystem

/// A socket descriptor this value owns: closed exactly once, when the value is consumed or
/// dropped.
struct SocketDescriptor: ~Copyable {
    private let owner: OwnedDescriptor

    /// Takes ownership of the socket `rawValue` (from `accept4`).
    init(rawValue: Int32) { owner = OwnedDescriptor(taking: FileDescriptor(rawValue: rawValue)) }

    /// The socket, for system calls while this value lives. Never close it.
    var rawValue: Int32 { owner.descriptor.rawValue }

    /// A new Unix stream socket, close-on-exec.
    static func unixStream() throws(ControlError) -> SocketDescriptor {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError(SystemError("socket(AF_UNIX, SOCK_STREAM)")) }
        return SocketDescriptor(rawValue: fd)
    }

    /// Closes the descriptor now.
    consuming func close() { owner.close() }

    /// Sets `SO_RCVTIMEO` or `SO_SNDTIMEO`; a zero duration waits forever.
    func setTimeout(_ option: Int32, _ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        var value = timeval(tv_sec: Int(max(seconds, 0)), tv_usec: Int(max(attoseconds, 0) / 1_000_000_000_000))
        if seconds == 0 && value.tv_usec == 0 && attoseconds > 0 { value.tv_usec = 1 }
        _ = setsockopt(rawValue, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Connects to the socket at `path`; returns the errno of a failed `connect`.
    func connect(to address: UnixSocketAddress) -> Int32? {
        while true {
            let result = address.withSockaddr { Glibc.connect(rawValue, $0, $1) }
            if result == 0 { return nil }
            if errno != EINTR { return errno }
        }
    }

    /// Writes all of `bytes`, without raising SIGPIPE. Returns the errno of a failed `send`.
    func sendAll(_ bytes: [UInt8], flags: Int32 = 0) -> Int32? {
        bytes.withUnsafeBytes { buffer -> Int32? in
            var offset = 0
            while offset < buffer.count {
                let sent = send(rawValue, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL) | flags)
                if sent < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                offset += sent
            }
            return nil
        }
    }

    /// Shuts down both directions: wakes a thread blocked reading or accepting on it.
    func shutdownBoth() { _ = shutdown(rawValue, Int32(SHUT_RDWR)) }
}

/// A filesystem Unix socket address.
struct UnixSocketAddress {
    private var storage = sockaddr_un()
    private let length: socklen_t

    init(path: String) throws(ControlError) {
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { throw .pathTooLong(path: path) }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}

/// What reading the next line from a connection gave.
enum LineRead {
    /// A line, newline removed (at the end of the stream, the unterminated rest).
    case line([UInt8])
    /// The stream ended.
    case end
    /// More than the limit arrived without a newline.
    case tooLong
    /// Nothing arrived within the receive timeout.
    case timedOut
    /// `recv` failed with this errno.
    case failed(Int32)
}

/// Splits a byte stream into newline-terminated lines, with a cap on their length.
struct LineReader {
    private var buffer: [UInt8] = []
    /// How far `buffer` is known to hold no newline.
    private var scanned = 0
    private var ended = false
    let limit: Int

    init(limit: Int) { self.limit = limit }

    mutating func next(from descriptor: borrowing SocketDescriptor) -> LineRead {
        while true {
            if let newline = buffer[scanned...].firstIndex(of: UInt8(ascii: "\n")) {
                guard newline <= limit else { return .tooLong }
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                scanned = 0
                return .line(line)
            }
            scanned = buffer.count
            guard buffer.count <= limit else { return .tooLong }
            if ended {
                guard !buffer.isEmpty else { return .end }
                defer { buffer.removeAll(); scanned = 0 }
                return .line(buffer)
            }
            let chunk = 64 * 1024
            let start = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: chunk))
            let received = buffer.withUnsafeMutableBytes { recv(descriptor.rawValue, $0.baseAddress! + start, chunk, 0) }
            let failure = errno
            buffer.removeSubrange((start + max(received, 0))...)
            if received > 0 { continue }
            if received == 0 {
                ended = true
                continue
            }
            switch failure {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .timedOut
            default: return .failed(failure)
            }
        }
    }
}

// MARK: - Peer credentials

/// The process at the other end of a control connection, as the kernel saw it when it
/// connected (`SO_PEERCRED`).
public struct ControlPeer: Sendable, Hashable, CustomStringConvertible {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t

    public init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }

    /// The credentials of the peer of a connected Unix socket.
    init?(of descriptor: borrowing SocketDescriptor) {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: Glibc's module map leaves it out
        // (it is under _GNU_SOURCE).
        var credentials: (pid: pid_t, uid: uid_t, gid: gid_t) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<pid_t>.size + MemoryLayout<uid_t>.size + MemoryLayout<gid_t>.size)
        guard getsockopt(descriptor.rawValue, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
            length == 12
        else { return nil }
        self.init(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
    }
}

/// `SO_PEERGROUPS` (Linux 4.13): the peer's supplementary groups at connect time. Its value
/// is 59 on every architecture Swift supports on Linux (asm-generic).
private let soPeerGroups: Int32 = 59

/// The supplementary groups of a connected peer: from `SO_PEERGROUPS`, or, on kernels
/// without it, from `/proc/PID/status` (only while that process still has the peer's uid).
func supplementaryGroups(of descriptor: borrowing SocketDescriptor, peer: ControlPeer) -> [gid_t] {
    var groups = [gid_t](repeating: 0, count: 64)
    while true {
        var length = socklen_t(groups.count * MemoryLayout<gid_t>.size)
        let result = groups.withUnsafeMutableBytes {
            getsockopt(descriptor.rawValue, SOL_SOCKET, soPeerGroups, $0.baseAddress, &length)
        }
        if result == 0 { return Array(groups.prefix(Int(length) / MemoryLayout<gid_t>.size)) }
        if errno == ERANGE, Int(length) > groups.count * MemoryLayout<gid_t>.size {
            groups = [gid_t](repeating: 0, count: Int(length) / MemoryLayout<gid_t>.size + 1)
            continue
        }
        if errno == ENOPROTOOPT { return procStatusGroups(of: peer) }
        return []
    }
}

/// The `Groups:` line of `/proc/PID/status`, if its real uid is still the peer's (the pid
/// may have been reused).
func procStatusGroups(of peer: ControlPeer) -> [gid_t] {
    guard let bytes = try? readWholeFile("/proc/\(peer.pid)/status", limit: 65536) else { return [] }
    let status = String(decoding: bytes, as: UTF8.self)
    var uidMatches = false
    var groups: [gid_t] = []
    for line in status.split(separator: "\n") {
        if line.hasPrefix("Uid:") {
            uidMatches = line.dropFirst(4).split(whereSeparator: \.isWhitespace).first.flatMap { uid_t($0) } == peer.uid
        } else if line.hasPrefix("Groups:") {
            groups = line.dropFirst(7).split(whereSeparator: \.isWhitespace).compactMap { gid_t($0) }
        }
    }
    return uidMatches ? groups : []
}
