import CLinux
import Glibc

// # One Unix stream socket, for every peer
//
// samepaged talks to two kinds of peer over Unix stream sockets: QEMU's QMP monitor (a
// client, non-blocking, every wait a `poll` up to an absolute deadline) and its own control
// socket (a server and a client, blocking, bounded by `SO_RCVTIMEO`/`SO_SNDTIMEO`). What
// they share is here, written once: the `sockaddr_un` of a path, the owner of the socket,
// `connect` and `send` with their `EINTR` and `EAGAIN` cases, `poll` to a deadline, and the
// framing of a byte stream into lines of bounded length (``LineBuffer``). What each peer's
// errors mean stays with the peer.
//
// Every write is `MSG_NOSIGNAL`: a peer that hangs up mid-write is `EPIPE`, never a SIGPIPE
// that ends the daemon.

/// A filesystem Unix socket address: a `sockaddr_un` holding a path.
public struct UnixSocketAddress: Sendable {
    /// The socket's path.
    public let path: String
    private var storage = sockaddr_un()
    private let length: socklen_t

    /// The address of the socket at `path`.
    ///
    /// - Throws: `ENAMETOOLONG` as `connect to PATH (a socket path has at most 107 bytes)`
    ///   when `path` is empty, holds a NUL or does not fit in `sun_path`.
    public init(path: String) throws(SystemError) {
        self.path = path
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else {
            throw SystemError(errno: .fileNameTooLong, operation: "connect to \(path) (a socket path has at most 107 bytes)")
        }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1)
    }

    /// Calls `body` with the address as a `sockaddr` and its length, for `bind` and `connect`.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafePointer(to: storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}

/// A Unix stream socket this value owns: closed exactly once, when the value is dropped or
/// consumed by ``close()``.
public struct UnixSocket: ~Copyable, Sendable {
    private let owner: OwnedDescriptor

    /// Takes ownership of the socket `descriptor` (from `socket` or `accept4`).
    public init(taking descriptor: FileDescriptor) { owner = OwnedDescriptor(taking: descriptor) }

    /// The socket, for system calls while this value lives. Never close it.
    public var descriptor: FileDescriptor { owner.descriptor }

    /// A new Unix stream socket, close-on-exec, and non-blocking if `nonBlocking`.
    ///
    /// The corresponding C function is `socket`.
    public static func stream(nonBlocking: Bool = false) throws(SystemError) -> UnixSocket {
        var type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let raw = try retryingInterrupts("socket(AF_UNIX, SOCK_STREAM)") { Glibc.socket(AF_UNIX, type, 0) }
        return UnixSocket(taking: FileDescriptor(rawValue: raw))
    }

    /// Closes the socket now.
    public consuming func close() { owner.close() }

    /// Accepts one connection on the listening socket `listener`, close-on-exec (no window in
    /// which a fork could inherit it): its descriptor, for the caller to own (with
    /// ``init(taking:)``), or the errno of the failure. `EINTR` is returned, not retried: a
    /// thread told to stop must see it.
    ///
    /// The corresponding C function is `accept4` with `SOCK_CLOEXEC`.
    @available(*, noasync, message: "blocks the calling thread until a peer connects")
    public static func accept(on listener: FileDescriptor) -> Result<FileDescriptor, Errno> {
        let raw = samepage_accept_cloexec(listener.rawValue)
        guard raw >= 0 else { return .failure(Errno(rawValue: Glibc.errno)) }
        return .success(FileDescriptor(rawValue: raw))
    }

    /// Connects to `address`; nil once connected, or the errno of the failure.
    ///
    /// `EINTR` is retried (a Unix socket's `connect` completes or fails at once: an
    /// interrupted one did not connect). A non-blocking socket whose peer's listen backlog is
    /// full fails with `EAGAIN`; a blocking one waits for room until its `SO_SNDTIMEO` and
    /// then fails with `EAGAIN`. Should the kernel ever report `EINPROGRESS`, the connection
    /// is waited for until `deadline` (`ETIMEDOUT` after it) and its `SO_ERROR` returned.
    ///
    /// The corresponding C functions are `connect`, `poll` and `getsockopt(SO_ERROR)`.
    @available(*, noasync, message: "may block the calling thread")
    public func connect(to address: UnixSocketAddress, until deadline: ContinuousClock.Instant = .now) -> Errno? {
        let raw = descriptor.rawValue
        while true {
            if address.withSockaddr({ Glibc.connect(raw, $0, $1) }) == 0 { return nil }
            let failure = Errno(rawValue: Glibc.errno)
            switch failure {
            case .interrupted:
                continue
            case .nowInProgress:
                switch waitUntilReady(for: Int16(POLLOUT), until: deadline) {
                case .success(true): break
                case .success(false): return .timedOut
                case .failure(let error): return error.errno
                }
                var pending: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                guard getsockopt(raw, SOL_SOCKET, SO_ERROR, &pending, &length) == 0 else { return Errno(rawValue: Glibc.errno) }
                return pending == 0 ? nil : Errno(rawValue: pending)
            default:
                return failure
            }
        }
    }

