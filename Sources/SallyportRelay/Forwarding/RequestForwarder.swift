import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import Prometheus
import SallyportAuth
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportPluginAPI
import SallyportTunnel

/// Where a public request came from.
struct EdgeRequestContext: Sendable {
    /// The user's address.
    let clientAddress: String
    /// An id of the user's connection (HTTP/1.1 or HTTP/2), for the connector's connection binding.
    let connectionID: String
    /// HTTP/1.1 (keep-alive, upgrades) rather than an HTTP/2 stream.
    let isHTTP1: Bool
}

/// The relay's decisions about one public request, top to bottom: ``Admission`` (limits, the relay's own paths,
/// routing) → the app's pre-authentication chain (`SallyportAuth`) → the tunnel head (``TunnelHead``) → a
/// connection of the app's group (``ConnectorRegistry``). It does no I/O: ``ExchangeHandler`` carries the
/// request, and asks here what to do. Whatever the relay answers itself never reaches a connector.
struct RequestForwarder: Sendable {
    let catalog: AppCatalog
    let registry: ConnectorRegistry
    /// Connectors that cannot reach an app's backend, learnt from their answers.
    let reachability: Reachability
    let authenticator: PreAuthenticator
    let limits: EdgeLimits
    let logger: Logger
    let metrics: RelayMetrics
    /// The access log: a line per request (``AccessRecord``), unless its app turns it off.
    let accessLogger: Logger
    /// Whether a group's connectors are expected to connect soon: a relay just (re)started, whose connectors
    /// were active moments ago. Their requests wait for them (``startWait``) instead of being refused.
    var awaitsConnectors: @Sendable (_ group: String) -> Bool = { _ in false }

    /// How long a request waits for the first connector of its group while the relay starts.
    static let startWait: Duration = .seconds(10)

    /// How long a request of an app that no connector has yet may wait for its configuration to arrive.
    static let configurationWait: Duration = .seconds(3)

    /// What one request's accounting gathers on its way: the app's instruments, the access log record.
    struct RequestTrace {
        var record: AccessRecord
        /// The routed app's; nil while the request has no app.
        var instruments: RelayMetrics.AppInstruments?
        /// false for health checks and apps with `accessLog: false`.
        var logged = true
        var requestID: String { self.record.requestID }
    }

    /// A request the relay sends to a connector of its app's group.
    struct Plan: Sendable {
        let app: AppConfig
        /// What crosses the tunnel (``TunnelHead``).
        let tunnelHead: HTTPRequest
        /// The relay's cookies from pre-authentication, added to the response.
        let setCookies: [String]
        /// `websocket` for a protocol switch the app allows.
        let upgradeProtocol: String?
        /// The connection closes after the answer (an `Upgrade` that is ignored).
        let closeAfter: Bool
        /// An HTTP/1.1 `Expect: 100-continue` to answer before the body is read.
        let sendContinue: Bool
        /// The app's configuration generation a connector must have applied.
        let version: AppCatalog.AppVersion
        /// How long after the request's end the connector may take to send a response head.
        let responseHeadTimeout: Duration
    }

    /// What the relay does with a request, once it is known.
    enum Step: Sendable {
        /// The relay answers itself.
        case answer(ErrorPage)
        /// Sent to a connector.
        case forward(Plan)
        /// Pre-authentication must wait for I/O (a provider's keys, an OIDC code exchange): ``authenticate(_:)``,
        /// then ``conclude(_:_:edge:trace:logger:)`` on the channel's loop.
        case authenticate(Pending)
        /// One of the relay's own paths on a published host (sign-in callback, sign-out): ``handleReserved(_:)``.
        case reserved(Reserved)
    }

    struct Pending: Sendable {
        let head: HTTPRequest
        let app: AppConfig
        let authority: String
        let logger: Logger
    }

    struct Reserved: Sendable {
        let head: HTTPRequest
        let authority: String
        let providers: Set<String>
        let logger: Logger
    }

