import CLinux
import Dispatch
import Foundation
import Glibc
import LinuxSystem
import SamepageCore
import ServiceLifecycle
import Synchronization

/// Answers the control requests a ``ControlServer`` receives: the daemon supplies one and
/// wires it to the agent; the server knows nothing about the agent.
///
/// Called on the server's connection threads, possibly on several at once; it may block
/// (those threads are the server's own, not Swift's cooperative pool), but should return
/// promptly: ``ControlServer/stop()`` waits for calls in flight.
public protocol ControlHandler: Sendable {
    /// The answer to `request` from `peer`. For a request it accepts, the result's case
    /// must be the one for the request's command (``ControlResult/command``); otherwise the
    /// peer gets an `internal` failure.
    func handle(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse
}

/// A ``ControlHandler`` made of a closure.
public struct ControlHandlerClosure: ControlHandler {
    public let body: @Sendable (ControlRequest, ControlPeer) -> ControlResponse

    public init(_ body: @escaping @Sendable (ControlRequest, ControlPeer) -> ControlResponse) { self.body = body }

    public func handle(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse { body(request, peer) }
}

/// The daemon's end of the control socket: listens on a Unix stream socket, checks each
/// peer's credentials, reads newline-delimited JSON requests and answers each with one
/// line from its ``ControlHandler``.
///
/// A swift-service-lifecycle `Service`: `init` validates and binds, ``run()`` is its life
/// (accepting until graceful shutdown, then closing). It owns its listening socket and the
/// socket file: stopping (or deinit) closes every connection and removes the file if it is
/// still the one this server bound. Accepting runs on a thread of its own and each
/// connection on another (at most ``Limits/maximumConnections``), never on Swift's
/// cooperative pool; so does the wait for handler calls in flight at shutdown.
///
/// Access: root, the daemon's own uid, and, when ``group`` is set, any process whose
/// primary or supplementary groups include it. Anyone else gets one `permission_denied`
/// response and the connection is closed. The socket file's mode and group come on top
/// of that (give mode `0o660` for a group to reach the socket at all).
public final class ControlServer: Service, Sendable {
    /// Bounds on what one peer can make the server do.
    public struct Limits: Sendable {
        /// Connections served at once; one more gets a `busy` failure and is closed.
        public var maximumConnections = 32
        /// The longest request line, newline excluded; a longer one gets a
        /// `request_too_large` failure and the connection is closed.
        public var maximumRequestLength = ControlProtocol.maximumRequestLength
        /// A connection that sends nothing for this long is closed (`SO_RCVTIMEO`); a peer
        /// that does not read its responses for this long too (`SO_SNDTIMEO`).
        public var idleTimeout: Duration = .seconds(60)
        /// How long ``ControlServer/stop()`` waits for handler calls in flight to return.
        public var drainTimeout: Duration = .seconds(5)

        public init() {}
    }

    /// The socket's path.
    public let path: String
    /// The socket file's permission bits.
    public let mode: mode_t
    /// The group allowed besides root (and the group of the socket file), if any.
    public let group: gid_t?
    public let limits: Limits
    private let state: ServerState

    /// Binds and listens on `path`. Accepting starts with ``run()`` (or ``start()``).
    ///
    /// Creates the parent directory (mode 0755) if it is missing. If a socket is already at
    /// `path`, connects to it: if something answers, throws ``ControlError/alreadyRunning(path:)``
    /// (a second daemon must not start on the same socket); if the connection is refused, the
    /// socket is stale and is replaced. Anything other than a socket at `path` is left alone
    /// (``ControlError/notASocket(path:)``). The socket file is never accessible to anyone but
    /// its owner before it gets `mode` and `group`.
    ///
    /// - Parameters:
    ///   - mode: the socket file's permission bits; root-only by default.
    ///   - group: a group whose members may use the socket; the socket file is given to it.
    public init(
        path: String, mode: mode_t = 0o600, group: gid_t? = nil, limits: Limits = Limits(),
        handler: some ControlHandler
    ) throws(ControlError) {
        self.path = path
        self.mode = mode
        self.group = group
        self.limits = limits
        let address = try UnixSocketAddress(path: path)
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
        let listener = try SocketDescriptor.unixStream()
        // The bound file takes the socket inode's mode minus the umask: owner-only from the
        // start, whatever the process's umask (which is process-wide, so not touched here).
        guard fchmod(listener.rawValue, 0o600) == 0 else {
            throw ControlError(SystemError("fchmod control socket"))
        }
        guard address.withSockaddr({ bind(listener.rawValue, $0, $1) }) == 0 else {
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
            guard listen(listener.rawValue, 64) == 0 else { throw ControlError(SystemError("listen \(path)")) }
        } catch {
            identity.unlinkIfSame(path)
            throw error
        }
        state = ServerState(
            path: path, group: group, limits: limits, handler: handler, listener: listener, identity: identity)
    }

