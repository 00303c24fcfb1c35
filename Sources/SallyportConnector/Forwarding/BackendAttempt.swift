import HTTPTypes
import NIOCore
import NIOHTTP1
import SallyportHTTP
import SallyportPluginAPI
import SallyportTunnel
import SallyportWire

/// One send of a tunnelled request on one backend connection, as a value: the response head's deadline, the SSO
/// handler's look at the answer, what goes into the tunnel, and what becomes of the connection. The exchange
/// around it (``BackendExchange``) decides whether another send follows; ``StreamExchangeHandler`` carries out
/// what both say.
///
///     sending ──▶ inspecting ──▶ responding ──▶ ended(complete | truncated)
///        │             └──▶ discarding ──▶ ended(retryRequested)
///        ├──▶ upgraded ──▶ ended(upgradeEnded)
///        └──▶ ended(noResponse | refused | unusable)
struct BackendAttempt {
    enum Phase: Equatable {
        /// The request goes out; no response head yet.
        case sending
        /// The SSO handler is looking at the response head; the backend is not read meanwhile.
        case inspecting
        /// The response goes into the tunnel.
        case responding
        /// The handler wants the request again: this answer is read to its end and never shown.
        case discarding
        /// After `101 Switching Protocols`: bytes both ways.
        case upgraded
        case ended
    }

    /// How an attempt ended.
    enum Ending: Equatable {
        /// The answer went into the tunnel whole.
        case complete
        /// The handler wants the request again; its answer was read and dropped.
        case retryRequested
        /// The backend closed a switched connection.
        case upgradeEnded
        /// The head went into the tunnel, the body did not come whole.
        case truncated
        /// Nothing went into the tunnel.
        case noResponse
        /// The handler refused the response; nothing was read further.
        case refused(Refusal)
        /// A head larger than the tunnel carries, or bytes that are no HTTP response; nothing was read further.
        case unusable(reason: ConnectorErrorReason, detail: String)
    }

    /// `websocket` for a protocol switch.
    let upgrade: String?
    /// The connection came from the pool.
    let reused: Bool
    /// An SSO handler looks at the response head.
    let inspects: Bool
    /// The handler added the `Authorization`: the backend's reply to it is not for the user.
    let connectorAuthenticated: Bool

    private(set) var phase = Phase.sending
    private(set) var ending: Ending?
    private(set) var progress = ExchangeProgress()
    /// The backend did not say `Connection: close`.
    private(set) var keepAlive = true
    /// The request's end was written to the backend.
    private(set) var requestComplete = false
    /// The relay gave up on the request (its stream reset).
    private(set) var requestAborted = false

    init(upgrade: String?, reused: Bool, inspects: Bool, connectorAuthenticated: Bool) {
        self.upgrade = upgrade
        self.reused = reused
        self.inspects = inspects
        self.connectorAuthenticated = connectorAuthenticated
    }

    /// The request's end went to the backend (for a protocol switch: its head did); true when the response head's
    /// deadline starts now.
    mutating func requestEnded() -> Bool {
        if self.upgrade == nil { self.requestComplete = true }
        return self.progress.requestEnded()
    }

    mutating func requestAbandoned() {
        self.requestAborted = true
    }

    /// The deadline passed; true when that times the attempt out (its connection is then closed).
    mutating func deadlinePassed() -> Bool {
        self.phase == .sending && self.progress.deadlinePassed()
    }

    /// What to do with a response head.
    enum HeadAction: Equatable {
        /// Informational (`100 Continue`): not passed on.
        case ignore
        /// Ask the SSO handler (``inspected(_:_:)``); reads pause meanwhile.
        case inspect(HTTPResponse)
        /// Write this head into the tunnel.
        case deliver(HTTPResponse)
        /// Switch the connection to raw bytes, then write this head into the tunnel.
        case upgrade(HTTPResponse)
        /// The attempt is over (see ``ending``).
        case end
    }

    mutating func responseHead(_ received: HTTPResponse) -> HeadAction {
        guard self.phase == .sending else { return self.phase == .discarding ? .ignore : .end }
        var response = received
        if let upgrade = self.upgrade, response.status == .switchingProtocols {
            guard self.progress.headArrived() else { return self.end(.noResponse) }
            HopByHop.strip(&response.headerFields)
            response.status = .ok
            response.headerFields[TunnelProtocol.Field.upgraded] = upgrade
            self.phase = .upgraded
            return .upgrade(response)
        }
        if response.status.kind == .informational { return .ignore }
        guard self.progress.headArrived() else { return self.end(.noResponse) }
        self.keepAlive = !HopByHop.connectionTokens(response.headerFields).contains("close")
        if self.inspects {
            self.phase = .inspecting
            return .inspect(response)
        }
        return self.deliver(response)
    }

