import HTTPTypes
import Logging
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import NIOPosix
import NIOSSL
import SallyportConfig
import SallyportHTTP

/// A public connection over the listener's limits, closed as it arrived.
struct ConnectionLimitReached: Error, CustomStringConvertible {
    var description: String { "connection limit reached (public.limits.maxConnections or maxConnectionsPerClient)" }
}

/// The public HTTPS listener: negotiates HTTP/1.1 or HTTP/2 and hands each request to the forwarder.
struct PublicListener {
    typealias StreamChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias Negotiated = NIONegotiatedHTTPVersion<EdgePipeline.Connection, (any Channel, NIOHTTP2Handler.AsyncStreamMultiplexer<StreamChannel>)>

    let forwarder: RequestForwarder
    let logger: Logger

    static func bind(
        host: String,
        port: Int,
        tls: ReloadableTLS,
        limits: EdgeLimits,
        drainTimeout: Duration,
        tracker: ChannelTracker,
        group: any EventLoopGroup
    ) async throws -> NIOAsyncChannel<EventLoopFuture<Negotiated>, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                guard tracker.add(channel) else {
                    // Over `maxConnections` or the client's `maxConnectionsPerClient`: closed before TLS, costing
                    // nothing more. (Failing the initializer instead would end the listener's accept loop.)
                    return channel.close().map { channel.eventLoop.makeFailedFuture(ConnectionLimitReached()) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                    try channel.pipeline.syncOperations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(limits.handshakeTimeout)))
                }.flatMap {
                    channel.configureHTTP2AsyncSecureUpgrade(
                        http1ConnectionInitializer: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                let connection = try EdgePipeline.configureHTTP1(channel, limits: limits)
                                tracker.joinQuiescing(channel)
                                return connection
                            }
                        },
                        http2ConnectionInitializer: { channel in
                            channel.eventLoop.makeCompletedFuture {
                                let resets = ConnectionResetBudget(connection: channel)
                                let multiplexer = try channel.pipeline.syncOperations.configureAsyncHTTP2Pipeline(
                                    mode: .server,
                                    connectionManagerConfiguration: .init(
                                        maxIdleTime: TimeAmount(limits.idleTimeout),
                                        maxAge: nil,
                                        maxGraceTime: TimeAmount(drainTimeout),
                                        keepalive: nil
                                    ),
                                    http2HandlerConfiguration: Self.http2Configuration(limits)
                                ) { stream in
                                    stream.eventLoop.makeCompletedFuture {
                                        try stream.pipeline.syncOperations.addHandler(StreamResetWatcher(budget: resets))
                                        try stream.pipeline.syncOperations.addHandler(EndStreamCoalescer())
                                        try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                                        try stream.pipeline.syncOperations.addHandler(RequestFlowGuard(limits))
                                        try stream.pipeline.syncOperations.addHandler(EndWriteTracker<HTTPResponsePart>())
                                        return try StreamChannel(wrappingChannelSynchronously: stream)
                                    }
                                }
                                tracker.joinQuiescing(channel)
                                return (channel, multiplexer)
                            }
                        }
                    )
                }
            }
    }

    static func http2Configuration(_ limits: EdgeLimits) -> NIOHTTP2Handler.Configuration {
        var configuration = NIOHTTP2Handler.Configuration()
        configuration.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 128),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeaderBytes),
        ]
        configuration.connection.targetWindowSize = 4 << 20
        configuration.stream.targetWindowSize = 1 << 20
        // Flood limits, stated here so docs/security.md can name them (they are NIOHTTP2's defaults, which
        // Envoy's edge guidance matches in spirit): a header block may span at most 5 CONTINUATION frames;
        // PING, SETTINGS and PRIORITY frames at most 200 per 30 s; at most 10,000 control frames queued for a
        // client that does not read its answers; 200 protocol "glitches" per connection. Each ends only the
        // offending connection, with GOAWAY ENHANCE_YOUR_CALM.
        configuration.connection.maximumSequentialContinuationFrames = 5
        configuration.connection.controlFrameRateLimit.maximumCount = 200
        configuration.connection.controlFrameRateLimit.windowLength = .seconds(30)
        configuration.connection.maximumBufferedControlFrames = 10_000
        configuration.connection.maximumConnectionGlitches = 200
        // Resets of streams in progress are limited per connection by ConnectionResetBudget. NIOHTTP2's own limit
        // counts every RST_STREAM, also those for streams already closed (curl sends one for each response it
        // received whole without Content-Length): it stays only as a backstop against a flood of frames.
        configuration.stream.streamResetFrameRateLimit.maximumCount = 10_000
        configuration.stream.streamResetFrameRateLimit.windowLength = .seconds(10)
        return configuration
    }

    /// Serves one accepted connection until it closes.
    func serve(_ negotiation: EventLoopFuture<Negotiated>) async {
        do {
            switch try await negotiation.get() {
            case .http1_1(let connection):
                await self.serveHTTP1(connection)
            case .http2(let (channel, multiplexer)):
                await self.serveHTTP2(channel: channel, multiplexer: multiplexer)
            }
        } catch {
            self.logger.debug("public connection failed before a request", metadata: ["error": "\(error)"])
        }
    }

    private func serveHTTP1(_ connection: EdgePipeline.Connection) async {
        let context = EdgeRequestContext(
            channel: connection.channel,
            clientAddress: connection.channel.remoteAddress?.ipAddress ?? "unknown",
            connectionID: RequestID.make(),
            isHTTP1: true
        )
        do {
            try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                while let part = try await iterator.next() {
                    guard case .head(let head) = part else { continue }
                    let outcome = await self.forwarder.forward(head: head, iterator: &iterator, writer: outbound, context: context)
                    if case .close = outcome { break }
                }
                await GracefulClose.waitForEnd(of: connection.channel, part: HTTPResponsePart.self)
            }
        } catch {
            self.logger.debug("HTTP/1.1 connection ended", metadata: ["error": "\(error)"])
        }
    }

    private func serveHTTP2(channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<StreamChannel>) async {
        let clientAddress = channel.remoteAddress?.ipAddress ?? "unknown"
        let connectionID = RequestID.make()
        do {
            try await withThrowingDiscardingTaskGroup { group in
                for try await stream in multiplexer.inbound {
                    group.addTask {
                        let context = EdgeRequestContext(channel: stream.channel, clientAddress: clientAddress, connectionID: connectionID, isHTTP1: false)
                        try? await stream.executeThenClose { inbound, outbound in
                            var iterator = inbound.makeAsyncIterator()
                            if case .head(let head) = try await iterator.next() {
                                _ = await self.forwarder.forward(head: head, iterator: &iterator, writer: outbound, context: context)
                            }
                            await GracefulClose.waitForEnd(of: stream.channel, part: HTTPResponsePart.self)
                        }
                    }
                }
            }
        } catch {
            self.logger.debug("HTTP/2 connection ended", metadata: ["error": "\(error)"])
        }
    }
}
