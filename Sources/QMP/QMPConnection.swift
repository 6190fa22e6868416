import Glibc
import LinuxSystem

// # One client at a time, and deadlines everywhere
//
// QEMU's socket monitor (`-qmp unix:PATH,server,nowait`, `-chardev socket,…,server=on`)
// serves one client at a time. A second client's `connect` succeeds (the kernel queues it in
// the listen backlog) and then hears nothing: QEMU neither greets nor closes it until the
// first client hangs up. A blocking client would wait there for as long as libvirt, Proxmox's
// `qm monitor` or another agent holds the monitor, which may be forever. So every wait here
// has a deadline, and "connected, but no greeting in time" is an answer of its own
// (``QMPError/busy(path:timeout:)``): the caller defers the guest and tries again, instead of
// taking it for a dead QEMU.
//
// The socket is non-blocking; every wait is a `poll` for the time left before the deadline,
// so a slow peer cannot hold a read or a write past it. Writes use `MSG_NOSIGNAL`: a QEMU
// that exits mid-write is ``QMPError/closed(path:)``, not a SIGPIPE that ends the daemon.
//
// Replies carry the id of their command; events (`STOP`, `RESUME`, …) come in between,
// whenever QEMU emits them. While waiting for its reply a command keeps every event it reads,
// in order; a reply with another id (that of a command that timed out before) is skipped.

/// A client connection to one QEMU's QMP monitor socket, past capabilities negotiation.
///
/// Blocking and synchronous, for a thread of its own (never Swift's cooperative pool): each
/// call waits at most for its timeout. `~Copyable`: one owner holds the socket, and dropping
/// the connection (or ``close()``) closes it, which frees QEMU's monitor for its next client.
///
/// ```swift
/// var monitor = try QMPConnection.connect(path: "/var/run/qemu-server/100.qmp", timeout: .milliseconds(500))
/// try monitor.stop()
/// let stopped = monitor.takeEvents().first { $0.name == "STOP" }?.timestamp
/// ```
///
/// After ``QMPError/closed(path:)``, ``QMPError/protocolViolation(path:detail:)`` or
/// ``QMPError/system(_:)`` the connection is broken and every later call throws the same
/// error; after ``QMPError/timedOut(path:command:timeout:)`` (while waiting for a reply) or
/// ``QMPError/commandFailed(path:command:errorClass:description:)`` it can still be used.
public struct QMPConnection: ~Copyable, Sendable {
    /// The monitor socket's path.
    public let path: String
    /// What QEMU said when it accepted this client: its version and capabilities.
    public let greeting: QMPGreeting
    /// The events read while waiting for replies, oldest first, not yet taken.
    public private(set) var pendingEvents: [QMPEvent] = []

    private let socket: OwnedDescriptor
    private var reader: MessageReader
    private var nextID: Int64 = 1
    private var broken: QMPError?

    /// The longest message accepted by default (16 MiB): `query-pci` of a large machine is a
    /// few hundred KiB.
    public static let defaultMaximumMessageLength = 16 << 20

    private init(path: String, greeting: QMPGreeting, socket: consuming OwnedDescriptor, reader: consuming MessageReader) {
        self.path = path
        self.greeting = greeting
        self.socket = socket
        self.reader = reader
    }

