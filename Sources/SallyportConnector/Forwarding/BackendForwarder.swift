import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import NIOPosix
import SallyportConfig
import SallyportHTTP
import Prometheus
import SallyportOps
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

/// Forwards one tunnelled request to the app's backend and streams the answer back into the tunnel stream.
///
/// Top to bottom: find the app → read the first part (does the request have a body?) → the backend's head →
/// then the steps ``BackendExchange`` asks for: the SSO handler prepares, one exchange on a pooled or new
/// connection (``BackendExchangeIO``), the handler inspects the answer, perhaps again.
struct BackendForwarder: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = MeteredWriter

    let apps: AppTable
    let pool: BackendPool
    let logger: Logger
    let metrics: ConnectorMetrics
    /// The access log: a line per request (``AccessRecord``), unless its app turns it off.
    let accessLogger: Logger

    /// Forwards one request and accounts for it: its access log line and its app's metrics.
    func handle(head: HTTPRequest, iterator: inout Iterator, writer base: NIOAsyncChannelOutboundWriter<HTTPResponsePart>) async {
        let writer = MeteredWriter(base)
        let requestID = head.headerFields[TunnelProtocol.Field.requestID] ?? "-"
        let appName = head.headerFields[TunnelProtocol.Field.app] ?? ""
        var record = AccessRecord(requestID: requestID, method: head.method.rawValue, target: head.path ?? "")
        let entry = self.apps.entry(named: appName)
        await self.handle(head: head, entry: entry, iterator: &iterator, writer: writer, record: &record)
        record.status = writer.meter.status
        record.bytesOut = writer.meter.bytes
        self.metrics.app(entry == nil ? "-" : appName).record(status: record.status, duration: ContinuousClock.now - record.started)
        guard entry?.app.logsAccess ?? true else { return }
        record.keepQuery = entry?.app.accessLogQuery ?? false
        record.set("app", appName)
        if let reason = writer.meter.reason { record.set("error", reason) }
        record.log(to: self.accessLogger)
    }

    private func handle(
        head: HTTPRequest, entry: (app: ConnectorApp, pipeline: SSOPipeline)?, iterator: inout Iterator, writer: Writer, record: inout AccessRecord
    ) async {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(record.requestID)"
        logger[metadataKey: "app"] = "\(head.headerFields[TunnelProtocol.Field.app] ?? "")"
        guard let (app, pipeline) = entry else {
            logger.error("request for an app this connector does not know; is its configuration still arriving?")
            await Self.answer(.badGateway, reason: .unknownApp, head: head, writer: writer)
            return
        }
        let handler: SSOStep?
        switch pipeline {
        case .passthrough:
            handler = nil
        case .handler(let step):
            handler = step
        case .unavailable(let errors):
            logger.error("the app's SSO handler is unavailable; its requests get 502", metadata: ["error": "\(errors.map(\.description).joined(separator: "; "))"])
            await Self.answer(SSOPages.unavailable, reason: .ssoUnavailable, head: head, writer: writer)
            return
        }
        let upgrade = head.headerFields[TunnelProtocol.Field.upgrade]
        // Read the first part now: a request whose body is already complete (GET, HEAD, …) can be sent again.
        var first: HTTPRequestPart?
        if upgrade == nil {
            guard let part = try? await iterator.next() else { return }
            first = part
        }
        let hasBody: Bool
        if case .end = first { hasBody = false } else { hasBody = true }
        let request = BackendHead.make(head, app: app, upgrade: upgrade, hasBody: hasBody)
        // Decoded only when a handler runs: passthrough apps never look at it.
        let identity = handler == nil ? nil : head.headerFields[TunnelProtocol.Field.identity].flatMap(IdentityField.decode)
        if let identity { record.set("user", identity.userPrincipalName) }
        if let handler { record.set("sso", handler.name) }
        let clientBinding = head.headerFields[TunnelProtocol.Field.clientConnection].map { "client \($0)" }

        var exchange = BackendExchange(hasBody: hasBody, upgrading: upgrade != nil, handlerAttempts: handler?.maximumAttempts)
        var action = exchange.start()
        var prepared = SSOStep.Prepared(request: request)
        while true {
            switch action {
            case .prepare(let attempt):
                guard let handler else { preconditionFailure("only a handler prepares") }
                switch await handler.prepare(request, identity: identity, attempt: attempt, exchange: exchange, upgrade: upgrade, logger: logger) {
                case .ready(let ready):
                    prepared = ready
                    action = exchange.prepared()
                case .refused(let page, let reason):
                    await Self.answer(page, reason: reason, head: head, writer: writer)
                    return
                }
            case .send(let fresh):
                let lease = BackendPool.Lease(app: app, affinity: prepared.affinity, clientBinding: clientBinding, fresh: fresh)
                let io = BackendExchangeIO(
                    request: prepared.request, app: app, upgrade: upgrade, inspector: prepared.inspector,
                    // The handler authenticates this request, or the connection it binds to its user (Apache's
                    // `Persistent-Auth: true` then comes on answers to requests that carried no token).
                    connectorAuthenticated: prepared.affinity != nil || BackendHead.handlerAddedAuthorization(prepared.request, to: head),
                    clientBinding: clientBinding, logger: logger
                )
                let outcome: BackendExchangeIO.Outcome
                do {
                    outcome = try await self.pool.withConnection(lease) { connection, reused in
                        await io.run(on: connection, reused: reused, first: first, iterator: &iterator, writer: writer)
                    }
                } catch {
                    let (page, reason) = Self.classify(connectError: error)
                    self.metrics.backendConnectError(app: app.name, reason: reason.rawValue)
                    logger.warning("backend connection failed", metadata: ["backend": "\(app.internalURL.string)", "error": "\(error)"])
                    await Self.answer(page, reason: reason, head: head, writer: writer)
                    return
                }
                switch outcome {
                case .sent(let result):
                    if result == .retryRequested {
                        logger.debug("the SSO handler asked for the request to be sent again", metadata: ["attempt": "\(exchange.attempt + 1)"])
                    }
                    if case .failedBeforeAnswer(false, true) = result, !hasBody {
                        logger.debug("a reused backend connection closed before answering; sending the request again on a new one")
                    }
                    action = exchange.sent(result)
                case .refused(let refusal) where refusal == SSOPages.handlerTimedOut:
                    await Self.answer(.gatewayTimeout, reason: .ssoTimeout, head: head, writer: writer)
                    return
                case .refused(let refusal):
                    logger.warning("the SSO handler refused the backend's response", metadata: ["status": "\(refusal.status)", "reason": "\(refusal.reason)"])
                    await Self.answer(SSOPages.page(for: refusal), reason: .ssoRefusedResponse, head: head, writer: writer)
                    return
                case .unusable(let reason, let detail):
                    logger.warning(
                        "the backend's response cannot be delivered; the user gets 502 and the request is not sent again",
                        metadata: ["reason": "\(reason)", "detail": "\(detail)", "backend": "\(app.internalURL.string)"]
                    )
                    await Self.answer(Self.unusableResponse, reason: reason, head: head, writer: writer)
                    return
                }
            case .fail(let timedOut):
                await Self.answer(timedOut ? .gatewayTimeout : .badGateway, reason: timedOut ? .backendTimeout : .backendClosed, head: head, writer: writer)
                return
            case .finish:
                if handler != nil { record.set("sso_outcome", exchange.attempt > 1 ? "applied-after-\(exchange.attempt)-attempts" : "applied") }
                return
            }
        }
    }

    /// The backend's answer cannot be delivered (a head too large for the tunnel, or no HTTP).
    static let unusableResponse = ErrorPage(
        status: .badGateway,
        title: "Bad gateway",
        detail: "The application answered with a response that cannot be delivered. Contact your administrator."
    )

    /// Maps a connect failure to the page the user sees and a reason code for the relay's log.
    static func classify(connectError error: any Error) -> (ErrorPage, ConnectorErrorReason) {
        if let error = error as? ChannelError, case .connectTimeout = error { return (.gatewayTimeout, .backendConnectTimeout) }
        if let error = error as? NIOConnectionError {
            if error.connectionErrors.contains(where: { ($0.error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false }) {
                return (.gatewayTimeout, .backendConnectTimeout)
            }
            return (.badGateway, error.dnsAError != nil && error.connectionErrors.isEmpty ? .backendDNS : .backendRefused)
        }
        if case BackendError.tlsConfiguration = error { return (.badGateway, .backendTLSConfiguration) }
        return (.badGateway, .backendRefused)
    }

    /// Answers into the tunnel stream with one of Sallyport's pages.
    static func answer(_ page: ErrorPage, reason: ConnectorErrorReason, head: HTTPRequest, writer: Writer) async {
        writer.meter.note(reason: reason.rawValue)
        let requestID = head.headerFields[TunnelProtocol.Field.requestID] ?? "-"
        var (response, body) = page.render(requestID: requestID, allocator: ByteBufferAllocator())
        response.headerFields[TunnelProtocol.Field.error] = reason.rawValue
        try? await writer.write(contentsOf: [.head(response), .body(body), .end(nil)])
    }
}
