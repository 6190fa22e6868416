import NIOCore
import NIOHTTP1
import NIOPosix

/// One connection of the metrics listener, on its event loop: reads only while it waits for
/// a request, answers one request at a time, and the next only once the previous response
/// was taken by the socket; each phase under an absolute deadline (``MetricsServer/Limits``).
///
/// The channel does not read by itself (`autoRead` off): this handler asks for each read, and
/// asks for none while a response is rendered or unsent. Requests the decoder found in the
/// reads already done wait in a queue of at most `maximumPipelinedRequests`.
final class MetricsConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    private let limits: MetricsServer.Limits
    private let content: MetricsServer.Content
    /// Checks each request's `Authorization` first, when the endpoint asks for it.
    private let authenticator: BasicAuthenticator?
    private let pool: NIOThreadPool

    /// The request being received (its head), and those received whole, not answered yet.
    private var receiving: HTTPRequestHead?
    private var queue: [HTTPRequestHead] = []
    /// Whether a response is being rendered or written.
    private var responding = false
    /// The current phase's deadline: closes the connection when it passes.
    private var deadline: Scheduled<Void>?

    init(
        limits: MetricsServer.Limits, content: MetricsServer.Content, authenticator: BasicAuthenticator?,
        pool: NIOThreadPool
    ) {
        self.limits = limits
        self.content = content
        self.authenticator = authenticator
        self.pool = pool
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(limits.requestTimeout, context: context)
        context.read()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            receiving = head
        case .body:
            break
        case .end:
            guard let head = receiving else { return }
            receiving = nil
            queue.append(head)
            if queue.count > limits.maximumPipelinedRequests {
                context.close(promise: nil)
                return
            }
            if !responding { respond(context: context) }
        }
    }

    /// After a read: another one only while waiting for (the rest of) a request.
    func channelReadComplete(context: ChannelHandlerContext) {
        if !responding && context.channel.isActive { context.read() }
        context.fireChannelReadComplete()
    }

    /// Answers the first request of the queue: checks its credentials (when asked for) and
    /// renders on the blocking pool, writes, and once the socket took it, goes on with the next
    /// (or reads again). A request without valid credentials is answered 401 and nothing is
    /// rendered for it.
    private func respond(context: ChannelHandlerContext) {
        guard let head = queue.first else { return }
        responding = true
        arm(limits.responseTimeout, context: context)
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let content = self.content
        let authenticator = self.authenticator
        let authorization = head.headers.first(name: "Authorization")
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        pool.runIfActive(eventLoop: context.eventLoop) {
            if let authenticator, !authenticator.isAuthorized(authorization) { return Self.unauthorized }
            return Self.answer(method: head.method, path: path, content: content)
        }.whenComplete { result in
            let (handler, context) = bound.value
            guard context.channel.isActive else { return }
            switch result {
            case .success(let answer): handler.write(answer, for: head, context: context)
            case .failure: context.close(promise: nil)
            }
        }
    }

    private func write(_ answer: Answer, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: answer.contentType)
        headers.add(name: "Content-Length", value: "\(answer.body.count)")
        if answer.status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        if answer.status == .unauthorized { headers.add(name: "WWW-Authenticate", value: BasicAuthenticator.challenge) }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: answer.status, headers: headers))), promise: nil)
        if head.method != .HEAD && !answer.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: answer.body)))), promise: nil)
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { result in
            let (handler, context) = bound.value
            handler.taken(result, keepAlive: keepAlive, context: context)
        }
    }

    /// The response was written to the socket (or failed): the next request, or reading.
    private func taken(_ result: Result<Void, any Error>, keepAlive: Bool, context: ChannelHandlerContext) {
        responding = false
        queue.removeFirst()
        guard case .success = result, keepAlive, context.channel.isActive else {
            context.close(promise: nil)
            return
        }
        if queue.isEmpty {
            arm(limits.requestTimeout, context: context)
            context.read()
        } else {
            respond(context: context)
        }
    }

    /// Replaces the deadline: the connection closes `timeout` from now unless the phase ends.
    private func arm(_ timeout: Duration, context: ChannelHandlerContext) {
        deadline?.cancel()
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            bound.value.close(promise: nil)
        }
    }

    // MARK: Answers

    struct Answer: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: [UInt8]
    }

    /// The answer to a request without valid credentials: short, and nothing rendered.
    static let unauthorized = Answer(
        status: .unauthorized, contentType: "text/plain; charset=utf-8", body: Array("unauthorized\n".utf8))

    /// `/metrics` the text, `/` the status page (or a pointer to `/metrics`), anything else
    /// 404; methods other than GET and HEAD, 405.
    static func answer(method: HTTPMethod, path: String, content: MetricsServer.Content) -> Answer {
        let text = "text/plain; charset=utf-8"
        switch (method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            return Answer(status: .ok, contentType: metricsContentType, body: content.metrics())
        case (.GET, "/"), (.HEAD, "/"):
            if let page = content.statusPage {
                return Answer(status: .ok, contentType: "text/html; charset=utf-8", body: page())
            }
            return Answer(status: .ok, contentType: text, body: Array("samepaged: metrics at /metrics\n".utf8))
        case (.GET, _), (.HEAD, _):
            return Answer(status: .notFound, contentType: text, body: Array("not found; metrics are at /metrics\n".utf8))
        default:
            return Answer(status: .methodNotAllowed, contentType: text, body: Array("only GET and HEAD\n".utf8))
        }
    }
}
