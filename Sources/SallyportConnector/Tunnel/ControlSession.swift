import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportKerberos
import SallyportTunnel
import SallyportWire
import ServiceLifecycle
import Synchronization

/// The connector's side of one control stream: hello, the relay's welcome, configuration pushes, the periodic
/// refresh, renewed certificates, the relay's reconnect request, and the drain notice.
struct ControlSession {
    let session: TunnelSession
    let writer: NIOAsyncChannelOutboundWriter<HTTPResponsePart>
    let connection: any Channel
    let logger: Logger

    func run(
        iterator: NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator, drain: AsyncStream<Void>, ready: @escaping @Sendable () -> Void,
        roll: @escaping @Sendable (String) -> Void
    ) async throws {
        var logger = self.logger
        let writer = self.writer
        try await writer.write(.head(HTTPResponse(status: .ok)))
        let hello = ControlMessage.Hello(connector: self.session.connectorName, host: ProcessInfo.processInfo.hostName, software: SallyportVersion.current)
        try await ControlFraming.send(.hello(hello), on: writer)
        var messages = ControlReader(iterator: iterator)
        let first = try await messages.next(timeout: .seconds(15), closing: self.connection)
        if case .error(let text, let code)? = first {
            // Not registered, removed, or another protocol version: the relay says which and what to do.
            self.session.probe?.refused(text)
            logger.error("the relay refused this connector", metadata: ["reason": "\(text)"])
            if code == "not-registered" {
                // Dialling again cannot help: the connector stops (RegistrationWatch), whatever this stream's end.
                self.session.hub.notRegistered(ConnectorNotRegistered(relay: "\(self.session.dialer.relay)", message: text))
            }
            throw ControlProtocolError(description: text)
        }
        guard case .welcome(let welcome)? = first else {
            throw ControlProtocolError(description: "the relay sent no welcome")
        }
        if let probe = self.session.probe {
            // `sallyport doctor`: the relay's welcome and first configuration, and nothing is served. Without a
            // configApplied the relay never picks this connection; the drain notice ends it at once.
            probe.welcomed(welcome, at: Date())
            while let message = try await messages.next(timeout: .seconds(15), closing: self.connection) {
                guard case .config(let set) = message else { continue }
                probe.configured(set)
                break
            }
            try? await ControlFraming.send(.draining, on: writer)
            try? await writer.write(.end(nil))
            self.connection.close(promise: nil)
            return
        }
        logger[metadataKey: "group"] = "\(welcome.group)"
        if self.session.apps.join(group: welcome.group) {
            logger.notice("the relay moved this connector to another group", metadata: ["group": "\(welcome.group)"])
        }
        logger.info("relay welcomed this connector", metadata: ["id": "\(welcome.connectorID)", "name": "\(welcome.name)"])
        if let relays = welcome.relays { self.session.hub.learned(relays) }
        if self.session.credentials.welcomed(renewable: welcome.renewable), !welcome.renewable {
            logger.notice(
                "this connector's certificate comes from your own PKI: the relay does not renew it; replace it before it expires",
                metadata: ["notAfter": "\(self.session.credentials.notAfter)"]
            )
        }
        var senderID: Int?
        defer { if let senderID { self.session.hub.removeSender(senderID) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Ask for the configuration every couple of minutes, in case a push was lost.
                while true {
                    try await Task.sleep(for: self.session.config.configRefreshInterval)
                    try await ControlFraming.send(.refresh, on: writer)
                }
            }
            let drainSent = DrainNoticeSent()
            group.addTask { [logger] in
                // On SIGTERM, or when a replacement connection serves: tell the relay. The relay stops choosing this
                // connection and ends its side of the control stream; the loop below then closes the connection.
                // Should the relay not answer, close anyway after a while.
                await withTaskGroup(of: Void.self) { triggers in
                    triggers.addTask { try? await gracefulShutdown() }
                    triggers.addTask { for await _ in drain { return } }
                    await triggers.next()
                    triggers.cancelAll()
                }
                guard !Task.isCancelled else { return }
                try? await ControlFraming.send(.draining, on: writer)
                drainSent.set()
                try? await Task.sleep(for: Self.drainAcknowledgementTimeout)
                guard !Task.isCancelled else { return }
                logger.warning("the relay did not acknowledge the drain notice; closing the connection anyway")
                self.quiesce()
            }
            defer { group.cancelAll() }
            while let message = try await messages.next() {
                switch message {
                case .config(let set):
                    let (held, applied) = await self.session.apps.apply(set.version, apps: set.apps, group: welcome.group)
                    if applied {
                        logger.info("configuration applied", metadata: ["version": "\(set.version)", "apps": "\(set.apps.map(\.name).joined(separator: ","))"])
                    }
                    // What this connector serves now: the push, or a newer one of the same relay.
                    try await ControlFraming.send(.configApplied(held), on: writer)
                    if senderID == nil {
                        senderID = self.session.hub.addSender(relay: "\(self.session.dialer.relay)") { message in try await ControlFraming.send(message, on: writer) }
                        ready()
                    }
                case .certificate(let chain):
                    do {
                        try self.session.credentials.install(chainPEM: chain)
                        logger.notice("certificate renewed", metadata: ["notAfter": "\(self.session.credentials.notAfter)"])
                        self.session.hub.roll(reason: "certificate renewed")
                    } catch {
                        logger.error("renewed certificate not installed; the current one stays in use", metadata: ["error": "\(error)"])
                    }
                case .kcdFlush(let user):
                    let dropped = self.session.delegator.flush(user: user)
                    logger.notice("Kerberos tickets flushed on the relay's request", metadata: ["user": "\(user ?? "(all)")", "dropped": "\(dropped)"])
                case .reconnect(let reason):
                    logger.notice("the relay asked for new tunnel connections", metadata: ["reason": "\(reason)"])
                    roll(reason)
                case .relays(let relays):
                    self.session.hub.learned(relays)
                case .error(let text, _):
                    logger.error("the relay refused this connector", metadata: ["reason": "\(text)"])
                case .hello, .welcome, .configApplied, .refresh, .draining, .renew:
                    throw ControlProtocolError(description: "unexpected control message from the relay")
                }
            }
            // The relay ended the control stream (we are draining): end our side too, and close the connection once
            // its requests are done. Streams the relay opened just before it saw the notice are still on their way:
            // wait for them, or HTTP/2's GOAWAY would refuse them.
            try? await writer.write(.end(nil))
            if drainSent.isSet {
                try? await Task.sleep(for: Self.drainGrace)
                self.quiesce()
            }
        }
    }

