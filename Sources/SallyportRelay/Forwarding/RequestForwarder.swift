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
    /// The public channel: an HTTP/1.1 connection or one HTTP/2 stream.
    let channel: any Channel
    /// The user's address.
    let clientAddress: String
    /// An id of the user's connection (HTTP/1.1 or HTTP/2), for the connector's connection binding.
    let connectionID: String
    /// HTTP/1.1 (keep-alive, upgrades) rather than an HTTP/2 stream.
    let isHTTP1: Bool
}

/// What the connection does after a request.
enum ForwardOutcome: Sendable {
    case keepAlive
    case close
}

/// One public request, top to bottom: ``Admission`` (limits, the relay's own paths, routing) → the app's
/// pre-authentication chain (`SallyportAuth`) → the tunnel head (``TunnelHead``) → a connection of the app's
/// group (``ConnectorRegistry``) → the exchange on a tunnel stream (``TunnelStreamIO``). Whatever the relay
/// answers itself never reaches a connector.
struct RequestForwarder: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = MeteredWriter

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

    /// Forwards one request and accounts for it: its access log line and its app's metrics.
    func forward(
        head: HTTPRequest, iterator: inout Iterator, writer base: NIOAsyncChannelOutboundWriter<HTTPResponsePart>, context: EdgeRequestContext
    ) async -> ForwardOutcome {
        let writer = MeteredWriter(base)
        var trace = RequestTrace(record: AccessRecord(requestID: RequestID.make(), method: head.method.rawValue, target: head.path ?? ""))
        let outcome = await self.forward(head: head, iterator: &iterator, writer: writer, context: context, trace: &trace)
        let instruments = trace.instruments ?? self.metrics.app(RelayMetrics.noApp)
        trace.record.status = writer.meter.status
        trace.record.bytesOut = writer.meter.bytes
        instruments.requests.record(status: trace.record.status, duration: ContinuousClock.now - trace.record.started)
        instruments.bytesIn.increment(by: Int64(trace.record.bytesIn))
        instruments.bytesOut.increment(by: Int64(trace.record.bytesOut))
        if trace.logged {
            trace.record.set("client", context.clientAddress)
            if let reason = writer.meter.reason { trace.record.set("error", reason) }
            trace.record.log(to: self.accessLogger)
        }
        return outcome
    }

    /// What one request's accounting gathers on its way: the app's instruments, the access log record.
    struct RequestTrace {
        var record: AccessRecord
        /// The routed app's; nil while the request has no app.
        var instruments: RelayMetrics.AppInstruments?
        /// false for health checks and apps with `accessLog: false`.
        var logged = true
        var requestID: String { self.record.requestID }
    }

    private func forward(head received: HTTPRequest, iterator: inout Iterator, writer: Writer, context: EdgeRequestContext, trace: inout RequestTrace) async -> ForwardOutcome {
        var head = received
        let requestID = trace.requestID
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(requestID)"
        let snapshot = self.catalog.snapshot

        let app: AppConfig
        let authority: String
        switch Admission.decide(head, routes: snapshot.routes, limits: self.limits, isHTTP1: context.isHTTP1) {
        case .answer(let page):
            if page.status == .notFound { logger.debug("no app for request", metadata: ["host": "\(head.authority ?? "")"]) }
            return await self.answerLocally(page, head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        case .health:
            trace.logged = false
            return await self.answerLocally(ErrorPage(status: .ok, title: "OK", detail: "The relay is up."), head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        case .relayRoute(let host, let providers):
            let page = await self.authenticator.handleReserved(head, authority: host, providers: providers, logger: logger)
            return await self.answerLocally(page, head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        case .forward(let routed, let host, let target):
            (app, authority) = (routed, host)
            head.path = target
            // HTTP/2's `host` field, equal to `:authority` (Admission checked): the backend gets one Host.
            head.headerFields[values: Admission.hostField] = []
        }
        logger[metadataKey: "app"] = "\(app.name)"
        let instruments = self.metrics.app(app.name)
        trace.instruments = instruments
        trace.logged = app.accessLog
        trace.record.keepQuery = app.accessLogQuery
        trace.record.set("app", app.name)
        instruments.inFlight.increment()
        defer { instruments.inFlight.decrement() }

        // Pre-authentication: unless the app is passthrough, nothing goes on until the user is known and allowed.
        let identity: Identity?
        let setCookies: [String]
        // RFC 9112 §9.6: after the response to a request with `Connection: close`, the connection closes.
        var closeAfter = context.isHTTP1 && Self.asksToClose(received)
        switch await self.authenticator.authenticate(head, app: app, authority: authority, logger: logger) {
        case .answer(let page):
            let outcome = Self.preAuthenticationOutcome(page.status)
            self.metrics.preAuthentication(app: app.name, outcome: outcome)
            trace.record.set("preauth", outcome)
            return await self.answerLocally(page, head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
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
        switch TunnelHead.upgrade(of: head, isHTTP1: context.isHTTP1, app: app) {
        case .none: upgradeProtocol = nil
        case .webSocket: upgradeProtocol = "websocket"
        case .ignored:
            // Sent on as a plain request; the connection then closes, whatever the decoder made of its rest.
            upgradeProtocol = nil
            closeAfter = true
        case .refused(let page):
            return await self.answerLocally(page, head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        if app.sso.handler != "passthrough" { trace.record.set("sso", app.sso.handler) }
        let tunnelHead = TunnelHead.make(from: head, app: app.name, identity: identity, upgrade: upgradeProtocol, requestID: requestID, context: context)

        if head.headerFields[.expect]?.lowercased() == "100-continue", context.isHTTP1, upgradeProtocol == nil {
            try? await writer.write(.head(HTTPResponse(status: .continue)))
        }
        // A connector of the app's group that has this app's configuration. When an attempt fails before anything
        // reached the user, another connection takes the request if ``Failover`` allows it.
        let version = snapshot.appVersions[app.name] ?? AppCatalog.AppVersion(changed: snapshot.generation, introduced: snapshot.generation)
        var tried: [UInt64] = []
        var replay = ReplayBuffer()
        var lastFailure: Failover.Failure?
        let avoiding = self.reachability.avoided(app: app.name)
        while tried.count < Self.maxAttempts,
            let connection = await self.registry.pick(
                group: app.connectorGroup, app: version, excluding: tried, avoiding: avoiding,
                near: ObjectIdentifier(context.channel.eventLoop),
                wait: tried.isEmpty && self.awaitsConnectors(app.connectorGroup) ? Self.startWait : Self.configurationWait,
                awaitFirst: tried.isEmpty && self.awaitsConnectors(app.connectorGroup)
            )
        {
            tried.append(connection.id)
            trace.record.set("connector", connection.connector)
            trace.record.set("attempts", "\(tried.count)")
            var attemptLogger = logger
            attemptLogger[metadataKey: "connector"] = "\(connection.connector)"
            let stream: TunnelConnection.Stream
            do {
                stream = try await connection.openStream()
            } catch {
                attemptLogger.warning("could not open a tunnel stream; trying another connection", metadata: ["error": "\(error)"])
                lastFailure = .refused
                continue
            }
            let io = TunnelStreamIO(
                stream: stream, head: tunnelHead, upgradeProtocol: upgradeProtocol, closesConnection: closeAfter || upgradeProtocol != nil,
                setCookies: setCookies, context: context, requestID: requestID,
                logger: attemptLogger, responseHeadTimeout: Self.responseHeadTimeout(app.timeouts),
                observeLatency: { connection.observe(latency: $0) }
            )
            let attempt = await io.run(iterator: &iterator, writer: writer, replay: &replay)
            trace.record.bytesIn = replay.received
            connection.finished()
            switch attempt {
            case .finished(let outcome):
                if self.reachability.succeeded(connectorID: connection.connectorID, app: app.name) {
                    attemptLogger.notice("connector reaches the app's backend again")
                }
                return outcome
            case .failed(_, sourceEnded: true):
                return .close
            case .failed(let failure, sourceEnded: false):
                lastFailure = failure
                if case .notForwarded(_, let reason) = failure, let backoff = self.reachability.failed(connectorID: connection.connectorID, app: app.name) {
                    attemptLogger.warning(
                        "connector cannot reach the app's backend; the app's requests go to other connectors of the group meanwhile",
                        metadata: ["reason": "\(reason)", "for": "\(backoff)", "backend": "\(app.internalURL.string)"]
                    )
                }
                guard Failover.mayRetry(method: head.method, failure: failure, bodyReplayable: replay.isReplayable) else {
                    attemptLogger.warning("request failed on a connector and cannot be sent again", metadata: ["failure": "\(failure)"])
                    return await self.answerAfterFailure(failure, method: head.method, requestID: requestID, writer: writer, context: context)
                }
                attemptLogger.warning("request failed before an answer; sending it to another connection", metadata: ["failure": "\(failure)"])
            }
        }
        guard let lastFailure else {
            logger.warning("no connector available for the app's group", metadata: ["group": "\(app.connectorGroup)"])
            return await self.answerLocally(.noConnector, head: head, requestID: requestID, iterator: &iterator, writer: writer, context: context)
        }
        logger.warning("no further connection could take the request", metadata: ["failure": "\(lastFailure)", "attempts": "\(tried.count)"])
        return await self.answerAfterFailure(lastFailure, method: head.method, requestID: requestID, writer: writer, context: context)
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

    /// Connections a request is tried on at most.
    static let maxAttempts = 3

    /// The page for a request no connection could answer; an HTTP/1.1 connection closes (its body may be unread).
    /// HTTP/2 has no `Connection: close`: a response carrying it is malformed, and clients reset the stream.
    func answerAfterFailure(
        _ failure: Failover.Failure, method: HTTPRequest.Method, requestID: String, writer: Writer, context: EdgeRequestContext
    ) async -> ForwardOutcome {
        _ = try? await Self.writePage(Failover.page(for: failure, method: method), requestID: requestID, writer: writer, close: context.isHTTP1)
        return .close
    }

    /// Answers from the relay itself, without waiting for the request's body: a client the relay turns away
    /// (unauthenticated, unrouted, malformed) must not hold it while it sends a body slowly, or never.
    ///
    /// HTTP/1.1 stays open only for a request with no body, whose end came with its head, and that did not ask
    /// to close (`Connection: close`). Otherwise the answer
    /// says `Connection: close`, and what the client still sends is read and dropped for a moment (at most
    /// ``lingerTime`` and ``lingerBytes``), so that closing does not reset the connection before the client
    /// has read the answer.
    func answerLocally(
        _ page: ErrorPage, head: HTTPRequest, requestID: String, iterator: inout Iterator, writer: Writer, context: EdgeRequestContext
    ) async -> ForwardOutcome {
        guard context.isHTTP1 else {
            _ = try? await Self.writePage(page, requestID: requestID, writer: writer, close: false)
            return .close
        }
        if !Self.mayHaveBody(head), !Self.asksToClose(head), case .end = try? await iterator.next() {
            do {
                try await Self.writePage(page, requestID: requestID, writer: writer, close: false)
                return .keepAlive
            } catch {
                return .close
            }
        }
        guard (try? await Self.writePage(page, requestID: requestID, writer: writer, close: true)) != nil else { return .close }
        let channel = context.channel
        channel.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
        var dropped = 0
        while dropped < Self.lingerBytes, let part = try? await iterator.next() {
            if case .body(let buffer) = part { dropped += buffer.readableBytes }
            if case .end = part { break }
        }
        return .close
    }

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

    static func writePage(_ page: ErrorPage, requestID: String, writer: Writer, close: Bool) async throws {
        let (head, body) = page.render(requestID: requestID, allocator: ByteBufferAllocator(), close: close)
        try await writer.write(contentsOf: [.head(head), .body(body), .end(nil)])
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