    /// Writes all of `bytes`, retrying `EINTR` and partial writes, without raising SIGPIPE;
    /// nil once all is written, or the errno of the failed `send`.
    ///
    /// With a `deadline`, a socket whose buffer is full (`EAGAIN`: non-blocking, or past
    /// `SO_SNDTIMEO`) is polled until the deadline, then fails with `ETIMEDOUT`; without one,
    /// `EAGAIN` is returned at once.
    ///
    /// The corresponding C function is `send` with `MSG_NOSIGNAL`.
    @available(*, noasync, message: "may block the calling thread")
    public func sendAll(_ bytes: [UInt8], flags: Int32 = 0, until deadline: ContinuousClock.Instant? = nil) -> Errno? {
        let raw = descriptor.rawValue
        return bytes.withUnsafeBytes { buffer -> Errno? in
            var offset = 0
            while offset < buffer.count {
                let sent = send(raw, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL) | flags)
                if sent >= 0 {
                    offset += sent
                    continue
                }
                let failure = Errno(rawValue: Glibc.errno)
                switch failure {
                case .interrupted:
                    continue
                case .wouldBlock:
                    guard let deadline else { return failure }
                    switch waitUntilReady(for: Int16(POLLOUT), until: deadline) {
                    case .success(true): continue
                    case .success(false): return .timedOut
                    case .failure(let error): return error.errno
                    }
                default:
                    return failure
                }
            }
            return nil
        }
    }

    /// Waits until the socket is ready for `events` (`POLLIN`, `POLLOUT`) or `deadline`
    /// passes: false at the deadline. A hang-up or an error counts as ready (the next call
    /// reports it). `EINTR` is retried with the time left.
    ///
    /// The corresponding C function is `poll`.
    @available(*, noasync, message: "blocks the calling thread until the deadline")
    public func waitUntilReady(for events: Int16, until deadline: ContinuousClock.Instant) -> Result<Bool, SystemError> {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return .success(false) }
            var entry = pollfd(fd: descriptor.rawValue, events: events, revents: 0)
            let ready = poll(&entry, 1, pollMilliseconds(left))
            if ready > 0 { return .success(true) }
            if ready == 0 { continue }
            let error = SystemError("poll a Unix socket")
            if error.errno != .interrupted { return .failure(error) }
        }
    }

    /// Sets `SO_RCVTIMEO` (`receive`) and `SO_SNDTIMEO` (`send`, and `connect` waiting for
    /// room in a backlog) of a blocking socket; a zero duration waits forever.
    ///
    /// The corresponding C function is `setsockopt`.
    public func setTimeouts(receive: Duration? = nil, send: Duration? = nil) {
        for (option, duration) in [(SO_RCVTIMEO, receive), (SO_SNDTIMEO, send)] {
            guard let duration else { continue }
            let (seconds, attoseconds) = duration.components
            var value = timeval(tv_sec: Int(max(seconds, 0)), tv_usec: Int(max(attoseconds, 0) / 1_000_000_000_000))
            if seconds == 0 && value.tv_usec == 0 && attoseconds > 0 { value.tv_usec = 1 }
            _ = setsockopt(descriptor.rawValue, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    /// Shuts down both directions: wakes a thread blocked reading or accepting on it.
    ///
    /// The corresponding C function is `shutdown`.
    public func shutdownBoth() { _ = shutdown(descriptor.rawValue, Int32(SHUT_RDWR)) }
}

/// `duration` in whole milliseconds, rounded up (so that `poll` does not return just before a
/// deadline, to be called again with 0), at most `Int32.max`.
func pollMilliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: max(0, milliseconds))
}

// MARK: - Lines

