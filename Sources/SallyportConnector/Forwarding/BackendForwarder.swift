import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import NIOPosix
import SallyportConfig
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import Synchronization

/// Forwards one tunnelled request to the app's backend and streams the answer back into the tunnel stream.
struct BackendForwarder: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<HTTPResponsePart>

    let apps: AppTable
    let pool: BackendPool
    let logger: Logger

    func handle(head: HTTPRequest, iterator: inout Iterator, writer: Writer) async {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(head.headerFields[TunnelProtocol.Field.requestID] ?? "-")"
        let appName = head.headerFields[TunnelProtocol.Field.app] ?? ""
        logger[metadataKey: "app"] = "\(appName)"
        guard let (app, pipeline) = self.apps.entry(named: appName) else {
            logger.error("request for an app this connector does not know; is its configuration still arriving?")
            await Self.answer(.badGateway, reason: "unknown-app", head: head, writer: writer)
            return
        }
        if case .unavailable(let error) = pipeline {
            logger.error("the app's SSO handler is unavailable; its requests get 502", metadata: ["error": "\(error)"])
            await Self.answer(Self.ssoUnavailable, reason: "sso-unavailable", head: head, writer: writer)
            return
        }
        let upgrade = head.headerFields[TunnelProtocol.Field.upgrade]
        let request = Self.backendRequest(head, app: app, upgrade: upgrade)
        // Decoded only when a handler runs: passthrough apps never look at it.
        let identity: Identity?
        if case .handler = pipeline {
            identity = head.headerFields[TunnelProtocol.Field.identity].flatMap(IdentityField.decode)
        } else {
            identity = nil
        }

        // Read the first part now: a request whose body is already complete (GET, HEAD, …) can be sent
        // again, on a fresh connection when a reused one turns out closed, or when the SSO handler asks.
        var first: HTTPRequestPart?
        if upgrade == nil {
            guard let part = try? await iterator.next() else { return }
            first = part
        }
        let bodyless: Bool
        if case .end = first { bodyless = true } else { bodyless = false }

        var handlerAttempt = 1
        var resentOnFreshConnection = false
        while true {
            var outgoing = request
            var affinity: String?
            var inspector: ResponseInspector?
            if case .handler(let handler, let name, let maximumAttempts) = pipeline {
                var pluginRequest = PluginRequest.make(request)
                switch await handler.prepare(&pluginRequest, identity: identity, attempt: handlerAttempt) {
                case .refuse(let refusal):
                    logger.warning("the SSO handler refused the request", metadata: ["handler": "\(name)", "status": "\(refusal.status)", "reason": "\(refusal.reason)"])
                    await Self.answer(Self.page(for: refusal), reason: "sso-refused", head: head, writer: writer)
                    return
                case .proceed:
                    guard let changed = PluginRequest.apply(pluginRequest, to: request) else {
                        logger.error("the SSO handler produced a request HTTP cannot carry (bad method, path or header)", metadata: ["handler": "\(name)"])
                        await Self.answer(Self.ssoUnavailable, reason: "sso-bad-request", head: head, writer: writer)
                        return
                    }
                    outgoing = changed
                    if let upgrade {
                        outgoing.headerFields[.connection] = "Upgrade"
                        outgoing.headerFields[.upgrade] = upgrade
                    }
                    affinity = pluginRequest.connectionAffinity
                }
                let attempt = handlerAttempt
                let sent = pluginRequest
                let retryPossible = bodyless && upgrade == nil && handlerAttempt < maximumAttempts
                inspector = { response in
                    let decision = await handler.inspect(PluginRequest.response(response), request: sent, identity: identity, attempt: attempt)
                    return decision == .retry && !retryPossible ? .deliver : decision
                }
            }

            let connection: BackendConnection
            let reused: Bool
            do {
                (connection, reused) = try await self.pool.lease(for: app, affinity: affinity, fresh: resentOnFreshConnection)
            } catch {
                let (page, reason) = Self.classify(connectError: error)
                logger.warning("backend connection failed", metadata: ["backend": "\(app.internalURL.string)", "error": "\(error)"])
                await Self.answer(page, reason: reason, head: head, writer: writer)
                return
            }
            let outcome = await self.exchange(
                outgoing, first: first, iterator: &iterator, writer: writer, connection: connection, app: app, upgrade: upgrade,
                inspector: inspector, connectorAuthenticated: Self.handlerAddedAuthorization(outgoing, to: head), logger: logger
            )
            switch outcome {
            case .done:
                return
            case .retryRequested:
                logger.debug("the SSO handler asked for the request to be sent again", metadata: ["attempt": "\(handlerAttempt + 1)"])
                handlerAttempt += 1
                // The next attempt may again meet a pooled connection the backend has just closed.
                resentOnFreshConnection = false
            case .refused(let refusal):
                logger.warning("the SSO handler refused the backend's response", metadata: ["status": "\(refusal.status)", "reason": "\(refusal.reason)"])
                await Self.answer(Self.page(for: refusal), reason: "sso-refused-response", head: head, writer: writer)
                return
            case .failedBeforeAnswer(let timedOut):
                if !resentOnFreshConnection, reused, bodyless, !timedOut {
                    logger.debug("a reused backend connection closed before answering; sending the request again on a new one")
                    resentOnFreshConnection = true
                    continue
                }
                await Self.answer(timedOut ? .gatewayTimeout : .badGateway, reason: timedOut ? "backend-timeout" : "backend-closed", head: head, writer: writer)
                return
            }
        }
    }

    /// Whether the SSO handler put an `Authorization` on the request that the user did not send: then the
    /// backend's answer to it (a Negotiate reply token, `Persistent-Auth`) is the connector's, not the user's.
    static func handlerAddedAuthorization(_ outgoing: HTTPRequest, to original: HTTPRequest) -> Bool {
        guard let sent = outgoing.headerFields[.authorization] else { return false }
        return sent != original.headerFields[.authorization]
    }

    /// Drops the backend's reply to the connector's own authentication from a response for the user.
    static func removeConnectorAuthentication(_ fields: inout HTTPFields) {
        let kept = fields[values: .wwwAuthenticate].filter { !$0.lowercased().hasPrefix("negotiate") }
        fields[values: .wwwAuthenticate] = kept
        fields[values: HTTPField.Name("Persistent-Auth")!] = []
    }

    /// Asks the SSO handler about a response head; `.retry` only when a retry is possible.
    typealias ResponseInspector = @Sendable (HTTPResponse) async -> ResponseDecision

    /// The app's SSO handler cannot run on this connector.
    static let ssoUnavailable = ErrorPage(
        status: .badGateway,
        title: "Sign-in unavailable",
        detail: "Single sign-on to this application is not working right now. Contact your administrator."
    )

    /// The page for a handler's refusal: its status (3xx for redirects, 4xx, 5xx; anything else is 502),
    /// message and extra fields (those HTTP or Sallyport reserve are dropped).
    static func page(for refusal: Refusal) -> ErrorPage {
        let status = (300...599).contains(refusal.status) ? HTTPResponse.Status(code: refusal.status) : .badGateway
        var fields = HTTPFields()
        for field in refusal.headers {
            guard let name = HTTPField.Name(field.name), HTTPField.isValidValue(field.value) else { continue }
            fields.append(HTTPField(name: name, value: field.value))
        }
        HopByHop.strip(&fields)
        TunnelProtocol.removeReserved(&fields)
        for name in [HTTPField.Name.contentLength, .contentType, .setCookie] { fields[values: name] = [] }
        return ErrorPage(status: status, title: status.reasonPhrase.isEmpty ? "Refused" : status.reasonPhrase, detail: refusal.message, headerFields: fields)
    }

    enum ExchangeOutcome {
        /// The user got an answer (complete, truncated or upgraded).
        case done
        /// Nothing reached the user yet; the caller answers or retries.
        case failedBeforeAnswer(timedOut: Bool)
        /// The SSO handler asked for the request to be sent again; the response was discarded.
        case retryRequested
        /// The SSO handler refused the response; it was discarded and the connection closed.
        case refused(Refusal)
    }

    /// One request/response exchange on one backend connection.
    private func exchange(
        _ request: HTTPRequest,
        first: HTTPRequestPart?,
        iterator: inout Iterator,
        writer: Writer,
        connection: BackendConnection,
        app: AppConfig,
        upgrade: String?,
        inspector: ResponseInspector?,
        connectorAuthenticated: Bool = false,
        logger: Logger
    ) async -> ExchangeOutcome {
        connection.requests += 1
        let timedOut = Flag()
        let headWritten = Flag()
        let channel = connection.channel
        // The response timeout runs from the end of the request (a long upload is not a slow backend)
        // to the response head; silence while the body streams is the idle timeout's business.
        let timer = ResponseTimer(timeout: app.timeouts.response, channel: channel, timedOut: timedOut)
        var reusable = false
        defer {
            timer.answered()
            if reusable { self.pool.release(connection) } else { connection.close() }
        }
        do {
            try await connection.writer.write(.head(request))
            let result = try await withThrowingTaskGroup(of: ResponseResult.self) { group in
                group.addTask {
                    try await Self.pumpResponse(
                        connection: connection, to: writer, upgrade: upgrade, timer: timer, headWritten: headWritten, inspector: inspector,
                        connectorAuthenticated: connectorAuthenticated
                    )
                }
                if upgrade != nil { timer.arm() }
                let requestResult = await Self.pumpRequest(first: first, from: &iterator, to: connection.writer, upgrading: upgrade != nil)
                if requestResult == .complete { timer.arm() }
                // The relay reset the stream (user gone): end the backend exchange too.
                if requestResult == .aborted { connection.close() }
                let response = try await group.next()!
                return (requestResult, response)
            }
            switch result.1 {
            case .complete(let keepAlive):
                reusable = keepAlive && result.0 == .complete && upgrade == nil
            case .upgradeEnded:
                break
            case .retryRequested(let keepAlive):
                reusable = keepAlive && result.0 == .complete
                return .retryRequested
            case .refused(let refusal):
                return .refused(refusal)
            case .noResponse:
                logger.warning("backend gave no response", metadata: ["timedOut": "\(timedOut.isSet)"])
                return .failedBeforeAnswer(timedOut: timedOut.isSet)
            case .truncated:
                logger.warning("backend response ended early")
            }
        } catch {
            guard headWritten.isSet else {
                // Failed before the backend answered (TLS handshake, reset while sending).
                logger.warning("backend exchange failed", metadata: ["backend": "\(app.internalURL.string)", "error": "\(error)"])
                return .failedBeforeAnswer(timedOut: timedOut.isSet)
            }
            logger.debug("exchange aborted", metadata: ["error": "\(error)"])
        }
        return .done
    }

    enum RequestResult: Equatable { case complete, aborted }

    enum ResponseResult {
        case complete(keepAlive: Bool)
        case upgradeEnded
        case noResponse
        case truncated
        /// The inspector wants the request again; the body was read and dropped.
        case retryRequested(keepAlive: Bool)
        /// The inspector refused the response; nothing was read further.
        case refused(Refusal)
    }

    /// Copies the request body to the backend, starting with `first` when the caller already read it.
    static func pumpRequest(first: HTTPRequestPart?, from iterator: inout Iterator, to backend: BackendConnection.Writer, upgrading: Bool) async -> RequestResult {
        var pending = first
        do {
            while true {
                let part: HTTPRequestPart
                if let next = pending {
                    part = next
                    pending = nil
                } else if let next = try await iterator.next() {
                    part = next
                } else {
                    break
                }
                switch part {
                case .head:
                    return .aborted
                case .body(let buffer):
                    try await backend.write(.body(buffer))
                case .end(let trailers):
                    if upgrading { continue }
                    try await backend.write(.end(trailers))
                    return .complete
                }
            }
        } catch {}
        return .aborted
    }

    static func pumpResponse(
        connection: BackendConnection,
        to writer: Writer,
        upgrade: String?,
        timer: ResponseTimer,
        headWritten: Flag,
        inspector: ResponseInspector?,
        connectorAuthenticated: Bool = false
    ) async throws -> ResponseResult {
        var headSent = false
        var discarding = false
        var upgraded = false
        var keepAlive = true
        do {
            while let part = try await connection.iterator.next() {
                switch part {
                case .head(var response):
                    if let upgrade, response.status == .switchingProtocols {
                        timer.answered()
                        try await connection.switchToRawBytes()
                        HopByHop.strip(&response.headerFields)
                        response.status = .ok
                        response.headerFields[TunnelProtocol.Field.upgraded] = upgrade
                        headWritten.set()
                        try await writer.write(.head(response))
                        headSent = true
                        upgraded = true
                        continue
                    }
                    if response.status.kind == .informational { continue }
                    timer.answered()
                    keepAlive = !HopByHop.connectionTokens(response.headerFields).contains("close")
                    switch await inspector?(response) ?? .deliver {
                    case .deliver:
                        break
                    case .retry:
                        // Read this answer to its end (the connection may be reused), but never show it.
                        discarding = true
                        continue
                    case .refuse(let refusal):
                        // Never reuse a connection whose answer was not trusted; this also ends an upload.
                        connection.close()
                        return .refused(refusal)
                    }
                    HopByHop.strip(&response.headerFields)
                    TunnelProtocol.removeReserved(&response.headerFields)
                    if connectorAuthenticated { Self.removeConnectorAuthentication(&response.headerFields) }
                    headWritten.set()
                    try await writer.write(.head(response))
                    headSent = true
                case .body(let buffer):
                    if discarding { continue }
                    guard headSent else { return .noResponse }
                    try await writer.write(.body(buffer))
                case .end(let trailers):
                    if upgraded { continue }
                    if discarding { return .retryRequested(keepAlive: keepAlive) }
                    guard headSent else { return .noResponse }
                    try await writer.write(.end(trailers))
                    return .complete(keepAlive: keepAlive)
                }
            }
        } catch where !headSent {
            return .noResponse
        }
        if upgraded {
            // The backend closed the upgraded connection: end the stream after the bytes already sent.
            try? await writer.write(.end(nil))
            return .upgradeEnded
        }
        return headSent ? .truncated : .noResponse
    }

    /// The request the backend sees: internal host and path, forwarding headers from tunnel metadata,
    /// no tunnel-private fields.
    static func backendRequest(_ head: HTTPRequest, app: AppConfig, upgrade: String?) -> HTTPRequest {
        var request = head
        let clientAddress = head.headerFields[TunnelProtocol.Field.clientAddress]
        TunnelProtocol.removeReserved(&request.headerFields)
        request.scheme = app.internalURL.scheme
        request.path = self.mapPath(head.path ?? "/", from: app.externalURL.pathPrefix, to: app.internalURL.path)
        if !app.preserveHost { request.authority = self.internalAuthority(app.internalURL) }
        if let clientAddress { request.headerFields[HTTPField.Name("X-Forwarded-For")!] = clientAddress }
        request.headerFields[HTTPField.Name("X-Forwarded-Proto")!] = "https"
        if let host = head.authority { request.headerFields[HTTPField.Name("X-Forwarded-Host")!] = host }
        if let upgrade {
            request.headerFields[.connection] = "Upgrade"
            request.headerFields[.upgrade] = upgrade
        }
        return request
    }

    /// Maps an external request path (with query) onto the internal path prefix.
    static func mapPath(_ path: String, from externalPrefix: String, to internalPrefix: String) -> String {
        let parts = path.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let pathPart = parts[0]
        let query = parts.count > 1 ? "?" + parts[1] : ""
        let mapped: String
        if pathPart.hasPrefix(externalPrefix) {
            mapped = internalPrefix + pathPart.dropFirst(externalPrefix.count)
        } else if pathPart + "/" == externalPrefix {
            mapped = internalPrefix
        } else {
            mapped = String(pathPart)
        }
        return mapped + query
    }

    static func internalAuthority(_ url: InternalURL) -> String {
        let host = url.host.contains(":") ? "[\(url.host)]" : url.host
        let defaultPort = url.scheme == "https" ? 443 : 80
        return url.port == defaultPort ? host : "\(host):\(url.port)"
    }

    /// Maps a connect failure to the page the user sees and a reason code for the relay's log.
    static func classify(connectError error: any Error) -> (ErrorPage, String) {
        if let error = error as? ChannelError, case .connectTimeout = error { return (.gatewayTimeout, "backend-connect-timeout") }
        if let error = error as? NIOConnectionError {
            if error.connectionErrors.contains(where: { ($0.error as? ChannelError).map { if case .connectTimeout = $0 { true } else { false } } ?? false }) {
                return (.gatewayTimeout, "backend-connect-timeout")
            }
            return (.badGateway, error.dnsAError != nil && error.connectionErrors.isEmpty ? "backend-dns" : "backend-refused")
        }
        if case BackendError.tlsConfiguration = error { return (.badGateway, "backend-tls-configuration") }
        return (.badGateway, "backend-refused")
    }

    /// Answers into the tunnel stream with one of Sallyport's pages.
    static func answer(_ page: ErrorPage, reason: String, head: HTTPRequest, writer: Writer) async {
        let requestID = head.headerFields[TunnelProtocol.Field.requestID] ?? "-"
        var (response, body) = page.render(requestID: requestID, allocator: ByteBufferAllocator())
        response.headerFields[TunnelProtocol.Field.error] = reason
        try? await writer.write(contentsOf: [.head(response), .body(body), .end(nil)])
    }
}

