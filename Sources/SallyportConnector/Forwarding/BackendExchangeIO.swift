import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import SallyportConfig
import SallyportHTTP
import SallyportOps
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire
import Synchronization

/// One request/response exchange on one backend connection: the request body is pumped by the calling task,
/// the response by a child task, both with back-pressure; the SSO handler sees the response head first.
struct BackendExchangeIO {
    typealias Iterator = NIOAsyncChannelInboundStream<HTTPRequestPart>.AsyncIterator
    typealias Writer = MeteredWriter

    enum Outcome {
        case sent(BackendExchange.Outcome)
        /// The handler refused the response; it was discarded and the connection closed.
        case refused(Refusal)
        /// The backend's response is one the relay cannot carry or no HTTP at all (`reason`, `detail` for the
        /// log); discarded, the connection closed, the request never sent again.
        case unusable(reason: ConnectorErrorReason, detail: String)
    }

    let request: HTTPRequest
    let app: ConnectorApp
    let upgrade: String?
    /// The SSO step's look at the response head; nil without a handler.
    let inspector: ResponseInspector?
    /// The handler added the `Authorization`: the backend's reply to it is not for the user.
    let connectorAuthenticated: Bool
    /// The user's client connection, to bind the backend connection to if the user authenticates it.
    let clientBinding: String?
    let logger: Logger

    /// Runs the exchange; says what becomes of the connection.
    func run(
        on connection: BackendConnection, reused: Bool, first: HTTPRequestPart?, iterator: inout Iterator, writer: Writer
    ) async -> (Outcome, BackendPool.Return) {
        // The response timeout runs from the end of the request (a long upload is not a slow backend) to the
        // response head; silence while the body streams is the idle timeout's business.
        let clock = ExchangeClock(timeout: self.app.timeouts.response, channel: connection.channel)
        defer { clock.finished() }
        connection.beginExchange(idleTimeout: self.app.timeouts.idle)
        do {
            try await connection.writer.write(.head(self.request))
        } catch {
            // Failed before the backend answered (TLS handshake, a reset).
            self.logger.warning("backend exchange failed", metadata: ["backend": "\(self.app.internalURL.string)", "error": "\(error)"])
            return (.sent(.failedBeforeAnswer(timedOut: clock.timedOut, reused: reused)), .close)
        }
        let (requestResult, response) = await withTaskGroup(of: ResponseResult.self) { group in
            group.addTask { await self.pumpResponse(connection: connection, to: writer, clock: clock) }
            // A protocol switch waits for its answer from the moment its head is out.
            if self.upgrade != nil { clock.requestEnded() }
            let requestResult = await BodyPump.copyRequest(first: first, from: &iterator, to: connection.writer, upgrading: self.upgrade != nil)
            if requestResult == .complete { clock.requestEnded() }
            // The relay reset the stream (user gone): end the backend exchange too.
            if requestResult == .aborted { connection.close() }
            return (requestResult, await group.next()!)
        }
        let clean = requestResult == .complete && self.upgrade == nil
        switch response {
        case .complete(let keepAlive):
            return (.sent(.answered), clean && keepAlive ? self.returnAfterCleanExchange() : .close)
        case .retryRequested(let keepAlive):
            return (.sent(.retryRequested), clean && keepAlive ? self.returnAfterCleanExchange() : .close)
        case .upgradeEnded:
            return (.sent(.answered), .close)
        case .truncated(let error):
            if let error { self.logger.debug("exchange aborted", metadata: ["error": "\(error)"]) }
            self.noteIncomplete(connection: connection, writer: writer, error: error)
            return (.sent(.answered), .close)
        case .refused(let refusal):
            return (.refused(refusal), .close)
        case .unusable(let reason, let detail):
            return (.unusable(reason: reason, detail: detail), .close)
        case .noResponse(let error):
            var metadata: Logger.Metadata = ["timedOut": "\(clock.timedOut)", "backend": "\(self.app.internalURL.string)"]
            if let error { metadata["error"] = "\(error)" }
            self.logger.warning("backend gave no response", metadata: metadata)
            return (.sent(.failedBeforeAnswer(timedOut: clock.timedOut, reused: reused)), .close)
        }
    }

