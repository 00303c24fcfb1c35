import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SallyportHTTP
import SallyportTunnel
import SallyportWire

/// One public request at the relay, from its head to its last byte, as a value: what has been read from the user
/// and sent on, which attempt on which tunnel stream is current, and what has gone back. ``ExchangeHandler``
/// feeds it what happens on the user's channel and on the tunnel stream and carries out the actions it returns;
/// it holds no channel and does no I/O, so every transition is unit-tested without sockets.
///
///     deciding ──▶ connecting ──▶ forwarding ──▶ responding ──▶ finished
///        │              ▲              │  │            └──▶ upgraded ──▶ finished
///        │              └── failover ──┘  └──▶ answering (a failure no connector can take)
///        └──▶ answering (the relay's own page) ──▶ finished
struct RelayExchange {
    enum Phase: Equatable {
        /// Admission, pre-authentication and the choice of a connector; the request's body is held (and read no
        /// further than what already arrived).
        case deciding
        /// A tunnel stream is opening.
        case connecting
        /// The request goes out on the stream; no response head yet.
        case forwarding
        /// The response goes to the user.
        case responding
        /// After `101 Switching Protocols`: bytes both ways until either side ends.
        case upgraded
        /// The relay answers itself; what the user still sends is read and dropped.
        case answering
        case finished
    }

    let method: HTTPRequest.Method
    let isHTTP1: Bool
    private(set) var phase = Phase.deciding
    /// The request asks to switch protocols (WebSocket) and the app allows it.
    private(set) var upgrading = false

    // The request, as read from the user.
    /// Parts read and not yet written to the current stream.
    private(set) var unsent: [HTTPRequestPart] = []
    /// Parts written to streams so far, kept for another attempt while they fit in ``replayLimit``.
    private var replay: [HTTPRequestPart] = []
    private var replayBytes = 0
    /// Part of the body went out and was not kept: the request cannot be sent again.
    private(set) var overflowed = false
    /// The request's end was read from the user.
    private(set) var userEnded = false
    /// The user's side closed or broke the protocol before the request's end.
    private(set) var userGone = false
    /// Body bytes read from the user.
    private(set) var bytesIn = 0

    // The current attempt.
    /// Tunnel connections tried, in order.
    private(set) var tried: [UInt64] = []
    /// The response head's deadline for the current attempt.
    private(set) var progress = ExchangeProgress()
    private(set) var lastFailure: Failover.Failure?

    // The response, as written to the user.
    private(set) var status = 0
    private(set) var bytesOut = 0
    /// A reason for the access log (the connector's `sallyport-error`, `response-incomplete`).
    private(set) var reason: String?
    /// HTTP/2: body bytes still due by `Content-Length`; END_STREAM goes out with the last of them.
    private var remaining: Int?
    private var endedEarly = false
    private(set) var responseEnded = false
    /// The user's HTTP/1.1 connection closes after this exchange.
    private(set) var closesConnection: Bool

    /// Bodies larger than this are not kept: such a request is sent once.
    static let replayLimit = 64 * 1024

    init(method: HTTPRequest.Method, isHTTP1: Bool, asksToClose: Bool) {
        self.method = method
        self.isHTTP1 = isHTTP1
        self.closesConnection = isHTTP1 && asksToClose
    }

    /// Whether the request could be sent again on another connection.
    var isReplayable: Bool { !self.overflowed }

    // MARK: The user's side

    /// What to do with a part of the request read from the user.
    enum RequestAction: Equatable {
        /// Write it to the current stream.
        case send(HTTPRequestPart)
        /// Kept until a stream is open.
        case hold
        /// Not sent anywhere.
        case drop
        /// A part that ends a local answer's linger (the request's end while answering).
        case ended
    }

    mutating func received(_ part: HTTPRequestPart) -> RequestAction {
        switch part {
        case .head:
            // A new request before this one ended: the connection is broken.
            self.userGone = true
            return .drop
        case .body(let buffer):
            self.bytesIn += buffer.readableBytes
        case .end:
            // After a protocol switch request the body is raw bytes and its HTTP end means nothing.
            if self.upgrading { return .drop }
            self.userEnded = true
        }
        // Request trailers never cross: a `sallyport-*`, identity or forwarding field could ride in them, and
        // backends that merge trailers into headers would believe it.
        let cleaned: HTTPRequestPart = if case .end = part { .end(nil) } else { part }
        switch self.phase {
        case .deciding, .connecting:
            self.unsent.append(cleaned)
            return .hold
        case .forwarding, .responding, .upgraded:
            // The backend's side of a switched connection ended: the user's connection is closing.
            if self.phase == .upgraded, self.responseEnded { return .drop }
            self.keep(cleaned)
            if self.userEnded { _ = self.progress.requestEnded() }
            return .send(cleaned)
        case .answering:
            return self.userEnded ? .ended : .drop
        case .finished:
            return .drop
        }
    }

