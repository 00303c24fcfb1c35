import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

/// Carries one tunnelled request to its backend: the last handler of a request stream's pipeline. It is thin:
/// ``BackendExchange`` says whether the SSO handler prepares, whether to send (again) and on what,
/// ``BackendAttempt`` keeps one send's state on one backend connection, and this handler does what they say,
/// gluing the stream to the connection (``BackendLink``) with back-pressure through writability both ways.
///
/// A request that needs no waiting (passthrough or the header handler, an idle pooled connection) never leaves
/// the event loop; a handler call that must wait (a plugin, a KCD ticket) runs in a task and comes back here, and
/// a new connection is a future on this loop.
final class StreamExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Hands the relay's control stream (its head already read) to the control session.
    typealias ControlHandover = (_ channel: any Channel) throws -> Void

    private struct Request {
        let head: HTTPRequest
        let app: ConnectorApp
        let step: SSOStep?
        let upgrade: String?
        var logger: Logger
        var record: AccessRecord
        var exchange: BackendExchange?
        /// The backend's head (internal host and path, forwarding fields).
        var request: HTTPRequest?
        let identity: Identity?
        let clientBinding: String?
        var prepared: SSOStep.Prepared?
        /// What the next send carries: the handler's request, or the backend's head as it is.
        var sending: SSOStep.Prepared? { self.prepared ?? self.request.map { SSOStep.Prepared(request: $0) } }
        /// Request parts read and not yet written to a backend connection.
        var held: [HTTPRequestPart] = []
        /// The request's end came from the relay.
        var ended = false
        var attempt: BackendAttempt?
        var connection: BackendConnection?
        var deadline: Scheduled<Void>?
        /// Backend events that came while the handler looked at the response head.
        var parked: [BackendEvent] = []
        var status = 0
        var bytesOut = 0
        var reason: String?
    }

    private let forwarder: BackendForwarder
    private let handover: ControlHandover
    private var context: ChannelHandlerContext?
    private var request: Request?
    /// Bumped for every attempt: events of an older connection or task are ignored.
    private var serial: UInt64 = 0
    private var reads = ReadGate()
    private var backendWritable = true
    private var lastEnd: EventLoopFuture<Void>?
    private var done = false

    init(forwarder: BackendForwarder, handover: @escaping ControlHandover) {
        self.forwarder = forwarder
        self.handover = handover
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    // MARK: The tunnel's side

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        guard self.request != nil else {
            if case .head(let head) = part, !self.done { self.begin(head, context: context) }
            return
        }
        switch part {
        case .head:
            break  // a second head on one stream: the relay never sends one
        case .body:
            self.requestPart(part, context: context)
        case .end:
            // After a protocol switch the relay's HTTP end means nothing; trailers never cross.
            if self.request!.upgrade == nil { self.requestPart(.end(nil), context: context) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.request?.connection?.flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.updateBackendReading()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let request = self.request {
            if let attempt = request.attempt, attempt.ending == .complete, attempt.requestComplete {
                // Closed as the answer's end went out (HTTP/2 closes a stream both sides ended): nothing was cut.
                self.settleIfDone(context: context)
            } else if request.connection != nil {
                // The relay reset the stream (the user is gone) or the tunnel closed: end the backend exchange too.
                self.abandon()
            }
            self.finish(context: context)
        }
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if self.reads.read(open: self.mayRead) { context.read() }
    }

    private var mayRead: Bool {
        guard let request else { return !self.done }
        if request.ended { return false }
        // The first part is read at once (does the request have a body?); the rest once a connection takes it.
        if request.exchange == nil { return true }
        return request.connection != nil && self.backendWritable
    }

    private func readIfWanted(context: ChannelHandlerContext) {
        if self.reads.reopen(open: self.mayRead) { context.read() }
    }

    private func begin(_ head: HTTPRequest, context: ChannelHandlerContext) {
        if head.path == TunnelProtocol.controlPath {
            do {
                self.done = true
                try self.handover(context.channel)
                context.pipeline.syncOperations.removeHandler(self, promise: nil)
            } catch {
                self.forwarder.logger.error("could not start the control session", metadata: ["error": "\(error)"])
                context.close(promise: nil)
            }
            return
        }
        var logger = self.forwarder.logger
        let requestID = head.headerFields[TunnelProtocol.Field.requestID] ?? "-"
        let appName = head.headerFields[TunnelProtocol.Field.app] ?? ""
        logger[metadataKey: "request.id"] = "\(requestID)"
        logger[metadataKey: "app"] = "\(appName)"
        var record = AccessRecord(requestID: requestID, method: head.method.rawValue, target: head.path ?? "")
        record.set("app", appName)
        guard let (app, pipeline) = self.forwarder.apps.entry(named: appName) else {
            logger.error("request for an app this connector does not know; is its configuration still arriving?")
            self.answerAlone(.badGateway, reason: .unknownApp, record: record, context: context)
            return
        }
        record.keepQuery = app.accessLogQuery ?? false
        let step: SSOStep?
        switch pipeline {
        case .passthrough:
            step = nil
        case .handler(let handler):
            step = handler
        case .unavailable(let errors):
            logger.error("the app's SSO handler is unavailable; its requests get 502", metadata: ["error": "\(errors.map(\.description).joined(separator: "; "))"])
            self.answerAlone(SSOPages.unavailable, reason: .ssoUnavailable, record: record, app: app, context: context)
            return
        }
        // Decoded only when a handler runs: passthrough apps never look at it.
        let identity = step == nil ? nil : head.headerFields[TunnelProtocol.Field.identity].flatMap(IdentityField.decode)
        if let identity { record.set("user", identity.userPrincipalName) }
        if let step { record.set("sso", step.name) }
        let upgrade = head.headerFields[TunnelProtocol.Field.upgrade]
        self.request = Request(
            head: head, app: app, step: step, upgrade: upgrade, logger: logger, record: record, identity: identity,
            clientBinding: head.headerFields[TunnelProtocol.Field.clientConnection].map { "client \($0)" }
        )
        // A protocol switch has no body to wait for; otherwise the first part says whether there is one (a
        // request whose body is complete, GET, HEAD, …, can be sent again).
        if upgrade != nil { self.start(hasBody: true, context: context) }
    }

    private func requestPart(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        guard var request = self.request else { return }
        if case .end = part { request.ended = true }
        if request.exchange == nil {
            request.held.append(part)
            self.request = request
            if case .end = part { self.start(hasBody: false, context: context) } else { self.start(hasBody: true, context: context) }
            return
        }
        guard let connection = request.connection, request.attempt?.requestAborted == false else {
            request.held.append(part)
            self.request = request
            return
        }
        self.request = request
        connection.write(part)
        if case .end = part { self.requestEnded(context: context) }
        self.settleIfDone(context: context)
    }

    // MARK: The exchange

    private func start(hasBody: Bool, context: ChannelHandlerContext) {
        guard var request = self.request else { return }
        request.request = BackendHead.make(request.head, app: request.app, upgrade: request.upgrade, hasBody: hasBody)
        let exchange = BackendExchange(hasBody: hasBody, upgrading: request.upgrade != nil, handlerAttempts: request.step?.maximumAttempts)
        request.exchange = exchange
        self.request = request
        self.perform(exchange.start(), context: context)
    }

    private func perform(_ action: BackendExchange.Action, context: ChannelHandlerContext) {
        guard let request = self.request, let exchange = request.exchange, let backendRequest = request.request, let sending = request.sending else { return }
        switch action {
        case .prepare(let attempt):
            guard let step = request.step else { preconditionFailure("only a handler prepares") }
            let (identity, upgrade, logger) = (request.identity, request.upgrade, request.logger)
            if let preparation = step.prepareImmediately(backendRequest, identity: identity, attempt: attempt, exchange: exchange, upgrade: upgrade, logger: logger) {
                self.prepared(preparation, context: context)
            } else {
                self.later(context: context) {
                    await step.prepare(backendRequest, identity: identity, attempt: attempt, exchange: exchange, upgrade: upgrade, logger: logger)
                } then: { handler, preparation, context in
                    handler.prepared(preparation, context: context)
                }
            }
        case .send(let fresh):
            let lease = BackendPool.Lease(app: request.app, affinity: sending.affinity, clientBinding: request.clientBinding, fresh: fresh)
            if let connection = self.forwarder.pool.lendIdle(lease, near: context.eventLoop) {
                self.send(on: connection, reused: true, context: context)
                return
            }
            self.serial &+= 1
            let serial = self.serial
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            self.forwarder.pool.connect(lease, on: context.eventLoop).hop(to: context.eventLoop).whenComplete { result in
                let handler = handler.value
                guard handler.serial == serial, let context = handler.context, handler.request != nil else {
                    if case .success(let connection) = result { connection.close() }
                    return
                }
                switch result {
                case .success(let connection):
                    handler.send(on: connection, reused: false, context: context)
                case .failure(let error):
                    let (page, reason) = BackendForwarder.classify(connectError: error)
                    let app = handler.request!.app
                    handler.forwarder.metrics.backendConnectError(app: app.name, reason: reason.rawValue)
                    handler.request!.logger.warning(
                        "backend connection failed", metadata: ["backend": "\(app.internalURL.string)", "error": "\(error)"]
                    )
                    handler.answer(page, reason: reason, context: context)
                }
            }
        case .fail(let timedOut):
            self.answer(timedOut ? .gatewayTimeout : .badGateway, reason: timedOut ? .backendTimeout : .backendClosed, context: context)
        case .finish:
            if request.step != nil {
                self.request?.record.set("sso_outcome", exchange.attempt > 1 ? "applied-after-\(exchange.attempt)-attempts" : "applied")
            }
            self.finish(context: context)
        }
    }

    private func prepared(_ preparation: SSOStep.Preparation, context: ChannelHandlerContext) {
        switch preparation {
        case .ready(let ready):
            self.request?.prepared = ready
            guard let exchange = self.request?.exchange else { return }
            self.perform(exchange.prepared(), context: context)
        case .refused(let page, let reason):
            self.answer(page, reason: reason, context: context)
        }
    }

    /// Runs `work` off the event loop (a handler call that waits), then `then` back on it, unless the request ended
    /// meanwhile.
    private func later<Value: Sendable>(
        context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> Value,
        then: @escaping (StreamExchangeHandler, Value, ChannelHandlerContext) -> Void
    ) {
        let serial = self.serial
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let then = NIOLoopBound(then, eventLoop: context.eventLoop)
        OffLoop.run(work, thenOn: context.eventLoop) { value in
            let handler = handler.value
            guard handler.serial == serial, handler.request != nil, let context = handler.context else { return }
            then.value(handler, value, context)
        }
    }

    // MARK: One send

    private func send(on connection: BackendConnection, reused: Bool, context: ChannelHandlerContext) {
        guard var request = self.request, let prepared = request.sending else { return }
        self.serial &+= 1
        let serial = self.serial
        let attempt = BackendAttempt(
            upgrade: request.upgrade, reused: reused, inspects: prepared.inspector != nil,
            // The handler authenticates this request, or the connection it binds to its user (Apache's
            // `Persistent-Auth: true` then comes on answers to requests that carried no token).
            connectorAuthenticated: prepared.affinity != nil || BackendHead.handlerAddedAuthorization(prepared.request, to: request.head)
        )
        request.attempt = attempt
        request.connection = connection
        request.parked = []
        // A request without a body goes again as it went; one with a body streams once (held parts go now).
        let parts = request.held.isEmpty && request.exchange?.hasBody == false ? [HTTPRequestPart.end(nil)] : request.held
        request.held = []
        self.request = request
        let sink = Self.sink(loop: context.eventLoop, handler: NIOLoopBound(self, eventLoop: context.eventLoop), serial: serial)
        let writable = context.channel.isWritable
        connection.withLink { link in
            link.attach(sink)
            link.setReadable(writable)
        }
        self.backendWritable = connection.channel.isWritable
        // The response timeout runs from the end of the request (a long upload is not a slow backend) to the
        // response head; silence while the body streams is the idle timeout's business.
        connection.beginExchange(idleTimeout: request.app.timeouts.idle)
        connection.write(.head(prepared.request))
        for part in parts { connection.write(part) }
        connection.flush()
        // A protocol switch waits for its answer from the moment its head is out.
        if request.upgrade != nil || parts.contains(where: { if case .end = $0 { true } else { false } }) { self.requestEnded(context: context) }
        self.readIfWanted(context: context)
    }

    private static func sink(loop: any EventLoop, handler: NIOLoopBound<StreamExchangeHandler>, serial: UInt64) -> @Sendable (BackendEvent) -> Void {
        { event in loop.executeNowOrLater { handler.value.backendEvent(event, serial: serial) } }
    }

    private func requestEnded(context: ChannelHandlerContext) {
        guard self.request?.attempt?.requestEnded() == true, let timeout = self.request?.app.timeouts.response else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let serial = self.serial
        self.request?.deadline = context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            let handler = handler.value
            guard handler.serial == serial, handler.request?.attempt?.deadlinePassed() == true else { return }
            handler.request?.connection?.close()
        }
    }

    fileprivate func backendEvent(_ event: BackendEvent, serial: UInt64) {
        guard serial == self.serial, let context = self.context, let attempt = self.request?.attempt else { return }
        if attempt.phase == .inspecting {
            // The handler is looking at the head: the rest waits for its decision.
            self.request?.parked.append(event)
            return
        }
        switch event {
        case .part(.head(let response)):
            self.responseHead(response, context: context)
        case .part(.body(let buffer)):
            guard self.request!.attempt!.responseBody() else {
                if self.request!.attempt!.phase == .ended { self.attemptEnded(context: context) }
                return
            }
            self.request!.bytesOut += buffer.readableBytes
            context.write(self.wrapOutboundOut(.body(buffer)), promise: nil)
        case .part(.end(let trailers)):
            switch self.request!.attempt!.responseEnd(trailers) {
            case .deliver(let trailers):
                self.writeEnd(trailers, context: context)
                self.attemptEnded(context: context)
            case .end:
                self.attemptEnded(context: context)
            case .ignore:
                break
            }
        case .readComplete:
            context.flush()
        case .writable(let writable):
            self.backendWritable = writable
            if writable { self.readIfWanted(context: context) }
        case .failed(let error):
            self.connectionEnded(error: error, context: context)
            self.request?.connection?.close()
        case .closed:
            self.connectionEnded(error: nil, context: context)
        }
    }

    private func responseHead(_ response: HTTPResponse, context: ChannelHandlerContext) {
        guard var request = self.request, var attempt = request.attempt else { return }
        let action = attempt.responseHead(response)
        request.attempt = attempt
        if attempt.progress.answer != .waiting {
            request.deadline?.cancel()
            request.deadline = nil
        }
        self.request = request
        self.headAction(action, context: context)
    }

    private func headAction(_ action: BackendAttempt.HeadAction, context: ChannelHandlerContext) {
        switch action {
        case .ignore:
            break
        case .inspect(let response):
            guard let inspector = self.request?.prepared?.inspector else { return }
            self.request?.connection?.withLink { $0.setReadable(false) }
            if let (decision, head) = inspector.inspectImmediately(response) {
                self.inspected(decision, head, context: context)
            } else {
                self.later(context: context) { await inspector.inspect(response) } then: { handler, inspected, context in
                    handler.inspected(inspected.0, inspected.1, context: context)
                }
            }
        case .deliver(let response):
            self.writeHead(response, context: context)
        case .upgrade(let response):
            self.request?.connection?.switchToRawBytes()
            self.writeHead(response, context: context)
            context.flush()
        case .end:
            self.attemptEnded(context: context)
        }
    }

    private func inspected(_ decision: ResponseDecision, _ head: HTTPResponse, context: ChannelHandlerContext) {
        guard var request = self.request, var attempt = request.attempt else { return }
        let serial = self.serial
        let action = attempt.inspected(decision, head)
        request.attempt = attempt
        let parked = request.parked
        request.parked = []
        self.request = request
        self.headAction(action, context: context)
        self.updateBackendReading()
        for event in parked { self.backendEvent(event, serial: serial) }
    }

    private func writeHead(_ response: HTTPResponse, context: ChannelHandlerContext) {
        if response.status.kind != .informational { self.request?.status = response.status.code }
        context.write(self.wrapOutboundOut(.head(response)), promise: nil)
    }

    private func writeEnd(_ trailers: HTTPFields?, context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: promise)
        self.lastEnd = promise.futureResult
    }

    private func connectionEnded(error: (any Error)?, context: ChannelHandlerContext) {
        guard var request = self.request, var attempt = request.attempt else { return }
        guard attempt.connectionEnded(error: error) != nil else { return }
        request.attempt = attempt
        self.request = request
        switch attempt.ending {
        case .truncated?:
            if let error { request.logger.debug("exchange aborted", metadata: ["error": "\(error)"]) }
            self.noteIncomplete(error: error)
        case .noResponse?:
            var metadata: Logger.Metadata = ["timedOut": "\(attempt.progress.answer == .timedOut)", "backend": "\(request.app.internalURL.string)"]
            if let error { metadata["error"] = "\(error)" }
            request.logger.warning("backend gave no response", metadata: metadata)
        case .upgradeEnded?:
            // The backend closed the upgraded connection: end the stream after the bytes already sent.
            self.writeEnd(nil, context: context)
        default:
            break
        }
        self.attemptEnded(context: context)
    }

    /// A response whose status went out but whose body did not come whole: its access log line says why.
    private func noteIncomplete(error: (any Error)?) {
        guard let request = self.request, let connection = request.connection else { return }
        let silent = connection.closedForSilence
        let reason = silent ? "backend-idle-timeout" : "backend-response-incomplete"
        self.request?.reason = reason
        var metadata: Logger.Metadata = ["reason": "\(reason)", "backend": "\(request.app.internalURL.string)"]
        if silent { metadata["idleTimeout"] = "\(request.app.timeouts.idle)" }
        if let error { metadata["error"] = "\(error)" }
        request.logger.warning("backend response ended early", metadata: metadata)
    }

    /// The attempt has ended: once the request is through too, the connection goes back, and the exchange says
    /// what follows.
    private func attemptEnded(context: ChannelHandlerContext) {
        guard let request = self.request, let attempt = request.attempt, let ending = attempt.ending else { return }
        request.deadline?.cancel()
        switch ending {
        case .complete, .retryRequested:
            // Wait for the rest of the request (an answer that came before the upload ended), then settle.
            self.settleIfDone(context: context)
        case .refused(let refusal):
            self.release(close: true)
            if refusal == SSOPages.handlerTimedOut {
                self.answer(.gatewayTimeout, reason: .ssoTimeout, context: context)
            } else {
                request.logger.warning("the SSO handler refused the backend's response", metadata: ["status": "\(refusal.status)", "reason": "\(refusal.reason)"])
                self.answer(SSOPages.page(for: refusal), reason: .ssoRefusedResponse, context: context)
            }
        case .unusable(let reason, let detail):
            self.release(close: true)
            request.logger.warning(
                "the backend's response cannot be delivered; the user gets 502 and the request is not sent again",
                metadata: ["reason": "\(reason)", "detail": "\(detail)", "backend": "\(request.app.internalURL.string)"]
            )
            self.answer(BackendForwarder.unusableResponse, reason: reason, context: context)
        case .noResponse, .truncated, .upgradeEnded:
            self.release(close: true)
            self.next(context: context)
        }
    }

    /// A complete answer whose request is through (or given up) gives its connection back and moves on.
    private func settleIfDone(context: ChannelHandlerContext) {
        guard let request = self.request, let attempt = request.attempt, attempt.ending == .complete || attempt.ending == .retryRequested,
            attempt.requestComplete || request.ended || attempt.requestAborted
        else { return }
        self.release(close: !attempt.connectionReusable)
        self.next(context: context)
    }

    private func next(context: ChannelHandlerContext) {
        guard var request = self.request, let attempt = request.attempt, let outcome = attempt.outcome, var exchange = request.exchange else { return }
        if outcome == .retryRequested {
            request.logger.debug("the SSO handler asked for the request to be sent again", metadata: ["attempt": "\(exchange.attempt + 1)"])
        }
        if case .failedBeforeAnswer(false, true) = outcome, !exchange.hasBody {
            request.logger.debug("a reused backend connection closed before answering; sending the request again on a new one")
        }
        let action = exchange.sent(outcome)
        request.exchange = exchange
        request.attempt = nil
        self.request = request
        self.perform(action, context: context)
    }

    /// Gives the current connection back to the pool, or closes it.
    private func release(close: Bool) {
        guard var request = self.request, let connection = request.connection, let attempt = request.attempt else { return }
        self.serial &+= 1
        request.connection = nil
        self.request = request
        self.backendWritable = true
        guard !close else {
            self.forwarder.pool.giveBack(connection, .close)
            return
        }
        self.forwarder.pool.giveBack(connection, self.returnAfterCleanExchange(connectorAuthenticated: attempt.connectorAuthenticated))
    }

    /// The relay gave up: the backend exchange ends too, and its connection is not reused.
    private func abandon() {
        self.request?.attempt?.requestAbandoned()
        self.release(close: true)
    }

    /// A connection the user authenticated with NTLM or Negotiate is theirs alone (bound to their client
    /// connection); any other goes back as it came.
    private func returnAfterCleanExchange(connectorAuthenticated: Bool) -> BackendPool.Return {
        guard let request = self.request, let sent = request.sending?.request else { return .close }
        guard !connectorAuthenticated, BackendHead.carriesConnectionAuthentication(sent) else { return .keep }
        guard let binding = request.clientBinding else { return .close }
        return .keepBound(binding)
    }

    private func updateBackendReading() {
        guard let context, let connection = self.request?.connection, self.request?.attempt?.phase != .inspecting else { return }
        let writable = context.channel.isWritable
        connection.withLink { $0.setReadable(writable) }
    }

    // MARK: Answers from the connector

    /// Answers into the tunnel with one of Sallyport's pages; the exchange is over.
    private func answer(_ page: ErrorPage, reason: ConnectorErrorReason, context: ChannelHandlerContext) {
        guard let request = self.request else { return }
        let (head, body) = Self.render(page, reason: reason, requestID: request.record.requestID, allocator: context.channel.allocator)
        // Noted before the write: the stream may close as its end goes out, and the access line is written then.
        self.request?.reason = reason.rawValue
        self.request?.status = page.status.code
        self.request?.bytesOut += body.readableBytes
        self.write(head, body, context: context)
        self.finish(context: context)
    }

    /// A page for a request that never became an exchange (its app is unknown here, or cannot be served).
    private func answerAlone(_ page: ErrorPage, reason: ConnectorErrorReason, record: AccessRecord, app: ConnectorApp? = nil, context: ChannelHandlerContext) {
        self.done = true
        let (head, body) = Self.render(page, reason: reason, requestID: record.requestID, allocator: context.channel.allocator)
        self.write(head, body, context: context)
        self.account(record, status: page.status.code, bytesOut: body.readableBytes, reason: reason.rawValue, app: app)
        GracefulClose.close(context.channel, after: self.lastEnd)
    }

    /// One of Sallyport's pages, marked with `reason` for the relay.
    private static func render(_ page: ErrorPage, reason: ConnectorErrorReason, requestID: String, allocator: ByteBufferAllocator) -> (HTTPResponse, ByteBuffer) {
        var (response, body) = page.render(requestID: requestID, allocator: allocator)
        response.headerFields[TunnelProtocol.Field.error] = reason.rawValue
        return (response, body)
    }

    private func write(_ head: HTTPResponse, _ body: ByteBuffer, context: ChannelHandlerContext) {
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(body)), promise: nil)
        self.writeEnd(nil, context: context)
    }

    // MARK: The end

    /// The request is over: its access log line and metrics; the stream closes once the last part is out.
    private func finish(context: ChannelHandlerContext) {
        guard let request = self.request else { return }
        self.serial &+= 1
        self.done = true
        request.deadline?.cancel()
        if let connection = request.connection { self.forwarder.pool.giveBack(connection, .close) }
        self.request = nil
        self.account(request.record, status: request.status, bytesOut: request.bytesOut, reason: request.reason, app: request.app)
        GracefulClose.close(context.channel, after: self.lastEnd)
    }

    private func account(_ record: AccessRecord, status: Int, bytesOut: Int, reason: String?, app: ConnectorApp?) {
        var record = record
        record.status = status
        record.bytesOut = bytesOut
        self.forwarder.metrics.app(app?.name ?? "-").record(status: status, duration: ContinuousClock.now - record.started)
        guard app?.logsAccess ?? true else { return }
        if let reason { record.set("error", reason) }
        record.log(to: self.forwarder.accessLogger)
    }
}
