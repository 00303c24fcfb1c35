import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import SallyportHTTP
import SallyportOps
import SallyportTunnel
import SallyportWire

/// One request on one tunnel stream: the head goes first, then the request body is pumped by the calling task
/// (it owns the user's connection's iterator) while a child task pumps the response back, so both directions
/// stream with back-pressure and neither is ever held whole.
struct TunnelStreamIO: Sendable {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = MeteredWriter

    let stream: TunnelConnection.Stream
    let head: HTTPRequest
    let upgradeProtocol: String?
    /// The user's HTTP/1.1 connection closes after this exchange (a protocol switch asked for).
    let closesConnection: Bool
    let setCookies: [String]
    let context: EdgeRequestContext
    let requestID: String
    let logger: Logger
    /// How long after the request's end the connector may take to send a response head.
    let responseHeadTimeout: Duration
    /// Hears how long the connector took to start answering.
    let observeLatency: @Sendable (Duration) -> Void

    /// How one attempt ended.
    enum Attempt {
        /// Something reached the user: the exchange is over, and the user's connection stays open or closes.
        case finished(ForwardOutcome)
        /// Nothing reached the user: the request may go to another connector (``Failover``). `sourceEnded`: the
        /// user stopped sending the request's body before its end.
        case failed(Failover.Failure, sourceEnded: Bool)
    }

    /// Runs the exchange. The request's body comes from `replay` (what an earlier attempt sent) and then from
    /// `iterator`, and is kept in `replay` for a further attempt.
    func run(iterator: inout Iterator, writer: Writer, replay: inout ReplayBuffer) async -> Attempt {
        let (stream, logger, upgradeProtocol) = (self.stream, self.logger, self.upgradeProtocol)
        // The connector owes a response head within responseHeadTimeout of the request's end.
        let clock = ExchangeClock(timeout: self.responseHeadTimeout, channel: stream.channel)
        defer { clock.finished() }
        let started = ContinuousClock.now
        do {
            return try await stream.executeThenClose { tunnelIn, tunnelOut in
                do {
                    try await tunnelOut.write(.head(self.head))
                } catch {
                    return .failed(Failover.failure(of: error), sourceEnded: false)
                }
                return try await withThrowingTaskGroup(of: ResponseResult.self) { group in
                    group.addTask {
                        try await self.pumpResponse(from: tunnelIn, to: writer, clock: clock, started: started)
                    }
                    let requestResult = await replay.send(to: tunnelOut, from: &iterator, upgrading: upgradeProtocol != nil)
                    if requestResult == .complete {
                        clock.requestEnded()
                    } else if requestResult == .sourceEnded || clock.answered {
                        // The client is gone, or the answer is under way: stop waiting for the rest of the answer.
                        stream.channel.close(promise: nil)
                    }
                    let response = try await group.next()!
                    clock.finished()
                    switch response {
                    case .completed(let upgraded):
                        if requestResult == .complete {
                            await GracefulClose.waitForEnd(of: stream.channel, part: HTTPRequestPart.self)
                        }
                        if upgraded || requestResult != .complete || self.closesConnection { return .finished(.close) }
                        return .finished(.keepAlive)
                    case .truncated:
                        writer.meter.note(reason: "response-incomplete")
                        logger.warning("tunnel stream ended before the response was complete")
                        return .finished(.close)
                    case .noResponse(let failure):
                        return .failed(clock.timedOut ? .timedOut : failure, sourceEnded: requestResult == .sourceEnded)
                    }
                }
            }
        } catch {
            logger.debug("request aborted", metadata: ["error": "\(error)"])
            // The user's status is logged already; the line must say the body did not come whole.
            if clock.answered { writer.meter.note(reason: "response-incomplete") }
            return clock.answered ? .finished(.close) : .failed(Failover.failure(of: error), sourceEnded: false)
        }
    }

    enum ResponseResult {
        case completed(upgraded: Bool)
        case truncated
        /// Nothing was written to the user.
        case noResponse(Failover.Failure)
    }