/// The bytes of a stream split into newline-terminated lines, with a cap on a line's length:
/// the framing of QMP (one JSON object a line) and of the control protocol (likewise).
///
/// It holds what was received and not yet taken; ``receive(from:)`` adds at most 64 KiB at
/// a time, and only a caller that found no complete line calls it, so what it holds is at
/// most `limit` bytes of an unfinished line plus one receive.
public struct LineBuffer: Sendable {
    /// The bytes received and not yet taken as lines, from `start`.
    private var buffer: [UInt8] = []
    private var start = 0
    /// How far past `start` the buffer is known to hold no newline.
    private var scanned = 0
    /// The longest line accepted, without its newline.
    public let limit: Int

    /// How many bytes one ``receive(from:)`` asks for.
    public static let receiveSize = 64 << 10

    public init(limit: Int) { self.limit = limit }

    /// What ``nextLine()`` found.
    public enum Line: Equatable, Sendable {
        /// A line, without its "\n" (a "\r" before it is kept).
        case line(ArraySlice<UInt8>)
        /// More than ``LineBuffer/limit`` bytes without a newline.
        case tooLong
    }

    /// The next complete line, or nil when none is held.
    ///
    /// - Complexity: Each byte is scanned for a newline once.
    public mutating func nextLine() -> Line? {
        if let newline = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
            let line = start..<newline
            start = newline + 1
            scanned = 0
            guard line.count <= limit else { return .tooLong }
            return .line(buffer[line])
        }
        scanned = buffer.count - start
        guard scanned <= limit else { return .tooLong }
        return nil
    }

    /// Takes the unterminated rest (what a stream that ended left), or nil if none.
    public mutating func takeRemainder() -> [UInt8]? {
        guard start < buffer.count else { return nil }
        defer {
            buffer.removeAll()
            start = 0
            scanned = 0
        }
        return Array(buffer[start...])
    }

    /// What ``receive(from:)`` did.
    public enum Receive: Equatable, Sendable {
        /// This many bytes arrived.
        case received(Int)
        /// The peer ended the stream.
        case end
        /// `recv` failed: `EAGAIN` when nothing is there (non-blocking) or nothing came
        /// within `SO_RCVTIMEO`.
        case failed(Errno)
    }

    /// Receives what is there, up to ``receiveSize`` bytes, retrying `EINTR`.
    ///
    /// The corresponding C function is `recv`.
    @available(*, noasync, message: "may block the calling thread")
    public mutating func receive(from socket: FileDescriptor) -> Receive {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(..<start)
            start = 0
        }
        // Into scratch space, then only what came is appended: zero-filling the buffer's 64 KiB
        // at every call cost tens of milliseconds in a debug build, inside a pause.
        while true {
            let (received, failure) = withUnsafeTemporaryAllocation(byteCount: Self.receiveSize, alignment: 16) { scratch -> (Int, Errno) in
                let received = recv(socket.rawValue, scratch.baseAddress!, Self.receiveSize, 0)
                let failure = Errno(rawValue: received < 0 ? Glibc.errno : 0)
                if received > 0 { buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<received])) }
                return (received, failure)
            }
            if received < 0 && failure == .interrupted { continue }
            if received > 0 { return .received(received) }
            return received == 0 ? .end : .failed(failure)
        }
    }
}

// MARK: - Peer credentials

/// Who listened on (or connected to) the other end of a connected Unix socket, as the kernel
/// recorded it then (`SO_PEERCRED`): its pid, uid and gid at `listen` or `connect` time,
/// whatever the peer says or does later.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The peer's process id then.
    public var pid: pid_t
    /// Its effective uid then.
    public var uid: uid_t
    /// Its effective gid then.
    public var gid: gid_t

    /// Credentials as given (tests); a socket's come from ``UnixSocket/peerCredentials()``.
    public init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    /// `pid N uid N gid N`.
    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }
}

extension UnixSocket {
    /// The credentials of the peer of this connected socket; nil when the kernel gives none.
    ///
    /// The corresponding C function is `getsockopt` with `SO_PEERCRED`.
    public func peerCredentials() -> PeerCredentials? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: Glibc's module map leaves it out
        // (it is under _GNU_SOURCE).
        var credentials: (pid: pid_t, uid: uid_t, gid: gid_t) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<pid_t>.size + MemoryLayout<uid_t>.size + MemoryLayout<gid_t>.size)
        guard getsockopt(descriptor.rawValue, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length == 12
        else { return nil }
        return PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
    }
}