    /// Starts accepting on a thread of its own and returns at once; idempotent. For callers
    /// outside a service group (tools, tests); a daemon calls ``run()``.
    @discardableResult
    public func start() -> ControlServer {
        state.startAccepting()
        return self
    }

    /// The server's life: accepts until graceful shutdown (or cancellation), then stops
    /// listening, closes every connection and waits for handler calls in flight, on a thread
    /// of its own.
    public func run() async {
        start()
        let state = self.state
        // stop() blocks (the accept thread, the drain): it runs on a thread of its own.
        let stopSoon: @Sendable () -> Void = {
            let thread = Thread { state.stop() }
            thread.name = "samepage-control-stop"
            thread.start()
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler(operation: { await state.stopped() }, onGracefulShutdown: stopSoon)
        } onCancel: {
            stopSoon()
        }
    }

    /// Binds and listens on `path` with a closure for handler; see
    /// the designated initializer.
    public convenience init(
        path: String, mode: mode_t = 0o600, group: gid_t? = nil, limits: Limits = Limits(),
        handler: @escaping @Sendable (ControlRequest) -> ControlResponse
    ) throws(ControlError) {
        try self.init(
            path: path, mode: mode, group: group, limits: limits,
            handler: ControlHandlerClosure { request, _ in handler(request) })
    }

    /// Stops listening, shuts down every connection, removes the socket file if it is still
    /// the one this server bound, and waits (up to ``Limits/drainTimeout``) for handler calls
    /// in flight. Idempotent. Blocking: a daemon lets ``run()`` do it.
    @available(*, noasync, message: "blocks the calling thread up to the drain timeout; use run() in a service group")
    public func stop() { state.stop() }

    deinit { state.stop() }

