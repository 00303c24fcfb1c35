import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOHTTPTypesHTTP2
import NIOPosix
import NIOSSL
import NIOTLS
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportTunnel
import SallyportWire

/// Accepts connectors' outbound connections: tunnels (ALPN `sallyport/1`, a connector certificate required)
/// and registrations (HTTP/1.1, no client certificate yet). Runs each tunnel's control stream and keeps the
/// registry.
struct TunnelListener {
    /// What one accepted connection turned out to be.
    enum Accepted: Sendable {
        case tunnel(
            channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>, streams: NIOHTTP2Handler.StreamMultiplexer,
            certificate: [UInt8]?, health: TunnelHealth
        )
        case registration(JSONEndpoint.Connection)
    }

    let catalog: AppCatalog
    let registry: ConnectorRegistry
    let membership: Membership
    /// The relays sharing the store, which connectors keep tunnels to.
    let relays: RelayDirectory
    let registration: JSONEndpoint
    let logger: Logger

    static func bind(
        at address: Listener<EventLoopFuture<Accepted>>.Address, tls: ReloadableTLS, liveness: TunnelLiveness, tracker: ChannelTracker,
        group: any EventLoopGroup, logger: Logger
    ) async throws -> Listener<EventLoopFuture<Accepted>> {
        try await Listener.bind("tunnel", at: address, keepalive: true, group: group, logger: logger) { channel in
                _ = tracker.add(channel)
                return channel.eventLoop.makeCompletedFuture { Self.configure(channel, tls: tls, liveness: liveness, logger: logger) }
            }
    }

