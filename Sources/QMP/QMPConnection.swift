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
// and the deadline is absolute and checked before every `recv`, so neither a slow peer nor a
// fast one (an event flood, blank lines) can hold a call past it; past its deadline a call
// makes at most one more `recv`, so `readEvents(until: .now)` still sees what has arrived.
// Writes use `MSG_NOSIGNAL`: a QEMU that exits mid-write is ``QMPError/closed(path:)``.
//
// Memory is bounded as well: a line longer than `maximumMessageLength` is a protocol
// violation, at most ``QMPConnection/maximumPendingEvents`` events wait to be taken, and at
// most ``QMPConnection/maximumUnsolicitedMessages`` messages no command asked for (events,
// blank lines, replies to commands that timed out) are read between two commands. Beyond
// either the connection fails with ``QMPError/flood(path:detail:)``: QEMU emits a handful of
// events around a pause, never hundreds.
//
// Replies carry the id of their command; events (`STOP`, `RESUME`, …) come in between,
// whenever QEMU emits them. While waiting for its reply a command keeps every event it reads,
// in order; a reply with another id (that of a command that timed out before) is skipped.

/// A client connection to one QEMU's QMP monitor socket, past capabilities negotiation.
///
/// Blocking and synchronous, for a thread of its own (never Swift's cooperative pool): each
/// call waits at most for its timeout, measured from its start, whatever QEMU sends. `~Copyable`:
/// one owner holds the socket, and dropping the connection (or ``close()``) closes it, which
/// frees QEMU's monitor for its next client.
///
/// ```swift
/// var monitor = try QMPConnection.connect(path: "/var/run/qemu-server/100.qmp", timeout: .milliseconds(500))
/// try monitor.stop()
/// let stopped = monitor.takeEvents().first { $0.name == "STOP" }?.timestamp
/// ```
///
/// After ``QMPError/closed(path:)``, ``QMPError/protocolViolation(path:detail:)``,
/// ``QMPError/flood(path:detail:)`` or ``QMPError/system(_:)`` the connection is broken and
/// every later call throws the same error; after ``QMPError/timedOut(path:command:timeout:)``
/// (while waiting for a reply) or ``QMPError/commandFailed(path:command:errorClass:description:)``
/// it can still be used.
public struct QMPConnection: ~Copyable, Sendable {
    /// The monitor socket's path.
    public let path: String
    /// What QEMU said when it accepted this client: its version and capabilities.
    public let greeting: QMPGreeting
    /// The events read while waiting for replies, oldest first, not yet taken: at most
    /// ``maximumPendingEvents``.
    public private(set) var pendingEvents: [QMPEvent] = []

    private let socket: UnixSocket
    private var reader: MessageReader
    private var nextID: Int64 = 1
    private var broken: QMPError?
    /// Messages no command asked for, read since the last command went out.
    private var unsolicited: Int

    /// The longest message accepted by default (16 MiB): `query-pci` of a large machine is a
    /// few hundred KiB.
    public static let defaultMaximumMessageLength = 16 << 20

    /// The most events that wait in ``pendingEvents``; one more is a ``QMPError/flood(path:detail:)``.
    public static let maximumPendingEvents = 256

    /// The most messages no command asked for (events, blank lines, replies to commands that
    /// timed out) read between two commands (or before the first one); one more is a
    /// ``QMPError/flood(path:detail:)``.
    public static let maximumUnsolicitedMessages = 256

    private init(
        path: String, greeting: QMPGreeting, socket: consuming UnixSocket, reader: consuming MessageReader, unsolicited: Int
    ) {
        self.path = path
        self.greeting = greeting
        self.socket = socket
        self.reader = reader
        self.unsolicited = unsolicited
    }