    /// Copies the connector's response to the client.
    func pumpResponse(
        from tunnel: NIOAsyncChannelInboundStream<HTTPResponsePart>, to writer: Writer, clock: ExchangeClock, started: ContinuousClock.Instant
    ) async throws -> ResponseResult {
        let (context, upgradeProtocol, logger) = (self.context, self.upgradeProtocol, self.logger)
        let isHEAD = self.head.method == .head
        var headSent = false
        var upgraded = false
        // HTTP/2: once a Content-Length body is complete, END_STREAM goes out in the same flush as its last
        // bytes instead of when the tunnel's end arrives. Clients that see all the bytes before END_STREAM
        // (curl) reset the stream, and NIOHTTP2's rapid-reset guard closes the connection after 200 resets.
        var remaining: Int?
        var endedEarly = false
        do {
            for try await part in tunnel {
                switch part {
                case .head(var response):
                    if response.status.kind == .informational { continue }
                    // The backend may not plant or clear the relay's own cookies; the relay's come after.
                    RelayNamespace.removeCookies(fromResponse: &response.headerFields)
                    for cookie in self.setCookies { response.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
                    if let reason = response.headerFields[TunnelProtocol.Field.error] {
                        writer.meter.note(reason: reason)
                        logger.warning("connector answered for the backend", metadata: ["status": "\(response.status.code)", "reason": "\(reason)"])
                        // The connector could not reach the backend (ConnectorErrorReason.requestNotSent).
                        if let known = ConnectorErrorReason(rawValue: reason), known.requestNotSent {
                            return .noResponse(.notForwarded(status: response.status, reason: known))
                        }
                    }
                    // Past the deadline the stream is being closed: the connector's late answer is not taken.
                    guard clock.headArrived() else { return .noResponse(.timedOut) }
                    self.observeLatency(ContinuousClock.now - started)
                    if let upgradeProtocol, response.headerFields[TunnelProtocol.Field.upgraded] != nil {
                        TunnelProtocol.removeReserved(&response.headerFields)
                        try await Self.switchToRawBytes(response: response, upgradeProtocol: upgradeProtocol, writer: writer, channel: context.channel)
                        upgraded = true
                    } else {
                        TunnelProtocol.removeReserved(&response.headerFields)
                        HopByHop.strip(&response.headerFields)
                        if self.closesConnection, context.isHTTP1 { response.headerFields[.connection] = "close" }
                        if !context.isHTTP1, !isHEAD, response.status != .noContent, response.status != .notModified,
                            let length = response.headerFields[.contentLength].flatMap({ Int($0) }), length > 0
                        {
                            remaining = length
                        }
                        try await writer.write(.head(response))
                    }
                    headSent = true
                case .body(let buffer):
                    guard headSent else { return .noResponse(.lost) }
                    if endedEarly { continue }
                    if let left = remaining {
                        remaining = left - buffer.readableBytes
                        if left == buffer.readableBytes {
                            endedEarly = true
                            try await writer.write(contentsOf: [.body(buffer), .end(nil)])
                            continue
                        }
                    }
                    try await writer.write(.body(buffer))
                case .end(let trailers):
                    guard headSent else { return .noResponse(.lost) }
                    // After an upgrade the end carries no trailers; it only marks when the last bytes are out.
                    if !endedEarly { try await writer.write(.end(upgraded ? nil : trailers)) }
                    if context.isHTTP1, !clock.requestSent {
                        // The answer is complete but the client is still sending: give it a moment, then close.
                        let channel = context.channel
                        channel.eventLoop.scheduleTask(in: .seconds(5)) {
                            if !clock.requestSent { channel.close(promise: nil) }
                        }
                    }
                    return .completed(upgraded: upgraded)
                }
            }
        } catch where !headSent {
            // The stream was reset before any answer: another connector may take it, else the user gets a page.
            logger.warning("tunnel stream failed before a response", metadata: ["error": "\(error)"])
            return .noResponse(Failover.failure(of: error))
        }
        if upgraded {
            // The backend side ended: deliver what is left, then close the user's connection.
            try await writer.write(.end(nil))
            await GracefulClose.waitForEnd(of: context.channel, part: HTTPResponsePart.self)
            context.channel.close(promise: nil)
            return .completed(upgraded: true)
        }
        if headSent { context.channel.close(promise: nil) }
        return headSent ? .truncated : .noResponse(.lost)
    }

    /// Answers 101 and turns the client's HTTP/1.1 connection into a raw byte pipe.
    static func switchToRawBytes(response: HTTPResponse, upgradeProtocol: String, writer: Writer, channel: any Channel) async throws {
        var head = response
        head.status = .switchingProtocols
        HopByHop.strip(&head.headerFields)
        head.headerFields[.connection] = "Upgrade"
        head.headerFields[.upgrade] = upgradeProtocol
        try await writer.write(.head(head))
        try await channel.eventLoop.submit {
            try RawBytes.switchToRawBytes(channel.pipeline.syncOperations, side: .server, httpHandlers: EdgePipeline.http1Handlers)
        }.get()
    }
}