/// A one-way flag set from an event loop and read by the request's task.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { self.value.store(true, ordering: .releasing) }
    var isSet: Bool { self.value.load(ordering: .acquiring) }
}

/// The response timeout of one exchange: armed once the request is sent, disarmed by the response head.
/// A head that comes before the request ends (an early 413, say) disarms it for good.
final class ResponseTimer: Sendable {
    private enum State {
        case waiting
        case armed(Scheduled<Void>)
        case answered
    }

    private let state = Mutex(State.waiting)
    private let timeout: Duration
    private let channel: any Channel
    private let timedOut: Flag

    init(timeout: Duration, channel: any Channel, timedOut: Flag) {
        self.timeout = timeout
        self.channel = channel
        self.timedOut = timedOut
    }

    func arm() {
        self.state.withLock { state in
            guard case .waiting = state else { return }
            let (channel, timedOut) = (self.channel, self.timedOut)
            state = .armed(channel.eventLoop.scheduleTask(in: TimeAmount(self.timeout)) {
                timedOut.set()
                channel.close(promise: nil)
            })
        }
    }

    func answered() {
        let scheduled = self.state.withLock { state -> Scheduled<Void>? in
            defer { state = .answered }
            if case .armed(let scheduled) = state { return scheduled }
            return nil
        }
        scheduled?.cancel()
    }
}
