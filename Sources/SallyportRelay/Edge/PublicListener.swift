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

/// The public HTTPS listener: negotiates HTTP/1.1 or HTTP/2 and ends each connection's pipeline (each HTTP/2
/// stream's) in an ``ExchangeHandler``, which carries its requests.
struct PublicListener {
    /// The connection, once its HTTP version is set up.
    typealias Negotiated = NIONegotiatedHTTPVersion<any Channel, any Channel>

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
        forwarder: RequestForwarder,
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> Listener<EventLoopFuture<Accepted>> {
        let users = Users(tls: tls, limits: limits, drainTimeout: drainTimeout, tracker: tracker, forwarder: forwarder)
        // TCP_NODELAY: NIO sets it on the listening socket, which accepted ones inherit.
        return try await Listener.bind("public", at: address, backlog: 1024, group: group, logger: logger) { channel in
                guard tracker.add(channel) else {
                    // Over `maxConnections` or the client's `maxConnectionsPerClient`: closed before TLS, costing
                    // nothing more. (Failing the initializer instead would end the listener's accept loop.)
                    return channel.close().map { channel.eventLoop.makeFailedFuture(ConnectionLimitReached()) as EventLoopFuture<Accepted> }
                }
                guard let tunnel else {
                    return users.configure(channel).map { channel.eventLoop.makeSucceededFuture(Accepted.users($0)) }
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
                    return users.configure(channel).map { decided.succeed(.users($0)) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(sni))
                    return decided.futureResult
                }
            }
    }

    /// What sets up users' connections.
    struct Users: Sendable {
        let tls: ReloadableTLS
        let limits: EdgeLimits
        let drainTimeout: Duration
        let tracker: ChannelTracker
        let forwarder: RequestForwarder

        /// The users' pipeline on an accepted connection: TLS with the public certificates, then HTTP/1.1 or
        /// HTTP/2 by ALPN, each ending in an ``ExchangeHandler``.
        func configure(_ channel: any Channel) -> EventLoopFuture<EventLoopFuture<Negotiated>> {
            let (limits, tracker) = (self.limits, self.tracker)
            let clientAddress = channel.remoteAddress?.ipAddress ?? "unknown"
            let connectionID = RequestID.make()
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: self.tls.context))
                try channel.pipeline.syncOperations.addHandler(HandshakeTimeoutHandler(timeout: TimeAmount(limits.handshakeTimeout)))
            }.flatMap {
                channel.configureHTTP2AsyncSecureUpgrade(
                    http1ConnectionInitializer: { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
                            try EdgePipeline.configureHTTP1(channel, limits: limits)
                            try channel.pipeline.syncOperations.addHandler(
                                ExchangeHandler(forwarder: self.forwarder, clientAddress: clientAddress, connectionID: connectionID, isHTTP1: true)
                            )
                            tracker.joinQuiescing(channel)
                            return channel
                        }
                    },
                    http2ConnectionInitializer: { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try self.configureHTTP2(channel, clientAddress: clientAddress, connectionID: connectionID)
                            tracker.joinQuiescing(channel)
                            return channel
                        }
                    }
                )
            }
        }

        private func configureHTTP2(_ channel: any Channel, clientAddress: String, connectionID: String) throws {
            let (limits, forwarder) = (self.limits, self.forwarder)
            let resets = ConnectionResetBudget(connection: channel)
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(FlushCoalescer())
            let manager = NIOHTTP2ServerConnectionManagementHandler(
                eventLoop: channel.eventLoop,
                configuration: .init(
                    maxIdleTime: TimeAmount(limits.idleTimeout), maxAge: nil, maxGraceTime: TimeAmount(self.drainTimeout), keepalive: nil
                )
            )
            let configuration = PublicListener.http2Configuration(limits)
            let http2 = NIOHTTP2Handler(
                mode: .server,
                eventLoop: channel.eventLoop,
                connectionConfiguration: configuration.connection,
                streamConfiguration: configuration.stream,
                streamDelegate: manager.http2StreamDelegate
            ) { stream in
                stream.eventLoop.makeCompletedFuture {
                    let id = try? stream.syncOptions?.getOption(HTTP2StreamChannelOptions.streamID)
                    let sync = stream.pipeline.syncOperations
                    try sync.addHandler(StreamResetWatcher(budget: resets, stream: id))
                    try sync.addHandler(EndStreamCoalescer())
                    try sync.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                    try sync.addHandler(RequestFlowGuard(limits))
                    try sync.addHandler(ExchangeHandler(forwarder: forwarder, clientAddress: clientAddress, connectionID: connectionID, isHTTP1: false))
                }
            }
            try sync.addHandler(http2)
            try sync.addHandler(manager)
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

    /// Waits until an accepted connection closes: its handlers carry its requests.
    func serve(_ negotiation: EventLoopFuture<Negotiated>) async {
        do {
            let channel: any Channel
            switch try await negotiation.get() {
            case .http1_1(let connection): channel = connection
            case .http2(let connection): channel = connection
            }
            try await channel.closeFuture.get()
        } catch {
            self.logger.debug("public connection failed before a request", metadata: ["error": "\(error)"])
        }
    }
}
