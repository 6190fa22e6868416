import Glibc
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The Prometheus endpoint: `GET /metrics` over HTTP/1.1, served by SwiftNIO on its shared
/// event loops. Each scrape calls `render` for a fresh text.
///
/// Every connection holds one of samepaged's descriptors, so the server bounds them: at most
/// ``Limits/maximumConnections`` are served at once (one more is closed as soon as it is
/// accepted, before anything is read from it), and a connection that sends nothing for
/// ``Limits/idleTimeout`` is closed. A scraper that keeps its connection alive and scrapes
/// more often than that keeps it.
///
/// A swift-service-lifecycle `Service`: `init` validates the address and binds it (the kernel
/// queues connections from then on), ``run()`` is its life: it accepts and serves until
/// graceful shutdown, then closes the listener. Nothing blocks a thread: NIO's event loops do
/// the I/O.
public final class MetricsServer: Service, Sendable {
    /// Bounds on what the peers of the endpoint can hold.
    public struct Limits: Sendable {
        /// Connections served at once; one more is closed on accept.
        public var maximumConnections = 16
        /// A connection that sends nothing for this long (no request, or no byte of one) is
        /// closed.
        public var idleTimeout: Duration = .seconds(10)

        public init() {}
    }

    private let channel: any Channel

    /// The address actually bound (the port is known even when 0 was asked for).
    public let boundAddress: String

    /// The bounds this server applies.
    public let limits: Limits

    /// Binds and listens; accepting starts with ``run()`` (or ``start()``). Throws when the
    /// address cannot be bound (in use, not a local address, not permitted).
    public init(
        host: String, port: Int, limits: Limits = Limits(), render: @escaping @Sendable () -> [UInt8]
    ) async throws {
        let gate = ConnectionGate(maximum: limits.maximumConnections)
        let idleTimeout = TimeAmount(limits.idleTimeout)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Nothing is accepted before start(): init only binds.
            .serverChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard gate.admit(channel) else {
                        // Registered and active first, then closed: the peer sees an orderly
                        // end of stream, and nothing of it is read.
                        try channel.pipeline.syncOperations.addHandler(CloseOnActive())
                        return
                    }
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(CloseWhenIdle())
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render))
                }
            }
        channel = try await bootstrap.bind(host: host, port: port).get()
        boundAddress = channel.localAddress.map(Self.describe) ?? "\(host):\(port)"
        self.limits = limits
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

/// Counts the connections being served, from any event loop; a connection admitted is
/// counted until its channel closes.
private final class ConnectionGate: Sendable {
    private let maximum: Int
    private let open = Mutex(0)

    init(maximum: Int) {
        self.maximum = maximum
    }

    /// Whether `channel` may be served; if so, it is counted until it closes.
    func admit(_ channel: any Channel) -> Bool {
        let admitted = open.withLock { open in
            guard open < maximum else { return false }
            open += 1
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in self.open.withLock { $0 -= 1 } }
        }
        return admitted
    }
}

/// Closes a connection over the cap as soon as it is active.
private final class CloseOnActive: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        context.close(promise: nil)
    }
}

/// Closes the connection when ``IdleStateHandler`` reports that nothing was read for the
/// idle timeout.
private final class CloseWhenIdle: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case IdleStateHandler.IdleStateEvent.read? = event as? IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Answers one request at a time on a connection: `/metrics` with the text, `/` with a
/// pointer to it, anything else 404; methods other than GET and HEAD, 405.
private final class MetricsHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    let render: @Sendable () -> [UInt8]

    init(render: @escaping @Sendable () -> [UInt8]) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        var body: [UInt8]
        var contentType = "text/plain; charset=utf-8"
        switch (head.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            status = .ok
            body = render()
            contentType = Self.contentType
        case (.GET, "/"), (.HEAD, "/"):
            status = .ok
            body = Array("samepaged: metrics at /metrics\n".utf8)
        case (.GET, _), (.HEAD, _):
            status = .notFound
            body = Array("not found; metrics are at /metrics\n".utf8)
        default:
            status = .methodNotAllowed
            body = Array("only GET and HEAD\n".utf8)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if head.method == .HEAD { body = [] }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }

        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

/// The calling process's resident memory, from `/proc/self/statm`; nil if unreadable.
public func processResidentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The calling process's user and system CPU time in seconds, all its threads together.
///
/// The corresponding C function is `getrusage` (`RUSAGE_SELF`), whose microseconds are finer
/// than `/proc/self/stat`'s clock ticks; nil if it fails.
public func processCPUSeconds() -> Double? {
    var usage = rusage()
    guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return nil }
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
