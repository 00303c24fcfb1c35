import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportOps

/// Carries public requests to connectors: the last handler of a user's HTTP/1.1 connection (one request after
/// another) or of one HTTP/2 stream. It is thin: ``RequestForwarder`` decides, ``RelayExchange`` keeps the
/// request's state and says what to do, and this handler does it, gluing the user's channel to a tunnel stream
/// (``TunnelStreamHandler``) with back-pressure through writability both ways.
///
/// A request whose answer is known without I/O (a passthrough app, a token verified before, a session cookie, a
/// connector ready) never leaves the event loop; pre-authentication that must wait (a provider's keys, an OIDC
/// code exchange) or a group whose connectors are still coming runs in a task, and its result comes back here.
final class ExchangeHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Delivers a tunnel stream's events to this handler on its event loop; `attempt` tells a stale stream's
    /// events (an earlier attempt, an earlier request) from the current one's.
    struct Sink: Sendable {
        let loop: any EventLoop
        let handler: NIOLoopBound<ExchangeHandler>
        let attempt: UInt64

        func deliver(_ event: TunnelStreamEvent) {
            let (handler, attempt) = (self.handler, self.attempt)
            self.loop.executeNowOrLater { handler.value.tunnelEvent(event, attempt: attempt) }
        }
    }

    /// The request in progress.
    private struct Current {
        var exchange: RelayExchange
        let head: HTTPRequest
        var trace: RequestForwarder.RequestTrace
        var logger: Logger
        var plan: RequestForwarder.Plan?
        var stream: TunnelStreamLink?
        var deadline: Scheduled<Void>?
        var lingered = 0
    }

    private let forwarder: RequestForwarder
    private let edge: EdgeRequestContext
    private var isHTTP1: Bool { self.edge.isHTTP1 }
    private var context: ChannelHandlerContext?
    private var current: Current?
    /// HTTP/1.1 parts that came after the current request's end (a pipelining client): taken once it is answered.
    private var queued = CircularBuffer<HTTPRequestPart>()
    /// Bumped for every attempt and every request: events of older streams and tasks are ignored.
    private var attempt: UInt64 = 0
    private var reads = ReadGate()
    private var tunnelWritable = true
    /// The last response end written: the connection (or stream) closes only after it is out.
    private var lastEnd: EventLoopFuture<Void>?
    private var closed = false

    init(forwarder: RequestForwarder, clientAddress: String, connectionID: String, isHTTP1: Bool) {
        self.forwarder = forwarder
        self.edge = EdgeRequestContext(clientAddress: clientAddress, connectionID: connectionID, isHTTP1: isHTTP1)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inbound(self.unwrapInboundIn(data), context: context)
    }

    private func inbound(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        guard let current = self.current else {
            // No request in progress: this is the head of the next one. (Anything else is what is left of a
            // request already answered: dropped.)
            if case .head(let head) = part { self.begin(head, context: context) }
            return
        }
        if self.isHTTP1, current.exchange.userEnded, current.exchange.phase != .upgraded {
            // The next request of a pipelining client: it waits until this one is answered.
            self.queued.append(part)
            return
        }
        self.requestPart(part, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.current?.stream?.flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.current?.stream?.userWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.closed = true
        if var current = self.current {
            current.exchange.userClosed()
            if current.exchange.phase == .responding, !current.exchange.responseEnded { current.exchange.note(reason: "response-incomplete") }
            self.current = current
            // finish() resets the tunnel stream unless both ends were sent (HTTP/2 closes a stream as its answer's
            // end goes out).
            self.finish(context: context, close: true)
        }
        context.fireChannelInactive()
    }

    func read(context: ChannelHandlerContext) {
        if self.reads.read(open: self.mayRead) { context.read() }
    }

    private var mayRead: Bool {
        guard let current else { return self.queued.isEmpty }
        return current.exchange.wantsRequestBytes && (current.stream == nil || self.tunnelWritable || current.exchange.phase == .answering)
    }

    private func readIfWanted(context: ChannelHandlerContext) {
        if self.reads.reopen(open: self.mayRead) { context.read() }
    }

    // MARK: A request begins

    private func begin(_ head: HTTPRequest, context: ChannelHandlerContext) {
        self.attempt &+= 1
        var current = Current(
            exchange: RelayExchange(method: head.method, isHTTP1: self.isHTTP1, asksToClose: self.isHTTP1 && RequestForwarder.asksToClose(head)),
            head: head,
            trace: RequestForwarder.RequestTrace(record: AccessRecord(requestID: RequestID.make(), method: head.method.rawValue, target: head.path ?? "")),
            logger: self.forwarder.logger
        )
        let step = self.forwarder.admit(head, edge: self.edge, trace: &current.trace, logger: &current.logger)
        self.current = current
        self.follow(step, context: context)
    }

    private func follow(_ step: RequestForwarder.Step, context: ChannelHandlerContext) {
        switch step {
        case .answer(let page):
            self.answer(page, context: context)
        case .forward(let plan):
            self.forward(plan, context: context)
        case .authenticate(let pending):
            let (forwarder, edge) = (self.forwarder, self.edge)
            self.later(context: context) { await forwarder.authenticate(pending) } then: { handler, decision, context in
                guard var current = handler.current else { return }
                let step = forwarder.conclude(decision, pending, edge: edge, trace: &current.trace, logger: &current.logger)
                handler.current = current
                handler.follow(step, context: context)
            }
        case .reserved(let reserved):
            let forwarder = self.forwarder
            self.later(context: context) { await forwarder.handleReserved(reserved) } then: { handler, page, context in
                handler.answer(page, context: context)
            }
        }
    }

    /// Runs `work` off the event loop (in a task: it waits for I/O), then `then` back on it, unless the request
    /// ended meanwhile (its user went away).
    private func later<Value: Sendable>(
        context: ChannelHandlerContext, _ work: @escaping @Sendable () async -> Value,
        then: @escaping (ExchangeHandler, Value, ChannelHandlerContext) -> Void
    ) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let attempt = self.attempt
        let then = NIOLoopBound(then, eventLoop: context.eventLoop)
        OffLoop.run(work, thenOn: context.eventLoop) { value in
            let handler = handler.value
            guard handler.attempt == attempt, let context = handler.context else { return }
            then.value(handler, value, context)
        }
    }

    // MARK: Answers from the relay

    /// Answers from the relay itself, without waiting for the request's body: a client the relay turns away
    /// (unauthenticated, unrouted, malformed) must not hold it while it sends a body slowly, or never.
    ///
    /// HTTP/1.1 stays open only for a request with no body, whose end came with its head, and that did not ask
    /// to close. Otherwise the answer says `Connection: close`, and what the client still sends is read and
    /// dropped for a moment (``RequestForwarder/lingerTime``, ``RequestForwarder/lingerBytes``), so that closing
    /// does not reset the connection before the client has read the answer.
    private func answer(_ page: ErrorPage, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        current.exchange.answerLocally()
        let keepAlive =
            self.isHTTP1 && !RequestForwarder.mayHaveBody(current.head) && !current.exchange.closesConnection
        self.writePage(page, current: &current, close: self.isHTTP1 && !keepAlive, context: context)
        self.current = current
        guard self.isHTTP1 else {
            self.finish(context: context, close: true)
            return
        }
        if keepAlive {
            // A request without a body ends with its head (the decoder passes both together).
            if current.exchange.userEnded { self.finish(context: context, close: false) }
            return
        }
        let channel = context.channel
        channel.eventLoop.scheduleTask(in: RequestForwarder.lingerTime) { channel.close(promise: nil) }
        if current.exchange.userEnded {
            self.finish(context: context, close: true)
        } else {
            self.readIfWanted(context: context)
        }
    }

    private func writePage(_ page: ErrorPage, current: inout Current, close: Bool, context: ChannelHandlerContext) {
        let (head, body) = page.render(requestID: current.trace.requestID, allocator: context.channel.allocator, close: close)
        current.exchange.answered(status: head.status.code, bytes: body.readableBytes, closes: close)
        context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        context.write(self.wrapOutboundOut(.body(body)), promise: nil)
        self.writeEnd(nil, context: context)
    }

    private func writeEnd(_ trailers: HTTPFields?, context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(.end(trailers)), promise: promise)
        self.lastEnd = promise.futureResult
    }

    /// The page for a request no connection could answer; an HTTP/1.1 connection closes (its body may be unread).
    private func answerAfterFailure(_ failure: Failover.Failure, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        current.exchange.answerLocally()
        self.writePage(Failover.page(for: failure, method: current.head.method), current: &current, close: self.isHTTP1, context: context)
        self.current = current
        self.finish(context: context, close: true)
    }

    // MARK: Forwarding

    private func forward(_ plan: RequestForwarder.Plan, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        current.plan = plan
        current.exchange.admitted(upgrading: plan.upgradeProtocol != nil, closeAfter: plan.closeAfter)
        self.current = current
        if plan.sendContinue {
            context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        self.connect(context: context)
    }

    /// Chooses a connection for the next attempt and opens a stream on it.
    private func connect(context: ChannelHandlerContext) {
        guard let current = self.current, let plan = current.plan else { return }
        switch self.forwarder.choose(for: plan, excluding: current.exchange.tried, near: context.eventLoop) {
        case .chosen(let connection):
            self.open(connection, context: context)
        case .none:
            self.noConnection(context: context)
        case .wait(let wait, let awaitFirst):
            let (forwarder, tried, loop) = (self.forwarder, current.exchange.tried, context.eventLoop)
            self.later(context: context) {
                await forwarder.chooseLater(for: plan, excluding: tried, near: loop, wait: wait, awaitFirst: awaitFirst)
            } then: { handler, connection, context in
                if let connection { handler.open(connection, context: context) } else { handler.noConnection(context: context) }
            }
        }
    }

    private func noConnection(context: ChannelHandlerContext) {
        guard let current = self.current else { return }
        if let failure = current.exchange.lastFailure {
            current.logger.warning("no further connection could take the request", metadata: ["failure": "\(failure)", "attempts": "\(current.exchange.tried.count)"])
            self.answerAfterFailure(failure, context: context)
        } else {
            current.logger.warning("no connector available for the app's group", metadata: ["group": "\(current.plan?.app.connectorGroup ?? "")"])
            self.answer(.noConnector, context: context)
        }
    }

    private func open(_ connection: TunnelConnection, context: ChannelHandlerContext) {
        guard var current = self.current, let plan = current.plan else { return }
        self.attempt &+= 1
        current.exchange.connecting(to: connection.id)
        current.trace.record.set("connector", connection.connector)
        current.trace.record.set("attempts", "\(current.exchange.tried.count)")
        current.logger[metadataKey: "connector"] = "\(connection.connector)"
        self.current = current
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let attempt = self.attempt
        let sink = Sink(loop: context.eventLoop, handler: handler, attempt: attempt)
        let opened = connection.openStream { TunnelStreamHandler(sink: sink) }
        opened.hop(to: context.eventLoop).whenComplete { result in
            let handler = handler.value
            guard handler.attempt == attempt, let context = handler.context else {
                // The request ended meanwhile.
                connection.finished()
                if case .success(let opened) = result { opened.channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let opened):
                handler.streamOpened(
                    TunnelStreamLink(connection: connection, channel: opened.channel, handler: opened.handler), plan: plan, context: context
                )
            case .failure(let error):
                connection.finished()
                handler.current?.logger.warning("could not open a tunnel stream; trying another connection", metadata: ["error": "\(error)"])
                handler.attemptFailed(.refused, context: context)
            }
        }
    }

    private func streamOpened(_ link: TunnelStreamLink, plan: RequestForwarder.Plan, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        current.stream = link
        let (parts, sent) = current.exchange.streamOpened()
        self.current = current
        self.tunnelWritable = link.isWritable
        link.write(.head(plan.tunnelHead))
        for part in parts { link.write(part) }
        link.flush()
        if !context.channel.isWritable { link.userWritabilityChanged(false) }
        if sent { self.armDeadline(context: context) }
        self.readIfWanted(context: context)
    }

    private func requestPart(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        let action = current.exchange.received(part)
        if current.exchange.phase == .answering, case .body(let buffer) = part { current.lingered += buffer.readableBytes }
        self.current = current
        switch action {
        case .send(let part):
            current.stream?.write(part)
            if case .end = part { self.armDeadline(context: context) }
        case .hold, .drop:
            if current.exchange.userGone, current.exchange.phase != .answering {
                // A second head before this request ended: the connection is broken.
                context.close(promise: nil)
            } else if current.exchange.phase == .answering, current.lingered >= RequestForwarder.lingerBytes {
                context.close(promise: nil)
            }
        case .ended:
            // The rest of a request the relay answered has arrived.
            self.finish(context: context, close: current.exchange.closesConnection)
        }
        if current.exchange.isComplete { self.finish(context: context, close: current.exchange.closesConnection) }
    }

    private func armDeadline(context: ChannelHandlerContext) {
        guard let current = self.current, current.deadline == nil, let plan = current.plan, current.exchange.progress.requestSent,
            current.exchange.progress.answer == .waiting
        else { return }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let attempt = self.attempt
        self.current?.deadline = context.eventLoop.scheduleTask(in: TimeAmount(plan.responseHeadTimeout)) {
            let handler = handler.value
            guard handler.attempt == attempt, handler.current?.exchange.deadlinePassed() == true else { return }
            handler.current?.stream?.close()
        }
    }

    // MARK: The tunnel's side

    fileprivate func tunnelEvent(_ event: TunnelStreamEvent, attempt: UInt64) {
        guard attempt == self.attempt, let context = self.context, self.current != nil else { return }
        switch event {
        case .part(.head(let response)):
            self.responseHead(response, context: context)
        case .part(.body(let buffer)):
            switch self.current!.exchange.responseBody(buffer) {
            case .send(let buffer): context.write(self.wrapOutboundOut(.body(buffer)), promise: nil)
            case .sendWithEnd(let buffer):
                context.write(self.wrapOutboundOut(.body(buffer)), promise: nil)
                self.responseEnded(trailers: nil, context: context)
                if self.current?.exchange.isComplete == true { self.finish(context: context, close: true) }
            case .drop: break
            case .failed(let failure): self.attemptFailed(failure, context: context)
            }
        case .part(.end(let trailers)):
            switch self.current!.exchange.responseEnd(trailers) {
            case .send(let trailers): self.responseEnded(trailers: trailers, context: context)
            case .alreadySent, .drop: break
            case .failed(let failure): self.attemptFailed(failure, context: context)
            }
            if self.current?.exchange.isComplete == true { self.finish(context: context, close: self.current!.exchange.closesConnection) }
        case .readComplete:
            context.flush()
        case .writable(let writable):
            self.tunnelWritable = writable
            if writable { self.readIfWanted(context: context) }
        case .closed(let failure):
            self.streamClosed(failure, context: context)
        }
    }

    private func responseHead(_ response: HTTPResponse, context: ChannelHandlerContext) {
        guard var current = self.current, let plan = current.plan else { return }
        let action = current.exchange.responseHead(response, setCookies: plan.setCookies, upgradeProtocol: plan.upgradeProtocol)
        current.deadline?.cancel()
        current.deadline = nil
        self.current = current
        switch action {
        case .ignore:
            return
        case .failed(let failure):
            if case .notForwarded(let status, let reason) = failure {
                current.logger.warning("connector answered for the backend", metadata: ["status": "\(status.code)", "reason": "\(reason)"])
            }
            self.attemptFailed(failure, context: context)
            return
        case .send(let head):
            if let reason = current.exchange.reason {
                current.logger.warning("connector answered for the backend", metadata: ["status": "\(head.status.code)", "reason": "\(reason)"])
            }
            context.write(self.wrapOutboundOut(.head(head)), promise: nil)
        case .upgrade(let head):
            context.writeAndFlush(self.wrapOutboundOut(.head(head)), promise: nil)
            do {
                try RawBytes.switchToRawBytes(context.pipeline.syncOperations, side: .server, httpHandlers: EdgePipeline.http1Handlers)
            } catch {
                current.logger.warning("could not switch the connection to the upgraded protocol", metadata: ["error": "\(error)"])
                context.close(promise: nil)
                return
            }
            self.readIfWanted(context: context)
        }
        if let stream = current.stream {
            stream.connection.observe(latency: ContinuousClock.now - current.trace.record.started)
            if self.forwarder.reachability.succeeded(connectorID: stream.connection.connectorID, app: plan.app.name) {
                current.logger.notice("connector reaches the app's backend again")
            }
        }
    }

    private func responseEnded(trailers: HTTPFields?, context: ChannelHandlerContext) {
        guard let current = self.current else { return }
        self.writeEnd(trailers, context: context)
        if self.isHTTP1, !current.exchange.userEnded, current.exchange.phase == .responding {
            // The answer is complete but the client is still sending: give it a moment, then close.
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let attempt = self.attempt
            context.eventLoop.scheduleTask(in: .seconds(5)) {
                let handler = handler.value
                guard handler.attempt == attempt, let context = handler.context else { return }
                context.close(promise: nil)
            }
        }
    }

    private func streamClosed(_ failure: Failover.Failure, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        let action = current.exchange.streamClosed(failure)
        self.current = current
        switch action {
        case .none:
            if current.exchange.isComplete { self.finish(context: context, close: current.exchange.closesConnection) }
        case .truncated:
            current.logger.warning("tunnel stream ended before the response was complete")
            self.finish(context: context, close: true)
        case .retry, .answer, .abandon:
            self.releaseStream()
            self.afterFailedAttempt(action, failure: failure, context: context)
        }
    }

    /// An attempt failed before anything reached the user (its stream may still be open: it is closed).
    private func attemptFailed(_ failure: Failover.Failure, context: ChannelHandlerContext) {
        guard var current = self.current else { return }
        self.attempt &+= 1
        current.stream?.close()
        if case .notForwarded(_, let reason) = failure, let stream = current.stream, let app = current.plan?.app,
            let backoff = self.forwarder.reachability.failed(connectorID: stream.connection.connectorID, app: app.name)
        {
            current.logger.warning(
                "connector cannot reach the app's backend; the app's requests go to other connectors of the group meanwhile",
                metadata: ["reason": "\(reason)", "for": "\(backoff)", "backend": "\(app.internalURL.string)"]
            )
        }
        let action = current.exchange.attemptFailed(failure)
        self.current = current
        self.releaseStream()
        self.afterFailedAttempt(action, failure: failure, context: context)
    }

    /// What follows an attempt that failed before anything reached the user (its stream released): another
    /// connection, the relay's page, or nothing when the user is gone.
    private func afterFailedAttempt(_ action: RelayExchange.StreamClosedAction, failure: Failover.Failure, context: ChannelHandlerContext) {
        guard let current = self.current else { return }
        switch action {
        case .retry:
            current.logger.warning("request failed before an answer; sending it to another connection", metadata: ["failure": "\(failure)"])
            self.connect(context: context)
        case .answer(let failure):
            current.logger.warning("request failed on a connector and cannot be sent again", metadata: ["failure": "\(failure)"])
            self.answerAfterFailure(failure, context: context)
        case .abandon, .none, .truncated:
            self.finish(context: context, close: true)
        }
    }

    /// The current stream is done with (its connection's count of requests in flight goes down).
    private func releaseStream() {
        guard let stream = self.current?.stream else { return }
        stream.connection.finished()
        self.current?.stream = nil
        self.current?.deadline?.cancel()
        self.current?.deadline = nil
        self.tunnelWritable = true
    }

    // MARK: The end

    /// The request is over: its access log line, then the next request (HTTP/1.1 keep-alive) or the close, once
    /// the last response end written is out.
    private func finish(context: ChannelHandlerContext, close: Bool) {
        guard var current = self.current else { return }
        self.attempt &+= 1
        current.exchange.finish()
        current.deadline?.cancel()
        if let stream = current.stream {
            // A stream whose both ends were sent closes by itself; one still open (the user left) is reset.
            if !current.exchange.responseEnded || !current.exchange.userEnded { stream.close() }
            stream.connection.finished()
        }
        self.current = nil
        self.tunnelWritable = true
        self.forwarder.account(current.trace, exchange: current.exchange, clientAddress: self.edge.clientAddress)
        if close || !self.isHTTP1 || current.exchange.closesConnection {
            self.queued.removeAll()
            guard !self.closed else { return }
            GracefulClose.close(context.channel, after: self.lastEnd)
            return
        }
        // Keep-alive: the next request, if a pipelining client sent it already.
        while self.current.map({ !$0.exchange.userEnded }) ?? true, let part = self.queued.popFirst() {
            self.inbound(part, context: context)
        }
        self.readIfWanted(context: context)
    }
}
