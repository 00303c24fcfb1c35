import HTTPTypes

/// The life of one public HTTP/1.1 connection as a value: which timer runs, and what a graceful shutdown
/// (quiescing) does to it. ``EdgeTimeoutHandler`` feeds it events and carries out the actions it returns.
///
/// - A new connection has `idleTimeout` to start a request; once the first byte of a head arrives, the whole
///   head must arrive within `headerReadTimeout` (slow-header attacks); between requests the idle timer runs
///   again. No timer runs while a request is in progress or after a protocol switch.
/// - Quiescing closes a connection that is idle between requests. One in the middle of a request, or one
///   that has not sent its first request yet (it was accepted, or still in its TLS handshake, when shutdown
///   began), finishes that request and gets `Connection: close`; the latter must send it within
///   `headerReadTimeout`.
struct EdgeConnectionState: Sendable {
    enum Phase: Sendable, Equatable {
        /// Accepted; no request yet.
        case fresh
        /// Between requests.
        case idle
        /// The first bytes of a request head arrived.
        case readingHead
        /// A request is in progress (until its response ends).
        case inRequest
        /// Raw bytes after `101 Switching Protocols`.
        case upgraded
    }

    enum Timer: Sendable, Equatable {
        case idle
        case headerRead
    }

    enum Action: Sendable, Equatable {
        case none
        case arm(Timer)
        case cancelTimer
        case close
    }

    enum ResponseHeadAction: Sendable, Equatable {
        case write
        /// The connection closes after this response: say so.
        case writeWithConnectionClose
        /// A protocol switch: no timer from now on.
        case writeAndCancelTimer
    }

    enum ResponseEndAction: Sendable, Equatable {
        case write
        case writeThenArm(Timer)
        case writeThenClose
    }

    private(set) var phase = Phase.fresh
    private(set) var quiescing = false

    /// The connection is up (or the handler was added to a live one).
    func started() -> Action {
        .arm(.idle)
    }

    /// Bytes arrived before the HTTP decoder.
    mutating func bytesArrived() -> Action {
        switch self.phase {
        case .fresh, .idle:
            self.phase = .readingHead
            // A fresh connection that is quiescing already runs the header-read timer; it keeps running.
            return .arm(.headerRead)
        case .readingHead, .inRequest, .upgraded:
            return .none
        }
    }

    /// A complete request head was decoded.
    mutating func requestHeadArrived() -> Action {
        switch self.phase {
        case .fresh, .idle, .readingHead:
            self.phase = .inRequest
            return .cancelTimer
        case .inRequest, .upgraded:
            return .none
        }
    }

    /// A response head is being written.
    mutating func responseHead(_ status: HTTPResponse.Status) -> ResponseHeadAction {
        if status == .switchingProtocols {
            self.phase = .upgraded
            return .writeAndCancelTimer
        }
        if self.quiescing, status.kind != .informational { return .writeWithConnectionClose }
        return .write
    }

    /// A response's end is being written.
    mutating func responseEnd() -> ResponseEndAction {
        guard case .inRequest = self.phase else { return .write }
        self.phase = .idle
        return self.quiescing ? .writeThenClose : .writeThenArm(.idle)
    }

    /// Graceful shutdown began (`ChannelShouldQuiesceEvent`).
    mutating func quiesce() -> Action {
        guard !self.quiescing else { return .none }
        self.quiescing = true
        switch self.phase {
        case .idle:
            return .close
        case .fresh:
            // It connected before shutdown: let it send the request it connected for, but not wait long.
            return .arm(.headerRead)
        case .readingHead, .inRequest, .upgraded:
            return .none
        }
    }
}