    /// The user's channel closed (or failed).
    mutating func userClosed() {
        if !self.userEnded { self.userGone = true }
    }

    /// Whether the handler should read more of the request now (besides the tunnel's writability).
    var wantsRequestBytes: Bool {
        switch self.phase {
        case .deciding, .connecting, .finished: false
        case .forwarding, .responding, .upgraded: !self.userEnded || self.phase == .upgraded
        case .answering: !self.userEnded
        }
    }

    // MARK: Decisions

    /// The relay answers this request itself: nothing was or will be sent to a connector.
    mutating func answerLocally() {
        self.phase = .answering
    }

    /// Pre-authentication let the request through; `upgrading` for a WebSocket handshake the app allows, and
    /// `closeAfter` when the connection must close after the answer (an upgrade that is ignored).
    mutating func admitted(upgrading: Bool, closeAfter: Bool) {
        self.upgrading = upgrading
        if closeAfter || upgrading { self.closesConnection = self.isHTTP1 }
        if upgrading {
            // The handshake's (empty) body ends at once, which means nothing: after a switch, raw bytes follow
            // until either side closes.
            self.unsent.removeAll { if case .end = $0 { true } else { false } }
            self.userEnded = false
        }
    }

    /// A connection was chosen and its stream is being opened.
    mutating func connecting(to connection: UInt64) {
        self.tried.append(connection)
        self.progress = ExchangeProgress()
        self.phase = .connecting
    }

    /// The stream is open: the parts to write after the head (what an earlier attempt sent, then what is held),
    /// and whether the request went out whole with them (the response head's deadline starts).
    mutating func streamOpened() -> (parts: [HTTPRequestPart], requestSent: Bool) {
        let parts = self.replay + self.unsent
        for part in self.unsent { self.keep(part) }
        self.unsent = []
        self.phase = .forwarding
        // A protocol switch request is complete with its head: the 101 is due from then.
        let sent = self.userEnded || self.upgrading
        if sent { _ = self.progress.requestEnded() }
        return (parts, sent)
    }

    private mutating func keep(_ part: HTTPRequestPart) {
        guard !self.overflowed else { return }
        if case .body(let buffer) = part { self.replayBytes += buffer.readableBytes }
        if self.upgrading || self.replayBytes > Self.replayLimit {
            self.overflowed = true
            self.replay = []
            return
        }
        self.replay.append(part)
    }

    // MARK: The tunnel's side

    /// What to do with the connector's response head.
    enum HeadAction: Equatable {
        /// Write this head to the user.
        case send(HTTPResponse)
        /// Answer `101` with this head and switch the user's connection to raw bytes.
        case upgrade(HTTPResponse)
        /// Nothing goes to the user: the attempt failed (the connector could not reach the backend), or the
        /// head came after the deadline. The stream is to be closed; see ``attemptFailed(_:)``.
        case failed(Failover.Failure)
        /// An informational head (`100 Continue` from the backend): not passed on.
        case ignore
    }

    /// `setCookies`: the relay's own cookies from pre-authentication, added after the backend's are cleaned.
    mutating func responseHead(_ received: HTTPResponse, setCookies: [String], upgradeProtocol: String?) -> HeadAction {
        guard self.phase == .forwarding else { return .ignore }
        var response = received
        if response.status.kind == .informational, response.status != .switchingProtocols { return .ignore }
        // The backend may not plant or clear the relay's own cookies; the relay's come after.
        RelayNamespace.removeCookies(fromResponse: &response.headerFields)
        for cookie in setCookies { response.headerFields.append(HTTPField(name: .setCookie, value: cookie)) }
        if let reason = response.headerFields[TunnelProtocol.Field.error] {
            self.reason = reason
            // The connector could not reach the backend: the request never left it.
            if let known = ConnectorErrorReason(rawValue: reason), known.requestNotSent {
                return .failed(.notForwarded(status: response.status, reason: known))
            }
        }
        // Past the deadline the stream is being closed: the connector's late answer is not taken.
        guard self.progress.headArrived() else { return .failed(.timedOut) }
        if let upgradeProtocol, response.headerFields[TunnelProtocol.Field.upgraded] != nil {
            TunnelProtocol.removeReserved(&response.headerFields)
            HopByHop.strip(&response.headerFields)
            response.status = .switchingProtocols
            response.headerFields[.connection] = "Upgrade"
            response.headerFields[.upgrade] = upgradeProtocol
            self.phase = .upgraded
            self.status = 101
            return .upgrade(response)
        }
        TunnelProtocol.removeReserved(&response.headerFields)
        HopByHop.strip(&response.headerFields)
        if self.closesConnection, self.isHTTP1 { response.headerFields[.connection] = "close" }
        if !self.isHTTP1, self.method != .head, response.status != .noContent, response.status != .notModified,
            let length = response.headerFields[.contentLength].flatMap({ Int($0) }), length > 0
        {
            self.remaining = length
        }
        self.phase = .responding
        self.status = response.status.code
        return .send(response)
    }