    /// The SSO handler's decision on the head, and the head as it rewrote it.
    mutating func inspected(_ decision: ResponseDecision, _ response: HTTPResponse) -> HeadAction {
        guard self.phase == .inspecting else { return .end }
        switch decision {
        case .deliver:
            return self.deliver(response)
        case .retry:
            self.phase = .discarding
            return .ignore
        case .refuse(let refusal):
            // Never reuse a connection whose answer was not trusted; this also ends an upload.
            return self.end(.refused(refusal))
        }
    }

    private mutating func deliver(_ received: HTTPResponse) -> HeadAction {
        var response = received
        HopByHop.strip(&response.headerFields)
        TunnelProtocol.removeReserved(&response.headerFields)
        if self.connectorAuthenticated { BackendHead.removeConnectorAuthentication(&response.headerFields) }
        // The relay would refuse it (its stream reset, the request perhaps sent again): refuse it here, once.
        let bytes = TunnelProtocol.headerListSize(response.headerFields)
        if bytes > TunnelProtocol.maxResponseHeaderListSize {
            return self.end(
                .unusable(
                    reason: .backendHeadTooLarge,
                    detail: "\(response.headerFields.count) header fields, \(bytes) bytes as HTTP/2 counts them; the tunnel carries \(TunnelProtocol.maxResponseHeaderListSize)"
                )
            )
        }
        self.phase = .responding
        return .deliver(response)
    }

    /// Whether a body part of the response goes into the tunnel; false when it is dropped, or ends the attempt
    /// (a body before any head: see ``ending``).
    mutating func responseBody() -> Bool {
        switch self.phase {
        case .responding, .upgraded: return true
        case .sending:
            _ = self.end(.noResponse)
            return false
        case .inspecting, .discarding, .ended: return false
        }
    }

    /// What to do with the response's end.
    enum EndAction: Equatable {
        /// Write the end (with these trailers) into the tunnel; the attempt is complete.
        case deliver(HTTPFields?)
        case ignore
        /// The attempt is over (see ``ending``).
        case end
    }

    mutating func responseEnd(_ trailers: HTTPFields?) -> EndAction {
        switch self.phase {
        case .responding:
            _ = self.end(.complete)
            return .deliver(trailers)
        case .discarding:
            _ = self.end(.retryRequested)
            return .end
        case .sending:
            _ = self.end(.noResponse)
            return .end
        case .upgraded, .inspecting, .ended:
            return .ignore
        }
    }

    /// The connection failed (`error`) or closed; returns how the attempt ended (nil if it had already).
    mutating func connectionEnded(error: (any Error)?) -> Ending? {
        switch self.phase {
        case .sending:
            // Not an HTTP response (or a head past the decoder's limits): sending the request again would not help.
            if let error = error as? HTTPParserError { return self.endedWith(.unusable(reason: .backendBadResponse, detail: "\(error)")) }
            return self.endedWith(.noResponse)
        case .inspecting, .discarding: return self.endedWith(.noResponse)
        case .responding: return self.endedWith(.truncated)
        case .upgraded: return self.endedWith(.upgradeEnded)
        case .ended: return nil
        }
    }

    private mutating func end(_ ending: Ending) -> HeadAction {
        self.phase = .ended
        self.ending = ending
        return .end
    }

    private mutating func endedWith(_ ending: Ending) -> Ending {
        _ = self.end(ending)
        return ending
    }

    /// Whether the connection may serve another exchange: the answer came whole, the request went out whole, no
    /// protocol switch, and the backend did not say `Connection: close`.
    var connectionReusable: Bool {
        guard self.upgrade == nil, self.requestComplete, !self.requestAborted, self.keepAlive else { return false }
        return self.ending == .complete || self.ending == .retryRequested
    }

    /// What the attempt means for the exchange around it; nil for an ending the user is answered for at once.
    var outcome: BackendExchange.Outcome? {
        switch self.ending {
        case .complete?, .truncated?, .upgradeEnded?: .answered
        case .retryRequested?: .retryRequested
        case .noResponse?: .failedBeforeAnswer(timedOut: self.progress.answer == .timedOut, reused: self.reused)
        case .refused?, .unusable?, nil: nil
        }
    }
}