    // MARK: Start-up

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
        let probe = try SocketDescriptor.unixStream()
        // Non-blocking: a listener with a full backlog answers EAGAIN, and is running.
        _ = fcntl(probe.rawValue, F_SETFL, fcntl(probe.rawValue, F_GETFL) | O_NONBLOCK)
        switch probe.connect(to: address) {
        case nil, EAGAIN?, EINPROGRESS?:
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

/// What the server's threads share; they hold this, not the server, so that dropping the
/// server stops them.
private final class ServerState: Sendable {
    let path: String
    let group: gid_t?
    let limits: Limits
    let handler: any ControlHandler
    let identity: FileIdentity
    let ownUID = geteuid()
    private let shared: Mutex<Shared>
    /// Signalled when the accept thread has left its loop.
    private let acceptDone = DispatchSemaphore(value: 0)
    /// Entered for each connection thread.
    private let connections = DispatchGroup()

    typealias Limits = ControlServer.Limits

    struct Shared: ~Copyable {
        var listener: SocketDescriptor?
        var accepting = false
        var stopping = false
        var stopped = false
        /// Waiting in ``stopped()`` for the server to have stopped.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        /// Descriptors of connections being served; a thread removes its own before closing it.
        var open: Set<Int32> = []
    }

    init(
        path: String, group: gid_t?, limits: Limits, handler: any ControlHandler, listener: consuming SocketDescriptor,
        identity: FileIdentity
    ) {
        self.path = path
        self.group = group
        self.limits = limits
        self.handler = handler
        self.identity = identity
        shared = Mutex(Shared(listener: listener))
    }

    var isStopping: Bool { shared.withLock { $0.stopping } }

    /// Starts the accept thread once, unless stopping.
    func startAccepting() {
        let listener: Int32? = shared.withLock { state in
            guard !state.accepting, !state.stopping, let raw = state.listener?.rawValue else { return nil }
            state.accepting = true
            return raw
        }
        guard let listener else { return }
        let thread = Thread { [self] in acceptLoop(listener) }
        thread.name = "samepage-control"
        thread.start()
    }

    /// Returns once ``stop()`` has finished (at once if it has).
    func stopped() async {
        await withCheckedContinuation { continuation in
            let done = shared.withLock { state in
                if state.stopped { return true }
                state.stopWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    func stop() {
        let (first, accepting) = shared.withLock { state in
            guard !state.stopping else { return (false, false) }
            state.stopping = true
            state.listener?.shutdownBoth()
            for fd in state.open { _ = shutdown(fd, Int32(SHUT_RDWR)) }
            return (true, state.accepting)
        }
        guard first else { return }
        if accepting { acceptDone.wait() }
        shared.withLock { state in
            state.listener = nil
        }
        identity.unlinkIfSame(path)
        _ = connections.wait(timeout: .now() + limits.drainTimeout.inSeconds)
        let waiters = shared.withLock { state in
            state.stopped = true
            defer { state.stopWaiters = [] }
            return state.stopWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Accepting

    func acceptLoop(_ listener: Int32) {
        defer { acceptDone.signal() }
        while true {
            // accept4 with SOCK_CLOEXEC leaves no window in which a fork could inherit the socket.
            let fd = samepage_accept_cloexec(listener)
            if fd < 0 {
                let error = errno
                if isStopping { return }
                switch error {
                case EINTR, ECONNABORTED, EPROTO:
                    continue
                default:
                    // Out of descriptors or memory, or worse: back off rather than spin.
                    usleep(100_000)
                    continue
                }
            }
            enum Admission { case stopping, busy, admitted }
            let admission = shared.withLock { state -> Admission in
                if state.stopping { return .stopping }
                if state.open.count >= limits.maximumConnections { return .busy }
                state.open.insert(fd)
                connections.enter()
                return .admitted
            }
            switch admission {
            case .stopping:
                close(fd)
                return
            case .busy:
                let socket = SocketDescriptor(rawValue: fd)
                let failure = ControlFailure(
                    .busy, "samepaged serves \(limits.maximumConnections) connections already; try again")
                _ = socket.sendAll(ControlCodec.encode(.failure(failure), id: nil), flags: Int32(MSG_DONTWAIT))
            case .admitted:
                let thread = Thread { [self] in serve(fd) }
                thread.name = "samepage-control-conn"
                thread.start()
            }
        }
    }

    // MARK: Serving one connection

    /// Serves the connection on `fd` (which it owns) until it ends, then closes it.
    private func serve(_ fd: Int32) {
        let socket = SocketDescriptor(rawValue: fd)
        converse(on: socket)
        // Forget it before closing it: stop() must never shut down a reused descriptor.
        shared.withLock { _ = $0.open.remove(fd) }
        socket.close()
        connections.leave()
    }

    private func converse(on socket: borrowing SocketDescriptor) {
        socket.setTimeout(SO_RCVTIMEO, limits.idleTimeout)
        socket.setTimeout(SO_SNDTIMEO, limits.idleTimeout)
        guard let peer = ControlPeer(of: socket) else { return }
        guard authorizes(peer, socket: socket) else {
            _ = socket.sendAll(ControlCodec.encode(.failure(denial(of: peer)), id: nil))
            return
        }
        var reader = LineReader(limit: limits.maximumRequestLength)
        while true {
            switch reader.next(from: socket) {
            case .line(var line):
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                let (id, decoded) = ControlCodec.decodeRequest(line)
                let response: ControlResponse
                switch decoded {
                case .failure(let failure):
                    response = .failure(failure)
                case .success(let request):
                    if isStopping { return }
                    response = answer(request, from: peer)
                }
                guard socket.sendAll(ControlCodec.encode(response, id: id)) == nil else { return }
            case .tooLong:
                let failure = ControlFailure(
                    .requestTooLarge, "request line longer than \(limits.maximumRequestLength) bytes; closing the connection")
                _ = socket.sendAll(ControlCodec.encode(.failure(failure), id: nil))
                return
            case .end, .timedOut, .failed:
                return
            }
        }
    }

    private func answer(_ request: ControlRequest, from peer: ControlPeer) -> ControlResponse {
        let response = handler.handle(request, from: peer)
        if case .success(let result) = response, result.command != request.command {
            return .failure(
                .internal, "the daemon answered \(request.command.rawValue) with a \(result.command.rawValue) result")
        }
        return response
    }

    // MARK: Credentials

    private func authorizes(_ peer: ControlPeer, socket: borrowing SocketDescriptor) -> Bool {
        if peer.uid == 0 || peer.uid == ownUID { return true }
        guard let group else { return false }
        if peer.gid == group { return true }
        return supplementaryGroups(of: socket, peer: peer).contains(group)
    }

    private func denial(of peer: ControlPeer) -> ControlFailure {
        let allowed = group.map { "root or members of group \(groupName($0))" } ?? "root"
        return ControlFailure(
            .permissionDenied, "uid \(peer.uid) may not use samepaged's control socket: it is for \(allowed) only")
    }
}

/// `name (gid N)`, or `gid N` for a group without a name.
private func groupName(_ gid: gid_t) -> String {
    var group = Glibc.group()
    var result: UnsafeMutablePointer<Glibc.group>?
    var buffer = [CChar](repeating: 0, count: 4096)
    let status = getgrgid_r(gid, &group, &buffer, buffer.count, &result)
    guard status == 0, result != nil, let name = group.gr_name else { return "gid \(gid)" }
    return "\(String(cString: name)) (gid \(gid))"
}