    /// A response whose status went out but whose body did not come whole: its access log line says why.
    private func noteIncomplete(connection: BackendConnection, writer: Writer, error: (any Error)?) {
        let silent = connection.closedForSilence
        let reason = silent ? "backend-idle-timeout" : "backend-response-incomplete"
        writer.meter.note(reason: reason)
        var metadata: Logger.Metadata = ["reason": "\(reason)", "backend": "\(self.app.internalURL.string)"]
        if silent { metadata["idleTimeout"] = "\(self.app.timeouts.idle)" }
        if let error { metadata["error"] = "\(error)" }
        self.logger.warning("backend response ended early", metadata: metadata)
    }

    /// A connection the user authenticated with NTLM or Negotiate is theirs alone (bound to their client
    /// connection); any other goes back as it came.
    private func returnAfterCleanExchange() -> BackendPool.Return {
        guard !self.connectorAuthenticated, BackendHead.carriesConnectionAuthentication(self.request) else { return .keep }
        guard let clientBinding else { return .close }
        return .keepBound(clientBinding)
    }

    enum ResponseResult {
        case complete(keepAlive: Bool)
        case upgradeEnded
        /// Nothing reached the user (the error, if one ended the wait).
        case noResponse((any Error)?)
        /// The head reached the user, the body did not come whole (the error, if one broke it off).
        case truncated((any Error)?)
        /// The inspector wants the request again; the body was read and dropped.
        case retryRequested(keepAlive: Bool)
        /// The inspector refused the response; nothing was read further.
        case refused(Refusal)
        /// A head larger than the tunnel carries (``TunnelProtocol/maxHeaderListSize``), or bytes that are no
        /// HTTP response; nothing was read further.
        case unusable(reason: ConnectorErrorReason, detail: String)
    }

    private func pumpResponse(connection: BackendConnection, to writer: Writer, clock: ExchangeClock) async -> ResponseResult {
        var headSent = false
        var discarding = false
        var upgraded = false
        var keepAlive = true
        do {
            while let part = try await connection.iterator.next() {
                switch part {
                case .head(var response):
                    if let upgrade = self.upgrade, response.status == .switchingProtocols {
                        guard clock.headArrived() else { return .noResponse(nil) }
                        try await connection.switchToRawBytes()
                        HopByHop.strip(&response.headerFields)
                        response.status = .ok
                        response.headerFields[TunnelProtocol.Field.upgraded] = upgrade
                        try await writer.write(.head(response))
                        headSent = true
                        upgraded = true
                        continue
                    }
                    if response.status.kind == .informational { continue }
                    guard clock.headArrived() else { return .noResponse(nil) }
                    keepAlive = !HopByHop.connectionTokens(response.headerFields).contains("close")
                    let decision: ResponseDecision
                    if let inspector = self.inspector {
                        (decision, response) = await inspector.inspect(response)
                    } else {
                        decision = .deliver
                    }
                    switch decision {
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
                    if self.connectorAuthenticated { BackendHead.removeConnectorAuthentication(&response.headerFields) }
                    // The relay would refuse it (its stream reset, the request perhaps sent again): refuse it here, once.
                    let bytes = TunnelProtocol.headerListSize(response.headerFields)
                    if bytes > TunnelProtocol.maxResponseHeaderListSize {
                        connection.close()
                        return .unusable(
                            reason: .backendHeadTooLarge,
                            detail: "\(response.headerFields.count) header fields, \(bytes) bytes as HTTP/2 counts them; the tunnel carries \(TunnelProtocol.maxResponseHeaderListSize)"
                        )
                    }
                    try await writer.write(.head(response))
                    headSent = true
                case .body(let buffer):
                    if discarding { continue }
                    guard headSent else { return .noResponse(nil) }
                    try await writer.write(.body(buffer))
                case .end(let trailers):
                    if upgraded { continue }
                    if discarding { return .retryRequested(keepAlive: keepAlive) }
                    guard headSent else { return .noResponse(nil) }
                    try await writer.write(.end(trailers))
                    return .complete(keepAlive: keepAlive)
                }
            }
        } catch let error as HTTPParserError where !headSent {
            // Not an HTTP response (or a head past the decoder's limits): sending the request again would not help.
            connection.close()
            return .unusable(reason: .backendBadResponse, detail: "\(error)")
        } catch where !headSent {
            return .noResponse(error)
        } catch {
            return .truncated(error)
        }
        if upgraded {
            // The backend closed the upgraded connection: end the stream after the bytes already sent.
            try? await writer.write(.end(nil))
            return .upgradeEnded
        }
        return headSent ? .truncated(nil) : .noResponse(nil)
    }
}
