import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The Prometheus endpoint: `GET /metrics` over HTTP/1.1 on SwiftNIO.
/// Rendering runs on NIO's thread pool (a pipeline start holds the
/// pipeline lock, a plugin reload the plugin lock), never on the event loop.
final class MetricsServer: Sendable {
    let address: MetricsListenAddress
    private let channel: Channel

    /// Headers of a scrape request are a few hundred bytes; anything much
    /// larger is not a scraper.
    static let decoderLimits: NIOHTTPDecoderLimitConfiguration = {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = 8 * 1024
        limits.maxHeaderListSize = 16 * 1024
        limits.maxHeaderFieldCount = 64
        return limits
    }()

    /// Scrapers connect one at a time; more than this at once is a flood,
    /// and each further connection is closed at once rather than queued for
    /// a render on the thread pool.
    static let maximumConnections = 16

    /// Binds now, so that a taken port fails the daemon's start with a
    /// message naming the address. `render` produces the exposition text; it
    /// may block.
    static func bind(
        _ address: MetricsListenAddress, logger: Logger, render: @escaping @Sendable () throws -> String
    ) async throws -> MetricsServer {
        final class OpenConnections: Sendable { let count = Mutex(0) }
        let open = OpenConnections()
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                let admitted = open.count.withLock { count -> Bool in
                    guard count < maximumConnections else { return false }
                    count += 1
                    return true
                }
                guard admitted else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.count.withLock { $0 -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // A client that goes quiet (half a request) is closed.
                    try sync.addHandler(IdleStateHandler(allTimeout: .seconds(10)))
                    try sync.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: true,
                        withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
                    try sync.addHandler(MetricsRequestHandler(render: render, logger: logger))
                }
            }
        let channel: Channel
        do {
            channel = try await bootstrap.bind(host: address.host, port: address.port).get()
        } catch {
            throw DaemonError(description: "cannot serve metrics on \(address): \(error)")
        }
        var bound = address
        if let port = channel.localAddress?.port { bound.port = port }
        logger.info("metrics listening", metadata: ["address": "\(bound)", "path": "/metrics"])
        return MetricsServer(address: bound, channel: channel)
    }

    private init(address: MetricsListenAddress, channel: Channel) {
        self.address = address
        self.channel = channel
    }

    /// Serves until the listening socket is closed.
    func run() async {
        try? await channel.closeFuture.get()
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// The metrics endpoint as a member of the daemon's ServiceGroup: closed on
/// graceful shutdown.
struct MetricsService: Service {
    let server: MetricsServer

    func run() async throws {
        await withGracefulShutdownHandler {
            await server.run()
        } onGracefulShutdown: {
            server.close()
        }
    }
}

/// Where `status` finds the endpoint (the bound port when `listen` says 0).
final class MetricsEndpoint: Sendable {
    private let bound = Mutex<MetricsListenAddress?>(nil)

    var address: MetricsListenAddress? { bound.withLock { $0 } }

    func set(_ address: MetricsListenAddress?) { bound.withLock { $0 = address } }
}

/// One response per request, then the connection closes: a scrape every few
/// seconds gains nothing from keep-alive, and every connection stays short.
final class MetricsRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// A scrape has no body; a little is tolerated, more is refused.
    static let maximumBodyBytes = 1024
    static let maximumURIBytes = 2048
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    private let render: @Sendable () throws -> String
    private let logger: Logger
    private var request: HTTPRequestHead?
    private var bodyBytes = 0
    private var responded = false

    init(render: @escaping @Sendable () throws -> String, logger: Logger) {
        self.render = render
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
            bodyBytes = 0
        case .body(let buffer):
            bodyBytes += buffer.readableBytes
            if bodyBytes > Self.maximumBodyBytes, !responded {
                respond(context, .payloadTooLarge, "request body larger than \(Self.maximumBodyBytes) bytes\n")
            }
        case .end:
            guard !responded, let head = request else { return }
            route(context, head)
        }
    }

    private func route(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        guard head.uri.utf8.count <= Self.maximumURIBytes else {
            return respond(context, .uriTooLong, "URI longer than \(Self.maximumURIBytes) bytes\n")
        }
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            return respond(context, .notFound, "not found; metrics are at /metrics\n")
        }
        guard head.method == .GET else {
            return respond(context, .methodNotAllowed, "only GET is allowed on /metrics\n", extra: [("Allow", "GET")])
        }
        responded = true
        let render = self.render
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { try render() }
            .whenComplete { result in
                let (handler, context) = loopBound.value
                switch result {
                case .success(let text):
                    handler.write(context, .ok, text, contentType: Self.contentType, extra: [])
                case .failure(let error):
                    handler.logger.error("metrics could not be rendered", metadata: ["error": "\(error)"])
                    handler.write(context, .internalServerError, "metrics could not be rendered\n",
                                  contentType: "text/plain; charset=utf-8", extra: [])
                }
            }
    }

    private func respond(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String,
        extra: [(String, String)] = []
    ) {
        responded = true
        write(context, status, text, contentType: "text/plain; charset=utf-8", extra: extra)
    }

    private func write(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String,
        contentType: String, extra: [(String, String)]
    ) {
        var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        var headers = HTTPHeaders([
            ("Content-Type", contentType), ("Content-Length", String(buffer.readableBytes)), ("Connection", "close"),
        ])
        headers.add(contentsOf: extra)
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