    /// Admission and, when it needs no I/O, pre-authentication. `logger` gains the request's metadata.
    func admit(_ received: HTTPRequest, edge: EdgeRequestContext, trace: inout RequestTrace, logger: inout Logger) -> Step {
        var head = received
        logger[metadataKey: "request.id"] = "\(trace.requestID)"
        switch Admission.decide(head, routes: self.catalog.snapshot.routes, limits: self.limits, isHTTP1: edge.isHTTP1) {
        case .answer(let page):
            if page.status == .notFound { logger.debug("no app for request", metadata: ["host": "\(head.authority ?? "")"]) }
            return .answer(page)
        case .health:
            trace.logged = false
            return .answer(ErrorPage(status: .ok, title: "OK", detail: "The relay is up."))
        case .relayRoute(let host, let providers):
            return .reserved(Reserved(head: head, authority: host, providers: providers, logger: logger))
        case .forward(let app, let authority, let target):
            head.path = target
            // HTTP/2's `host` field, equal to `:authority` (Admission checked): the backend gets one Host.
            head.headerFields[values: Admission.hostField] = []
            logger[metadataKey: "app"] = "\(app.name)"
            let instruments = self.metrics.app(app.name)
            trace.instruments = instruments
            trace.logged = app.accessLog
            trace.record.keepQuery = app.accessLogQuery
            trace.record.set("app", app.name)
            instruments.inFlight.increment()
            // Pre-authentication: unless the app is passthrough, nothing goes on until the user is known and allowed.
            guard let decision = self.authenticator.authenticateImmediately(head, app: app, authority: authority, logger: logger) else {
                return .authenticate(Pending(head: head, app: app, authority: authority, logger: logger))
            }
            return self.conclude(decision, Pending(head: head, app: app, authority: authority, logger: logger), edge: edge, trace: &trace, logger: &logger)
        }
    }

    /// Pre-authentication that waits for I/O; runs off the event loop.
    func authenticate(_ pending: Pending) async -> AuthDecision {
        await self.authenticator.authenticate(pending.head, app: pending.app, authority: pending.authority, logger: pending.logger)
    }

    /// The relay's own paths; runs off the event loop.
    func handleReserved(_ reserved: Reserved) async -> ErrorPage {
        await self.authenticator.handleReserved(reserved.head, authority: reserved.authority, providers: reserved.providers, logger: reserved.logger)
    }

    /// What pre-authentication's decision means for the request.
    func conclude(_ decision: AuthDecision, _ pending: Pending, edge: EdgeRequestContext, trace: inout RequestTrace, logger: inout Logger) -> Step {
        let (head, app) = (pending.head, pending.app)
        let identity: Identity?
        let setCookies: [String]
        switch decision {
        case .answer(let page):
            let outcome = Self.preAuthenticationOutcome(page.status)
            self.metrics.preAuthentication(app: app.name, outcome: outcome)
            trace.record.set("preauth", outcome)
            return .answer(page)
        case .forward(let user, let cookies):
            identity = user
            setCookies = cookies
            if let user {
                logger[metadataKey: "user"] = "\(user.userPrincipalName)"
                trace.record.set("user", user.userPrincipalName)
                self.metrics.preAuthentication(app: app.name, outcome: "allowed")
            }
        }
        let upgradeProtocol: String?
        var closeAfter = false
        switch TunnelHead.upgrade(of: head, isHTTP1: edge.isHTTP1, app: app) {
        case .none: upgradeProtocol = nil
        case .webSocket: upgradeProtocol = "websocket"
        case .ignored:
            // Sent on as a plain request; the connection then closes, whatever the decoder made of its rest.
            upgradeProtocol = nil
            closeAfter = true
        case .refused(let page):
            return .answer(page)
        }
        if app.sso.handler != "passthrough" { trace.record.set("sso", app.sso.handler) }
        let snapshot = self.catalog.snapshot
        return .forward(
            Plan(
                app: app,
                tunnelHead: TunnelHead.make(
                    from: head, app: app.name, identity: identity, upgrade: upgradeProtocol, requestID: trace.requestID, context: edge
                ),
                setCookies: setCookies,
                upgradeProtocol: upgradeProtocol,
                closeAfter: closeAfter,
                sendContinue: edge.isHTTP1 && upgradeProtocol == nil && head.headerFields[.expect]?.lowercased() == "100-continue",
                version: snapshot.appVersions[app.name] ?? AppCatalog.AppVersion(changed: snapshot.generation, introduced: snapshot.generation),
                responseHeadTimeout: Self.responseHeadTimeout(app.timeouts)
            )
        )
    }