    /// Sets up an accepted connector connection (on the tunnel listener, or on the public port after its SNI
    /// named the tunnel): liveness, TLS with the tunnel certificate, then by ALPN a tunnel or a registration.
    static func configure(_ channel: any Channel, tls: ReloadableTLS, liveness: TunnelLiveness, logger: Logger) -> EventLoopFuture<Accepted> {
        do {
            let sync = channel.pipeline.syncOperations
            let peer = channel.remoteAddress.map { "\($0)" } ?? "unknown"
            let health = TunnelHealth(logger: logger, peer: peer)
            // First, before TLS: any bytes are a sign of life, and a dead connection closes without a TLS goodbye.
            let watch = TunnelLivenessHandler(liveness) { verdict, silence in health.observe(verdict, silence: silence) }
            try sync.addHandler(watch)
            try sync.addHandler(NIOSSLServerHandler(context: tls.context))
            try sync.addHandler(HandshakeTimeoutHandler(timeout: .seconds(10)))
            let negotiation = NIOTypedApplicationProtocolNegotiationHandler<Accepted> { result, channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if case .negotiated(TunnelProtocol.alpn) = result {
                        let certificate = try sync.nioSSL_peerCertificate()?.toDERBytes()
                        try sync.addHandler(FlushCoalescer())
                        let multiplexer = try sync.configureAsyncHTTP2Pipeline(
                            mode: .client,
                            configuration: TunnelProtocol.http2Configuration()
                        ) { stream in
                            // Connectors never open streams; refuse any.
                            stream.close(promise: nil)
                            return stream.eventLoop.makeSucceededVoidFuture()
                        }
                        try sync.addHandler(TunnelGoAwayHandler { code in
                            logger.warning("connector ended the tunnel with an error; closing it", metadata: ["tunnel.peer": "\(peer)", "code": "\(code)"])
                        })
                        // Pings go through HTTP/2, so they start once it is in place.
                        watch.start()
                        let streams = try sync.handler(type: NIOHTTP2Handler.self).syncMultiplexer()
                        return .tunnel(channel: channel, multiplexer: multiplexer, streams: streams, certificate: certificate, health: health)
                    }
                    // Registration: a few small requests, so a silent client is closed soon (and no pings).
                    sync.removeHandler(watch, promise: nil)
                    try sync.addHandler(IdleStateHandler(readTimeout: .seconds(30)))
                    try sync.addHandler(CloseOnIdleHandler())
                    try sync.configureHTTPServerPipeline(withErrorHandling: true)
                    try sync.addHandler(HTTP1ToHTTPServerCodec(secure: true))
                    return .registration(try JSONEndpoint.Connection(wrappingChannelSynchronously: channel))
                }
            }
            try sync.addHandler(negotiation)
            return negotiation.protocolNegotiationResult
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Serves one accepted connection until it closes.
    func serve(_ accepted: EventLoopFuture<Accepted>) async {
        switch try? await accepted.get() {
        case .tunnel(let channel, let multiplexer, let streams, let certificate, let health)?:
            await self.serveTunnel(channel: channel, multiplexer: multiplexer, streams: streams, certificate: certificate, health: health)
        case .registration(let connection)?:
            await self.registration.serve(connection)
        case nil:
            break
        }
    }

    private func serveTunnel(
        channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Void>, streams: NIOHTTP2Handler.StreamMultiplexer,
        certificate: [UInt8]?, health: TunnelHealth
    ) async {
        let remote = channel.remoteAddress.map { "\($0)" } ?? "unknown"
        var logger = self.logger
        logger[metadataKey: "tunnel.peer"] = "\(remote)"
        var draining = false
        do {
            let control = try await multiplexer.openStream { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPClientCodec())
                    return try NIOAsyncChannel<HTTPResponsePart, HTTPRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
            try await control.executeThenClose { inbound, outbound in
                try await outbound.write(.head(HTTPRequest(method: .post, scheme: "https", authority: "sallyport", path: TunnelProtocol.controlPath)))
                var messages = ControlReader(iterator: inbound.makeAsyncIterator())
                guard case .hello(let hello) = try await messages.next(timeout: .seconds(15), closing: channel) else {
                    throw ControlProtocolError(description: "the connector did not say hello")
                }
                guard (ControlMessage.oldestProtocolVersion...TunnelProtocol.version).contains(hello.protocolVersion) else {
                    try await ControlFraming.send(
                        .error("this relay speaks tunnel protocol \(ControlMessage.oldestProtocolVersion) to \(TunnelProtocol.version), the connector \(hello.protocolVersion); upgrade the older side"),
                        on: outbound
                    )
                    throw ControlProtocolError(description: "connector speaks tunnel protocol \(hello.protocolVersion), relay \(ControlMessage.oldestProtocolVersion) to \(TunnelProtocol.version)")
                }
                // The certificate says who this is; the hello's name is only a claim for the logs.
                let identity: Membership.Identity
                switch await self.membership.identify(certificateDER: certificate) {
                case .success(let known):
                    identity = known
                case .failure(let refusal):
                    try? await ControlFraming.send(.error(refusal.message, code: refusal.error), on: outbound)
                    throw ControlProtocolError(
                        description: "connector refused (\(refusal.error)); it called itself \(LogText.escaped(hello.connector, limit: 128)) on \(LogText.escaped(hello.host, limit: 128))"
                    )
                }
                // Relay list changes from now on (a version 3 connector knows no such message): subscribed before the
                // welcome takes the list, so no change can fall between them.
                let relayUpdates = hello.protocolVersion >= 4 ? self.relays.updates() : nil
                logger[metadataKey: "connector"] = "\(identity.connectorID)"
                logger[metadataKey: "group"] = "\(identity.group)"
                health.logger = logger
                let (outbox, mailbox) = AsyncStream<ControlMessage>.makeStream()
                let connection = TunnelConnection(
                    id: self.registry.makeID(),
                    connectorID: identity.connectorID,
                    connector: identity.name,
                    group: identity.group,
                    remoteAddress: remote,
                    channel: channel,
                    streams: streams,
                    health: health,
                    outbox: mailbox
                )
                try await ControlFraming.send(
                    .welcome(
                        .init(
                            connectorID: identity.connectorID, name: identity.name, group: identity.group, renewable: identity.renewable,
                            time: Date().timeIntervalSince1970, relays: self.relays.relays
                        )
                    ),
                    on: outbound
                )
                self.registry.add(connection)
                logger.info(
                    "connector connected",
                    metadata: ["name": "\(identity.name)", "software": "\(LogText.escaped(hello.software, limit: 128))", "host": "\(LogText.escaped(hello.host, limit: 128))"]
                )
                defer {
                    self.registry.remove(connection)
                    logger.info("connector disconnected")
                }
                // A certificate's end is the end of the tunnels made with it (a renewing connector replaced them long before).
                let expiry = max(0, identity.certificateNotAfter.timeIntervalSinceNow)
                let expiryTimer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(min(expiry, 365 * 86400) * 1000))) { [logger] in
                    connection.markDraining()
                    logger.warning("the connector's certificate expired; closing its tunnel", metadata: ["notAfter": "\(identity.certificateNotAfter)"])
                    channel.close(promise: nil)
                }
                defer { expiryTimer.cancel() }
                await self.membership.seen(identity, software: hello.software, host: hello.host)
                switch await self.membership.recheck(identity) {
                case .current: break
                case .removed: throw ControlProtocolError(description: "connector was removed while it connected")
                case .moved(let group):
                    connection.markDraining()
                    connection.send(.reconnect("moved to group \(group)"))
                }
                let epoch = self.catalog.snapshot.version.epoch
                // A connector's requests for the configuration and its error reports are bounded: a compromised
                // or broken one cannot make the relay busy or fill its log.
                var refreshes = TokenBucket(capacity: 5, perSecond: 1)
                var errorReports = TokenBucket(capacity: 10, perSecond: 0.1)
                var suppressedErrors = 0
                try await withThrowingTaskGroup(of: Void.self) { group in
                    // The current configuration, then every change (subscribed before the first is sent).
                    let updates = self.catalog.updates()
                    group.addTask {
                        for await snapshot in updates {
                            try await ControlFraming.send(.config(snapshot.appSet(group: identity.group)), on: outbound)
                        }
                    }
                    group.addTask {
                        for await message in outbox { try await ControlFraming.send(message, on: outbound) }
                    }
                    if let relayUpdates {
                        group.addTask {
                            for await relays in relayUpdates { try await ControlFraming.send(.relays(relays), on: outbound) }
                        }
                    }
                    defer { mailbox.finish() }
                    while let message = try await messages.next() {
                        switch message {
                        case .configApplied(let version):
                            // An acknowledgement of another epoch is of a configuration some other relay process sent.
                            guard version.epoch == epoch else { continue }
                            self.registry.applied(version.generation, on: connection)
                            logger.debug("connector applied configuration", metadata: ["version": "\(version)"])
                        case .refresh:
                            guard refreshes.take(at: .now) else { continue }  // the last configuration sent still holds
                            try await ControlFraming.send(.config(self.catalog.snapshot.appSet(group: identity.group)), on: outbound)
                        case .renew(let request):
                            guard identity.renewable else {
                                connection.send(.error("certificate renewal refused: this connector's certificate comes from your own PKI; renew it there"))
                                continue
                            }
                            do {
                                let chain = try await self.membership.renew(connectorID: identity.connectorID, requestPEM: request)
                                connection.send(.certificate(chain))
                            } catch {
                                logger.warning("certificate renewal refused", metadata: ["reason": "\(error)"])
                                connection.send(.error("certificate renewal refused: \(error)"))
                            }
                        case .draining:
                            connection.markDraining()
                            draining = true
                            logger.info("connector is draining")
                            // End the control stream so the connector can close once its requests finish.
                            mailbox.finish()
                            try await outbound.write(.end(nil))
                        case .error(let text, _):
                            guard errorReports.take(at: .now) else {
                                if suppressedErrors == 0 {
                                    logger.warning("the connector reports errors too often; dropping its reports for a while (at most 10 at once, then 1 per 10 s)")
                                }
                                suppressedErrors += 1
                                continue
                            }
                            var metadata: Logger.Metadata = ["message": "\(LogText.escaped(text, limit: 1024))"]
                            if suppressedErrors > 0 { metadata["suppressed"] = "\(suppressedErrors)" }
                            suppressedErrors = 0
                            logger.error("connector reported an error", metadata: metadata)
                        case .hello, .welcome, .config, .certificate, .reconnect, .kcdFlush, .relays:
                            throw ControlProtocolError(description: "unexpected control message from connector")
                        }
                    }
                    group.cancelAll()
                }
            }
        } catch where !draining {
            logger.warning("tunnel connection ended", metadata: ["reason": "\(error)"])
            channel.close(promise: nil)
        } catch {
            // A draining connector's control stream may end abruptly; its requests still finish.
        }
        // After a drain notice the connector closes the connection itself once its streams are done.
        let timer = channel.eventLoop.scheduleTask(in: .seconds(120)) { channel.close(promise: nil) }
        try? await channel.closeFuture.get()
        timer.cancel()
    }
}