    /// Connects to the QMP monitor at `path`, reads QEMU's greeting and leaves capabilities
    /// negotiation (`qmp_capabilities`), all within `timeout`.
    ///
    /// - Parameters:
    ///   - timeout: For the whole of it. Keep it short (a few hundred milliseconds): a QEMU
    ///     that serves another client answers nothing until that client leaves.
    ///   - maximumMessageLength: The longest line QEMU may send; a longer one is a
    ///     ``QMPError/protocolViolation(path:detail:)``.
    ///   - peerCheck: Judges who listens on the socket (`SO_PEERCRED`) before anything is read
    ///     from it or sent to it: a reason to refuse it, or nil. A refusal is
    ///     ``QMPError/untrustedPeer(path:detail:)``, as are credentials the kernel does not give.
    /// - Throws: ``QMPError/noServer(path:errno:)`` when there is no socket or nothing listens;
    ///   ``QMPError/busy(path:timeout:)`` when QEMU sends no greeting in time (or its backlog
    ///   is full); ``QMPError/timedOut(path:command:timeout:)`` when `qmp_capabilities` gets
    ///   no answer; ``QMPError/flood(path:detail:)`` when QEMU sends more than
    ///   ``maximumUnsolicitedMessages`` messages first; any other ``QMPError``.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    public static func connect(
        path: String, timeout: Duration, maximumMessageLength: Int = defaultMaximumMessageLength,
        peerCheck: ((PeerCredentials) -> String?)? = nil
    ) throws(QMPError) -> QMPConnection {
        var deadline = Deadline(ContinuousClock.now + timeout)
        let socket = try openSocket(connectedTo: path, until: deadline.instant, timeout: timeout)
        if let peerCheck {
            guard let peer = socket.peerCredentials() else {
                throw .untrustedPeer(path: path, detail: "the kernel gives no credentials of its listener")
            }
            if let refusal = peerCheck(peer) { throw .untrustedPeer(path: path, detail: refusal) }
        }
        var reader = MessageReader(limit: maximumMessageLength)
        var unsolicited = 0
        var greeting: QMPGreeting?
        while greeting == nil {
            switch try reader.next(from: socket, until: &deadline, path: path) {
            case nil:
                throw .busy(path: path, timeout: timeout)
            case .blank:
                unsolicited += 1
                guard unsolicited <= maximumUnsolicitedMessages else { throw floodBetweenCommands(path) }
            case .message(let message):
                do { greeting = try QMPGreeting(message: message) } catch {
                    throw .protocolViolation(path: path, detail: error.detail)
                }
            }
        }
        var connection = QMPConnection(
            path: path, greeting: greeting!, socket: socket, reader: reader, unsolicited: unsolicited)
        _ = try connection.exchange("qmp_capabilities", arguments: nil, until: &deadline, timeout: timeout)
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
    ///   `timeout`; ``QMPError/closed(path:)`` when QEMU hung up;
    ///   ``QMPError/flood(path:detail:)`` when QEMU sent too many events or other messages
    ///   meanwhile; any other ``QMPError``.
    @available(*, noasync, message: "blocks the calling thread for up to its timeout")
    @discardableResult
    public mutating func execute(
        _ command: String, arguments: [String: QMPValue]? = nil, timeout: Duration = .seconds(5)
    ) throws(QMPError) -> QMPValue {
        var deadline = Deadline(ContinuousClock.now + timeout)
        return try exchange(command, arguments: arguments, until: &deadline, timeout: timeout)
    }

    /// Runs `command` with `arguments` and returns its `return` value, as
    /// ``execute(_:arguments:timeout:)`` does, waiting until `deadline` at most: several
    /// commands under one bound. A ``QMPError/timedOut(path:command:timeout:)`` names the time
    /// that was left when the call began.
    @available(*, noasync, message: "blocks the calling thread until the deadline at most")
    @discardableResult
    public mutating func execute(
        _ command: String, arguments: [String: QMPValue]? = nil, until deadline: ContinuousClock.Instant
    ) throws(QMPError) -> QMPValue {
        var window = Deadline(deadline)
        return try exchange(command, arguments: arguments, until: &window, timeout: max(.zero, deadline - .now))
    }

    /// Hands over the events read so far, oldest first, and forgets them.
    public mutating func takeEvents() -> [QMPEvent] {
        defer { pendingEvents.removeAll() }
        return pendingEvents
    }

    /// The pending events, or if there are none, the events that arrive before `deadline`:
    /// returns as soon as at least one has been read, or empty at the deadline. Late replies
    /// read meanwhile are skipped. With a deadline that has passed, it reads what has arrived
    /// already (one `recv`), without waiting.
    ///
    /// - Throws: ``QMPError/flood(path:detail:)`` when more than
    ///   ``maximumUnsolicitedMessages`` messages came since the last command; any other
    ///   ``QMPError``.
    @available(*, noasync, message: "blocks the calling thread until the deadline")
    public mutating func readEvents(until deadline: ContinuousClock.Instant) throws(QMPError) -> [QMPEvent] {
        var window = Deadline(deadline)
        while pendingEvents.isEmpty {
            guard let message = try read(until: &window) else { break }
            if let event = try event(in: message) { try keep(event) }
        }
        return takeEvents()
    }

    /// Closes the connection now, freeing QEMU's monitor for its next client (as dropping it
    /// does: consuming self ends its lifetime, and the socket's owner closes it).
    public consuming func close() {}

    // MARK: - Exchanges

    /// Sends one command and reads until its reply, keeping events.
    private mutating func exchange(
        _ command: String, arguments: [String: QMPValue]?, until deadline: inout Deadline, timeout: Duration
    ) throws(QMPError) -> QMPValue {
        if let broken { throw broken }
        let id = nextID
        nextID += 1
        var request: [String: QMPValue] = ["execute": .string(command), "id": .int(id)]
        if let arguments { request["arguments"] = .object(arguments) }
        var bytes = QMPValue.object(request).serialized()
        bytes.append(UInt8(ascii: "\n"))
        if let errno = socket.sendAll(bytes, until: deadline.instant) {
            // Part of the command may have gone out: what QEMU reads next would be garbage.
            switch errno {
            case .timedOut: throw fail(.timedOut(path: path, command: command, timeout: timeout))
            case .brokenPipe, .connectionReset: throw fail(.closed(path: path))
            default: throw fail(.system(SystemError(errno: errno, operation: "send to \(path)")))
            }
        }
        unsolicited = 0
        while true {
            guard let message = try read(until: &deadline) else {
                throw .timedOut(path: path, command: command, timeout: timeout)
            }
            if let event = try event(in: message) {
                try keep(event)
                continue
            }
            let replyID = message["id"]
            if let value = message["return"] {
                if replyID == .int(id) { return value }
                try countUnsolicited()
            } else if let error = message["error"] {
                // QEMU answers a request it could not read at all without an id: that is this one.
                if replyID == .int(id) || replyID == nil {
                    throw .commandFailed(
                        path: path, command: command, errorClass: error["class"]?.stringValue ?? "GenericError",
                        description: error["desc"]?.stringValue ?? "\(error)")
                }
                try countUnsolicited()
            } else {
                throw fail(.protocolViolation(path: path, detail: "a message that is neither a reply nor an event: \(message)"))
            }
        }
    }

    /// The event `message` is, or nil for a reply; an event counts as unsolicited.
    private mutating func event(in message: QMPValue) throws(QMPError) -> QMPEvent? {
        guard message.objectValue != nil else {
            throw fail(.protocolViolation(path: path, detail: "a message that is not an object: \(message)"))
        }
        let event: QMPEvent?
        do { event = try QMPEvent(message: message) } catch {
            throw fail(.protocolViolation(path: path, detail: error.detail))
        }
        if event != nil { try countUnsolicited() }
        return event
    }

    /// Adds `event` to ``pendingEvents``, unless that holds ``maximumPendingEvents`` already.
    private mutating func keep(_ event: QMPEvent) throws(QMPError) {
        guard pendingEvents.count < Self.maximumPendingEvents else {
            throw fail(.flood(path: path, detail: "more than \(Self.maximumPendingEvents) events not taken"))
        }
        pendingEvents.append(event)
    }

    /// Counts one message no command asked for.
    private mutating func countUnsolicited() throws(QMPError) {
        unsolicited += 1
        guard unsolicited <= Self.maximumUnsolicitedMessages else { throw fail(Self.floodBetweenCommands(path)) }
    }

    private static func floodBetweenCommands(_ path: String) -> QMPError {
        .flood(
            path: path,
            detail: "more than \(maximumUnsolicitedMessages) messages no command asked for (events, blank lines, stale replies) between two commands")
    }

    /// The next message, or nil at the deadline; blank lines are counted and skipped; a
    /// failure breaks the connection.
    private mutating func read(until deadline: inout Deadline) throws(QMPError) -> QMPValue? {
        if let broken { throw broken }
        while true {
            let read: MessageReader.Read?
            do { read = try reader.next(from: socket, until: &deadline, path: path) } catch { throw fail(error) }
            switch read {
            case nil: return nil
            case .message(let message)?: return message
            case .blank?: try countUnsolicited()
            }
        }
    }

    /// Marks the connection broken by `error`, and returns it.
    private mutating func fail(_ error: QMPError) -> QMPError {
        broken = error
        return error
    }

    /// A non-blocking Unix stream socket connected to `path`.
    private static func openSocket(
        connectedTo path: String, until deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(QMPError) -> UnixSocket {
        let address: UnixSocketAddress
        let socket: UnixSocket
        do {
            address = try UnixSocketAddress(path: path)
            socket = try UnixSocket.stream(nonBlocking: true)
        } catch { throw .system(error) }
        switch socket.connect(to: address, until: deadline) {
        case nil:
            return socket
        case let errno? where errno == .noSuchFileOrDirectory || errno == .notDirectory || errno == .connectionRefused:
            throw .noServer(path: path, errno: errno)
        case .resourceTemporarilyUnavailable?, .timedOut?:
            // A Unix socket's backlog is full: QEMU accepts no one while it serves a client.
            throw .busy(path: path, timeout: timeout)
        case let errno?:
            throw .system(SystemError(errno: errno, operation: "connect to \(path)"))
        }
    }
}

// MARK: - Reading messages

/// A call's absolute deadline, and the one `recv` it may still make past it.
struct Deadline {
    let instant: ContinuousClock.Instant
    /// Whether the call has yet to make its one `recv` past the deadline.
    var spareReceive = true

    init(_ instant: ContinuousClock.Instant) { self.instant = instant }
}

/// Splits the byte stream from QEMU into messages: one JSON object a line, each ended by
/// "\r\n", any number of them (or part of one) in one `recv`.
struct MessageReader: Sendable {
    private var lines: LineBuffer

    init(limit: Int) { lines = LineBuffer(limit: limit) }

    /// What one line held.
    enum Read {
        case message(QMPValue)
        /// A line of white space only.
        case blank
    }

    /// The next line's message, or nil if none is complete by `deadline`.
    ///
    /// The deadline is checked before every `recv`, so data that keeps coming cannot hold the
    /// call past it; once past it, one `recv` is still made (the first such in this call's
    /// `deadline`), so that a call whose deadline has passed reads what has arrived.
    ///
    /// - Complexity: Each byte received is scanned for a newline once and parsed once.
    mutating func next(
        from socket: borrowing UnixSocket, until deadline: inout Deadline, path: String
    ) throws(QMPError) -> Read? {
        while true {
            switch lines.nextLine() {
            case .line(let text)?: return try parse(text, path: path)
            case .tooLong?: throw .protocolViolation(path: path, detail: "a message longer than \(lines.limit) bytes")
            case nil: break
            }
            if ContinuousClock.now >= deadline.instant {
                guard deadline.spareReceive else { return nil }
                deadline.spareReceive = false
            }
            switch lines.receive(from: socket.descriptor) {
            case .received:
                continue
            case .end, .failed(.connectionReset):
                throw .closed(path: path)
            case .failed(.wouldBlock):
                switch socket.waitUntilReady(for: Int16(POLLIN), until: deadline.instant) {
                case .success(true): continue
                case .success(false): return nil
                case .failure(let error): throw .system(SystemError(errno: error.errno, operation: "poll \(path)"))
                }
            case .failed(let errno):
                throw .system(SystemError(errno: errno, operation: "receive from \(path)"))
            }
        }
    }

    /// The message on `line`, without its "\r"; blank for a line of white space only.
    private func parse(_ text: ArraySlice<UInt8>, path: String) throws(QMPError) -> Read {
        guard text.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") && $0 != UInt8(ascii: "\r") }) else {
            return .blank
        }
        do {
            return .message(try QMPValue(parsing: text))
        } catch {
            let shown = String(decoding: text.prefix(200), as: UTF8.self)
            throw .protocolViolation(path: path, detail: "not JSON (\(error)): \(shown)")
        }
    }
}
