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

/// Accepts connectors' outbound tunnel connections, runs their control streams, and keeps the registry.
struct TunnelListener {
    typealias Accepted = (channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>)

    let catalog: AppCatalog
    let registry: ConnectorRegistry
    let logger: Logger

    static func bind(host: String, port: Int, tls: NIOSSLContext, tracker: ChannelTracker, group: any EventLoopGroup) async throws -> NIOAsyncChannel<Accepted, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .bind(host: host, port: port) { channel in
                tracker.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: tls))
                    // The connector pings every 20 s; a silent connection is dead.
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(60)))
                    try sync.addHandler(CloseOnIdleHandler())
                    let multiplexer = try sync.configureAsyncHTTP2Pipeline(
                        mode: .client,
                        configuration: TunnelProtocol.http2Configuration()
                    ) { stream in
                        // Connectors never open streams; refuse any.
                        stream.close(promise: nil)
                        return stream.eventLoop.makeSucceededVoidFuture()
                    }
                    return (channel, multiplexer)
                }
            }
    }

    /// Serves one tunnel connection until it closes.
    func serve(_ accepted: Accepted) async {
        let remote = accepted.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        var logger = self.logger
        logger[metadataKey: "tunnel.peer"] = "\(remote)"
        var draining = false
        do {
            let control = try await accepted.multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPClientCodec())
                    return try NIOAsyncChannel<HTTPResponsePart, HTTPRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
            try await control.executeThenClose { inbound, outbound in
                try await outbound.write(.head(HTTPRequest(method: .post, scheme: "https", authority: "sallyport", path: TunnelProtocol.controlPath)))
                var messages = ControlReader(iterator: inbound.makeAsyncIterator())
                guard case .hello(let hello) = try await messages.next(timeout: .seconds(15), closing: accepted.channel) else {
                    throw ControlProtocolError(description: "the connector did not say hello")
                }
                guard hello.protocolVersion == TunnelProtocol.version else {
                    try await ControlFraming.send(.error("this relay speaks tunnel protocol \(TunnelProtocol.version), the connector \(hello.protocolVersion); upgrade the older side"), on: outbound)
                    throw ControlProtocolError(description: "connector speaks tunnel protocol \(hello.protocolVersion), relay \(TunnelProtocol.version)")
                }
                let connection = TunnelConnection(
                    id: self.registry.makeID(),
                    connector: hello.connector,
                    group: hello.group,
                    remoteAddress: remote,
                    channel: accepted.channel,
                    multiplexer: accepted.multiplexer
                )
                logger[metadataKey: "connector"] = "\(hello.connector)"
                logger[metadataKey: "group"] = "\(hello.group)"
                self.registry.add(connection)
                logger.info("connector connected", metadata: ["software": "\(hello.software)"])
                defer {
                    self.registry.remove(connection)
                    logger.info("connector disconnected")
                }
                let epoch = self.catalog.snapshot.version.epoch
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // The current configuration, then every change (subscribed before the first is sent).
                    let updates = self.catalog.updates()
                    group.addTask {
                        for await snapshot in updates {
                            try await ControlFraming.send(.config(snapshot.appSet(group: hello.group)), on: outbound)
                        }
                    }
                    while let message = try await messages.next() {
                        switch message {
                        case .configApplied(let version):
                            // An acknowledgement of another epoch is of a configuration some other relay process sent.
                            guard version.epoch == epoch else { continue }
                            self.registry.applied(version.generation, on: connection)
                            logger.debug("connector applied configuration", metadata: ["version": "\(version)"])
                        case .refresh:
                            try await ControlFraming.send(.config(self.catalog.snapshot.appSet(group: hello.group)), on: outbound)
                        case .draining:
                            connection.markDraining()
                            draining = true
                            logger.info("connector is draining")
                            // End the control stream so the connector can close once its requests finish.
                            try await outbound.write(.end(nil))
                        case .error(let text):
                            logger.error("connector reported an error", metadata: ["message": "\(text)"])
                        case .hello, .config:
                            throw ControlProtocolError(description: "unexpected control message from connector")
                        }
                    }
                    group.cancelAll()
                }
            }
        } catch where !draining {
            logger.warning("tunnel connection ended", metadata: ["reason": "\(error)"])
            accepted.channel.close(promise: nil)
        } catch {
            // A draining connector's control stream may end abruptly; its requests still finish.
        }
        // After a drain notice the connector closes the connection itself once its streams are done.
        let timer = accepted.channel.eventLoop.scheduleTask(in: .seconds(120)) { accepted.channel.close(promise: nil) }
        try? await accepted.channel.closeFuture.get()
        timer.cancel()
    }

}
