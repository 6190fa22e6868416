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
/// Access (``ControlAccess``): root and the daemon's own uid may do anything; members of
/// ``adminGroup`` too; members of ``group`` may read only (a request that changes something
/// gets `permission_denied`, naming the admin group). Anyone else gets one
/// `permission_denied` response and the connection is closed. The socket file's mode and
/// group come on top of that (give mode `0o660` for a group to reach the socket at all; the
/// file's group is ``group``, else ``adminGroup``).
///
/// Time and memory per peer are bounded whatever it sends: a request line must arrive whole
/// within ``Limits/idleTimeout`` of the previous answer (or of the connection), an absolute
/// deadline that bytes trickling in cannot extend; an answer must be taken within the same
/// time; requests are answered one at a time, each only once the previous answer was written,
/// so a peer that pipelines requests and reads nothing holds one answer and one request line
/// at most, and is closed at the deadline.
public final class ControlServer: Service, Sendable {
    /// Bounds on what one peer can make the server do.
    public struct Limits: Sendable {
        /// Connections served at once; one more gets a `busy` failure and is closed.
        public var maximumConnections = 32
        /// Connections one uid other than root (and the daemon's own) may hold at once.
        public var maximumConnectionsPerUser = 8
        /// Connections of ``maximumConnections`` that only root (and the daemon's own uid)
        /// may take: members of the groups cannot lock root out.
        public var reservedForRoot = 4
        /// The longest request line, newline excluded; a longer one gets a
        /// `request_too_large` failure and the connection is closed.
        public var maximumRequestLength = ControlProtocol.maximumRequestLength
        /// How long a peer has to send a whole request line, from the connection or the
        /// previous answer, and to take an answer: absolute deadlines; a peer that misses one
        /// is closed.
        public var idleTimeout: Duration = .seconds(60)
        /// How long ``ControlServer/stop()`` waits for handler calls in flight to return.
        public var drainTimeout: Duration = .seconds(5)

        public init() {}
    }

    /// The socket's path.
    public let path: String
    /// The socket file's permission bits.
    public let mode: mode_t
    /// The group whose members may read (`control.group`), if any.
    public let group: gid_t?
    /// The group whose members may read and change (`control.admin_group`), if any.
    public let adminGroup: gid_t?
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
    ///   - group: a group whose members may read; the socket file is given to it.
    ///   - adminGroup: a group whose members may read and change; the socket file is given
    ///     to it when there is no `group`.
    public init(
        path: String, mode: mode_t = 0o600, group: gid_t? = nil, adminGroup: gid_t? = nil, limits: Limits = Limits(),
        handler: some ControlHandler
    ) throws(ControlError) {
        self.path = path
        self.mode = mode
        self.group = group
        self.adminGroup = adminGroup
        self.limits = limits
        let access = ControlAccess(readGroup: group, adminGroup: adminGroup)
        let listener = try ControlListener(path: path, mode: mode, group: access.socketGroup)
        let identity = listener.file
        state = ServerState(
            path: path, access: access, limits: limits, handler: handler, listener: listener, identity: identity)
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
        path: String, mode: mode_t = 0o600, group: gid_t? = nil, adminGroup: gid_t? = nil, limits: Limits = Limits(),
        handler: @escaping @Sendable (ControlRequest) -> ControlResponse
    ) throws(ControlError) {
        try self.init(
            path: path, mode: mode, group: group, adminGroup: adminGroup, limits: limits,
            handler: ControlHandlerClosure { request, _ in handler(request) })
    }

    /// Stops listening, shuts down every connection, removes the socket file if it is still
    /// the one this server bound, and waits (up to ``Limits/drainTimeout``) for handler calls
    /// in flight. Idempotent. Blocking: a daemon lets ``run()`` do it.
    @available(*, noasync, message: "blocks the calling thread up to the drain timeout; use run() in a service group")
    public func stop() { state.stop() }

    deinit { state.stop() }
}

/// What the server's threads share; they hold this, not the server, so that dropping the
/// server stops them.
private final class ServerState: Sendable {
    let path: String
    let access: ControlAccess
    let limits: Limits
    let handler: any ControlHandler
    let identity: FileIdentity
    private let shared: Mutex<Shared>
    /// Signalled when the accept thread has left its loop.
    private let acceptDone = DispatchSemaphore(value: 0)
    /// Entered for each connection thread.
    private let connections = DispatchGroup()

    typealias Limits = ControlServer.Limits

    struct Shared: ~Copyable {
        var listener: ControlListener?
        var accepting = false
        var stopping = false
        var stopped = false
        /// Waiting in ``stopped()`` for the server to have stopped.
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        /// Descriptors of connections being served, with their peer's uid; a thread removes its
        /// own before closing it.
        var open: [Int32: uid_t] = [:]
    }

    init(
        path: String, access: ControlAccess, limits: Limits, handler: any ControlHandler, listener: consuming ControlListener,
        identity: FileIdentity
    ) {
        self.path = path
        self.access = access
        self.limits = limits
        self.handler = handler
        self.identity = identity
        shared = Mutex(Shared(listener: listener))
    }

