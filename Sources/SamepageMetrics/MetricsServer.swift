#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The Prometheus endpoint: `GET /metrics` over HTTP/1.1, served by SwiftNIO on its shared
/// event loops. Each scrape calls `render` for a fresh text.
public final class MetricsServer: Sendable {
    private let channel: any Channel

    /// The address actually bound (the port is known even when 0 was asked for).
    public let boundAddress: String

    /// Binds and starts listening. Throws when the address cannot be bound (in use, not a
    /// local address, not permitted).
    public init(host: String, port: Int, render: @escaping @Sendable () -> [UInt8]) async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(render: render))
                }
            }
        channel = try await bootstrap.bind(host: host, port: port).get()
        boundAddress = channel.localAddress.map(Self.describe) ?? "\(host):\(port)"
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