    /// After the relay acknowledged a drain notice, how long requests it had already sent may take to arrive.
    static let drainGrace: Duration = .seconds(1)
    /// How long to wait for the relay to acknowledge a drain notice.
    static let drainAcknowledgementTimeout: Duration = .seconds(5)

    /// Lets HTTP/2 send GOAWAY and close the connection once its streams have ended.
    private func quiesce() {
        self.connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }
}

/// What a probe connection (`sallyport doctor`) learnt from the relay.
final class ProbeSink: Sendable {
    struct Learnt: Sendable {
        var welcome: ControlMessage.Welcome?
        /// When the welcome arrived, by this host's clock.
        var welcomedAt: Date?
        var apps: ControlMessage.AppSet?
        /// The relay's refusal, instead of a welcome.
        var refusal: String?
    }

    private let state = Mutex(Learnt())
    var learnt: Learnt { self.state.withLock { $0 } }

    func welcomed(_ welcome: ControlMessage.Welcome, at time: Date) { self.state.withLock { $0.welcome = welcome; $0.welcomedAt = time } }
    func configured(_ apps: ControlMessage.AppSet) { self.state.withLock { $0.apps = apps } }
    func refused(_ text: String) { self.state.withLock { $0.refusal = text } }
}

/// Whether this connection told the relay it drains: set by the task that sends the notice, read when the relay
/// ends the control stream.
private final class DrainNoticeSent: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { self.value.store(true, ordering: .releasing) }
    var isSet: Bool { self.value.load(ordering: .acquiring) }
}