    /// What to write to the user for a body part of the response.
    enum BodyAction: Equatable {
        case send(ByteBuffer)
        /// The last bytes of a `Content-Length` body on HTTP/2: write them with the end.
        case sendWithEnd(ByteBuffer)
        case drop
        /// A body before any head: the stream is broken.
        case failed(Failover.Failure)
    }

    mutating func responseBody(_ buffer: ByteBuffer) -> BodyAction {
        switch self.phase {
        case .forwarding: return .failed(.lost)
        case .responding, .upgraded: break
        default: return .drop
        }
        if self.endedEarly { return .drop }
        self.bytesOut += buffer.readableBytes
        if let left = self.remaining {
            self.remaining = left - buffer.readableBytes
            if left == buffer.readableBytes {
                self.endedEarly = true
                self.responseEnded = true
                return .sendWithEnd(buffer)
            }
        }
        return .send(buffer)
    }

    /// What to do with the response's end.
    enum EndAction: Equatable {
        /// Write the end (with these trailers) to the user.
        case send(HTTPFields?)
        /// Already written with the last bytes.
        case alreadySent
        case drop
        case failed(Failover.Failure)
    }

    mutating func responseEnd(_ trailers: HTTPFields?) -> EndAction {
        switch self.phase {
        case .forwarding: return .failed(.lost)
        case .responding, .upgraded: break
        default: return .drop
        }
        if self.endedEarly { return .alreadySent }
        self.responseEnded = true
        // The answer is complete while the user is still sending: the connection cannot be reused.
        if !self.userEnded || self.phase == .upgraded { self.closesConnection = self.isHTTP1 }
        // After an upgrade the end carries no trailers; it only marks when the last bytes are out.
        return .send(self.phase == .upgraded ? nil : trailers)
    }

    /// What follows when the current stream closes.
    enum StreamClosedAction: Equatable {
        /// The exchange went as it should (or the stream closed after the response ended).
        case none
        /// Nothing reached the user: try another connection.
        case retry
        /// Nothing reached the user and no connection may take it: the relay answers this page.
        case answer(Failover.Failure)
        /// The user's request went away before an answer: close.
        case abandon
        /// The response was cut off part-way: close the user's connection.
        case truncated
    }

    /// The current stream closed; `failure` is what its error means (``Failover/failure(of:)``), `.lost` when it
    /// closed without one.
    mutating func streamClosed(_ failure: Failover.Failure) -> StreamClosedAction {
        switch self.phase {
        case .connecting, .forwarding:
            return self.attemptFailed(self.progress.answer == .timedOut ? .timedOut : failure)
        case .responding:
            guard !self.responseEnded else { return .none }
            self.reason = "response-incomplete"
            self.closesConnection = true
            self.phase = .finished
            return .truncated
        case .upgraded:
            // The backend side ended: the user's connection closes after what was sent.
            self.closesConnection = true
            return self.responseEnded ? .none : .truncated
        case .deciding, .answering, .finished:
            return .none
        }
    }

    /// An attempt ended before anything reached the user.
    mutating func attemptFailed(_ failure: Failover.Failure) -> StreamClosedAction {
        self.lastFailure = failure
        if self.userGone {
            self.phase = .finished
            return .abandon
        }
        guard self.tried.count < Self.maxAttempts, Failover.mayRetry(method: self.method, failure: failure, bodyReplayable: self.isReplayable) else {
            return .answer(failure)
        }
        self.phase = .deciding
        return .retry
    }

    /// Connections a request is tried on at most.
    static let maxAttempts = 3

    /// The response head's deadline passed; true when that times the attempt out (its stream is then closed).
    mutating func deadlinePassed() -> Bool {
        self.phase == .forwarding && self.progress.deadlinePassed()
    }

    // MARK: The end

    /// The relay's own page went out (or is going out).
    mutating func answered(status: Int, bytes: Int, closes: Bool) {
        self.status = status
        self.bytesOut = bytes
        if closes { self.closesConnection = true }
    }

    mutating func note(reason: String) { self.reason = reason }

    /// Whether both directions are done: the response's end was written and nothing more of the request is due.
    var isComplete: Bool {
        switch self.phase {
        case .responding: self.responseEnded && (self.userEnded || self.userGone)
        case .upgraded, .finished: self.responseEnded || self.phase == .finished
        default: false
        }
    }

    mutating func finish() { self.phase = .finished }
}