    /// Connects to the QMP monitor at `path`, reads QEMU's greeting and leaves capabilities
    /// negotiation (`qmp_capabilities`), all within `timeout`.
    ///
    /// - Parameters:
    ///   - timeout: For the whole of it. Keep it short (a few hundred milliseconds): a QEMU
    ///     that serves another client answers nothing until that client leaves.
    ///   - maximumMessageLength: The longest line QEMU may send; a longer one is a
    ///     ``QMPError/protocolViolation(path:detail:)``.
    /// - Throws: ``QMPError/noServer(path:errno:)`` when there is no socket or nothing listens;
    ///   ``QMPError/busy(path:timeout:)`` when QEMU sends no greeting in time (or its backlog
    ///   is full); ``QMPError/timedOut(path:command:timeout:)`` when `qmp_capabilities` gets
    ///   no answer; any other ``QMPError``.
    ///
    /// The corresponding C calls are `socket`, `connect` and `poll`.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public static func connect(
        path: String, timeout: Duration, maximumMessageLength: Int = defaultMaximumMessageLength
    ) throws(QMPError) -> QMPConnection {
        let deadline = ContinuousClock.now + timeout
        let socket = try openSocket(connectedTo: path, until: deadline, timeout: timeout)
        var reader = MessageReader(limit: maximumMessageLength)
        guard let message = try reader.next(from: socket.descriptor, until: deadline, path: path) else {
            throw .busy(path: path, timeout: timeout)
        }
        let greeting: QMPGreeting
        do { greeting = try QMPGreeting(message: message) } catch { throw .protocolViolation(path: path, detail: error.detail) }
        var connection = QMPConnection(path: path, greeting: greeting, socket: socket, reader: reader)
        _ = try connection.exchange("qmp_capabilities", arguments: nil, until: deadline, timeout: timeout)
        return connection
    }

    /// Runs `command` with `arguments` and returns its `return` value; events read meanwhile
    /// go to ``pendingEvents``.
    ///
    /// The command is sent as `{"execute": COMMAND, "arguments": {…}, "id": N}` with an id of
    /// its own; replies with other ids are skipped.
    ///
    /// - Throws: ``QMPError/commandFailed(path:command:errorClass:description:)`` for QEMU's
    ///   `error` reply; ``QMPError/timedOut(path:command:timeout:)`` when no reply came within
    ///   `timeout`; ``QMPError/closed(path:)`` when QEMU hung up; any other ``QMPError``.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    @discardableResult
    public mutating func execute(
        _ command: String, arguments: [String: QMPValue]? = nil, timeout: Duration = .seconds(5)
    ) throws(QMPError) -> QMPValue {
        try exchange(command, arguments: arguments, until: ContinuousClock.now + timeout, timeout: timeout)
    }

    /// Hands over the events read so far, oldest first, and forgets them.
    public mutating func takeEvents() -> [QMPEvent] {
        defer { pendingEvents.removeAll() }
        return pendingEvents
    }

    /// The pending events, or if there are none, the events that arrive before `deadline`:
    /// returns as soon as at least one has been read, or empty at the deadline. Late replies
    /// read meanwhile are skipped.
    @available(*, noasync, message: "blocks the calling thread until the deadline")
    public mutating func readEvents(until deadline: ContinuousClock.Instant) throws(QMPError) -> [QMPEvent] {
        while pendingEvents.isEmpty {
            guard let message = try read(until: deadline) else { break }
            if let event = try event(in: message) { pendingEvents.append(event) }
        }
        return takeEvents()
    }

    /// Closes the connection now, freeing QEMU's monitor for its next client (as dropping the
    /// connection does).
    public consuming func close() {
        // Consuming self ends its lifetime here: the descriptor's owner closes it.
    }

    // MARK: - Exchanges

    /// Sends one command and reads until its reply, keeping events.
    private mutating func exchange(
        _ command: String, arguments: [String: QMPValue]?, until deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(QMPError) -> QMPValue {
        if let broken { throw broken }
        let id = nextID
        nextID += 1
        var request: [String: QMPValue] = ["execute": .string(command), "id": .int(id)]
        if let arguments { request["arguments"] = .object(arguments) }
        var bytes = QMPValue.object(request).serialized()
        bytes.append(UInt8(ascii: "\n"))
        do {
            try sendAll(bytes, until: deadline, command: command, timeout: timeout)
        } catch {
            // Part of the command may have gone out: what QEMU reads next would be garbage.
            broken = error
            throw error
        }
        while true {
            guard let message = try read(until: deadline) else {
                throw .timedOut(path: path, command: command, timeout: timeout)
            }
            if let event = try event(in: message) {
                pendingEvents.append(event)
                continue
            }
            let replyID = message["id"]
            if let value = message["return"] {
                if replyID == .int(id) { return value }
            } else if let error = message["error"] {
                // QEMU answers a request it could not read at all without an id: that is this one.
                if replyID == .int(id) || replyID == nil {
                    throw .commandFailed(
                        path: path, command: command, errorClass: error["class"]?.stringValue ?? "GenericError",
                        description: error["desc"]?.stringValue ?? "\(error)")
                }
            } else {
                throw fail(.protocolViolation(path: path, detail: "a message that is neither a reply nor an event: \(message)"))
            }
        }
    }

    /// The event `message` is, or nil for a reply.
    private mutating func event(in message: QMPValue) throws(QMPError) -> QMPEvent? {
        guard message.objectValue != nil else {
            throw fail(.protocolViolation(path: path, detail: "a message that is not an object: \(message)"))
        }
        do { return try QMPEvent(message: message) } catch {
            throw fail(.protocolViolation(path: path, detail: error.detail))
        }
    }

    /// The next message, or nil at the deadline; a failure breaks the connection.
    private mutating func read(until deadline: ContinuousClock.Instant) throws(QMPError) -> QMPValue? {
        if let broken { throw broken }
        do { return try reader.next(from: socket.descriptor, until: deadline, path: path) } catch { throw fail(error) }
    }

    /// Marks the connection broken by `error`, and returns it.
    private mutating func fail(_ error: QMPError) -> QMPError {
        broken = error
        return error
    }

    /// Writes all of `bytes` before `deadline`, retrying `EINTR` and partial writes, without
    /// raising SIGPIPE.
    ///
    /// The corresponding C function is `send` with `MSG_NOSIGNAL`.
    private func sendAll(
        _ bytes: [UInt8], until deadline: ContinuousClock.Instant, command: String, timeout: Duration
    ) throws(QMPError) {
        let raw = socket.descriptor.rawValue
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(raw, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent >= 0 {
                offset += sent
                continue
            }
            let error = SystemError("send to \(path)")
            switch error.errno {
            case .interrupted:
                continue
            case .wouldBlock:
                guard try waitUntilReady(socket.descriptor, for: Int16(POLLOUT), until: deadline, path: path) else {
                    throw .timedOut(path: path, command: command, timeout: timeout)
                }
            case .brokenPipe, .connectionReset:
                throw .closed(path: path)
            default:
                throw .system(error)
            }
        }
    }

    /// A non-blocking Unix stream socket connected to `path`.
    private static func openSocket(
        connectedTo path: String, until deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(QMPError) -> OwnedDescriptor {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard !pathBytes.isEmpty, pathBytes.count < MemoryLayout.size(ofValue: address.sun_path), !pathBytes.contains(0) else {
            throw .system(SystemError(errno: .fileNameTooLong, operation: "connect to \(path) (a socket path has at most 107 bytes)"))
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }

        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard raw >= 0 else { throw .system(SystemError("socket(AF_UNIX, SOCK_STREAM)")) }
        let socket = OwnedDescriptor(taking: FileDescriptor(rawValue: raw))

        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result == 0 { return socket }
        let error = SystemError("connect to \(path)")
        switch error.errno {
        case .noSuchFileOrDirectory, .notDirectory, .connectionRefused:
            throw .noServer(path: path, errno: error.errno)
        case .resourceTemporarilyUnavailable:
            // A Unix socket's backlog is full: QEMU accepts no one while it serves a client.
            throw .busy(path: path, timeout: timeout)
        case .nowInProgress, .interrupted:
            // The connection goes on in the background (a signal cannot undo it): wait for it.
            guard try waitUntilReady(socket.descriptor, for: Int16(POLLOUT), until: deadline, path: path) else {
                throw .busy(path: path, timeout: timeout)
            }
            var pending: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(raw, SOL_SOCKET, SO_ERROR, &pending, &length) == 0 else {
                throw .system(SystemError("getsockopt(SO_ERROR) for \(path)"))
            }
            guard pending != 0 else { return socket }
            let errno = Errno(rawValue: pending)
            if errno == .connectionRefused || errno == .noSuchFileOrDirectory { throw .noServer(path: path, errno: errno) }
            throw .system(SystemError(errno: errno, operation: "connect to \(path)"))
        default:
            throw .system(error)
        }
    }
}

// MARK: - Reading messages

/// Splits the byte stream from QEMU into messages: one JSON object a line, each ended by
/// "\r\n", any number of them (or part of one) in one `recv`.
@usableFromInline struct MessageReader: ~Copyable, @unchecked Sendable {
    /// The bytes received and not yet taken as messages, from `start`.
    private var buffer: [UInt8] = []
    private var start = 0
    /// How far past `start` the buffer is known to hold no newline.
    private var scanned = 0
    private let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 1)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    deinit { chunk.deallocate() }

    /// The next message, or nil if none is complete by `deadline`.
    ///
    /// - Complexity: Each byte received is scanned for a newline once and parsed once.
    mutating func next(from socket: FileDescriptor, until deadline: ContinuousClock.Instant, path: String) throws(QMPError) -> QMPValue? {
        while true {
            if let newline = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = start..<newline
                start = newline + 1
                scanned = 0
                guard line.count <= limit else { throw tooLong(path) }
                if let message = try parse(line, path: path) { return message }
                continue
            }
            scanned = buffer.count - start
            guard scanned <= limit else { throw tooLong(path) }
            if start > 0 && start >= buffer.count / 2 {
                buffer.removeSubrange(..<start)
                start = 0
            }
            let received = recv(socket.rawValue, chunk.baseAddress, chunk.count, 0)
            if received > 0 {
                buffer.append(contentsOf: chunk[..<received])
                continue
            }
            if received == 0 { throw .closed(path: path) }
            let error = SystemError("receive from \(path)")
            switch error.errno {
            case .interrupted:
                continue
            case .wouldBlock:
                guard try waitUntilReady(socket, for: Int16(POLLIN), until: deadline, path: path) else { return nil }
            case .connectionReset:
                throw .closed(path: path)
            default:
                throw .system(error)
            }
        }
    }

    /// The message on `line`, without its "\r"; nil for a line of white space only.
    private func parse(_ line: Range<Int>, path: String) throws(QMPError) -> QMPValue? {
        let text = buffer[line]
        guard text.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") }) else {
            return nil
        }
        do {
            return try QMPValue(parsing: text)
        } catch {
            let shown = String(decoding: text.prefix(200), as: UTF8.self)
            throw .protocolViolation(path: path, detail: "not JSON (\(error)): \(shown)")
        }
    }

    private func tooLong(_ path: String) -> QMPError {
        .protocolViolation(path: path, detail: "a message longer than \(limit) bytes")
    }
}

/// Waits until `socket` is ready for `events` (`POLLIN`, `POLLOUT`) or `deadline` passes:
/// false at the deadline. A hang-up or error counts as ready (the next call reports it).
///
/// The corresponding C function is `poll`.
private func waitUntilReady(
    _ socket: FileDescriptor, for events: Int16, until deadline: ContinuousClock.Instant, path: String
) throws(QMPError) -> Bool {
    while true {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return false }
        var entry = pollfd(fd: socket.rawValue, events: events, revents: 0)
        let ready = poll(&entry, 1, pollMilliseconds(left))
        if ready > 0 { return true }
        if ready == 0 { continue }
        let error = SystemError("poll \(path)")
        if error.errno != .interrupted { throw .system(error) }
    }
}

/// `duration` in whole milliseconds, rounded up (so that `poll` does not return just before a
/// deadline, to be called again with 0), at most `Int32.max`.
private func pollMilliseconds(_ duration: Duration) -> Int32 {
    let (seconds, attoseconds) = duration.components
    let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    return Int32(clamping: max(0, milliseconds))
}
