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
import SallyportTunnel
import ServiceLifecycle

/// One of the connector's tunnel connections: dials the relay, serves its streams, and dials again with
/// backoff when the connection ends. Several run side by side.
struct TunnelSession: Sendable {
    typealias StreamChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    let index: Int
    let config: ConnectorConfig
    let connectorName: String
    let tls: NIOSSLContext
    let apps: AppTable
    let forwarder: BackendForwarder
    let group: any EventLoopGroup
    let logger: Logger

    /// Runs until graceful shutdown.
    func run() async {
        var backoff = Backoff()
        var logger = self.logger
        logger[metadataKey: "tunnel"] = "\(self.index)"
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let started = ContinuousClock.now
            do {
                try await self.connectAndServe(logger: logger)
            } catch {
                logger.warning("tunnel connection to the relay failed", metadata: ["relay": "\(self.config.relay)", "error": "\(error)"])
            }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let delay = backoff.next(lastUptime: ContinuousClock.now - started)
            logger.info("reconnecting", metadata: ["in": "\(delay)"])
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
    }

    private func connectAndServe(logger: Logger) async throws {
        let serverName = self.config.relayServerName ?? self.config.relay.host
        let (channel, multiplexer) = try await ClientBootstrap(group: self.group)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .connect(host: self.config.relay.host, port: self.config.relay.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    let hostname = BackendConnection.isIPAddress(serverName) ? nil : serverName
                    try sync.addHandler(NIOSSLClientHandler(context: self.tls, serverHostname: hostname))
                    let multiplexer = try sync.configureAsyncHTTP2Pipeline(
                        mode: .server,
                        connectionManagerConfiguration: .init(
                            maxIdleTime: nil,
                            maxAge: nil,
                            maxGraceTime: .seconds(60),
                            keepalive: .init(pingInterval: .seconds(20), ackTimeout: .seconds(10))
                        ),
                        http2HandlerConfiguration: TunnelProtocol.http2Configuration()
                    ) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                            try stream.pipeline.syncOperations.addHandler(EndWriteTracker<HTTPResponsePart>())
                            return try StreamChannel(wrappingChannelSynchronously: stream)
                        }
                    }
                    return (channel, multiplexer)
                }
            }
        logger.info("tunnel connected", metadata: ["relay": "\(self.config.relay)"])
        defer { channel.close(promise: nil) }
        try await withThrowingDiscardingTaskGroup { group in
            for try await stream in multiplexer.inbound {
                group.addTask { await self.serve(stream, connection: channel, logger: logger) }
            }
        }
        logger.info("tunnel closed")
    }

    private func serve(_ stream: StreamChannel, connection: any Channel, logger: Logger) async {
        try? await stream.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            guard case .head(let head) = try await iterator.next() else { return }
            if head.path == TunnelProtocol.controlPath {
                try await self.control(iterator: iterator, writer: outbound, connection: connection, logger: logger)
            } else {
                await self.forwarder.handle(head: head, iterator: &iterator, writer: outbound)
                await GracefulClose.waitForEnd(of: stream.channel, part: HTTPResponsePart.self)
            }
        }
    }

    /// The control stream: hello, configuration pushes, periodic refresh, and the drain notice.
    private func control(
        iterator: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator,
        writer: NIOAsyncChannelOutboundWriter<HTTPResponsePart>,
        connection: any Channel,
        logger: Logger
    ) async throws {
        try await writer.write(.head(HTTPResponse(status: .ok)))
        let hello = ControlMessage.Hello(connector: self.connectorName, group: self.config.group, software: SallyportVersion.current)
        try await ControlFraming.send(.hello(hello), on: writer)
        var messages = ControlReader(iterator: iterator)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Ask for the configuration every couple of minutes, in case a push was lost.
                while true {
                    try await Task.sleep(for: self.config.configRefreshInterval)
                    try await ControlFraming.send(.refresh, on: writer)
                }
            }
            group.addTask {
                // On SIGTERM: tell the relay, then let HTTP/2 close the connection once in-flight streams end.
                try? await gracefulShutdown()
                try? await ControlFraming.send(.draining, on: writer)
                connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            }
            defer { group.cancelAll() }
            while let message = try await messages.next() {
                switch message {
                case .config(let set):
                    let (held, applied) = self.apps.apply(set.version, apps: set.apps)
                    if applied {
                        logger.info("configuration applied", metadata: ["version": "\(set.version)", "apps": "\(set.apps.map(\.name).joined(separator: ","))"])
                    }
                    // What this connector serves now: the push, or a newer one of the same relay.
                    try await ControlFraming.send(.configApplied(held), on: writer)
                case .error(let text):
                    logger.error("relay refused this connector", metadata: ["reason": "\(text)"])
                case .hello, .configApplied, .refresh, .draining:
                    throw ControlProtocolError(description: "unexpected control message from the relay")
                }
            }
            // The relay ended the control stream (we are draining): end our side too.
            try? await writer.write(.end(nil))
        }
    }

}