    /// A connection of the plan's group for the next attempt, chosen without waiting when one can take it.
    enum Choice {
        case chosen(TunnelConnection)
        /// None now, but one may come (configuration on its way, a relay just started): ``chooseLater``.
        case wait(Duration, awaitFirst: Bool)
        case none
    }

    func choose(for plan: Plan, excluding tried: [UInt64], near loop: any EventLoop) -> Choice {
        let group = plan.app.connectorGroup
        let awaitFirst = tried.isEmpty && self.awaitsConnectors(group)
        let outcome = self.registry.pickNow(
            group: group, app: plan.version, excluding: tried, avoiding: self.reachability.avoided(app: plan.app.name), near: ObjectIdentifier(loop)
        )
        switch outcome {
        case .chosen(let connection): return .chosen(connection)
        case .configurationPending: return .wait(awaitFirst ? Self.startWait : Self.configurationWait, awaitFirst: awaitFirst)
        case .none: return awaitFirst && self.registry.connections(group: group).isEmpty ? .wait(Self.startWait, awaitFirst: true) : .none
        }
    }

    /// Waits for a connection (see ``Choice/wait(_:awaitFirst:)``); runs off the event loop.
    func chooseLater(for plan: Plan, excluding tried: [UInt64], near loop: any EventLoop, wait: Duration, awaitFirst: Bool) async -> TunnelConnection? {
        await self.registry.pick(
            group: plan.app.connectorGroup, app: plan.version, excluding: tried, avoiding: self.reachability.avoided(app: plan.app.name),
            near: ObjectIdentifier(loop), wait: wait, awaitFirst: awaitFirst
        )
    }

    /// Writes the request's access log line and its app's metrics.
    func account(_ trace: RequestTrace, exchange: RelayExchange, clientAddress: String) {
        var record = trace.record
        let instruments = trace.instruments ?? self.metrics.app(RelayMetrics.noApp)
        record.status = exchange.status
        record.bytesOut = exchange.bytesOut
        record.bytesIn = exchange.bytesIn
        instruments.requests.record(status: record.status, duration: ContinuousClock.now - record.started)
        instruments.bytesIn.increment(by: Int64(record.bytesIn))
        instruments.bytesOut.increment(by: Int64(record.bytesOut))
        if trace.instruments != nil { instruments.inFlight.decrement() }
        guard trace.logged else { return }
        record.set("client", clientAddress)
        if let reason = exchange.reason { record.set("error", reason) }
        record.log(to: self.accessLogger)
    }

    /// How long the relay waits for a response head after a request's end: the connector's own timeouts (it
    /// answers 504 after them: the SSO handler's two calls, connect, response) and a margin. Only a connector
    /// that answers nothing reaches it.
    static func responseHeadTimeout(_ timeouts: AppTimeouts) -> Duration {
        timeouts.sso * 2 + timeouts.connect + timeouts.response + .seconds(15)
    }

    /// The pre-authentication outcome label of a page the relay answered instead of forwarding.
    static func preAuthenticationOutcome(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 300..<400: "sign_in"
        case 401: "unauthenticated"
        case 403: "forbidden"
        default: "error"
        }
    }

    /// A local answer lingers at most this long, reading and dropping what the client still sends, before its
    /// connection closes: closing at once could reset the connection before the client has read the answer.
    static let lingerTime: TimeAmount = .seconds(2)
    static let lingerBytes = 256 * 1024

    /// Whether an HTTP/1.1 request says `Connection: close`.
    static func asksToClose(_ head: HTTPRequest) -> Bool {
        HopByHop.connectionTokens(head.headerFields).contains("close")
    }

    /// Whether an HTTP/1.1 request may be followed by a body (or, for CONNECT and upgrades, by other bytes).
    static func mayHaveBody(_ head: HTTPRequest) -> Bool {
        if head.method == .connect || head.headerFields[.upgrade] != nil || head.headerFields[.transferEncoding] != nil { return true }
        guard let length = head.headerFields[.contentLength] else { return false }
        return length != "0"
    }
}

/// Short random request ids for logs and error pages.
enum RequestID {
    static func make() -> String {
        let value = UInt64.random(in: 0...UInt64.max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
