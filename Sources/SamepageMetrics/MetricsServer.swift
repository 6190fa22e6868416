import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The metrics listener: `GET /metrics` (Prometheus's text) and `GET /` (the status page)
/// over HTTP/1.1, served by SwiftNIO on its shared event loops.
///
/// Its peers are untrusted, so each holds bounded time and memory:
/// - at most ``Limits/maximumConnections`` connections are served at once. One more closes
///   the connection open longest: a scrape takes milliseconds, so a peer that holds
///   connections open (trickling bytes, never reading) cannot lock a scraper out;
/// - deadlines are absolute: a request must have arrived whole within
///   ``Limits/requestTimeout`` of the connection's start or of the previous response's being
///   taken, and a response must be rendered and taken by the client within
///   ``Limits/responseTimeout``. Bytes that trickle in extend neither;
/// - one response at a time, and the next only once the previous was taken (written to the
///   socket, not merely queued): while a response is unsent nothing more is read, so a client
///   that pipelines requests and never reads stops being read, and nothing more is rendered
///   for it. Requests that arrived in the same reads queue up to
///   ``Limits/maximumPipelinedRequests``; one more closes the connection.
/// Rendering runs on NIO's blocking thread pool, never on an event loop.
///
/// With ``Security`` (a web configuration file), TLS is the first handler of every
/// connection, under the same bounds: the handshake must end, and the request arrive whole
/// over it, within the request deadline, and TLS reads only when the connection asks for a
/// read. Basic authentication is checked for each request on the blocking pool
/// (``BasicAuthenticator``) before anything is rendered.
///
/// A swift-service-lifecycle `Service`: `init` validates the address and binds it (the kernel
/// queues connections from then on), ``run()`` is its life: it accepts and serves until
/// graceful shutdown, then closes the listener.
public final class MetricsServer: Service, Sendable {
    /// Bounds on what the peers of the endpoint can hold.
    public struct Limits: Sendable {
        /// Connections served at once; one more closes the one open longest.
        public var maximumConnections = 32
        /// How long a request may take to arrive whole, from the connection's start or from
        /// the previous response's being taken; absolute (bytes received do not extend it).
        public var requestTimeout: Duration = .seconds(10)
        /// How long a response may take to be rendered and taken by the client.
        public var responseTimeout: Duration = .seconds(10)
        /// Requests a connection may have waiting (received whole, not answered yet), the one
        /// being answered included; one more closes the connection.
        public var maximumPipelinedRequests = 8

        /// The defaults: 32 connections, 10 s deadlines, 8 requests in the pipeline.
        public init() {}
    }

    /// What the listener serves, each rendered anew for each request (on a thread of NIO's
    /// blocking pool: a renderer may block briefly).
    public struct Content: Sendable {
        /// The metrics text (`/metrics`).
        public var metrics: @Sendable () -> [UInt8]
        /// The status page's HTML (`/`); nil serves a pointer to `/metrics` there instead.
        public var statusPage: (@Sendable () -> [UInt8])?

        /// The metrics, and optionally a status page.
        public init(metrics: @escaping @Sendable () -> [UInt8], statusPage: (@Sendable () -> [UInt8])? = nil) {
            self.metrics = metrics
            self.statusPage = statusPage
        }
    }

    private let channel: any Channel

    /// The address actually bound (the port is known even when 0 was asked for).
    public let boundAddress: String

    /// The bounds this server applies.
    public let limits: Limits

    /// What new connections must do before they are served; see ``replaceSecurity(_:)``.
    private let slot: SecuritySlot

    /// What connections accepted from now on must do before they are served.
    public var security: Security { slot.value }

    /// `https` when the endpoint speaks TLS, `http` otherwise.
    public var scheme: String { slot.value.scheme }

    /// Makes connections accepted from now on use `security` (a web configuration file read
    /// again: a renewed certificate, a changed password); connections already open keep the
    /// one they started with.
    public func replaceSecurity(_ security: Security) {
        slot.value = security
    }

    /// Binds and listens; accepting starts with ``run()`` (or ``start()``). Throws when the
    /// address cannot be bound (in use, not a local address, not permitted).
    public init(
        host: String, port: Int, limits: Limits = Limits(), security: Security = Security(), content: Content
    ) async throws {
        let gate = ConnectionGate(maximum: limits.maximumConnections)
        let current = SecuritySlot(security)
        slot = current
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Nothing is accepted before start(): init only binds.
            .serverChannelOption(.autoRead, value: false)
            // Each connection reads only when its handler asks: the backpressure.
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    gate.admit(channel)
                    let security = current.value
                    if let tls = security.tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withPipeliningAssistance: false, withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        MetricsConnection(
                            limits: limits, content: content, authenticator: security.authenticator,
                            pool: NIOThreadPool.singleton))
                }
            }
        channel = try await bootstrap.bind(host: host, port: port).get()
        boundAddress = channel.localAddress.map(Self.describe) ?? "\(host):\(port)"
        self.limits = limits
    }

    /// A server of the metrics alone, rendered by `render`.
    public convenience init(
        host: String, port: Int, limits: Limits = Limits(), security: Security = Security(),
        render: @escaping @Sendable () -> [UInt8]
    ) async throws {
        try await self.init(host: host, port: port, limits: limits, security: security, content: Content(metrics: render))
    }

    /// Starts accepting connections; idempotent. For callers outside a service group.
    public func start() async {
        try? await channel.setOption(.autoRead, value: true).get()
    }

    /// The server's life: serves until graceful shutdown (or cancellation), then closes the
    /// listener.
    public func run() async {
        await start()
        try? await gracefulShutdown()
        await stop()
    }

    /// Stops listening.
    public func stop() async {
        try? await channel.close()
    }

    private static func describe(_ address: SocketAddress) -> String {
        let host = address.ipAddress ?? "?"
        let port = address.port ?? 0
        return address.protocol == .inet6 ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// The connections being served, from any event loop, in the order they were admitted; a
/// connection is held until its channel closes.
private final class ConnectionGate: Sendable {
    private let maximum: Int
    private let open = Mutex<[(id: ObjectIdentifier, channel: any Channel)]>([])

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    /// Admits `channel`; at the limit, the connection open longest is closed to make room.
    func admit(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let evicted = open.withLock { open -> (any Channel)? in
            let oldest = open.count >= maximum ? open.removeFirst().channel : nil
            open.append((id, channel))
            return oldest
        }
        evicted?.close(promise: nil)
        channel.closeFuture.whenComplete { _ in self.open.withLock { $0.removeAll { $0.id == id } } }
    }
}

/// The security new connections get, replaced whole when the web configuration is read again.
private final class SecuritySlot: Sendable {
    private let current: Mutex<MetricsServer.Security>

    init(_ security: MetricsServer.Security) {
        current = Mutex(security)
    }

    var value: MetricsServer.Security {
        get { current.withLock { $0 } }
        set { current.withLock { $0 = newValue } }
    }
}