    var isStopping: Bool { shared.withLock { $0.stopping } }

    /// Starts the accept thread once, unless stopping.
    func startAccepting() {
        let listener: Int32? = shared.withLock { state in
            guard !state.accepting, !state.stopping, let raw = state.listener?.socket.descriptor.rawValue else { return nil }
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
            state.listener?.socket.shutdownBoth()
            for fd in state.open.keys { _ = shutdown(fd, Int32(SHUT_RDWR)) }
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
            let fd: Int32
            switch UnixSocket.accept(on: FileDescriptor(rawValue: listener)) {
            case .success(let accepted):
                fd = accepted.rawValue
            case .failure(let error):
                if isStopping { return }
                switch error {
                case .interrupted, .connectionAbort, .protocolError:
                    continue
                default:
                    // Out of descriptors or memory, or worse: back off rather than spin.
                    usleep(100_000)
                    continue
                }
            }
            enum Admission { case stopping, busy, admitted }
            // Who connected, as the kernel says (nil: refused later, counted as anyone's).
            let uid = peerUID(fd) ?? uid_t.max
            let privileged = uid == 0 || uid == access.ownUID
            let admission = shared.withLock { state -> Admission in
                if state.stopping { return .stopping }
                if state.open.count >= limits.maximumConnections { return .busy }
                if !privileged {
                    if state.open.count >= limits.maximumConnections - limits.reservedForRoot { return .busy }
                    if state.open.values.count(where: { $0 == uid }) >= limits.maximumConnectionsPerUser { return .busy }
                }
                state.open[fd] = uid
                connections.enter()
                return .admitted
            }
            switch admission {
            case .stopping:
                close(fd)
                return
            case .busy:
                let socket = UnixSocket(taking: FileDescriptor(rawValue: fd))
                let failure = ControlFailure(
                    .busy, "samepaged serves as many connections as it takes (from this user, or in all) already; try again")
                _ = socket.sendAll(ControlCodec.encode(.failure(failure), id: nil), flags: Int32(MSG_DONTWAIT))
            case .admitted:
                let thread = Thread { [self] in serve(fd) }
                thread.name = "samepage-control-conn"
                thread.start()
            }
        }
    }

    /// The uid of the peer of the connected socket `fd` (`SO_PEERCRED`); nil when the kernel
    /// gives none.
    private func peerUID(_ fd: Int32) -> uid_t? {
        var credentials: (pid: pid_t, uid: uid_t, gid: gid_t) = (0, 0, 0)
        var length = socklen_t(12)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0, length == 12 else { return nil }
        return credentials.uid
    }

    // MARK: Serving one connection

    /// Serves the connection on `fd` (which it owns) until it ends, then closes it.
    private func serve(_ fd: Int32) {
        let socket = UnixSocket(taking: FileDescriptor(rawValue: fd))
        converse(on: socket)
        // Forget it before closing it: stop() must never shut down a reused descriptor.
        shared.withLock { _ = $0.open.removeValue(forKey: fd) }
        socket.close()
        connections.leave()
    }

    private func converse(on socket: borrowing UnixSocket) {
        socket.setTimeouts(receive: limits.idleTimeout, send: limits.idleTimeout)
        guard let peer = socket.peerCredentials() else { return }
        guard let role = access.role(uid: peer.uid, gid: peer.gid, groups: { supplementaryGroups(of: socket, peer: peer) }) else {
            _ = send(.failure(access.denial(uid: peer.uid)), id: nil, on: socket, until: .now + limits.idleTimeout)
            return
        }
        var reader = LineReader(limit: limits.maximumRequestLength)
        // Absolute: from the connection or the previous answer, whatever arrives meanwhile.
        var deadline = ContinuousClock.now + limits.idleTimeout
        while true {
            switch reader.next(from: socket, until: deadline) {
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
                    if let refusal = access.refusal(of: request.command, to: role, uid: peer.uid) {
                        response = .failure(refusal)
                    } else {
                        response = answer(request, from: peer)
                    }
                }
                // The answer must be taken in time too; then the next request's time begins.
                guard send(response, id: id, on: socket, until: .now + limits.idleTimeout) else { return }
                deadline = .now + limits.idleTimeout
            case .tooLong:
                let failure = ControlFailure(
                    .requestTooLarge, "request line longer than \(limits.maximumRequestLength) bytes; closing the connection")
                _ = send(.failure(failure), id: nil, on: socket, until: .now + limits.idleTimeout)
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

    /// Writes `response` whole before `deadline` (each wait for room is a `poll` for the time
    /// left); false when it could not.
    private func send(_ response: ControlResponse, id: Int?, on socket: borrowing UnixSocket, until deadline: ContinuousClock.Instant) -> Bool {
        // Never blocking in send itself: every wait for room is a poll until the deadline.
        socket.sendAll(ControlCodec.encode(response, id: id), flags: Int32(MSG_DONTWAIT), until: deadline) == nil
    }
}
