import HTTPTypes
import Logging
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import SallyportConfig
import SallyportHTTP
import SallyportOps

/// A public connection over the listener's limits, closed as it arrived.
struct ConnectionLimitReached: Error, CustomStringConvertible {
    var description: String { "connection limit reached (public.limits.maxConnections or maxConnectionsPerClient)" }
}

/// A public connection that sent no TLS ClientHello within `handshakeTimeout`, closed.
struct NoClientHello: Error, CustomStringConvertible {
    var description: String { "no TLS ClientHello within public.limits.handshakeTimeout" }
}

/// The public HTTPS listener: negotiates HTTP/1.1 or HTTP/2 and hands each request to the forwarder.
struct PublicListener {
    typealias StreamChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    typealias Negotiated = NIONegotiatedHTTPVersion<EdgePipeline.Connection, (any Channel, NIOHTTP2Handler.AsyncStreamMultiplexer<StreamChannel>)>

    let forwarder: RequestForwarder
    let logger: Logger

    /// What a public connection turned out to be: users' HTTPS, or (with `tunnel.onPublicPort`) a connector.
    enum Accepted: Sendable {
        case users(EventLoopFuture<Negotiated>)
        case tunnel(EventLoopFuture<TunnelListener.Accepted>)
    }

    /// Connectors on the public port: the TLS server names (SNI) that mean "tunnel", and how the tunnel
    /// listener sets up such a connection.
    struct SharedTunnel: Sendable {
        /// Lowercased.
        let names: Set<String>
        let tls: ReloadableTLS
        let liveness: TunnelLiveness
        /// The tunnel connections, closed with the tunnel listener's at shutdown (not drained as users').
        let tracker: ChannelTracker
        let logger: Logger
    }

    static func bind(
        at address: Listener<EventLoopFuture<Accepted>>.Address,
        tls: ReloadableTLS,
        limits: EdgeLimits,
        drainTimeout: Duration,
        tracker: ChannelTracker,
        tunnel: SharedTunnel? = nil,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> Listener<EventLoopFuture<Accepted>> {
        // TCP_NODELAY: NIO sets it on the listening socket, which accepted ones inherit.
        try await Listener.bind("public", at: address, backlog: 1024, group: group, logger: logger) { channel in
                guard tracker.add(channel) else {
                    // Over `maxConnections` or the client's `maxConnectionsPerClient`: closed before TLS, costing
                    // nothing more. (Failing the initializer instead would end the listener's accept loop.)
                    return channel.close().map { channel.eventLoop.makeFailedFuture(ConnectionLimitReached()) }
                }
                guard let tunnel else {
                    return Self.configureUsers(channel, tls: tls, limits: limits, drainTimeout: drainTimeout, tracker: tracker).map {
                        channel.eventLoop.makeSucceededFuture(Accepted.users($0))
                    }
                }
                // One port for both: the name the client asks for in its TLS ClientHello decides, before any TLS.
                let decided = channel.eventLoop.makePromise(of: Accepted.self)
                let deadline = channel.eventLoop.scheduleTask(in: TimeAmount(limits.handshakeTimeout)) {
                    decided.fail(NoClientHello())
                    channel.close(promise: nil)
                }
                let sni = SNIHandler { result in
                    deadline.cancel()
                    if case .hostname(let name) = result, tunnel.names.contains(name.lowercased()) {
                        tracker.forget(channel)
                        _ = tunnel.tracker.add(channel)
                        decided.succeed(
                            .tunnel(TunnelListener.configure(channel, tls: tunnel.tls, liveness: tunnel.liveness, logger: tunnel.logger))
                        )
                        return channel.eventLoop.makeSucceededVoidFuture()
                    }
                    return Self.configureUsers(channel, tls: tls, limits: limits, drainTimeout: drainTimeout, tracker: tracker).map {
                        decided.succeed(.users($0))
                    }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(sni))
                    return decided.futureResult
                }
            }
    }

    /// The users' pipeline on an accepted connection: TLS with the public certificates, then HTTP/1.1 or
    /// HTTP/2 by ALPN.
    static func configureUsers(
        _ channel: any Channel, tls: ReloadableTLS, limits: EdgeLimits, drainTimeout: Duration, tracker: ChannelTracker
    ) -> EventLoopFuture<EventLoopFuture<Negotiated>> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
            try channel.pipeline.syncOperations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(limits.handshakeTimeout)))
        }.flatMap {
            channel.configureHTTP2AsyncSecureUpgrade(
                http1ConnectionInitializer: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
                        let connection = try EdgePipeline.configureHTTP1(channel, limits: limits)
                        tracker.joinQuiescing(channel)
                        return connection
                    }
                },
                http2ConnectionInitializer: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let resets = ConnectionResetBudget(connection: channel)
                        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
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
                                let id = try? stream.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)
                                try stream.pipeline.syncOperations.addHandler(StreamResetWatcher(budget: resets, stream: id))
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
