import Foundation
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
import SallyportKerberos
import SallyportTunnel
import ServiceLifecycle
import Synchronization

/// A future made in a channel initializer, read after the connect.
final class FutureBox: Sendable {
    private let value = Mutex<EventLoopFuture<Void>?>(nil)
    func set(_ future: EventLoopFuture<Void>) { self.value.withLock { $0 = future } }
    var future: EventLoopFuture<Void>? { self.value.withLock { $0 } }
}

/// One of the connector's tunnel slots: keeps one connection to the relay serving, redials with backoff when
/// it ends, and replaces it (make before break) when the certificate is renewed or the relay asks. The
/// decisions are ``TunnelSlot``'s; this type dials, serves and drains.
struct TunnelSession: Sendable {
    typealias StreamChannel = NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>

    /// What a connection of the slot reports back.
    enum Event: Sendable {
        case ready(Int)
        case ended(Int, uptime: Duration)
        case roll(String)
        case retire
        case shutdown
    }

    let index: Int
    let config: ConnectorConfig
    let connectorName: String
    let credentials: Credentials
    let hub: TunnelHub
    let delegator: KerberosDelegator
    let apps: AppTable
    let forwarder: BackendForwarder
    /// The relay this slot keeps a connection to, directly or through the outbound proxy.
    let dialer: RelayDialer
    /// The name checked on the relay's tunnel certificate.
    let serverName: String
    let group: any EventLoopGroup
    let logger: Logger
    /// Set for `sallyport doctor`'s probe: the connection learns the relay's welcome and apps, and serves nothing.
    var probe: ProbeSink? = nil
    /// Yields when the slot is no longer wanted (its relay left the relay list): its connections drain and it
    /// ends.
    var retire: AsyncStream<Void>? = nil

    /// One probe connection (see ``probe``): what the relay said, or the error that stopped the connection.
    func probeOnce(timeout: Duration) async throws -> ProbeSink.Learnt {
        guard let probe = self.probe else { preconditionFailure("probeOnce needs a ProbeSink") }
        let (drain, _) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.connectAndServe(drain: drain, ready: {}, roll: { _ in }, logger: self.logger) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw ProbeTimeout(after: timeout)
            }
            try await group.next()
            group.cancelAll()
        }
        return probe.learnt
    }

    /// Runs until graceful shutdown, and until its connections have drained.
    func run() async {
        var logger = self.logger
        logger[metadataKey: "tunnel"] = "\(self.index)"
        let (events, sink) = AsyncStream<Event>.makeStream()
        var slot = TunnelSlot()
        var drains: [Int: AsyncStream<Void>.Continuation] = [:]
        await withDiscardingTaskGroup { group in
            let rolls = self.hub.rolls()
            group.addTask { for await reason in rolls { sink.yield(.roll(reason)) } }
            group.addTask {
                try? await gracefulShutdown()
                sink.yield(.shutdown)
            }
            if let retire = self.retire {
                group.addTask {
                    for await _ in retire {
                        sink.yield(.retire)
                        return
                    }
                }
            }
            var actions = slot.start()
            var events = events.makeAsyncIterator()
            while true {
                for action in actions {
                    switch action {
                    case .dial(let id, let delay):
                        let (drain, trigger) = AsyncStream<Void>.makeStream()
                        drains[id] = trigger
                        group.addTask { [logger] in await self.connection(id, after: delay, drain: drain, events: sink, logger: logger) }
                    case .drain(let id):
                        drains.removeValue(forKey: id)?.yield()
                    case .finish:
                        group.cancelAll()
                        return
                    }
                }
                guard let event = await events.next() else { return }
                switch event {
                case .ready(let id): actions = slot.ready(id)
                case .ended(let id, let uptime):
                    drains.removeValue(forKey: id)
                    actions = slot.ended(id, uptime: uptime)
                case .roll(let reason):
                    logger.info("opening a new tunnel connection to replace this one", metadata: ["reason": "\(reason)"])
                    actions = slot.rollRequested()
                case .retire: actions = slot.retire()
                case .shutdown: actions = slot.shutdown()
                }
            }
        }
    }

    /// Dials connection `id` after `delay` and serves it until it closes; reports ready and ended.
    private func connection(_ id: Int, after delay: Duration, drain: AsyncStream<Void>, events: AsyncStream<Event>.Continuation, logger: Logger) async {
        if delay > .zero {
            logger.info("reconnecting", metadata: ["in": "\(delay)"])
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
        }
        let started = ContinuousClock.now
        if !Task.isShuttingDownGracefully {
            do {
                try await self.connectAndServe(drain: drain, ready: { events.yield(.ready(id)) }, roll: { events.yield(.roll($0)) }, logger: logger)
            } catch {
                let explained = await self.explain(error)
                logger.warning("tunnel connection to the relay failed", metadata: ["relay": "\(self.dialer.relay)", "error": "\(explained)"])
            }
        }
        events.yield(.ended(id, uptime: ContinuousClock.now - started))
    }

    /// A failed connection in words: TLS failures without BoringSSL's codes, and for a relay certificate this
    /// connector refused, what is wrong with it.
    func explain(_ error: any Error) async -> String {
        let detail = await RelayCertificateCheck.explain(
            error, dialer: self.dialer, serverName: self.serverName, relayCA: self.config.relayCA, group: self.group
        )
        return detail ?? TLSFailure.connectorMessage(error, relay: "\(self.dialer.relay)") ?? "\(error)"
    }

    private func connectAndServe(
        drain: AsyncStream<Void>, ready: @escaping @Sendable () -> Void, roll: @escaping @Sendable (String) -> Void, logger: Logger
    ) async throws {
        let serverName = self.serverName
        let tls = self.credentials.context
        let liveness = self.config.liveness
        let dialer = self.dialer
        // The proxy's CONNECT (if any) goes first, once TCP is up; TLS and HTTP/2 only once the pipe is open.
        let channel = try await dialer.connect(group: self.group)
        // Request streams are carried by their handlers; the relay's control stream goes to a control session.
        let (controls, arrived) = AsyncStream<StreamChannel>.makeStream()
        let forwarder = self.forwarder
        let failure = FirstError()
        do {
            try await channel.eventLoop.submit {
                let sync = channel.pipeline.syncOperations
                let hostname = BackendConnection.isIPAddress(serverName) ? nil : serverName
                // First, before TLS: any bytes are a sign of life, and a dead connection closes without a TLS goodbye.
                let watch = TunnelLivenessHandler(liveness) { verdict, silence in
                    switch verdict {
                    case .suspect: logger.warning("relay silent", metadata: ["silence": "\(silence)"])
                    case .alive: logger.info("relay answers again")
                    case .dead: logger.warning("tunnel closed: the relay did not answer; dialling again", metadata: ["silence": "\(silence)"])
                    }
                }
                try sync.addHandler(watch)
                try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: hostname))
                try sync.addHandler(FlushCoalescer())
                // The connection manager turns a quiesce (drain) into GOAWAY and a close once the streams are
                // done; liveness is the handler's above, not the manager's keepalive.
                let manager = NIOHTTP2ServerConnectionManagementHandler(
                    eventLoop: channel.eventLoop, configuration: .init(maxIdleTime: nil, maxAge: nil, maxGraceTime: .seconds(60), keepalive: nil)
                )
                let configuration = TunnelProtocol.http2Configuration()
                let http2 = NIOHTTP2Handler(
                    mode: .server, eventLoop: channel.eventLoop, connectionConfiguration: configuration.connection,
                    streamConfiguration: configuration.stream, streamDelegate: manager.http2StreamDelegate
                ) { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                        try stream.pipeline.syncOperations.addHandler(
                            StreamExchangeHandler(forwarder: forwarder) { control in
                                arrived.yield(try StreamChannel(wrappingChannelSynchronously: control))
                            }
                        )
                    }
                }
                try sync.addHandler(http2)
                try sync.addHandler(manager)
                try sync.addHandler(TunnelGoAwayHandler { code in
                    logger.warning("the relay ended the tunnel with an error; dialling again", metadata: ["code": "\(code)"])
                })
                try sync.addHandler(failure.recorder())
                watch.start()
            }.get()
        } catch {
            channel.close(promise: nil)
            throw error
        }
        channel.closeFuture.whenComplete { _ in arrived.finish() }
        logger.info("tunnel connected", metadata: dialer.proxy.map { ["relay": "\(dialer.relay)", "proxy": "\($0)"] } ?? ["relay": "\(dialer.relay)"])
        defer { channel.close(promise: nil) }
        try await withThrowingDiscardingTaskGroup { group in
            for await control in controls {
                group.addTask(executorPreference: EventLoopExecutor(control.channel.eventLoop)) {
                    try? await control.executeThenClose { inbound, outbound in
                        let session = ControlSession(session: self, writer: outbound, connection: channel, logger: logger)
                        try await session.run(iterator: inbound.makeAsyncIterator(), drain: drain, ready: ready, roll: roll)
                    }
                }
            }
        }
        // A connection that failed (a TLS handshake the relay refused, a reset) says why to the caller.
        if let error = failure.error { throw error }
        logger.info("tunnel closed")
    }
}

/// The first error that reached the end of a connection's pipeline.
final class FirstError: Sendable {
    private let first = Mutex<(any Error)?>(nil)

    var error: (any Error)? { self.first.withLock { $0 } }

    /// The handler that records it; put it last.
    func recorder() -> Recorder { Recorder(self) }

    final class Recorder: ChannelInboundHandler {
        typealias InboundIn = NIOAny
        private let owner: FirstError

        init(_ owner: FirstError) { self.owner = owner }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // Fatal errors (a refused TLS handshake, a reset) close the connection on their own.
            self.owner.first.withLock { if $0 == nil { $0 = error } }
        }
    }
}

/// The probe connection did not finish in time.
struct ProbeTimeout: Error, CustomStringConvertible {
    let after: Duration
    var description: String { "no answer from the relay within \(after)" }
}
